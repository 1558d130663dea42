"""A recorded day as the arrival schedule: last year's trace replayed, sliced, compressed in time and grown.

A trace is a table with one row per arrival: `ts` (ISO 8601 with an offset, or epoch seconds) and optionally
`amount_fen`, `user_id`, `card_id`, `channel`. A `Replay` maps it onto run time: t = 0 is the window's start and
a row at trace time T is due at (T − start) / compress. At growth 1 each row is one arrival at exactly that time,
so the offered count of every run second is the compressed trace's count of that second (nothing random). Below 1
each row is kept with probability `growth` (a binomial count per second); above 1 each row is kept and
⌊growth − 1⌋ extra arrivals, plus one more with probability frac(growth − 1), are placed uniformly within ±0.5 s
of run time around it. Every draw is a pure function of the scenario's seed and the row's position in the
window, so each of N generator processes computes the same draws and keeps rows i, i+N, …: the union over the
processes is the one schedule, whatever N.

Identities are pseudonymised (a keyed BLAKE2b under a per-run salt the run folder never holds): a real trace's
ids never reach a history, a ledger or a report, nor join two runs. Nothing here imports Locust or pandas at
import time (pandas reads the file, once per process and file version).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the business day's zone: trace phases and forecast hours are named in it
OPTIONAL_COLUMNS = ("amount_fen", "user_id", "card_id", "channel")
EXTRA_SPREAD_S = 1.0  # extra arrivals are placed uniformly within ±0.5 s of run time around their original
SPIKE_SMOOTHING_S = 5  # spikes are found on 5-second means: single seconds of a real trace are noisy


class TraceError(ValueError):
    """A trace that cannot be replayed: unreadable, a bad column, a bad timestamp; the message names the file."""


@dataclass(frozen=True, eq=False)
class Trace:
    """The rows of a trace file, sorted by time (stable: rows at the same instant keep the file's order)."""

    path: Path
    ts: npt.NDArray[np.float64]  # unix seconds
    amount_fen: npt.NDArray[np.int64] | None
    user_id: npt.NDArray[np.object_] | None  # str, "" where the row has none
    card_id: npt.NDArray[np.object_] | None
    channel: npt.NDArray[np.object_] | None

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True, slots=True)
class TraceArrival:
    """What a trace says about one arrival; None where it says nothing (the scenario's population fills it in).

    `user_id` and `card_id` are already pseudonyms."""

    user_id: str | None
    card_id: str | None
    channel: str | None
    amount_fen: int | None


