"""The scenario model: built-ins load and fit the machine, bad files fail with one line naming the key."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from loadtests.errors import UsageError
from loadtests.generator.arrivals import RateCurve
from loadtests.scenario.files import builtin_scenarios, load_scenario
from loadtests.scenario.model import ScenarioError

BUILTINS = {
    "double11",
    "festival618",
    "due-date-wave",
    "zero-down-installments",
    "capacity-step",
    "soak",
    "settlement-wave",
}

MINIMAL = """
name = "t"
duration_s = 60
[[rate]]
at_s = 0
per_s = 10
[[rate]]
at_s = 20
per_s = 10
[[rate]]
at_s = 22
per_s = 100
[[rate]]
at_s = 30
per_s = 100
[[rate]]
at_s = 40
per_s = 10
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_seven_builtins_each_within_two_minutes_with_modest_peaks() -> None:
    assert set(builtin_scenarios()) == BUILTINS
    for name in BUILTINS:
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.duration_s <= 120
        assert max(point.per_s for point in scenario.rate) <= 400


def test_double11_spikes_twenty_fold_within_two_seconds_and_kills_the_primary_at_the_peak() -> None:
    scenario = load_scenario("double11")
    [(start, end)] = scenario.spikes()
    assert scenario.rate_at(start + 2.0) / scenario.rate_at(start) == pytest.approx(20)
    kill = next(fault for fault in scenario.faults if fault.action == "kill")
    assert kill.target == "primary" and start < kill.at_s < end


def test_capacity_step_rises_ten_percent_per_phase() -> None:
    scenario = load_scenario("capacity-step")
    levels = [scenario.rate_at((start + end) / 2) for _, start, end in scenario.phases()]
    assert len(levels) >= 10
    for before, after in itertools.pairwise(levels):
        assert after / before == pytest.approx(1.1, rel=0.01)


def test_rate_is_linear_between_points_flat_after_the_last_and_zero_after_the_end(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, MINIMAL))
    assert scenario.rate_at(21) == pytest.approx(55)
    assert scenario.rate_at(35) == pytest.approx(55)
    assert scenario.rate_at(50) == 10
    assert scenario.rate_at(60) == 0 and scenario.rate_at(-1) == 0


def test_spike_starts_at_the_rise_and_ends_below_half_the_peak(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, MINIMAL))
    [(start, end)] = scenario.spikes()
    assert start == 20.0 and end == pytest.approx(30 + 10 * 50 / 90)
    names = [name for name, _, _ in scenario.phases()]
    assert names == ["steady-1", "spike-1", "fall-1", "steady-2"]
    assert scenario.phases()[0][1] == 0 and scenario.phases()[-1][2] == 60


def test_a_ramp_from_zero_is_not_a_spike(tmp_path: Path) -> None:
    text = 'name = "r"\nduration_s = 10\n[[rate]]\nat_s = 0\nper_s = 0\n[[rate]]\nat_s = 2\nper_s = 50\n'
    assert load_scenario(write(tmp_path, text)).spikes() == []


