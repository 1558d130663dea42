"""A run folder (docs/internals.md §5) read into pandas frames, once, at the edge.

Everything downstream (metrics, SLOs, invariants, rendering) is a pure function of `RunFrames`, so it works on any
run folder, including one recorded against a real gateway (no ledger) or copied from a CI artifact. Optional files
that are absent become empty frames with the right columns rather than `None`, so callers never branch on
presence except where the meaning changes (no ledger: invariants cannot be checked).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from reports import hdr
from runfolder.clock import ClusterClock
from runfolder.events import EVENT_COLUMNS
from runfolder.history import HISTORY_COLUMNS, SETTLEMENT_COLUMNS
from runfolder.layout import RunFolder, RunFolderError
from runfolder.models import Capacity, GeneratorVerdict, RunMeta, read_capacity, read_generator, read_meta
from runfolder.outcomes import ADMITTED, OUTCOME_CLASSES
from runfolder.stop import StopRecord, read_stop

KINDS = ("intended", "service")
_HISTORY_TEXT = (
    *("payment_id", "key", "user_id", "card_id", "channel", "code", "outcome", "repayment_id", "replica"),
    *("business_date", "replayed", "settlement", "settle_code", "callback_status", "flipped_to"),
)
_COUNTS = ("polls", "callbacks", "callback_refused", "callback_dups")
LEDGER_COLUMNS = ["repayment_id", "idempotency_key", "user_id", "card_id", "channel", "amount_fen", "business_date"]
# the steps.csv columns the knee chart and counters.knee need (older folders may lack the rest of STEP_COLUMNS)
LEDGER_READ_LIMIT_S = 120.0  # a soak's ~1M-row ledger loads in seconds; a folder from elsewhere may hold anything
NEEDED_STEP_COLUMNS = ("rate_per_s", "offered", "goodput", "success_ratio", "p99_ms", "passed")
_WINDOW_SCALARS = ("offered", "sent", "late", "dropped", "amount_fen", "plans_followed")


@dataclass(frozen=True, slots=True)
class RunFrames:
    """Everything a run folder says, as frames indexed the way the metrics need them.

    `windows` has one row per second `t` (contiguous from 0; seconds nobody reported are zeros) with the scalar
    counters and one `n_<class>` column per outcome class. `codes` and `replicas` share that index, one column per
    problem code / replica name. `latency` holds the sparse HDR buckets: columns `t, kind, cls, idx, count`.
    """

    run_dir: Path
    meta: RunMeta
    generator: GeneratorVerdict | None
    windows: pd.DataFrame
    codes: pd.DataFrame
    replicas: pd.DataFrame
    latency: pd.DataFrame
    history: pd.DataFrame
    events: pd.DataFrame
    ledger: pd.DataFrame | None
    steps: pd.DataFrame
    capacity: Capacity | None
    clock: ClusterClock | None
    stop: StopRecord | None = None  # stop.json: the run ended early; the frames above end at `stop.at_s`

    @property
    def is_capacity_search(self) -> bool:
        """A `surge find-capacity` folder (internals §6): probes overload the gateway on purpose."""
        return self.meta.is_capacity_search

    @property
    def not_started(self) -> bool:
        """Stopped (a signal, Locust's web UI) before the first arrival: nothing was offered, nothing attempted."""
        return (
            self.stop is not None
            and self.stop.aborted is None
            and int(self.windows["offered"].sum()) == 0
            and self.history.empty
        )


def load_run(run_dir: Path) -> RunFrames:
    """Read every file of a run folder; raise `RunFolderError` when the two mandatory ones are unusable."""
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a directory")
    meta = read_meta(run_dir)
    windows, codes, replicas, latency = read_windows(RunFolder(run_dir).windows)
    events = read_events(RunFolder(run_dir).events)
    stop = read_stop(run_dir)
    if stop is not None:  # charts and verdicts cover the seconds that ran, not the stop's grace
        seconds = max(1, math.ceil(stop.at_s))
        windows, codes, replicas = windows.iloc[:seconds], codes.iloc[:seconds], replicas.iloc[:seconds]
        latency = latency[latency["t"] < seconds].reset_index(drop=True)
        events = events[events["t_s"] <= stop.at_s].reset_index(drop=True)
    return RunFrames(
        run_dir=run_dir,
        meta=meta,
        generator=read_generator(run_dir),
        windows=windows,
        codes=codes,
        replicas=replicas,
        latency=latency,
        history=read_history(RunFolder(run_dir).history),
        events=events,
        ledger=read_ledger(RunFolder(run_dir).ledger),
        steps=read_steps(RunFolder(run_dir).steps),
        capacity=read_capacity(run_dir),
        clock=meta.clock(run_dir),
        stop=stop,
    )


def read_windows(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """windows.jsonl → (windows, codes, replicas, latency); several lines for one second add up."""
    if not path.exists():
        raise RunFolderError(f"{path} is missing: not a run folder")
    rows: list[dict[str, float]] = []
    code_rows: list[dict[str, int]] = []
    replica_rows: list[dict[str, int]] = []
    sparse: dict[str, list[np.ndarray[Any, Any]]] = {"t": [], "kind": [], "cls": [], "idx": [], "count": []}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                window = json.loads(line)
                t = int(window["t"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise RunFolderError(f"{path}:{number}: not a window line ({exc})") from exc
            row: dict[str, float] = {"t": t}
            row.update({name: float(window.get(name, 0) or 0) for name in _WINDOW_SCALARS})
            gen = window.get("gen") or {}
            row["gen_cpu_pct"] = float(gen.get("cpu_pct", 0) or 0)
            row["gen_lag_ms"] = float(gen.get("lag_ms", 0) or 0)
            for cls, data in (window.get("classes") or {}).items():
                count = int(data.get("count", 0) or 0)
                row[f"n_{cls}"] = row.get(f"n_{cls}", 0) + count
                if count == 0 or cls not in ADMITTED:
                    continue
                for kind_code, kind in enumerate(KINDS):
                    encoded = data.get(kind)
                    if not encoded:
                        continue
                    try:
                        idx, counts = hdr.decode_sparse(encoded)
                    except Exception as exc:  # the codec raises half a dozen unrelated types
                        raise RunFolderError(f"{path}:{number}: bad {cls}/{kind} histogram ({exc})") from exc
                    sparse["t"].append(np.full(idx.size, t, dtype=np.int64))
                    sparse["kind"].append(np.full(idx.size, kind_code, dtype=np.int8))
                    sparse["cls"].append(np.full(idx.size, OUTCOME_CLASSES.index(cls), dtype=np.int8))
                    sparse["idx"].append(idx)
                    sparse["count"].append(counts)
            rows.append(row)
            code_rows.append({"t": t, **{str(k): int(v) for k, v in (window.get("codes") or {}).items()}})
            replica_rows.append({"t": t, **{str(k): int(v) for k, v in (window.get("replicas") or {}).items()}})
    if not rows:
        raise RunFolderError(f"{path} holds no windows")
    windows = _per_second(pd.DataFrame(rows))
    for cls in OUTCOME_CLASSES:
        if f"n_{cls}" not in windows:
            windows[f"n_{cls}"] = 0.0
    counters = [name for name in windows.columns if not name.startswith("gen_")]
    windows[counters] = windows[counters].astype("int64")
    seconds = windows.index
    codes = _per_second(pd.DataFrame(code_rows)).reindex(seconds, fill_value=0).astype("int64")
    replicas = _per_second(pd.DataFrame(replica_rows)).reindex(seconds, fill_value=0).astype("int64")
    joined = {name: np.concatenate(parts) if parts else np.empty(0, dtype=np.int64) for name, parts in sparse.items()}
    latency = pd.DataFrame(
        {
            "t": joined["t"],
            "kind": pd.Categorical.from_codes(joined["kind"], categories=pd.Index(KINDS)),
            "cls": pd.Categorical.from_codes(joined["cls"], categories=pd.Index(OUTCOME_CLASSES)),
            "idx": joined["idx"],
            "count": joined["count"],
        }
    )
    return windows, codes, replicas, latency


def _per_second(frame: pd.DataFrame) -> pd.DataFrame:
    """Sum duplicate seconds and fill the gaps, so position in the frame is time."""
    summed = frame.fillna(0).groupby("t").sum()
    full = pd.RangeIndex(0, int(summed.index.max()) + 1, name="t")
    return summed.reindex(full, fill_value=0)


def _history_types() -> dict[str, pa.DataType]:
    types = dict.fromkeys(_HISTORY_TEXT, pa.string())
    counts = ("amount_fen", "attempt", "status", "part", "polls", "callbacks", "callback_refused", "callback_dups")
    types.update(dict.fromkeys(counts, pa.int64()))
    types.update(dict.fromkeys(("intended", "sent", "done", "final_at"), pa.float64()))
    return types


def _text_as_str(data_type: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    """Arrow strings become pandas' own `str` dtype (Arrow-backed): no Python objects for a million keys."""
    return pd.StringDtype("pyarrow", na_value=np.nan) if pa.types.is_string(data_type) else None


def _header(file: Path) -> set[str]:
    try:
        with file.open(encoding="utf-8", newline="") as handle:
            return {name.strip().strip('"') for name in handle.readline().split(",")}
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{file}: unreadable history ({exc})") from exc


def _text_dtype() -> pd.api.extensions.ExtensionDtype:
    return pd.StringDtype("pyarrow", na_value=np.nan)


def read_history(folder: Path) -> pd.DataFrame:
    """history/*.csv concatenated, with a `worker` column; an empty frame with the columns when absent.

    Read with Arrow's multi-threaded CSV reader: an hour-long soak has about a million lines.
    """
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    types = _history_types()
    core = [name for name in HISTORY_COLUMNS if name not in SETTLEMENT_COLUMNS]
    quoted_line_breaks = pacsv.ParseOptions(newlines_in_values=True)  # a code a target chose may hold one
    frames = []
    for file in files:
        # the settlement columns may be absent (a folder written before them); every other one is required
        present = [name for name in SETTLEMENT_COLUMNS if name in _header(file)]
        options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False, include_columns=[*core, *present])
        try:
            table = pacsv.read_csv(file, parse_options=quoted_line_breaks, convert_options=options)
        except (pa.ArrowInvalid, pa.ArrowKeyError, OSError) as exc:
            raise RunFolderError(f"{file}: unreadable history ({str(exc).splitlines()[0]})") from exc
        frame: pd.DataFrame = table.to_pandas(types_mapper=_text_as_str)
        for name in SETTLEMENT_COLUMNS:
            if name not in present:
                fill = 0.0 if name == "final_at" else 0 if name in _COUNTS else ""
                frame[name] = pd.Series(fill, index=frame.index, dtype=_text_dtype() if fill == "" else None)
        frame["worker"] = file.stem
        frames.append(frame)
    if not frames:
        empty = pa.table({name: pa.array([], type=types[name]) for name in HISTORY_COLUMNS})
        nothing: pd.DataFrame = empty.to_pandas(types_mapper=_text_as_str)
        nothing["worker"] = pd.Series(dtype="str")
        return nothing
    return pd.concat(frames, ignore_index=True)


def read_events(path: Path) -> pd.DataFrame:
    """events.csv, sorted by time; empty (with columns) when the run has none."""
    if not path.exists():
        return pd.DataFrame(
            {name: pd.Series(dtype="float64" if name in ("t_s", "unix") else "str") for name in EVENT_COLUMNS}
        )
    try:
        events = pd.read_csv(
            path,
            dtype={
                "t_s": "float64",
                "unix": "float64",
                "source": "str",
                "kind": "str",
                "target": "str",
                "detail": "str",
            },
            keep_default_na=False,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise RunFolderError(f"{path}: unreadable events ({exc})") from exc
    return events.sort_values("t_s", kind="stable").reset_index(drop=True)


def read_ledger(path: Path, limit_s: float = LEDGER_READ_LIMIT_S) -> pd.DataFrame | None:
    """The columns of the `repayments` table the checks need (read-only); None when the run has no ledger copy.

    A run folder may come from anywhere (a CI artifact, a colleague), so its ledger is untrusted input:
    `repayments` must be a plain table (a view can run any query, an endless recursive one included), the
    schema is not trusted to call functions with side effects, and the read is interrupted past `limit_s`.
    """
    if not path.exists():
        return None
    deadline = time.monotonic() + limit_s
    try:
        with contextlib.closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
            conn.execute("PRAGMA trusted_schema = OFF")
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 100_000)
            kind = conn.execute("SELECT type, sql FROM sqlite_master WHERE lower(name) = 'repayments'").fetchone()
            if kind is None:
                raise RunFolderError(f"{path}: unreadable ledger (no repayments table)")
            if kind[0] != "table" or str(kind[1]).upper().startswith("CREATE VIRTUAL"):
                raise RunFolderError(f"{path}: unreadable ledger (repayments is a {kind[0]}, not a plain table)")
            table = _ledger_by_column(conn) or _ledger_by_row(conn)
            states = _ledger_states(conn)
    except sqlite3.OperationalError as exc:
        if time.monotonic() > deadline:
            raise RunFolderError(f"{path}: reading the ledger took longer than {limit_s:g} s") from None
        raise RunFolderError(f"{path}: unreadable ledger ({exc})") from exc
    except sqlite3.Error as exc:
        raise RunFolderError(f"{path}: unreadable ledger ({exc})") from exc
    ledger: pd.DataFrame = table.to_pandas(types_mapper=_text_as_str)
    if states is not None:
        ledger["status"] = pd.Series(states, dtype=pd.StringDtype("pyarrow", na_value=np.nan))
    return ledger


def _ledger_states(conn: sqlite3.Connection) -> list[str] | None:
    """Each `repayments` row's settlement state (processing / succeeded / failed), in rowid order, when the
    ledger knows of asynchronous settlement: its own `status` column (a target's ledger query), else the
    gateway's `settlements` table (a row without one is a synchronous, settled payment); None otherwise."""
    columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(repayments)")}
    if "status" in columns:
        return [str(row[0] or "") for row in conn.execute("SELECT status FROM repayments ORDER BY rowid")]
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'settlements'").fetchone()
    if kind is None or kind[0] != "table":
        return None
    query = (
        "SELECT coalesce(s.status, 'succeeded') FROM repayments r"
        " LEFT JOIN settlements s ON s.repayment_id = r.repayment_id ORDER BY r.rowid"
    )
    return [str(row[0]) for row in conn.execute(query)]


def _ledger_schema() -> pa.Schema:
    return pa.schema([(name, pa.int64() if name == "amount_fen" else pa.string()) for name in LEDGER_COLUMNS])


def _ledger_by_column(conn: sqlite3.Connection) -> pa.Table | None:
    """Each column as one newline-joined string built inside SQLite, parsed by Arrow: a soak's ledger of ~1M rows
    loads in a third of the time of fetching 7M Python values. Self-checking: if any value holds a line break
    or a NULL, a column comes back with the wrong length and the caller reads row by row instead."""
    joined = ", ".join(f"group_concat({name}, char(10))" for name in LEDGER_COLUMNS)
    row = conn.execute(f"SELECT count(*), {joined} FROM (SELECT * FROM repayments ORDER BY rowid)").fetchone()  # noqa: S608
    total, texts = int(row[0]), row[1:]
    if total == 0:
        return None
    schema = _ledger_schema()
    columns = []
    for field, text in zip(schema, texts, strict=True):
        if text is None:
            return None
        try:
            parsed = pacsv.read_csv(
                io.BytesIO(str(text).encode("utf-8")),
                read_options=pacsv.ReadOptions(column_names=[field.name]),
                parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types={field.name: field.type}, strings_can_be_null=False),
            )
        except pa.ArrowInvalid:
            return None
        if parsed.num_rows != total:
            return None
        columns.append(parsed.column(0))
    return pa.Table.from_arrays(columns, schema=schema)


def _ledger_by_row(conn: sqlite3.Connection) -> pa.Table:
    rows = conn.execute(f"SELECT {', '.join(LEDGER_COLUMNS)} FROM repayments ORDER BY rowid").fetchall()  # noqa: S608
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in LEDGER_COLUMNS]
    schema = _ledger_schema()
    return pa.Table.from_arrays(
        [pa.array(values, type=field.type) for field, values in zip(schema, columns, strict=True)], schema=schema
    )


def read_steps(path: Path) -> pd.DataFrame:
    """steps.csv of a capacity search (offered vs goodput per step); empty when the run was not one."""
    if not path.exists():
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in NEEDED_STEP_COLUMNS})
    try:
        steps = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise RunFolderError(f"{path}: unreadable capacity steps ({exc})") from exc
    missing = set(NEEDED_STEP_COLUMNS) - set(steps.columns)
    if missing:
        raise RunFolderError(f"{path}: lacks columns {sorted(missing)}")
    steps["passed"] = steps["passed"].astype(str).str.lower().isin(["1", "true", "yes"])
    return steps.sort_values("rate_per_s").reset_index(drop=True)
