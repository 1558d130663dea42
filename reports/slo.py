"""SLO and invariant verdicts (docs/scenarios.md) and their JUnit XML, the format every CI system reads.

Verdicts are plain dicts `{name, value, bound, passed}` because they go straight into summary.json. The overall
success ratio and p99 are computed from the whole run; each phase of the scenario gets its own pair, named
`success_ratio[phase]`, so a CI failure says *when* the gateway broke; each fault and spike gets
`recovery_s[event@at]`. A phase that admitted nothing yields no verdict: an empty phase proves nothing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # builds XML only; never parses untrusted input
from collections.abc import Mapping
from typing import Any

import pandas as pd

from reports.frames import RunFrames
from reports.measure import counters, latency
from runfolder.events import FAULT_FAILED, FAULT_INJECTED
from runfolder.models import GeneratorVerdict, Slo

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"


def verdict(name: str, value: Any, bound: Any, passed: bool | None, reason: str | None = None) -> dict[str, Any]:
    """One checked (or uncheckable) claim. `passed` None means unknown: surge could not check it, and `reason`
    says why; unknown is never a pass (README: exit 0 needs every verdict to have held)."""
    outcome = UNKNOWN if passed is None else PASS if passed else FAIL
    return {"name": name, "value": value, "bound": bound, "passed": passed, "verdict": outcome, "reason": reason}


def outcome(entry: dict[str, Any]) -> str:
    """pass / fail / unknown of a verdict dict, also for summaries written before `verdict` existed."""
    found = entry.get("verdict")
    if found in (PASS, FAIL, UNKNOWN):
        return str(found)
    passed = entry.get("passed")
    return UNKNOWN if passed is None else PASS if passed else FAIL


VERDICT_UNITS = {
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


def verdict_unit(name: str) -> str:
    """The unit a verdict's value and bound are in, from its name (`p99_ms[spike-1]` is in ms)."""
    return VERDICT_UNITS.get(str(name).split("[", 1)[0], "")


def _verdict(name: str, value: float | None, bound: float, *, at_least: bool) -> dict[str, Any]:
    passed = value is not None and (value >= bound if at_least else value <= bound)
    shown = None if value is None else round(value, 6)
    return verdict(name, shown, bound, passed)


