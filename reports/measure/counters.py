"""What a run counted: attempts per outcome class, ratios, shares and the answers no rule matched.

The outcome algebra is `runfolder.outcomes`'s (good, failures, admitted, rejected) and is used the same way
everywhere (SLOs, recovery, comparison, the live line of `surge run`):

- *admitted* attempts are every completed attempt except `rate_limited`: a 429 is the gateway's advertised,
  deliberate admission control (Retry-After, RateLimit headers) that the client honours and retries, while a 503,
  a 409, a 5xx or a timeout is a failure the paying user felt;
- *good* attempts are `succeeded` plus `declined`: a business decline (a daily cap with a suggested plan) is the
  gateway working as specified (docs/scenarios.md: "business declines not counted as failures").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports.frames import RunFrames
from runfolder import outcomes
from runfolder.history import read_unmatched_sample
from runfolder.outcomes import AUTH_CODES, FAILURES, GOOD, OUTCOME_CLASSES, REJECTED


def totals(frames: RunFrames) -> dict[str, int]:
    """docs/internals.md §5 `totals`: every counter of the run summed over its seconds."""
    w = frames.windows
    result = {name: int(w[name].sum()) for name in ("offered", "sent")}
    result.update({cls: int(w[f"n_{cls}"].sum()) for cls in OUTCOME_CLASSES})
    result.update({name: int(w[name].sum()) for name in ("late", "dropped")})
    return result


def credential_codes(codes: pd.DataFrame) -> dict[str, int]:
    """Attempts that failed on the client's credentials (AUTH_CODES: no token, not signed, 401/403, TLS
    certificate refused, expired token), by code; empty when there were none."""
    found = {str(code): int(codes[code].sum()) for code in codes.columns if code in AUTH_CODES}
    return {code: count for code, count in sorted(found.items()) if count}


def without_credential_failures(windows: pd.DataFrame, codes: pd.DataFrame) -> pd.DataFrame:
    """The seconds with credential failures taken out of `error`: the service's own errors only, so that a wrong
    key never reads as the service failing (its attempts are reported apart)."""
    columns = [code for code in codes.columns if code in AUTH_CODES]
    if not columns:
        return windows
    service = windows.copy()
    service["n_error"] = (service["n_error"] - codes[columns].sum(axis=1)).clip(lower=0)
    return service


def class_sum(windows: pd.DataFrame, classes: tuple[str, ...]) -> pd.Series:
    return windows[[f"n_{cls}" for cls in classes]].sum(axis=1)


def throughput(windows: pd.DataFrame) -> pd.DataFrame:
    """Per second: offered, sent, succeeded, declined, rejected (429 + shed) and failed (5xx + timeouts).

    `failed` here leaves shed out because `rejected` shows it: the chart stacks the two."""
    return pd.DataFrame(
        {
            "offered": windows["offered"],
            "sent": windows["sent"],
            "succeeded": windows["n_succeeded"],
            "declined": windows["n_declined"],
            "rejected": class_sum(windows, REJECTED),
            "failed": class_sum(windows, tuple(cls for cls in FAILURES if cls not in REJECTED)),
        }
    )


def success_ratio(windows: pd.DataFrame, start_s: float | None = None, end_s: float | None = None) -> float | None:
    """runfolder.outcomes.success_ratio (good / admitted) over the seconds [start_s, end_s) (all without bounds)."""
    if start_s is not None and end_s is not None:
        windows = windows[(windows.index >= start_s) & (windows.index < end_s)]
    return outcomes.success_ratio({cls: int(windows[f"n_{cls}"].sum()) for cls in OUTCOME_CLASSES})


def means_per_second_with_load(windows: pd.DataFrame) -> dict[str, float]:
    """Arrivals offered, attempts succeeded and good ones per second, each the mean over the seconds with offered
    load (3 decimals; 0 when no second had any)."""
    active = windows[windows["offered"] > 0]
    columns = {"offered": active["offered"], "succeeded": active["n_succeeded"], "good": class_sum(active, GOOD)}
    return {name: round(float(series.mean()), 3) if not series.empty else 0.0 for name, series in columns.items()}


def codes_share(codes: pd.DataFrame) -> dict[str, int]:
    """Total responses per problem code over the run, most frequent first."""
    sums = codes.sum().sort_values(ascending=False)
    return {str(code): int(n) for code, n in sums.items() if n > 0}


def replica_share(replicas: pd.DataFrame) -> pd.DataFrame:
    """Fraction of each second's responses served by each replica (rows with no traffic stay 0)."""
    total = replicas.sum(axis=1).replace(0, np.nan)
    return replicas.div(total, axis=0).fillna(0.0)


