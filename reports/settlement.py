"""Asynchronous settlement as the client saw it: the backlog, the time to final state, callbacks, stall recovery.

Every figure here comes from the accepted attempts of the history (status 202) and their settlement columns
(internals §5): a payment enters the client's backlog when its 202 came back (`done`) and leaves it when the
client first learned its final state (`final_at`). The time to final state runs from the attempt's intended
send time, as acceptance latency does, so a generator that fell behind cannot hide a slow bank.

The receivers' per-process counters (callbacks refused for a missing or wrong signature, or for a key the
process does not know) are in `settlement/<worker>.json` (`ReceiverCounters`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.invariants.settlement import watched_rows
from runfolder.layout import RunFolder, RunFolderError, read_json_object
from runfolder.models import RunMeta
from runfolder.outcomes import SETTLED_STATES

RECEIVER_KEYS = ("bad_signature", "unknown_key", "malformed")


def accepted_payments(history: pd.DataFrame) -> pd.DataFrame:
    """One row per accepted key (the row whose watcher learned most, when a key was accepted twice)."""
    rows = history[watched_rows(history)]
    return rows.sort_values("final_at", ascending=False, kind="stable").drop_duplicates("key")


def learned(accepted: pd.DataFrame) -> pd.DataFrame:
    return accepted[accepted["settlement"].isin(SETTLED_STATES).to_numpy(bool) & (accepted["final_at"] > 0)]


def time_to_final_s(accepted: pd.DataFrame) -> pd.Series:
    rows = learned(accepted)
    return (rows["final_at"] - rows["intended"]).clip(lower=0.0)


def quantile(values: pd.Series, q: float) -> float | None:
    return None if values.empty else float(np.quantile(values.to_numpy(float), q))


def backlog(accepted: pd.DataFrame, started_unix: float, seconds: int) -> pd.DataFrame:
    """Payments accepted and not yet known final at the end of each second, one column per channel."""
    index = pd.RangeIndex(0, max(seconds, 0), name="t")
    if accepted.empty or seconds <= 0:
        return pd.DataFrame(index=index)
    columns = {}
    for channel, rows in accepted.groupby("channel"):
        entered = np.floor(rows["done"].to_numpy(float) - started_unix).astype(np.int64)
        final = rows["final_at"].to_numpy(float)
        left = np.where(final > 0, np.floor(final - started_unix), np.iinfo(np.int64).max // 2).astype(np.int64)
        ins = np.bincount(np.clip(entered, 0, seconds - 1), minlength=seconds)[:seconds]
        outs = np.bincount(np.clip(left[left < seconds], 0, seconds - 1), minlength=seconds)[:seconds]
        columns[str(channel)] = np.cumsum(ins) - np.cumsum(outs)
    return pd.DataFrame(columns, index=index)


def settle_latency_per_second(accepted: pd.DataFrame, started_unix: float, seconds: int) -> pd.DataFrame:
    """p50 and p99 of the time to final state of the payments learned final in each second (NaN: none)."""
    index = pd.RangeIndex(0, max(seconds, 0), name="t")
    rows = learned(accepted)
    if rows.empty:
        return pd.DataFrame({"p50_s": np.nan, "p99_s": np.nan}, index=index)
    frame = pd.DataFrame(
        {
            "t": np.floor(rows["final_at"].to_numpy(float) - started_unix).astype(np.int64),
            "s": (rows["final_at"] - rows["intended"]).to_numpy(float),
        }
    )
    grouped = frame.groupby("t")["s"]
    result = pd.DataFrame({"p50_s": grouped.quantile(0.5), "p99_s": grouped.quantile(0.99)})
    return result.reindex(index)


def callback_counts(accepted: pd.DataFrame) -> dict[str, int]:
    """Payments whose first delivery the client acknowledged (first_try), that needed a redelivery because the
    receiver answered 500 (retried), and that were delivered again after an acknowledgement (duplicate)."""
    got = accepted[accepted["callbacks"] > 0]
    return {
        "payments": len(got),
        "deliveries": int(got["callbacks"].sum()),
        "first_try": int((got["callback_refused"] == 0).sum()),
        "retried": int((got["callback_refused"] > 0).sum()),
        "duplicate": int((got["callback_dups"] > 0).sum()),
        "duplicate_deliveries": int(got["callback_dups"].sum()),
        "refused_on_purpose": int(got["callback_refused"].sum()),
    }


def receiver_counters(run_dir: Path) -> dict[str, int] | None:
    """The receivers' refusals summed over processes; None when no process wrote any (a poll run, an old folder)."""
    folder = RunFolder(run_dir).receiver_counters
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return None
    total = dict.fromkeys(RECEIVER_KEYS, 0)
    for file in files:
        data = read_json_object(file, required=True)
        for key in RECEIVER_KEYS:
            value = data.get(key, 0)
            if not isinstance(value, int):
                raise RunFolderError(f"{file}: {key} is not a count")
            total[key] += value
    return total


