"""A verdict is data: one claim about a run, checked (pass / fail) or not (unknown), and one rule merging them.

Every judge of a run (its SLOs, its money invariants, the run's own checks) yields `Verdict`s; summary.json keeps
them, and every output (console table, GitHub step summary, junit.xml, report.html, study.html, a plain Locust
run's log) only formats them, with the words defined here once. Unknown means surge could not check the claim
(`reason` says why) and is never a pass: `merge`, the one priority rule, gives exit 0 only when every verdict
held, and `worst_exit` folds several runs' codes into one. It belongs to the run-folder format because
summary.json carries it and the generator, the orchestration and the reports all read it back; the exit codes
live here too, since a verdict is what most of them report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, model_serializer, model_validator


class State(StrEnum):
    PASS = "pass"  # noqa: S105 — a verdict, not a password
    FAIL = "fail"
    UNKNOWN = "unknown"

    @property
    def passed(self) -> bool | None:
        """True, False, or None when unknown: how summary.json and `surge verify --json` write it."""
        return None if self is State.UNKNOWN else self is State.PASS

    @property
    def word(self) -> str:
        """How a table shows it: a failure shouts, the others do not."""
        return "FAIL" if self is State.FAIL else self.value


def worst(states: Iterable[State]) -> State:
    """The state of a group of verdicts: failed if one failed, else unknown if one is, else passed."""
    found = set(states)
    return State.FAIL if State.FAIL in found else State.UNKNOWN if State.UNKNOWN in found else State.PASS


class Kind(StrEnum):
    """What a verdict judges: the service against its SLOs, the money, or the run itself (the harness)."""

    SLO = "slo"
    INVARIANT = "invariant"
    RUN = "run"


# Where each kind's verdicts are kept in summary.json, in the order every output lists them.
SUMMARY_KEYS: Mapping[Kind, str] = {Kind.SLO: "slos", Kind.INVARIANT: "invariant_verdicts", Kind.RUN: "run_verdicts"}


class ExitCode(IntEnum):
    """Every exit code surge has (README): a run's, the CLI's and a plain Locust run's."""

    PASS = 0  # every SLO and invariant held
    FAIL = 1  # an SLO or invariant failed, or an [[abort]] rule tripped
    USAGE = 2  # a bad argument, scenario or config: nothing was started
    HARNESS = 3  # the harness did not produce the run asked for, or a verdict is unknown
    SIGINT = 130  # 128 + the signal's number, as shells report a signal's end
    SIGTERM = 143


def run_state(exit_code: int) -> State:
    """A whole run's state from its exit code: 0 passed, 1 failed, any other (the harness failed, a verdict
    unknown, a signal) unknown — the run did not measure the gateway."""
    if exit_code == ExitCode.PASS:
        return State.PASS
    return State.FAIL if exit_code == ExitCode.FAIL else State.UNKNOWN


class Verdict(BaseModel):
    """One SLO, invariant or run check: a summary.json entry and a junit.xml test case.

    Written as `{name, value, bound, passed, verdict, reason}` (`passed` null when unknown); `kind` is not
    written, the summary.json list holding the entry says it. `value` and `bound` are numbers or flags as
    measured (an int stays an int); the `aborted` check's bound is the text of the `[[abort]]` rule.
    """

    model_config = ConfigDict(frozen=True)

    kind: Kind
    name: str
    value: bool | int | float | None
    bound: bool | int | float | str | None
    state: State
    reason: str | None = None

    @classmethod
    def of(
        cls, kind: Kind, name: str, value: Any, bound: Any, passed: bool | None, reason: str | None = None
    ) -> Verdict:
        """`passed` None: unknown, with `reason`."""
        state = State.UNKNOWN if passed is None else State.PASS if passed else State.FAIL
        return cls(kind=kind, name=name, value=value, bound=bound, state=state, reason=reason)

    @classmethod
    def bounded(cls, kind: Kind, name: str, value: float | None, bound: float, *, at_least: bool) -> Verdict:
        """`value` against `bound`, a floor when `at_least` else a ceiling, kept to six decimals (the check is
        on the value as measured); no value fails: the caller that knows why nothing was measured says so with
        an unknown instead."""
        passed = value is not None and (value >= bound if at_least else value <= bound)
        shown = None if value is None else round(value, 6)
        return cls.of(kind, name, shown, bound, passed)

    def unknown(self, reason: str) -> Verdict:
        """The same claim, not checked: no value, `reason` for it."""
        return self.model_copy(update={"value": None, "state": State.UNKNOWN, "reason": reason})

    @property
    def passed(self) -> bool | None:
        return self.state.passed

    @property
    def unit(self) -> str:
        """The unit of the value and bound, from the name (`p99_ms[spike-1]` is in ms)."""
        return UNITS.get(self.name.split("[", 1)[0], "")

    @model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        """A summary.json entry: `verdict` is the state (older summaries have only `passed`)."""
        if isinstance(data, Mapping) and "state" not in data:
            data = dict(data)
            passed = data.pop("passed", None)
            written = data.pop("verdict", None)
            data["state"] = written or (State.UNKNOWN if passed is None else State.PASS if passed else State.FAIL)
        return data

    @model_serializer
    def _write(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "bound": self.bound,
            "passed": self.passed,
            "verdict": self.state.value,
            "reason": self.reason,
        }