def test_scaled_multiplies_rates_and_pool_and_stretches_time_with_the_faults() -> None:
    base = load_scenario("double11")
    small = base.scaled(0.25, base.duration_s / 2)
    assert small.duration_s == base.duration_s / 2
    assert small.rate_at(16) == pytest.approx(base.rate_at(32) * 0.25)
    assert small.faults[0].at_s == base.faults[0].at_s / 2
    assert small.arrivals.pool == base.arrivals.pool // 4
    assert small.gateway["clock"]["speed"] == base.gateway["clock"]["speed"] * 2
    assert base.scaled(2.0).gateway["clock"] == base.gateway["clock"]
    curve_base, curve_small = RateCurve(base.breakpoints()), RateCurve(small.breakpoints())
    assert curve_small.total == pytest.approx(curve_base.total * 0.25 / 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n" + MINIMAL, "unknown key 'colour'"),
        (MINIMAL + "[client]\npolicy = 'pray'\n", "'client.policy'"),
        (MINIMAL.replace("per_s = 100\n[[rate]]\nat_s = 40", "per_s = -5\n[[rate]]\nat_s = 40"), "'rate.3.per_s'"),
        (MINIMAL + "[arrivals]\npoolsize = 3\n", "unknown key 'arrivals.poolsize'"),
        ('name = "x"\n[[rate]]\nat_s = 0\nper_s = 1\n', "missing key 'duration_s'"),
        (MINIMAL.replace("at_s = 40", "at_s = 5"), "'rate'"),
        ("name = [", "s.toml"),
        ('scaled_caps = ["limits.user_tps"]\n' + MINIMAL, "'scaled_caps.0'"),
        ('scaled_caps = ["limits.global_tps"]\n' + MINIMAL, "names limits.global_tps, but [gateway] does not set it"),
        (
            'scaled_caps = ["channels.concurrency"]\n' + MINIMAL + "[[gateway.channels]]\ncode = 'ICBC'\n",
            "names channels.concurrency, but [gateway] does not set it to a number > 0 everywhere",
        ),
        (MINIMAL.replace("duration_s", "duraton_s"), "unknown key 'duraton_s'"),
        (MINIMAL + "[[faults]]\nat_s = 60\naction = 'kill'\n", "'faults.0.at_s' must be before the end"),
        (MINIMAL + "[[faults]]\nat_s = 75\naction = 'kill'\n", "never played (got 75)"),
    ],
)
def test_bad_files_are_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write(tmp_path, text))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2


def test_a_scale_past_the_user_pool_limit_is_refused_naming_both() -> None:
    with pytest.raises(ScenarioError, match=r"--scale 40 needs a user pool of 24,000 .*past the limit of 20,000"):
        load_scenario("double11").scaled(40)


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(ScenarioError, match="double11"):
        load_scenario("no-such-festival")


def test_gateway_table_is_passed_through_for_the_gateway_to_validate() -> None:
    assert load_scenario("soak").gateway["limits"]["replica_tps"] == 150
    assert {channel["concurrency"] for channel in load_scenario("capacity-step").gateway["channels"]} == {2}


def test_scaled_caps_follow_the_scale_and_the_rest_of_the_gateway_does_not(tmp_path: Path) -> None:
    text = (
        'scaled_caps = ["limits.global_tps", "channels.concurrency", "channels.tps"]\n'
        + MINIMAL
        + "[gateway.limits]\nglobal_tps = 320\nuser_tps = 2\n"
        + "[[gateway.channels]]\ncode = 'ICBC'\nconcurrency = 4\ntps = 40\n"
        + "[[gateway.channels]]\ncode = 'CCB'\nconcurrency = 6\ntps = 60\n"
    )
    scenario = load_scenario(write(tmp_path, text))
    quarter = scenario.scaled(0.25)
    assert quarter.gateway["limits"] == {"global_tps": 80.0, "user_tps": 2}
    assert [channel["concurrency"] for channel in quarter.gateway["channels"]] == [1, 2]  # 1.5 rounds to even
    assert [channel["tps"] for channel in quarter.gateway["channels"]] == [10, 15]
    assert [channel["concurrency"] for channel in scenario.scaled(0.01).gateway["channels"]] == [1, 1]
    assert scenario.scaled(2.0).gateway["limits"]["global_tps"] == 640
    assert scenario.gateway["limits"]["global_tps"] == 320, "scaling returns a copy"


def test_double11_peak_overflows_its_scaled_cap_at_every_scale() -> None:
    base = load_scenario("double11")
    for scale in (0.1, 0.25, 1.0, 2.0):
        scaled = base.scaled(scale)
        [(start, end)] = scaled.spikes()
        cap = scaled.gateway["limits"]["global_tps"]
        assert scaled.rate_at(start) < cap < scaled.peak_rate(start, end)


def test_a_spikes_peak_is_its_highest_rate_not_the_rate_where_it_ends(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, MINIMAL))
    [(start, end)] = scenario.spikes()
    assert scenario.rate_at(end) == pytest.approx(50)
    assert scenario.peak_rate(start, end) == 100
