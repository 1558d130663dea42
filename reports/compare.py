"""Two runs side by side: is the candidate worse than the baseline by more than tolerance *and* noise?

Three metrics gate (`comparable.Tolerances`): goodput per second with offered load may drop 5 %, the p99
intended-time latency of admitted attempts may rise 10 %, the success ratio of admitted attempts may drop 0.5
point. A run is a sample, so each delta is also held against a noise band of about two standard errors of the
difference, estimated from the runs themselves: goodput from the paired per-second differences (both runs follow
one rate schedule), p99 from the distribution-free interval of its order statistic in the merged HDR histogram
(ranks n·p ± 2·√(n·p·(1−p))), the ratio from its binomial standard error. The allowed change is the larger of
tolerance and band, so a short or jittery run cannot fail a build by chance while a long steady one is held to
the tolerance. The other rows are context and never gate; the rows are computed even for runs that are not like
for like (`comparable.unlike`), and every view of them says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table

from errortext.console_text import one_line
from reports import hdr
from reports.analysis import Analysis
from reports.comparable import Tolerances, unlike
from reports.measure import counters, latency
from runfolder.outcomes import ADMITTED, GOOD


@dataclass(frozen=True, slots=True)
class Row:
    """One metric of both runs. `allowed` is the change tolerated in the worse direction (None: not gating)."""

    metric: str
    unit: str
    base: float | None
    candidate: float | None
    better: str  # "higher" or "lower"
    allowed: float | None
    noise: float | None
    regressed: bool

    @property
    def delta(self) -> float | None:
        if self.base is None or self.candidate is None:
            return None
        return self.candidate - self.base


@dataclass(frozen=True, slots=True)
class Comparison:
    """`unlike` names what differs between the two runs beyond what a comparison assumes equal (`unlike`);
    the rows are still computed, and every view of them says the verdict is not like for like."""

    base: str
    candidate: str
    rows: list[Row]
    unlike: list[str]

    @property
    def regressed(self) -> bool:
        return any(row.regressed for row in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "candidate": self.candidate,
            "regressed": self.regressed,
            "unlike": self.unlike,
            "rows": [{**asdict(row), "delta": row.delta} for row in self.rows],
        }


def compare(base: Analysis, candidate: Analysis, tolerances: Tolerances | None = None) -> Comparison:
    """The gating rows, then context rows (p50, p95, max, offered load, worst recovery)."""
    tol = tolerances or Tolerances()
    rows = [_goodput(base, candidate, tol), _p99(base, candidate, tol), _success(base, candidate, tol)]
    for name in ("p50_ms", "p95_ms", "max_ms"):
        rows.append(_context(name.replace("_ms", ""), "ms", _latency(base, name), _latency(candidate, name), "lower"))
    rows.append(_context("offered", "/s", _mean_active(base, "offered"), _mean_active(candidate, "offered"), "higher"))
    rows.append(_context("worst recovery", "s", _worst_recovery(base), _worst_recovery(candidate), "lower"))
    differences = unlike(base.frames.meta.model_dump(mode="json"), candidate.frames.meta.model_dump(mode="json"))
    return Comparison(base=_label(base), candidate=_label(candidate), rows=rows, unlike=differences)


def _label(analysis: Analysis) -> str:
    return f"{analysis.frames.meta.scenario} ({analysis.frames.run_dir.name})"


def _good_per_second(analysis: Analysis) -> pd.Series:
    windows = analysis.frames.windows
    active = windows[windows["offered"] > 0]
    return counters.class_sum(active, GOOD).astype(float)


def _standard_error(series: pd.Series) -> float:
    clean = series.dropna()
    return float(clean.std(ddof=1) / math.sqrt(clean.size)) if clean.size > 1 else 0.0


def _noise(a: float, b: float) -> float:
    return 2.0 * math.sqrt(a * a + b * b)


def _goodput(base: Analysis, candidate: Analysis, tol: Tolerances) -> Row:
    b, c = _good_per_second(base), _good_per_second(candidate)
    base_mean = float(b.mean()) if not b.empty else None
    cand_mean = float(c.mean()) if not c.empty else None
    common = min(b.size, c.size)
    paired = pd.Series(c.to_numpy()[:common] - b.to_numpy()[:common])
    noise = 2.0 * _standard_error(paired)
    allowed = max((base_mean or 0.0) * tol.throughput_pct / 100.0, noise)
    regressed = base_mean is not None and (cand_mean is None or base_mean - cand_mean > allowed)
    return Row("goodput", "/s", base_mean, cand_mean, "higher", allowed, noise, regressed)


def _p99(base: Analysis, candidate: Analysis, tol: Tolerances) -> Row:
    b, c = _latency(base, "p99_ms"), _latency(candidate, "p99_ms")
    noise = _noise(_half_width(base), _half_width(candidate))
    allowed = max((b or 0.0) * tol.p99_pct / 100.0, noise)
    regressed = b is not None and (c is None or c - b > allowed)
    return Row("p99", "ms", b, c, "lower", allowed, noise, regressed)


def _success(base: Analysis, candidate: Analysis, tol: Tolerances) -> Row:
    b, c = counters.success_ratio(base.frames.windows), counters.success_ratio(candidate.frames.windows)
    noise = _noise(_binomial_error(base, b), _binomial_error(candidate, c))
    allowed = max(tol.success_points / 100.0, noise)
    regressed = b is not None and (c is None or b - c > allowed)
    return Row("success ratio", "", b, c, "higher", allowed, noise, regressed)


def _half_width(analysis: Analysis) -> float:
    interval = hdr.percentile_interval_ms(analysis.overall_intended, 99.0)
    return 0.0 if interval is None else (interval[1] - interval[0]) / 4.0


def _binomial_error(analysis: Analysis, ratio: float | None) -> float:
    admitted = int(counters.class_sum(analysis.frames.windows, ADMITTED).sum())
    if ratio is None or admitted == 0:
        return 0.0
    return math.sqrt(ratio * (1.0 - ratio) / admitted)


def _latency(analysis: Analysis, name: str) -> float | None:
    return latency.latency_summary(analysis.overall_intended)[name]


def _mean_active(analysis: Analysis, column: str) -> float | None:
    windows = analysis.frames.windows
    active = windows[windows["offered"] > 0]
    return float(active[column].mean()) if not active.empty else None


def _worst_recovery(analysis: Analysis) -> float | None:
    values = [entry["recover_s"] for entry in analysis.recovery if entry["recover_s"] is not None]
    return max(values) if values else None


def _context(name: str, unit: str, base: float | None, candidate: float | None, better: str) -> Row:
    return Row(name, unit, base, candidate, better, None, None, False)


def fmt(value: float | None, unit: str) -> str:
    """A number as the console and the HTML show it: ratios as percent, the rest with 1–2 decimals."""
    if value is None:
        return "—"
    if unit == "":
        return f"{value * 100:.2f} %"
    return f"{value:,.2f} {unit}".strip()


def console_table(comparison: Comparison) -> Table:
    table = Table(title=escape(one_line(f"{comparison.base} → {comparison.candidate}")))
    for column in ("metric", "base", "candidate", "delta", "allowed", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for row in comparison.rows:
        if row.allowed is None:
            verdict = "[dim]context[/dim]"
        else:
            verdict = "[bold red]REGRESSED[/bold red]" if row.regressed else "[green]ok[/green]"
        allowed = "—" if row.allowed is None else ("−" if row.better == "higher" else "+") + fmt(row.allowed, row.unit)
        table.add_row(
            escape(one_line(row.metric)),
            fmt(row.base, row.unit),
            fmt(row.candidate, row.unit),
            fmt(row.delta, row.unit),
            allowed,
            verdict,
        )
    return table
