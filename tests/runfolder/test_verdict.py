"""The verdict model: its summary.json shape, and the one priority rule that merges verdicts into the exit code."""

from __future__ import annotations

import json

import pytest

from runfolder.verdict import (
    ExitCode,
    Headline,
    Kind,
    State,
    Verdict,
    headline,
    merge,
    run_state,
    verdicts_of,
    worst,
    worst_exit,
)


def _v(kind: Kind, state: State, name: str = "x") -> Verdict:
    return Verdict(kind=kind, name=name, value=1, bound=0, state=state)


def test_written_as_the_documented_summary_entry() -> None:
    verdict = Verdict.of(Kind.SLO, "p99_ms", 812.5, 800, False)
    assert json.dumps(verdict.model_dump(mode="json")) == (
        '{"name": "p99_ms", "value": 812.5, "bound": 800, "passed": false, "verdict": "fail", "reason": null}'
    )
    assert Verdict.of(Kind.RUN, "credentials", 3, 0, None, "why").model_dump()["passed"] is None


def test_read_back_with_its_kind_from_the_list_holding_it() -> None:
    summary = {
        "slos": [{"name": "success_ratio", "value": 1.0, "bound": 0.99, "passed": True, "verdict": "pass"}],
        "invariant_verdicts": [{"name": "lost", "value": None, "bound": 0, "passed": None, "reason": "no ledger"}],
        "run_verdicts": [{"name": "generator_valid", "value": False, "bound": True, "passed": False}],
    }
    found = verdicts_of(summary)
    assert [(v.kind, v.name, v.state) for v in found] == [
        (Kind.SLO, "success_ratio", State.PASS),
        (Kind.INVARIANT, "lost", State.UNKNOWN),  # written before `verdict` existed: from `passed`
        (Kind.RUN, "generator_valid", State.FAIL),
    ]
    assert isinstance(found[0].value, float) and found[2].value is False  # a flag stays a flag


def test_an_int_value_stays_an_int() -> None:
    assert json.dumps(Verdict.of(Kind.INVARIANT, "lost", 0, 0, True).model_dump()["value"]) == "0"


@pytest.mark.parametrize(
    ("verdicts", "code"),
    [
        ([], ExitCode.PASS),
        ([_v(Kind.SLO, State.PASS), _v(Kind.INVARIANT, State.PASS)], ExitCode.PASS),
        ([_v(Kind.SLO, State.FAIL)], ExitCode.FAIL),
        ([_v(Kind.SLO, State.PASS), _v(Kind.INVARIANT, State.UNKNOWN)], ExitCode.HARNESS),
        ([_v(Kind.RUN, State.FAIL), _v(Kind.SLO, State.FAIL)], ExitCode.HARNESS),  # the harness outranks an SLO
        ([_v(Kind.RUN, State.FAIL), _v(Kind.INVARIANT, State.FAIL)], ExitCode.FAIL),  # money outranks everything
        ([_v(Kind.SLO, State.FAIL), _v(Kind.SLO, State.UNKNOWN)], ExitCode.FAIL),
    ],
)
def test_merge_is_one_priority_rule(verdicts: list[Verdict], code: ExitCode) -> None:
    assert merge(verdicts) is code


def test_one_violation_fails_a_run_of_passes() -> None:
    passes = [_v(Kind.SLO, State.PASS, f"s{n}") for n in range(20)]
    assert merge([*passes, _v(Kind.INVARIANT, State.FAIL, "lost")]) is ExitCode.FAIL


def test_unknown_is_never_a_pass() -> None:
    only_unknown = [_v(Kind.INVARIANT, State.UNKNOWN)]
    assert merge(only_unknown) is ExitCode.HARNESS
    assert headline(merge(only_unknown), only_unknown) == Headline.NOT_PROVEN == "NOT PROVEN"


def test_headline_words() -> None:
    assert headline(0, []) == "PASS" and headline(1, []) == "FAIL"
    assert headline(3, [_v(Kind.RUN, State.FAIL), _v(Kind.SLO, State.UNKNOWN)]) == "HARNESS FAILED"
    assert headline(130, []) == "exit 130"


def test_unknown_keeps_the_claim_and_drops_the_value() -> None:
    measured = Verdict.of(Kind.SLO, "p99_ms", 12.0, 800, True)
    assert measured.unknown("why") == Verdict(
        kind=Kind.SLO, name="p99_ms", value=None, bound=800, state=State.UNKNOWN, reason="why"
    )
    assert measured.unit == " ms" and State.FAIL.word == "FAIL" and State.PASS.word == "pass"


def test_a_bound_is_a_floor_or_a_ceiling_and_no_value_fails() -> None:
    assert Verdict.bounded(Kind.SLO, "success_ratio", 0.99, 0.99, at_least=True).state is State.PASS
    assert Verdict.bounded(Kind.SLO, "success_ratio", 0.9899999, 0.99, at_least=True).state is State.FAIL
    assert Verdict.bounded(Kind.SLO, "p99_ms", 800.0, 800, at_least=False).state is State.PASS
    assert Verdict.bounded(Kind.SLO, "p99_ms", 800.0000001, 800, at_least=False).state is State.FAIL
    assert Verdict.bounded(Kind.SLO, "p99_ms", None, 800, at_least=False).state is State.FAIL
    assert Verdict.bounded(Kind.SLO, "success_ratio", 2 / 3, 0.5, at_least=True).value == 0.666667


@pytest.mark.parametrize(
    ("codes", "code"),
    [
        ([], 0),
        ([0, 0], 0),
        ([0, 2], 2),
        ([2, 3], 3),  # a run that started and proved nothing outranks one refused before it started
        ([3, 1, 0], 1),  # a failure found is real whatever another run's harness did
        ([1, 2], 1),
        ([3, 4, 2], 4),  # a code surge never exits with is kept, so that it is seen
        ([-9, 0], -9),  # a child killed by a signal, as Python reports it
        ([1, 130, 3], 130),  # stopped: a caller must see the stop
        ([130, 143], 143),
    ],
)
def test_the_worst_exit_code_of_several_runs(codes: list[int], code: int) -> None:
    assert worst_exit(codes) == code
    assert worst_exit(reversed(codes)) == code


def test_the_worst_exit_code_agrees_with_the_worst_state_of_runs_that_finished() -> None:
    finished = [ExitCode.PASS, ExitCode.FAIL, ExitCode.USAGE, ExitCode.HARNESS]
    for a in finished:
        for b in finished:
            assert run_state(worst_exit([a, b])) is worst([run_state(a), run_state(b)]), (a, b)
