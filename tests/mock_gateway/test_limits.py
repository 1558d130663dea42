"""GCRA math on a hand-driven clock: exact admissions per second, retry-after, and all-or-none charging."""

from __future__ import annotations

import pytest

from mock_gateway.limits import Admission, Gcra, KeyedGcra, default_burst


def offered(gcra: Gcra, rate: float, seconds: float) -> list[float]:
    """Times (s) of admitted requests when `rate`/s arrive evenly for `seconds`."""
    admitted = []
    for i in range(int(rate * seconds)):
        now = i / rate
        if gcra.wait(now) == 0.0:
            gcra.take(now)
            admitted.append(now)
    return admitted


@pytest.mark.parametrize("cap", [5, 50, 100, 2000])
def test_cap_under_three_times_the_load_admits_n_per_second(cap: int) -> None:
    admitted = offered(Gcra(cap), rate=3 * cap, seconds=5)
    for second in range(5):
        count = sum(1 for t in admitted if second <= t < second + 1)
        assert 0.95 * cap <= count <= 1.05 * cap, (second, count)


def test_burst_then_steady_spacing_and_retry_after() -> None:
    gcra = Gcra(10, burst=3)
    for _ in range(3):
        assert gcra.wait(0.0) == 0.0
        gcra.take(0.0)
    assert gcra.wait(0.0) == pytest.approx(0.1)
    assert gcra.wait(0.1) == 0.0


def test_default_burst_is_a_25th_of_a_second() -> None:
    assert default_burst(1) == 1
    assert default_burst(100) == 4
    assert default_burst(5000) == 200


def test_burst_ms_deepens_the_bucket_of_replica_and_global_caps() -> None:
    assert default_burst(150, burst_ms=250) == 38
    now = [0.0]
    admission = Admission(replica_tps=150, global_tps=None, user_tps=None, monotonic=lambda: now[0], burst_ms=250)
    assert sum(admission.admit(f"u{i}") is None for i in range(50)) == 38  # a 250 ms stall is absorbed at once
    admitted_over_a_second = 0
    for step in range(1, 1001):  # then 1 request per ms offered for a second: N per second, plus the bucket
        now[0] = step / 1000
        admitted_over_a_second += admission.admit(f"v{step}") is None
    assert 150 - 1 <= admitted_over_a_second <= 150 + 1


def test_keyed_caps_are_independent_and_forget_idle_keys() -> None:
    users: KeyedGcra[str] = KeyedGcra(1, burst=1, max_keys=2)
    users.take("a", 0.0)
    assert users.wait("a", 0.5) == pytest.approx(0.5)
    assert users.wait("b", 0.5) == 0.0
    users.take("b", 0.5)
    users.take("c", 10.0)  # a and b are idle by now and get forgotten
    assert len(users) == 1


def test_admission_charges_nothing_when_one_cap_refuses() -> None:
    now = [0.0]
    admission = Admission(replica_tps=100, global_tps=100, user_tps=1, monotonic=lambda: now[0])
    assert admission.admit("u1") is None
    refusal = admission.admit("u1")
    assert refusal is not None
    assert refusal.scope == "user"
    assert refusal.retry_after_s == pytest.approx(1.0)
    # The refused request did not spend replica or global tokens: other users still get the full burst.
    admitted = sum(admission.admit(f"x{i}") is None for i in range(4))
    assert admitted == default_burst(100) - 1


def test_the_routers_admission_has_no_replica_cap_and_names_the_longest_wait() -> None:
    """The router uses the same Admission with only the global and per-user caps (one admission path)."""
    now = [0.0]
    admission = Admission(replica_tps=None, global_tps=2, user_tps=0.5, monotonic=lambda: now[0], max_user_keys=10)
    assert admission.admit("u1") is None
    refusal = admission.admit("u1")  # the user must wait 2 s, the global cap 0.5 s: the user's wait is named
    assert refusal is not None and refusal.scope == "user" and refusal.retry_after_s == pytest.approx(2.0)
    now[0] = 0.5  # one global interval later: free only if the refused request charged nothing
    assert admission.admit("u2") is None
    refusal = admission.admit("u3")
    assert refusal is not None and refusal.scope == "global" and refusal.retry_after_s == pytest.approx(0.5)
    assert admission.user_keys == 2


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        Gcra(0)