def stall_recovery_s(total_backlog: pd.Series, start_s: float, duration_s: float) -> float | None:
    """Seconds from the end of a settlement stall until the backlog is back to its level in the second before
    the stall began (0 when it never rose above it; None when the run ended first)."""
    values = total_backlog.to_numpy(float)
    first = max(math.floor(start_s), 0)
    if values.size == 0 or first >= values.size:
        return None
    level = values[first - 1] if first > 0 else 0.0
    end = min(math.ceil(start_s + duration_s), values.size)
    after = np.flatnonzero(values[end:] <= level)
    if after.size == 0:
        return None
    return float(max(end + int(after[0]) - (start_s + duration_s), 0.0))


STALL = "settlement_stall"


def stall_recoveries(recovery: list[dict[str, Any]], accepted: pd.DataFrame, meta: RunMeta, seconds: int) -> None:
    """A settlement stall hurts no answer (acceptance goes on): its entry's recovery becomes the backlog's return
    to its level before the fault (`stall_recovery_s`), measured from the end of the stall; in place."""
    if not any(str(entry.get("event", "")).startswith(STALL) for entry in recovery):
        return
    total = backlog(accepted, float(meta.started_unix), seconds).sum(axis=1)
    stalls = [fault for fault in meta.faults if fault.get("action") == STALL]
    for entry in recovery:
        if str(entry.get("event", "")).startswith(STALL) and entry.get("played", True) and stalls:
            at_s = float(entry["at_s"])
            fault = min(stalls, key=lambda f: abs(float(f.get("at_s", 0)) - at_s))
            recover_s = stall_recovery_s(total, at_s, float(fault.get("duration_s") or 0.0))
            entry["recover_s"] = None if recover_s is None else round(recover_s, 3)
            entry["measured_by"] = "settlement backlog back to its level before the stall"


def summary_section(
    accepted: pd.DataFrame, mode: str | None, run_dir: Path, stuck: int | None
) -> dict[str, Any] | None:
    """summary.json `settlement` (docs/report.md): counts, time to final p50/p99, polls, callbacks; None for a run
    whose client watched no asynchronous settlement (a synchronous run's summary.json stays as it was)."""
    if mode is None and accepted.empty:
        return None
    seconds = time_to_final_s(accepted)
    states = accepted["settlement"].value_counts()
    return {
        "mode": mode,
        "accepted": len(accepted),
        "succeeded": int(states.get("succeeded", 0)),
        "failed": int(states.get("failed", 0)),
        "pending_at_end": int(states.get("processing", 0)),
        "unwatched": int(states.get("unwatched", 0)),
        "stuck": stuck,
        "time_to_final_s": {"p50": quantile(seconds, 0.5), "p99": quantile(seconds, 0.99), "max": quantile(seconds, 1)},
        "polls": int(accepted["polls"].sum()),
        "callbacks": callback_counts(accepted),
        "receiver_refused": receiver_counters(run_dir),
    }
