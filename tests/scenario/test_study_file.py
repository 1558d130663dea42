"""The study file (docs/study.md): validated whole before anything runs, every mistake one line naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.errors import UsageError
from loadtests.orchestration.study import plan_study, study_header
from loadtests.scenario.study import StudyError, builtin_studies, load_study, merge_gateway, variant_scenario

GOOD = """
name = "s"
scenario = "due-date-wave"
[[variant]]
name = "baseline"
[[variant]]
name = "split plans"
client = { policy = "follow-plan" }
[[variant]]
name = "three replicas"
replicas = 3
gateway = { limits = { replica_tps = 200 } }
"""


def study_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_repeat_varies_the_seed_per_repetition_and_keeps_it_across_variants(tmp_path: Path) -> None:
    study, scenario = load_study(study_file(tmp_path, GOOD))
    plans = plan_study(study, scenario, tmp_path / "out", repeat=3)
    assert [(p.repetition, p.name) for p in plans[:4]] == [(1, "baseline"), (1, "split plans"), (1, "three replicas"),
                                                             (2, "baseline")]  # fmt: skip
    seeds = {(p.name, p.repetition): p.scenario.seed for p in plans}
    assert {seeds[name, 1] for name in ("baseline", "split plans", "three replicas")} == {scenario.seed}
    assert [seeds["baseline", k] for k in (1, 2, 3)] == [scenario.seed, scenario.seed + 1, scenario.seed + 2]
    assert plans[-1].run_dir == tmp_path / "out" / "three replicas" / "run-3"
    header = study_header(study, scenario, plans)
    assert header["repeat"] == 3 and header["seeds"] == [scenario.seed + k for k in range(3)]
    assert header["variants_planned"] == ["baseline", "split plans", "three replicas"]


def test_the_contract_example_loads_and_keeps_the_seed(tmp_path: Path) -> None:
    study, scenario = load_study(study_file(tmp_path, GOOD))
    assert [v.name for v in study.variants] == ["baseline", "split plans", "three replicas"]
    plans = plan_study(study, scenario, tmp_path / "out")
    assert [plan.run_dir.name for plan in plans] == ["baseline", "split plans", "three replicas"]
    assert {plan.scenario.seed for plan in plans} == {scenario.seed}
    assert plans[1].scenario.client.policy == "follow-plan"
    assert plans[2].replicas == 3 and plans[0].replicas == 3
    assert plans[2].scenario.gateway["limits"] == {"user_daily_fen": 20_000_000, "replica_tps": 200}
    assert not (tmp_path / "out").exists(), "planning writes nothing"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ('bogus = 1\n[[variant]]\nname = "a"', "unknown key 'bogus'"),
        ('[[variant]]\nname = "a"\nreplicas = 0', "'variant.0.replicas'"),
        ('[[variant]]\nname = "a"\n[[variant]]\nname = "a"', "unique"),
        ('[[variant]]\nname = "a/b"', "'variant.0.name'"),
        ('[[variant]]\nname = ".."', "'variant.0.name'"),
        ('[[variant]]\nname = "a"\nclient = { polcy = "give-up" }', "polcy"),
        ('[[variant]]\nname = "a"\nclient = { policy = "pray" }', "client.policy"),
        ('[[variant]]\nname = "a"\nfrobs = 1', "'variant.0.frobs'"),
        ("", "'variant'"),
    ],
)
def test_a_bad_study_names_the_key(tmp_path: Path, change: str, needle: str) -> None:
    with pytest.raises(StudyError, match=r"study .*study\.toml") as caught:
        load_study(study_file(tmp_path, f'name = "s"\nscenario = "due-date-wave"\n{change}\n'))
    assert needle in str(caught.value)


def test_a_variant_gateway_mistake_is_found_before_anything_starts(tmp_path: Path) -> None:
    text = GOOD + '[[variant]]\nname = "typo"\ngateway = { limits = { replica_tsp = 5 } }\n'
    study, scenario = load_study(study_file(tmp_path, text))
    with pytest.raises(UsageError, match=r"variant 'typo'.*unknown key 'limits.replica_tsp'"):
        plan_study(study, scenario, tmp_path / "out")


def test_channels_merge_by_code_and_other_lists_replace() -> None:
    base = {"channels": [{"code": "ICBC", "tps": 5, "single_fen": 1}, {"code": "BOC", "tps": 5}], "limits": {"a": 1}}
    merged = merge_gateway(base, {"channels": [{"code": "BOC", "tps": 9}, {"code": "CMB"}], "limits": {"b": 2}})
    assert merged["channels"] == [
        {"code": "ICBC", "tps": 5, "single_fen": 1},
        {"code": "BOC", "tps": 9},
        {"code": "CMB"},
    ]
    assert merged["limits"] == {"a": 1, "b": 2}
    assert base["channels"][1] == {"code": "BOC", "tps": 5}, "the scenario's own config is left alone"


def test_the_builtin_study_plans_every_variant(tmp_path: Path) -> None:
    assert "festival-remedies" in builtin_studies()
    study, scenario = load_study("festival-remedies")
    plans = plan_study(study, scenario, tmp_path / "out")
    by_name = {plan.name: plan for plan in plans}
    assert {plan.scenario.client.policy for plan in plans} == {"give-up", "follow-plan", "switch-card"}
    assert by_name["one more replica"].replicas == by_name["baseline"].replicas + 1
    paced = by_name["paced bank quotas"].scenario.gateway["channels"]
    assert all(channel["queue_timeout_ms"] == 1000 and channel["tps"] > 0 for channel in paced)
    assert variant_scenario(scenario, study.variants[0]) == scenario  # the baseline changes nothing


def test_a_bad_study_file_is_exit_2_with_one_line_and_nothing_started(tmp_path: Path) -> None:
    bad = study_file(tmp_path, GOOD.replace('name = "baseline"', 'name = "baseline"\nreplicas = -2'))
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.cli.main", "study", bad, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "variant.0.replicas" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", sorted(builtin_studies()))
def test_a_builtin_study_cannot_run_out_of_users(name: str) -> None:
    """A built-in study's variants wait on slow paths on purpose (paced bank quotas queue calls for up to a
    second); the pool covers the peak rate with every payment holding its user through all its attempts, each
    up to the client's timeout — so a late arrival can only be the generator's, never the scenario's pool."""
    study, scenario = load_study(name)
    for variant in study.variants:
        merged = variant_scenario(scenario, variant).scaled(study.scale)
        peak = max(point.per_s for point in merged.rate)
        holding_s = (merged.client.max_retries + 1) * merged.client.timeout_s
        assert merged.arrivals.pool >= peak * holding_s, (variant.name, merged.arrivals.pool, peak * holding_s)