def read_trace(path: Path) -> Trace:
    """The trace at `path` (CSV, CSV.gz or Parquet), read once per process and file version."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise TraceError(f"trace {path}: {exc.strerror or exc}") from None
    return _read_cached(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read_cached(path: Path, mtime_ns: int, size: int) -> Trace:
    del mtime_ns, size  # the cache key: a rewritten file is read again
    import pandas as pd  # only a trace-driven process pays for pandas

    try:
        if path.name.endswith(".parquet"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except Exception as exc:  # pandas raises a dozen types for a file that is not a table
        raise TraceError(f"trace {path}: cannot be read as {'Parquet' if path.suffix == '.parquet' else 'CSV'}: "
                         f"{exc}") from None  # fmt: skip
    if "ts" not in frame.columns:
        raise TraceError(f"trace {path}: no 'ts' column (got {', '.join(map(str, frame.columns)) or 'none'})")
    ts = _timestamps(frame["ts"], path)
    order = np.argsort(ts, kind="stable")
    amount = None
    if "amount_fen" in frame.columns:
        try:
            values = pd.to_numeric(frame["amount_fen"], errors="raise")
        except (ValueError, TypeError):
            raise TraceError(f"trace {path}: 'amount_fen' must be integer fen in every row") from None
        as_int = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(as_int)) or np.any(as_int != np.round(as_int)) or np.any(as_int <= 0):
            bad = int(np.argmax(~np.isfinite(as_int) | (as_int != np.round(as_int)) | (as_int <= 0)))
            raise TraceError(f"trace {path}: 'amount_fen' must be integer fen > 0 (row {bad + 1}: "
                             f"{frame['amount_fen'].iloc[bad]!r})")  # fmt: skip
        amount = as_int.astype(np.int64)[order]
    texts = {}
    for column in ("user_id", "card_id", "channel"):
        if column in frame.columns:
            texts[column] = np.asarray(frame[column].fillna("").astype(str), dtype=object)[order]
    return Trace(path, ts[order], amount, texts.get("user_id"), texts.get("card_id"), texts.get("channel"))


def _timestamps(column: object, path: Path) -> npt.NDArray[np.float64]:
    """ISO 8601 with an offset, or epoch seconds; a naive time is refused (whose midnight would it be?)."""
    import pandas as pd

    series = pd.Series(column)
    if len(series) == 0:
        raise TraceError(f"trace {path}: no rows")
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return _epoch(series)
    if pd.api.types.is_datetime64_dtype(series):
        raise TraceError(f"trace {path}: 'ts' must carry a time zone (a naive timestamp column)")
    if pd.api.types.is_numeric_dtype(series):
        return np.asarray(series, dtype=np.float64)
    text = series.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all():
        return np.asarray(numeric, dtype=np.float64)
    offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
    if not offset.all():
        bad = int(np.argmax(~offset.to_numpy()))
        raise TraceError(f"trace {path}: 'ts' must be ISO 8601 with an offset or epoch seconds "
                         f"(row {bad + 1}: {text.iloc[bad]!r})")  # fmt: skip
    try:
        parsed = pd.to_datetime(text, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise TraceError(f"trace {path}: 'ts' is not ISO 8601: {exc}") from None
    return _epoch(parsed)


def _epoch(series: object) -> npt.NDArray[np.float64]:
    """Unix seconds of a time-zone-aware datetime column, whatever its resolution (s, ms, us, ns)."""
    import pandas as pd

    seconds = (pd.Series(series) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return np.asarray(seconds, dtype=np.float64)


def window_of(trace: Trace, window: tuple[datetime, datetime] | None) -> tuple[float, float]:
    """[start, end) in unix seconds: the given window, or the whole trace (its first second to past its last row)."""
    if window is not None:
        return window[0].timestamp(), window[1].timestamp()
    return math.floor(float(trace.ts[0])), math.floor(float(trace.ts[-1])) + 1.0


def pseudonym(salt: str, value: str) -> str:
    """A stable stand-in for an identity within one run: keyed BLAKE2b, 12 hex digits behind a `t`."""
    digest = hashlib.blake2b(value.encode(), key=salt.encode()[:64], digest_size=6).hexdigest()
    return "t" + digest


@dataclass(frozen=True, slots=True)
class Schedule:
    """One process's share of a replay: run times (rising) and, for each, the trace row and which copy it is
    (0 the row itself, k ≥ 1 its k-th extra arrival)."""

    t_s: npt.NDArray[np.float64]
    row: npt.NDArray[np.int64]
    copy: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Replay:
    """A trace mapped onto run time (see the module docstring); `duration_s` cuts what is due after the run."""

    trace: Trace
    start: float
    end: float
    compress: float
    growth: float
    seed: int
    duration_s: float

    def rows(self) -> npt.NDArray[np.int64]:
        """Indices of the trace rows inside the window and due before the end of the run."""
        ts = self.trace.ts
        first, last = np.searchsorted(ts, [self.start, self.end], side="left")
        rows = np.arange(first, last, dtype=np.int64)
        due = (ts[rows] - self.start) / self.compress
        return rows[due < self.duration_s]

    def due(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return (self.trace.ts[rows] - self.start) / self.compress

    def seconds(self) -> int:
        return max(1, math.ceil(self.duration_s))

    @functools.cached_property
    def _counts(self) -> npt.NDArray[np.int64]:
        due = self.due(self.rows())
        return np.bincount(np.floor(due).astype(np.int64), minlength=self.seconds())[: self.seconds()]

    def counts_per_second(self) -> npt.NDArray[np.int64]:
        """The compressed trace's arrivals in each run second [s, s+1): exactly what growth 1 offers."""
        return self._counts.copy()

    def schedule(self, worker_index: int = 0, worker_count: int = 1) -> Schedule:
        """Process `worker_index` of `worker_count`'s arrivals, rising in time; the union over processes is the
        whole replay, and it does not depend on `worker_count`."""
        if not 0 <= worker_index < worker_count:
            raise ValueError(f"worker_index must be in [0, {worker_count}) (got {worker_index})")
        rows = self.rows()
        due = self.due(rows)
        rng = np.random.default_rng([self.seed, 0x7ACE])
        keep_draw = rng.random(len(rows))
        extra_draw = rng.random(len(rows))
        growth = self.growth
        if growth < 1.0:
            kept = keep_draw < growth
            extras = np.zeros(len(rows), dtype=np.int64)
        else:
            kept = np.ones(len(rows), dtype=bool)
            whole = math.floor(growth - 1.0)
            extras = whole + (extra_draw < (growth - 1.0 - whole)).astype(np.int64)
        total_extra = int(extras.sum())
        offsets = rng.random(total_extra) * EXTRA_SPREAD_S - EXTRA_SPREAD_S / 2
        mine = (np.arange(len(rows)) % worker_count) == worker_index
        # originals
        own = kept & mine
        t_parts = [due[own]]
        row_parts = [rows[own]]
        copy_parts = [np.zeros(int(own.sum()), dtype=np.int64)]
        if total_extra:
            owner = np.repeat(np.arange(len(rows)), extras)
            copy = np.arange(total_extra) - np.repeat(np.cumsum(extras) - extras, extras) + 1
            pick = mine[owner]
            last = np.nextafter(self.duration_s, 0.0)
            t_parts.append(np.clip(due[owner[pick]] + offsets[pick], 0.0, last))
            row_parts.append(rows[owner[pick]])
            copy_parts.append(copy[pick])
        t_s = np.concatenate(t_parts)
        order = np.argsort(t_s, kind="stable")
        return Schedule(t_s[order], np.concatenate(row_parts)[order], np.concatenate(copy_parts)[order])

    def arrivals(self, schedule: Schedule, salt: str) -> Iterator[TraceArrival]:
        """What the trace says about each arrival of `schedule`, identities pseudonymised under `salt`; an extra
        arrival keeps its original's amount and channel and gets a fresh identity."""
        trace = self.trace
        identified = trace.user_id is not None or trace.card_id is not None
        for row, copy in zip(schedule.row.tolist(), schedule.copy.tolist(), strict=True):
            amount = None if trace.amount_fen is None else int(trace.amount_fen[row])
            channel = None if trace.channel is None else (str(trace.channel[row]) or None)
            if copy:
                user = pseudonym(salt, f"extra/{row}/{copy}") if identified else None
                yield TraceArrival(user, None, channel, amount)
                continue
            user_value = "" if trace.user_id is None else str(trace.user_id[row])
            card_value = "" if trace.card_id is None else str(trace.card_id[row])
            yield TraceArrival(
                pseudonym(salt, "user/" + user_value) if user_value else None,
                pseudonym(salt, "card/" + card_value) if card_value else None,
                channel,
                amount,
            )

    def curve(self) -> list[tuple[float, float]]:
        """The expected arrivals per second as (t_s, per_s) corners of a step curve (a corner pair per second):
        what the generator's validity check integrates."""
        expected = self.counts_per_second() * self.growth
        corners: list[tuple[float, float]] = []
        for second, per_s in enumerate(expected.tolist()):
            corners += [(float(second), per_s), (float(min(second + 1, self.duration_s)), per_s)]
        if corners[-1][0] < self.duration_s:
            corners.append((self.duration_s, 0.0))
        return corners

    def smoothed_curve(self) -> list[tuple[float, float]]:
        """5-second means at their centres: the curve spikes are looked for on."""
        expected = self.counts_per_second() * self.growth
        corners = [(0.0, float(expected[:SPIKE_SMOOTHING_S].mean()))]
        for start in range(0, len(expected), SPIKE_SMOOTHING_S):
            chunk = expected[start : start + SPIKE_SMOOTHING_S]
            corners.append((min(start + len(chunk) / 2, self.duration_s), float(chunk.mean())))
        corners.append((self.duration_s, corners[-1][1]))
        return corners

    def phases(self) -> list[tuple[str, float, float]]:
        """Stretches of the trace's own clock (Asia/Shanghai): each trace hour, or each 10 trace minutes when the
        window is under two hours, named by its start (`trace-12:00`, or `trace-06-18T12:00` across days)."""
        span = self.end - self.start
        step = 3600 if span >= 7200 else 600 if span >= 1200 else 60
        first = datetime.fromtimestamp(self.start, SHANGHAI)
        boundary = first.replace(minute=0, second=0, microsecond=0)
        while boundary.timestamp() + step <= self.start:
            boundary += timedelta(seconds=step)
        days = {datetime.fromtimestamp(t, SHANGHAI).date() for t in (self.start, self.end - 1e-6)}
        found: list[tuple[str, float, float]] = []
        while boundary.timestamp() < self.end:
            begin = max(0.0, (boundary.timestamp() - self.start) / self.compress)
            finish = min(self.duration_s, (boundary.timestamp() + step - self.start) / self.compress)
            if finish > begin:
                label = boundary.strftime("%m-%dT%H:%M" if len(days) > 1 else "%H:%M")
                found.append((f"trace-{label}", begin, finish))
            boundary += timedelta(seconds=step)
        if found and found[-1][2] < self.duration_s:  # a run longer than the window: the quiet tail
            found.append(("after-trace", found[-1][2], self.duration_s))
        return found
