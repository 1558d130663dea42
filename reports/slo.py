"""SLO and invariant verdicts (CONTRACT §5) and their JUnit XML, the format every CI system reads.

Verdicts are plain dicts `{name, value, bound, passed}` because they go straight into summary.json. The overall
success ratio and p99 are computed from the whole run; each phase of the scenario gets its own pair, named
`success_ratio[phase]`, so a CI failure says *when* the gateway broke; each fault and spike gets
`recovery_s[event@at]`. A phase that admitted nothing yields no verdict: an empty phase proves nothing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # builds XML only; never parses untrusted input
from typing import Any

from reports import metrics
from reports.frames import RunFrames
from reports.metrics import Slo


def _verdict(name: str, value: float | None, bound: float, *, at_least: bool) -> dict[str, Any]:
    passed = value is not None and (value >= bound if at_least else value <= bound)
    shown = None if value is None else round(value, 6)
    return {"name": name, "value": shown, "bound": bound, "passed": passed}


def slo_verdicts(frames: RunFrames, slo: Slo, recovery: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Success ratio and p99 overall and per phase, then recovery per incident."""
    verdicts = [
        _verdict("success_ratio", metrics.success_ratio(frames.windows), slo.min_success_ratio, at_least=True),
        _verdict("p99_ms", _p99(frames, None, None), slo.max_p99_ms, at_least=False),
    ]
    phases = frames.meta.get("phases") or []
    for phase in phases if len(phases) > 1 else []:
        start, end = float(phase["start_s"]), float(phase["end_s"])
        seconds = frames.windows[(frames.windows.index >= start) & (frames.windows.index < end)]
        ratio = metrics.success_ratio(seconds)
        if ratio is None:
            continue
        name = str(phase["name"])
        verdicts.append(_verdict(f"success_ratio[{name}]", ratio, slo.min_success_ratio, at_least=True))
        verdicts.append(_verdict(f"p99_ms[{name}]", _p99(frames, start, end), slo.max_p99_ms, at_least=False))
    verdicts += [
        _verdict(
            f"recovery_s[{entry['event']}@{entry['at_s']:g}s]", entry["recover_s"], slo.max_recovery_s, at_least=False
        )
        for entry in recovery
    ]
    return verdicts


def _p99(frames: RunFrames, start: float | None, end: float | None) -> float | None:
    return metrics.latency_summary(metrics.merged_counts(frames.latency, start_s=start, end_s=end))["p99_ms"]


def capacity_verdict(max_rate_per_s: float | None) -> dict[str, Any]:
    """The one SLO of a capacity search: some rate met the SLOs (internals §6)."""
    value = None if max_rate_per_s is None else float(max_rate_per_s)
    return {"name": "capacity_found", "value": value, "bound": 0.0, "passed": value is not None and value > 0}


def invariant_verdicts(counts: dict[str, int] | None, slo: Slo) -> list[dict[str, Any]]:
    """lost and over-cap against the scenario's tolerance, phantom and duplicate against zero; none unchecked."""
    if counts is None:
        return []
    bounds = {"lost": slo.max_lost, "phantom": 0, "duplicate": 0, "over_cap": slo.max_over_cap}
    return [_verdict(name, counts[name], bound, at_least=False) for name, bound in bounds.items()]


def generator_verdict(generator: dict[str, Any]) -> dict[str, Any]:
    """The load generator kept up: without it, latency and throughput describe surge, not the gateway."""
    valid = bool(generator.get("valid", True))
    return {"name": "generator_valid", "value": valid, "bound": True, "passed": valid}


def format_value(value: Any) -> str:
    """A verdict's value or bound as the console and the CI summary show it."""
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def junit_xml(scenario: str, suites: dict[str, list[dict[str, Any]]]) -> str:
    """One <testsuite> per group, one <testcase> per verdict; a failed verdict carries a <failure> message."""
    root = ET.Element("testsuites", name=f"surge {scenario}")
    for suite_name, verdicts in suites.items():
        failures = sum(1 for verdict in verdicts if not verdict["passed"])
        suite = ET.SubElement(
            root, "testsuite", name=suite_name, tests=str(len(verdicts)), failures=str(failures), errors="0"
        )
        for verdict in verdicts:
            case = ET.SubElement(
                suite, "testcase", classname=f"surge.{suite_name}", name=str(verdict["name"]), time="0"
            )
            if not verdict["passed"]:
                failure = ET.SubElement(
                    case, "failure", message=f"{verdict['name']} = {verdict['value']} (bound {verdict['bound']})"
                )
                failure.text = f"measured {verdict['value']}, bound {verdict['bound']}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
