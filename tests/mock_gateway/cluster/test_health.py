"""The fall/rise state machine and the selection policy, driven directly (no sockets, no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_gateway.cluster.health import HealthState, Mode, ReplicaPool, Transition


def test_first_check_decides_then_fall_and_rise_apply() -> None:
    h = HealthState(fall=2, rise=3)
    assert h.record(True) is Transition.UP
    assert h.record(False) is None
    assert h.up is True
    assert h.record(False) is Transition.DOWN
    assert h.record(True) is None
    assert h.record(True) is None
    assert h.record(True) is Transition.UP


def test_a_success_resets_the_failure_streak() -> None:
    h = HealthState(fall=2, rise=2)
    h.record(True)
    for _ in range(5):
        assert h.record(False) is None
        assert h.record(True) is None
    assert h.up is True


def test_first_failure_is_down_without_a_transition() -> None:
    h = HealthState(fall=2, rise=2)
    assert h.record(False) is None
    assert h.up is False
    assert h.record(True) is None
    assert h.record(True) is Transition.UP


def test_force_down_is_immediate_and_reported_once() -> None:
    h = HealthState(fall=5, rise=2)
    h.record(True)
    assert h.force_down() is Transition.DOWN
    assert h.force_down() is None
    assert h.record(True) is None
    assert h.record(True) is Transition.UP


@pytest.mark.parametrize(("fall", "rise"), [(0, 1), (1, 0)])
def test_fall_and_rise_must_be_positive(fall: int, rise: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        HealthState(fall=fall, rise=rise)


@given(st.integers(1, 5), st.integers(1, 5), st.lists(st.booleans(), max_size=60))
def test_transitions_alternate_and_need_full_streaks(fall: int, rise: int, results: list[bool]) -> None:
    h = HealthState(fall=fall, rise=rise)
    last: Transition | None = None
    streak_ok = streak_fail = 0
    for i, ok in enumerate(results):
        streak_ok, streak_fail = (streak_ok + 1, 0) if ok else (0, streak_fail + 1)
        t = h.record(ok)
        if t is None:
            continue
        assert t != last
        last = t
        if t is Transition.DOWN:
            assert streak_fail >= fall
        elif i > 0:  # only the very first check may bring a replica up on its own
            assert streak_ok >= rise
    if last is not None:
        assert h.up is (last is Transition.UP)


def _pool(mode: Mode, up: list[str], names: tuple[str, ...] = ("r1", "r2", "r3")) -> ReplicaPool:
    pool = ReplicaPool.of(list(names), mode, fall=1, rise=1)
    for name in names:
        pool.member(name).health.record(name in up)
    return pool


def test_active_standby_sends_everything_to_the_first_healthy_by_priority() -> None:
    pool = _pool(Mode.ACTIVE_STANDBY, ["r2", "r3"])
    assert {pool.select() for _ in range(10)} == {"r2"}
    assert pool.select({"r2"}) == "r3"
    assert pool.select({"r2", "r3"}) is None
    assert pool.primary() == "r2"
    assert [pool.role(n) for n in pool.names()] == ["standby", "primary", "standby"]
    assert pool.traffic_target() == "r2"


def test_active_active_prefers_least_in_flight_and_spreads_ties() -> None:
    pool = _pool(Mode.ACTIVE_ACTIVE, ["r1", "r2", "r3"])
    pool.member("r1").in_flight = 4
    pool.member("r2").in_flight = 1
    pool.member("r3").in_flight = 1
    chosen = {pool.select() for _ in range(10)}
    assert chosen == {"r2", "r3"}
    pool.member("r3").in_flight = 0
    assert pool.select() == "r3"
    assert pool.role("r1") == "active"
    assert pool.traffic_target() == "r1+r2+r3"


def test_no_healthy_replica() -> None:
    pool = _pool(Mode.ACTIVE_STANDBY, [])
    assert pool.select() is None
    assert pool.primary() is None
    assert pool.traffic_target() == "none"


def test_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        ReplicaPool.of(["r1", "r1"], Mode.ACTIVE_STANDBY, 1, 1)


def test_panic_selection_ignores_health_but_not_the_running_set() -> None:
    pool = _pool(Mode.ACTIVE_STANDBY, [])
    assert pool.select() is None
    assert pool.select_in_panic(["r2", "r3"]) == "r2"
    assert pool.select_in_panic(["r2", "r3"], {"r2"}) == "r3"
    assert pool.select_in_panic([]) is None