def slo_verdicts(frames: RunFrames, slo: Slo, recovery: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Success ratio and p99 overall and per phase, then recovery per incident."""
    verdicts = [
        _verdict("success_ratio", counters.success_ratio(frames.windows), slo.min_success_ratio, at_least=True),
        _verdict("p99_ms", _p99(frames, None, None), slo.max_p99_ms, at_least=False),
    ]
    phases = frames.meta.phases
    for phase in phases if len(phases) > 1 else []:
        start, end = float(phase.start_s), float(phase.end_s)
        seconds = frames.windows[(frames.windows.index >= start) & (frames.windows.index < end)]
        ratio = counters.success_ratio(seconds)
        if ratio is None:
            continue
        name = phase.name
        verdicts.append(_verdict(f"success_ratio[{name}]", ratio, slo.min_success_ratio, at_least=True))
        verdicts.append(_verdict(f"p99_ms[{name}]", _p99(frames, start, end), slo.max_p99_ms, at_least=False))
    for entry in recovery:
        name = f"recovery_s[{entry['event']}@{entry['at_s']:g}s]"
        if entry.get("played", True):
            verdicts.append(_verdict(name, entry["recover_s"], slo.max_recovery_s, at_least=False))
        else:
            verdicts.append(verdict(name, None, slo.max_recovery_s, None, entry.get("not_played")))
    return verdicts


def settle_verdict(seconds: pd.Series, slo: Slo) -> dict[str, Any]:
    """p99 of the time to final state of the accepted payments the client learned final (unknown: none)."""
    if seconds.empty:
        return verdict("settle_p99_s", None, slo.max_settle_p99_s, None, "no accepted payment was learned final")
    return _verdict("settle_p99_s", float(seconds.quantile(0.99)), slo.max_settle_p99_s, at_least=False)


def _p99(frames: RunFrames, start: float | None, end: float | None) -> float | None:
    return latency.latency_summary(latency.merged_counts(frames.latency, start_s=start, end_s=end))["p99_ms"]


def capacity_verdict(max_rate_per_s: float | None) -> dict[str, Any]:
    """The one SLO of a capacity search: some rate met the SLOs (internals §6)."""
    value = None if max_rate_per_s is None else float(max_rate_per_s)
    return verdict("capacity_found", value, 0.0, value is not None and value > 0)


NO_LEDGER = "no ledger copy (a gateway surge did not start): not checked"


def invariant_verdicts(
    counts: dict[str, int] | None,
    slo: Slo,
    *,
    unknown: dict[str, str] | None = None,
    missing_reason: str = NO_LEDGER,
    settlement: bool = False,
) -> list[dict[str, Any]]:
    """lost and over-cap against the scenario's tolerance, phantom and duplicate against zero; with
    `settlement` (the client watched asynchronous settlement) also stuck and flipped against theirs,
    double_settled and callback_mismatch against zero.

    Without a ledger (`counts` None) every invariant is unknown with `missing_reason`; `unknown` names single
    invariants that could not be checked (over_cap without the caps) with the reason.
    """
    bounds: dict[str, int] = {"lost": slo.max_lost, "phantom": 0, "duplicate": 0, "over_cap": slo.max_over_cap}
    if settlement:
        bounds |= {"stuck": slo.max_stuck, "flipped": slo.max_flipped, "double_settled": 0, "callback_mismatch": 0}
    if counts is None:
        return [verdict(name, None, bound, None, missing_reason) for name, bound in bounds.items()]
    unknown = unknown or {}
    return [
        verdict(name, None, bound, None, unknown[name])
        if name in unknown and not counts.get(name)  # a violation found is a fact, even where 0 proves nothing
        else _verdict(name, counts[name], bound, at_least=False)
        for name, bound in bounds.items()
    ]


CREDENTIALS_HINT = "check the profile's credentials"


def credentials_verdict(failed: dict[str, int], attempts: int) -> dict[str, Any] | None:
    """The client's credentials held: no attempt refused as unauthorized, unsigned, without a token or refused at
    the TLS handshake. A failure here is the profile's, not the service's: the verdict is unknown (the run did
    not test what it meant to), never a fail of the service. None when nothing failed on credentials."""
    total = sum(failed.values())
    if not total:
        return None
    codes = ", ".join(f"{code} {count}" for code, count in failed.items())
    reason = f"{total} of {attempts} attempts refused as unauthorized ({codes}) — {CREDENTIALS_HINT}"
    return verdict("credentials", total, 0, None, reason)


def mostly_unauthorized(verdicts: list[dict[str, Any]], reason: str) -> list[dict[str, Any]]:
    """More than half the attempts failed on credentials: what the service did is unknown, not failed."""
    return [verdict(entry["name"], entry["value"], entry["bound"], None, reason) for entry in verdicts]


def unproven(entry: dict[str, Any], reason: str) -> dict[str, Any]:
    """An invariant checked over part of the history: unknown with `reason`, never a pass. Only `lost` and
    `duplicate` found above their bound stay failed: a missing row can hide such a violation, never make one
    (phantom and over-cap counts can be made by the rows that are missing)."""
    if entry["name"] in ("lost", "duplicate") and entry["passed"] is False:
        return entry
    return verdict(str(entry["name"]), None, entry["bound"], None, reason)


def generator_verdict(generator: GeneratorVerdict | None) -> dict[str, Any]:
    """The load generator kept up: without it, latency and throughput describe surge, not the gateway. No
    generator.json (the generator never finished) proves nothing against it."""
    valid = True if generator is None else generator.valid
    reasons = None if generator is None else "; ".join(generator.reasons) or None
    return verdict("generator_valid", valid, True, valid, None if valid else reasons)


def fault_injection_verdict(events: pd.DataFrame) -> dict[str, Any] | None:
    """No fault step failed (`fault_failed` in events.csv): a failed injection or undo means the harness did not
    run the scenario it was asked to (exit 3). None when the run played no fault at all."""
    chaos = events[events["source"] == "chaos"]
    if chaos.empty or not chaos["kind"].isin([FAULT_INJECTED, FAULT_FAILED]).any():
        return None
    failed = chaos[chaos["kind"] == FAULT_FAILED]
    reason = (
        "; ".join(
            f"{target} at {t_s:.1f} s: {detail}"
            for t_s, target, detail in zip(failed["t_s"], failed["target"], failed["detail"], strict=True)
        )
        or None
    )
    return verdict("fault_failures", len(failed), 0, failed.empty, reason)


def summary_checks(summary: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, verdict) for every verdict of a summary.json — "slo", "invariant", "run" — in the order the console
    table, the CI job summary and a plain Locust run's log show them."""
    kinds = (("slo", "slos"), ("invariant", "invariant_verdicts"), ("run", "run_verdicts"))
    return [(kind, entry) for kind, key in kinds for entry in summary.get(key) or []]


def headline(exit_code: Any, checks: list[tuple[str, dict[str, Any]]]) -> str:
    """The one word for a run: PASS, FAIL, NOT PROVEN (nothing failed, some verdict unknown) or HARNESS FAILED."""
    if exit_code == 0:
        return "PASS"
    if exit_code == 1:
        return "FAIL"
    harness_failed = any(kind == "run" and outcome(entry) == FAIL for kind, entry in checks)
    if exit_code == 3 and not harness_failed and any(outcome(entry) == UNKNOWN for _, entry in checks):
        return "NOT PROVEN"
    return "HARNESS FAILED" if exit_code == 3 else f"exit {exit_code}"


def format_value(value: Any, unit: str = "") -> str:
    """A verdict's value or bound (with `verdict_unit`) as the console, the CI summary and the logs show it."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}{unit}"
    return f"{value}{unit}"


def junit_xml(scenario: str, suites: dict[str, list[dict[str, Any]]]) -> str:
    """One <testsuite> per group, one <testcase> per verdict; a failed verdict carries a <failure> message and an
    unknown one a <skipped> message with the reason, which CI systems show as neither passed nor failed."""
    root = ET.Element("testsuites", name=f"surge {scenario}")
    for suite_name, verdicts in suites.items():
        outcomes = [outcome(entry) for entry in verdicts]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=suite_name,
            tests=str(len(verdicts)),
            failures=str(outcomes.count(FAIL)),
            errors="0",
            skipped=str(outcomes.count(UNKNOWN)),
        )
        for entry, result in zip(verdicts, outcomes, strict=True):
            case = ET.SubElement(suite, "testcase", classname=f"surge.{suite_name}", name=str(entry["name"]), time="0")
            if result == FAIL:
                failure = ET.SubElement(
                    case, "failure", message=f"{entry['name']} = {entry['value']} (bound {entry['bound']})"
                )
                failure.text = f"measured {entry['value']}, bound {entry['bound']}"
                if entry.get("reason"):
                    failure.text += f": {entry['reason']}"
            elif result == UNKNOWN:
                ET.SubElement(case, "skipped", message=f"unknown: {entry.get('reason') or 'not checked'}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