def plans_followed(frames: RunFrames) -> int:
    """Split-plan parts the clients paid after a decline: the windows' counter, else the history's parts."""
    counted = int(frames.windows["plans_followed"].sum())
    if counted or frames.history.empty:
        return counted
    history = frames.history
    return int(((history["part"] > 0) & (history["outcome"] == "succeeded")).sum())


@dataclass(frozen=True, slots=True)
class UnmatchedAnswers:
    """A target's 2xx answers that no response rule of its profile matched (recorded as `error HTTP_2xx`).

    A well-formed but wrong rule (`{"/cod" = "0000"}` for `/code`) makes every paid answer one of these: the
    numbers then describe the profile, not the service. `sample` is the first such answer a generating process
    kept (status, the start of its body with the requests' secrets replaced, `cut`), None if none was kept.
    """

    count: int
    answered_2xx: int
    sample: dict[str, Any] | None

    @property
    def most(self) -> bool:
        """Most 2xx answers matched nothing: a success ratio from them would judge the profile."""
        return self.count * 2 > self.answered_2xx

    @property
    def line(self) -> str:
        return f"{self.count:,} answers (2xx) matched no response rule — check the profile"


def unmatched_answers(frames: RunFrames) -> UnmatchedAnswers | None:
    """The 2xx answers of a target profile's run that matched no rule; None when there were none (or the run
    loaded surge's own gateway, whose answers need no rule)."""
    if frames.meta.target is None or frames.history.empty:
        return None
    history = frames.history
    status = history["status"].to_numpy(np.int64)
    answered = (status >= 200) & (status < 300)
    unmatched = (
        answered
        & (history["outcome"] == "error").to_numpy(bool)
        & (history["code"].astype(str) == "HTTP_" + history["status"].astype(str)).to_numpy(bool)
    )
    count = int(unmatched.sum())
    if count == 0:
        return None
    return UnmatchedAnswers(count, int(answered.sum()), read_unmatched_sample(frames.run_dir))


def capacity(frames: RunFrames) -> dict[str, Any] | None:
    """capacity.json of a capacity search (internals §6), else the knee read off steps.csv, else None."""
    if frames.capacity is not None:
        return frames.capacity.model_dump(include={"max_rate_per_s", "spread", "limited_by"})
    return knee(frames.steps)


def knee(steps: pd.DataFrame) -> dict[str, Any] | None:
    """From a capacity search's steps when it left no capacity.json: the highest passing rate and why the next
    rate failed. `spread` is the relative gap to that first failing rate (the resolution of the answer).
    """
    if steps.empty:
        return None
    passed = steps[steps["passed"]]
    best = float(passed["rate_per_s"].max()) if not passed.empty else 0.0
    above = steps[(steps["rate_per_s"] > best) & ~steps["passed"]]
    limited_by = None
    spread = None
    if not above.empty:
        first_fail = above.iloc[0]
        spread = (float(first_fail["rate_per_s"]) - best) / best if best > 0 else None
        limited_by = "p99_ms" if _step_latency_failed(first_fail, steps) else "success_ratio"
    return {"max_rate_per_s": best, "spread": spread, "limited_by": limited_by}


def _step_latency_failed(step: pd.Series, steps: pd.DataFrame) -> bool:
    """A failed step blamed on latency when its p99 is the worst of all passing steps' p99 by a margin."""
    passing_p99 = steps[steps["passed"]]["p99_ms"]
    ceiling = float(passing_p99.max()) if not passing_p99.empty else 0.0
    success_ok = steps[steps["passed"]]["success_ratio"]
    floor = float(success_ok.min()) if not success_ok.empty else 1.0
    return float(step["p99_ms"]) > ceiling * 1.5 and float(step["success_ratio"]) >= floor