def verdicts_of(summary: Mapping[str, Any]) -> list[Verdict]:
    """Every verdict of a summary.json, SLOs first, then invariants, then the run's checks."""
    return [
        entry if isinstance(entry, Verdict) else Verdict.model_validate({**entry, "kind": kind})
        for kind, key in SUMMARY_KEYS.items()
        for entry in summary.get(key) or []
    ]


def merge(verdicts: Iterable[Verdict]) -> ExitCode:
    """The one priority rule (README), in this order:

    1. an invariant failed: 1 — money errors are real whatever else happened;
    2. a run check failed (the generator was the bottleneck, a fault's injection failed): 3 — the harness did not
       produce the run asked for, so neither a pass nor an SLO failure would be true;
    3. an SLO failed: 1;
    4. a verdict is unknown: 3 — 0 means every SLO and invariant held, and surge cannot say so;
    5. otherwise 0.
    """
    found = list(verdicts)

    def failed(kind: Kind) -> bool:
        return any(verdict.kind is kind and verdict.state is State.FAIL for verdict in found)

    if failed(Kind.INVARIANT):
        return ExitCode.FAIL
    if failed(Kind.RUN):
        return ExitCode.HARNESS
    if failed(Kind.SLO):
        return ExitCode.FAIL
    return ExitCode.HARNESS if any(verdict.state is State.UNKNOWN for verdict in found) else ExitCode.PASS


def worst_exit(codes: Iterable[int]) -> int:
    """The exit code of several runs (a study's variants, a variant's repetitions), the first found of:

    1. a signal's (128 + its number, 143 SIGTERM before 130 SIGINT): the runs were stopped before they were
       all done, and a shell, `make` or a CI runner must see a stop, not an outcome;
    2. 1: a run found the gateway failing an SLO or an invariant. Each run's own code already says 3 for an SLO
       failure measured in a run that was not valid, so a 1 is a real finding that no other run's trouble
       undoes (the order `worst` gives the runs' states: a failure before an unknown);
    3. any other code surge never exits with (a process that ended its own way): kept, so that it is seen;
    4. 3: a run's harness failed or a verdict is unknown — the runs do not prove the gateway held;
    5. 2: a run was refused as asked (bad usage) and every other passed;
    6. 0: every run passed (and for no runs at all).
    """
    ranks: Mapping[int, int] = {ExitCode.PASS: 0, ExitCode.USAGE: 1, ExitCode.HARNESS: 2, ExitCode.FAIL: 4}
    return max(codes, key=lambda code: (5 if code > 128 else ranks.get(code, 3), code), default=ExitCode.PASS)


class Headline(StrEnum):
    """The words a whole run is summed up in, on every output."""

    PASS = "PASS"  # noqa: S105 — a verdict, not a password
    FAIL = "FAIL"
    NOT_PROVEN = "NOT PROVEN"  # nothing failed, but some verdict is unknown
    HARNESS_FAILED = "HARNESS FAILED"
    INVALID_RUN = "INVALID RUN"  # the figures describe the load generator (or the user pool), not the gateway


NOT_THE_GATEWAYS = "these figures are not the gateway's"
GENERATOR_BOTTLENECK = "the load generator was the bottleneck"


def headline(exit_code: int | None, verdicts: Iterable[Verdict]) -> str:
    """The one word for a run from its exit code and verdicts (`exit N` for a stop's own code)."""
    if exit_code == ExitCode.PASS:
        return Headline.PASS
    if exit_code == ExitCode.FAIL:
        return Headline.FAIL
    found = list(verdicts)
    harness_failed = any(verdict.kind is Kind.RUN and verdict.state is State.FAIL for verdict in found)
    if exit_code != ExitCode.HARNESS:
        return f"exit {exit_code}"
    if not harness_failed and any(verdict.state is State.UNKNOWN for verdict in found):
        return Headline.NOT_PROVEN
    return Headline.HARNESS_FAILED


UNITS: Mapping[str, str] = {
    "success_ratio": "",
    "p99_ms": " ms",
    "recovery_s": " s",
    "lost": " payments",
    "phantom": " rows",
    "duplicate": " payments",
    "over_cap": " card/user-days",
    "stuck": " payments",
    "flipped": " payments",
    "double_settled": " payments",
    "callback_mismatch": " payments",
    "settle_p99_s": " s",
    "fault_failures": " faults",
    "capacity_found": " /s",
}


def format_value(value: Any, unit: str = "") -> str:
    """A verdict's value or bound (with its `unit`) as every text output shows it."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}{unit}"
    return f"{value}{unit}"
