"""N processes' JSON deltas, merged in any order, equal the windows one process records over the same attempts."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests.generator.windows import (
    HDR_HIGHEST_US,
    Window,
    WindowBook,
    decode_histogram,
    merge_all,
    new_histogram,
)
from runfolder.outcomes import OUTCOME_CLASSES as OUTCOMES

attempts = st.lists(
    st.tuples(
        st.integers(0, 5),  # second
        st.sampled_from(OUTCOMES),
        st.floats(0, 5e6),  # intended latency µs
        st.floats(0, 5e6),  # service latency µs
        st.sampled_from(["", "DAILY_LIMIT_EXCEEDED", "RATE_LIMITED"]),
        st.sampled_from(["", "r1", "r2"]),
        st.integers(0, 10_000_000),
        st.integers(0, 3),  # which of up to 4 processes recorded it
    ),
    max_size=200,
)


def record(book: WindowBook, item: tuple[int, str, float, float, str, str, int, int]) -> None:
    t, outcome, intended, service, code, replica, amount, _ = item
    window = book.at(t)
    window.record(outcome, intended_us=intended, service_us=service, code=code, replica=replica, amount_fen=amount)  # type: ignore[arg-type]
    window.offered += 1
    window.sent += 1


@settings(max_examples=40, deadline=None)
@given(attempts)
def test_merged_deltas_of_several_processes_equal_one_process(items: list[tuple]) -> None:  # type: ignore[type-arg]
    single = WindowBook()
    processes = [WindowBook() for _ in range(4)]
    for item in items:
        record(single, item)
        record(processes[item[-1]], item)
    wire = [json.loads(json.dumps(w.to_json())) for book in processes for w in book.take()]
    random.Random(len(items)).shuffle(wire)  # messages arrive in any order
    merged = merge_all([Window.from_json(line) for line in wire])
    assert [w.to_json() for w in merged] == [w.to_json() for w in single.take()]


def test_json_round_trip_keeps_counts_codes_replicas_and_percentiles() -> None:
    window = Window(7, offered=10, sent=9, late=1, dropped=1, plans_followed=2, cpu_pct=55.5, lag_ms=3.25, workers=1)
    for ms in range(1, 101):
        window.record("succeeded", intended_us=ms * 1000, service_us=ms * 500, replica="r1", amount_fen=100)
    window.record("declined", intended_us=2000, service_us=1000, code="DAILY_LIMIT_EXCEEDED", replica="r2")
    line = window.to_json()
    assert list(line["classes"]) == ["succeeded", "declined"]
    assert line["codes"] == {"DAILY_LIMIT_EXCEEDED": 1} and line["replicas"] == {"r1": 100, "r2": 1}
    assert line["amount_fen"] == 10_000 and line["gen"] == {"cpu_pct": 55.5, "lag_ms": 3.25, "workers": 1}
    back = Window.from_json(json.loads(json.dumps(line)))
    assert back.to_json() == line
    p99 = decode_histogram(line["classes"]["succeeded"]["intended"]).get_value_at_percentile(99)
    assert abs(p99 - 99_000) <= 99  # 3 significant digits


def test_merge_takes_the_worst_generator_health_and_counts_workers() -> None:
    a, b = Window(1, cpu_pct=40, lag_ms=9, workers=1), Window(1, cpu_pct=95, lag_ms=2, workers=1)
    a.merge(b)
    assert (a.cpu_pct, a.lag_ms, a.workers) == (95, 9, 2)


def test_latencies_are_clamped_into_the_histogram_range() -> None:
    window = Window(0)
    window.record("timeout", intended_us=-5, service_us=10 * HDR_HIGHEST_US)
    stats = window.classes["timeout"]
    assert stats.intended.get_total_count() == stats.service.get_total_count() == 1
    assert stats.intended.get_min_value() >= 1
    assert stats.service.get_max_value() <= HDR_HIGHEST_US * 1.001


def test_latencies_kept_until_a_fold_make_the_histogram_recording_each_would() -> None:
    rng = random.Random(7)
    values = [(rng.lognormvariate(7, 1), rng.lognormvariate(6, 1.5)) for _ in range(3000)] + [(1800.0, 900.4)] * 500
    window = Window(0)
    intended, service = new_histogram(), new_histogram()
    for intended_us, service_us in values:
        window.record("succeeded", intended_us=intended_us, service_us=service_us)
        intended.record_value(round(intended_us))
        service.record_value(round(service_us))
    line = window.to_json()["classes"]["succeeded"]
    assert decode_histogram(line["intended"]).encode() == intended.encode()
    assert decode_histogram(line["service"]).encode() == service.encode()
    assert line["count"] == 3500


def test_book_take_hands_over_closed_seconds_in_order() -> None:
    book = WindowBook()
    for t in (3, 1, 2):
        book.at(t).offered += 1
    assert [w.t for w in book.take(3)] == [1, 2]
    assert [w.t for w in book.take()] == [3]
    assert book.take() == []
