"""Two runs side by side: is the candidate worse than the baseline by more than tolerance *and* noise?

Three metrics gate (`comparable.Tolerances`): goodput per second with offered load may drop 5 %, the p99
intended-time latency of admitted attempts may rise 10 %, the success ratio of admitted attempts may drop 0.5
point. A run is a sample, so each delta is also held against a noise band of about two standard errors of the
difference, estimated from the runs themselves: goodput from the paired per-second differences (both runs follow
one rate schedule), p99 from the distribution-free interval of its order statistic (summary.json's
`p99_interval_ms`), the ratio from its binomial standard error. The allowed change is the larger of tolerance and
band, so a short or jittery run cannot fail a build by chance while a long steady one is held to the tolerance.
Both runs come as their measured `Figures` (never re-measured here); the other rows are context and never gate;
the rows are computed even for runs that are not like for like (`comparable.unlike`), and every view says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from rich.markup import escape
from rich.table import Table

from errortext.console_text import one_line
from reports.comparable import Tolerances, unlike
from runfolder.figures import Figures


@dataclass(frozen=True, slots=True)
class Row:
    """One metric of both runs. `allowed` is the change tolerated in the worse direction (None: not gating);
    `delta` is candidate − base (None when either is unknown)."""

    metric: str
    unit: str
    base: float | None
    candidate: float | None
    better: str  # "higher" or "lower"
    allowed: float | None
    noise: float | None
    regressed: bool
    delta: float | None


@dataclass(frozen=True, slots=True)
class Comparison:
    """`unlike` names what differs between the two runs beyond what a comparison assumes equal (`unlike`);
    the rows are still computed, and every view of them says the verdict is not like for like. Its fields, in
    order, are summary.json's `comparison` (`dataclasses.asdict`)."""

    base: str
    candidate: str
    regressed: bool
    unlike: list[str]
    rows: list[Row]


def compare(base: Figures, candidate: Figures, tolerances: Tolerances | None = None) -> Comparison:
    """The gating rows, then context rows (p50, p95, max, offered load, worst recovery)."""
    tol = tolerances or Tolerances()
    rows = [_goodput(base, candidate, tol), _p99(base, candidate, tol), _success(base, candidate, tol)]
    for metric, b, c in (
        ("p50", base.p50_ms, candidate.p50_ms),
        ("p95", base.p95_ms, candidate.p95_ms),
        ("max", base.max_ms, candidate.max_ms),
    ):
        rows.append(_row(metric, "ms", b, c, "lower"))
    rows.append(_row("offered", "/s", base.offered_per_s, candidate.offered_per_s, "higher"))
    rows.append(_row("worst recovery", "s", base.worst_recovery_s, candidate.worst_recovery_s, "lower"))
    regressed = any(row.regressed for row in rows)
    return Comparison(base.label, candidate.label, regressed, unlike(base.meta, candidate.meta), rows)


def _row(
    metric: str,
    unit: str,
    base: float | None,
    candidate: float | None,
    better: str,
    allowed: float | None = None,
    noise: float | None = None,
    regressed: bool = False,
) -> Row:
    """A row; without `allowed`, a context row that never gates."""
    delta = None if base is None or candidate is None else candidate - base
    return Row(metric, unit, base, candidate, better, allowed, noise, regressed, delta)


def _standard_error(series: pd.Series) -> float:
    clean = series.dropna()
    return float(clean.std(ddof=1) / math.sqrt(clean.size)) if clean.size > 1 else 0.0


def _noise(a: float, b: float) -> float:
    return 2.0 * math.sqrt(a * a + b * b)


def _goodput(base: Figures, candidate: Figures, tol: Tolerances) -> Row:
    b, c = pd.Series(base.good_per_s, dtype=float), pd.Series(candidate.good_per_s, dtype=float)
    base_mean = float(b.mean()) if not b.empty else None
    cand_mean = float(c.mean()) if not c.empty else None
    common = min(b.size, c.size)
    paired = pd.Series(c.to_numpy()[:common] - b.to_numpy()[:common])
    noise = 2.0 * _standard_error(paired)
    allowed = max((base_mean or 0.0) * tol.throughput_pct / 100.0, noise)
    regressed = base_mean is not None and (cand_mean is None or base_mean - cand_mean > allowed)
    return _row("goodput", "/s", base_mean, cand_mean, "higher", allowed, noise, regressed)


def _p99(base: Figures, candidate: Figures, tol: Tolerances) -> Row:
    b, c = base.p99_ms, candidate.p99_ms
    noise = _noise(_half_width(base), _half_width(candidate))
    allowed = max((b or 0.0) * tol.p99_pct / 100.0, noise)
    regressed = b is not None and (c is None or c - b > allowed)
    return _row("p99", "ms", b, c, "lower", allowed, noise, regressed)


def _success(base: Figures, candidate: Figures, tol: Tolerances) -> Row:
    b, c = base.success_ratio, candidate.success_ratio
    noise = _noise(_binomial_error(base), _binomial_error(candidate))
    allowed = max(tol.success_points / 100.0, noise)
    regressed = b is not None and (c is None or b - c > allowed)
    return _row("success ratio", "", b, c, "higher", allowed, noise, regressed)


def _half_width(figures: Figures) -> float:
    interval = figures.p99_interval_ms
    return 0.0 if interval is None else (interval[1] - interval[0]) / 4.0


def _binomial_error(figures: Figures) -> float:
    ratio = figures.success_ratio
    if ratio is None or figures.admitted == 0:
        return 0.0
    return math.sqrt(ratio * (1.0 - ratio) / figures.admitted)


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
