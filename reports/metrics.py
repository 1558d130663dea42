"""What a run measured: pure functions over the frames of `reports.frames` (no I/O, no globals).

The outcome algebra is `reports.runfolder`'s (good, failures, admitted, rejected) and is used the same way
everywhere (SLOs, recovery, comparison, the live line of `surge run`):

- *admitted* attempts are every completed attempt except `rate_limited`: a 429 is the gateway's advertised,
  deliberate admission control (Retry-After, RateLimit headers) that the client honours and retries, while a 503,
  a 409, a 5xx or a timeout is a failure the paying user felt;
- *good* attempts are `succeeded` plus `declined`: a business decline (a daily cap with a suggested plan) is the
  gateway working as specified (docs/scenarios.md: "business declines not counted as failures").

Latency is always the intended-time latency (done − intended, free of coordinated omission) of admitted attempts
unless a function says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports import hdr, invariants
from reports.frames import CLASSES, RunFrames
from reports.runfolder import (
    ADMITTED,
    AUTH_CODES,
    FAILURES,
    FAULT_FAILED,
    FAULT_INJECTED,
    FAULT_SKIPPED,
    GOOD,
    REJECTED,
    SHANGHAI,
    ClusterClock,
    RunMeta,
    Slo,
    read_unmatched_sample,
)

PERCENTILES = (50.0, 95.0, 99.0)
RECOVERY_STREAK_S = 3
RECOVERY_TAIL_S = 10.0
RECOVERY_BASELINE_S = 5  # the seconds before an incident whose 429 share counts as its usual level


def totals(frames: RunFrames) -> dict[str, int]:
    """docs/internals.md §5 `totals`: every counter of the run summed over its seconds."""
    w = frames.windows
    result = {name: int(w[name].sum()) for name in ("offered", "sent")}
    result.update({cls: int(w[f"n_{cls}"].sum()) for cls in CLASSES})
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


def success_ratio(windows: pd.DataFrame) -> float | None:
    """good / admitted over the given seconds; None when nothing was admitted (no evidence either way)."""
    admitted = int(class_sum(windows, ADMITTED).sum())
    if admitted == 0:
        return None
    return int(class_sum(windows, GOOD).sum()) / admitted


def _select(latency: pd.DataFrame, kind: str, classes: tuple[str, ...]) -> pd.DataFrame:
    return latency[(latency["kind"] == kind) & latency["cls"].isin(classes)]


def merged_counts(
    latency: pd.DataFrame,
    kind: str = "intended",
    classes: tuple[str, ...] = ADMITTED,
    start_s: float | None = None,
    end_s: float | None = None,
) -> hdr.IntArray:
    """One dense HDR bucket array over the seconds [start_s, end_s): the exact merge of the windows' histograms."""
    rows = _select(latency, kind, classes)
    if start_s is not None:
        rows = rows[rows["t"] >= start_s]
    if end_s is not None:
        rows = rows[rows["t"] < end_s]
    return hdr.dense(rows["idx"].to_numpy(np.int64), rows["count"].to_numpy(np.int64))


def latency_summary(counts: hdr.IntArray) -> dict[str, float | None]:
    """p50 / p95 / p99 / p99.9 / max in ms of one merged histogram."""
    p50, p95, p99, p999 = hdr.percentiles_ms(counts, [50.0, 95.0, 99.0, 99.9])
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "p999_ms": p999, "max_ms": hdr.max_ms(counts)}


def latency_per_second(
    latency: pd.DataFrame, seconds: pd.Index, kind: str = "intended", classes: tuple[str, ...] = ADMITTED
) -> pd.DataFrame:
    """p50 / p95 / p99 / max ms for every second (NaN where nothing completed), vectorised over all seconds.

    The sparse buckets are sorted by (second, bucket) and merged, so one global cumulative sum and one
    searchsorted per percentile answer every second at once: an hour of windows takes a fraction of a second.
    """
    columns = [f"p{int(p)}_ms" for p in PERCENTILES] + ["max_ms"]
    result = pd.DataFrame(np.nan, index=seconds, columns=columns)
    rows = _select(latency, kind, classes)
    if rows.empty:
        return result
    size = hdr.bucket_table().size
    key = rows["t"].to_numpy(np.int64) * size + rows["idx"].to_numpy(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    counts = np.add.reduceat(rows["count"].to_numpy(np.int64)[order], first)
    t, idx = key[first] // size, key[first] % size
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    ends = np.r_[starts[1:], t.size]
    cumulative = np.cumsum(counts)
    base = np.r_[0, cumulative][starts]
    total = cumulative[ends - 1] - base
    table = hdr.bucket_table().highest_us
    group_seconds = t[starts]
    for pct, column in zip(PERCENTILES, columns, strict=False):
        target = np.maximum(np.floor(pct * total / 100.0 + 0.5).astype(np.int64), 1)
        position = np.searchsorted(cumulative, base + target, side="left")
        result.loc[group_seconds, column] = table[idx[position]] / 1000.0
    result.loc[group_seconds, "max_ms"] = table[idx[ends - 1]] / 1000.0
    return result


def codes_share(codes: pd.DataFrame) -> dict[str, int]:
    """Total responses per problem code over the run, most frequent first."""
    sums = codes.sum().sort_values(ascending=False)
    return {str(code): int(n) for code, n in sums.items() if n > 0}


def replica_share(replicas: pd.DataFrame) -> pd.DataFrame:
    """Fraction of each second's responses served by each replica (rows with no traffic stay 0)."""
    total = replicas.sum(axis=1).replace(0, np.nan)
    return replicas.div(total, axis=0).fillna(0.0)


def healthy_seconds(windows: pd.DataFrame, p99_ms: pd.Series, slo: Slo) -> pd.Series:
    """Whether each second met the SLO on its own: success ratio and p99.

    A second in which attempts were offered but none was admitted is unhealthy (nothing got through); a second
    with no traffic at all is healthy (nothing to fail).
    """
    admitted = class_sum(windows, ADMITTED)
    good = class_sum(windows, GOOD)
    ratio = good / admitted.replace(0, np.nan)
    latency_ok = p99_ms.isna() | (p99_ms <= slo.max_p99_ms)
    served = (admitted > 0) & (ratio >= slo.min_success_ratio) & latency_ok
    idle = (admitted == 0) & (windows["offered"] == 0) & (windows["sent"] == 0)
    return served | idle


@dataclass(frozen=True, slots=True)
class Incident:
    """A fault injected or a spike started: what recovery is measured from.

    `not_played` says why a scheduled fault never reached the gateway (skipped against a gateway surge did not
    start, its injection failed, or no fault player ran at all); its recovery is then unknown, never a pass.
    `action` is the fault's (`exec` is a team's own command), empty for a spike.
    """

    name: str
    start_s: float
    duration_s: float
    target: str | None
    not_played: str | None = None
    action: str = ""
    hit: str | None = None  # the replica the fault player named when it injected the fault (a kill's victim)


FAULT_NOT_PLAYED = {FAULT_FAILED: "injection failed", FAULT_SKIPPED: "not played"}
MATCH_WITHIN_S = 3.0
# The cluster's own record of a process action: the moment the signal was sent, which the fault player only
# logs once the admin call has returned (after the kill's process was reaped, say).
CLUSTER_RECORD = {"kill": "killed", "pause": "paused"}
# How far apart two processes' clocks may log one cause and its effect in the wrong order: a replica's death
# logged by the router up to this long before the fault player logged the kill is still that kill's.
CAUSE_SLACK_S = 0.5
DETECTION_KINDS = ("check_failed", "replica_down")
# The [gateway] keys that set what a spike meets (the admission caps, the banks' quotas and slots): a spike run
# without them, against a gateway surge did not start, tests that gateway's caps, not the scenario's.
CAP_KEYS = frozenset({"limits", "channels"})
NO_PLAYER = "not played: no fault player ran for this run (events.csv has no chaos rows for it)"
UNSEEN_REPLICAS = "surge cannot see the target's replicas"
NO_FAILED_ATTEMPT = "no attempt failed after the fault"


def incidents(meta: RunMeta, events: pd.DataFrame) -> list[Incident]:
    """Faults (at the time chaos actually injected them, when events.csv says) and spikes, in time order.

    Each scheduled fault is matched to the nearest chaos event (within 3 s of its `at_s`) that is an injection,
    a failed injection or a skip; a fault with no such event, or whose event is not `fault_injected`, was not
    played and carries the reason; so does a spike when the scenario's [gateway] caps were not applied
    (`meta.gateway_ignored`). A kill or pause starts when the cluster logged it (`killed`, `paused` of the
    replica the chaos event names, within CAUSE_SLACK_S): the fault player logs it only once the admin call
    returned, and the router may log the replica's death before that.
    """
    kinds = [FAULT_INJECTED, *FAULT_NOT_PLAYED]
    chaos = events[(events["source"] == "chaos") & events["kind"].isin(kinds)]
    outcomes = list(
        zip(
            chaos["t_s"].astype(float),
            chaos["kind"].astype(str),
            chaos["detail"],
            chaos["target"].fillna("").astype(str),
            strict=True,
        )
    )
    found: list[Incident] = []
    for fault in meta.faults:
        at_s = float(fault.get("at_s", 0))
        near = [entry for entry in outcomes if abs(entry[0] - at_s) <= MATCH_WITHIN_S]
        match = min(near, key=lambda entry: abs(entry[0] - at_s)) if near else None
        not_played: str | None = NO_PLAYER
        start = at_s
        action = str(fault.get("action", ""))
        hit: str | None = None
        if match is not None:
            outcomes.remove(match)
            t_s, kind, detail, hit = match
            if kind == FAULT_INJECTED:
                start, not_played = _cluster_record(events, action, hit, t_s), None
            else:
                reason = "" if pd.isna(detail) else str(detail)
                not_played = f"{FAULT_NOT_PLAYED[kind]}: {reason}".rstrip(": ")
        target = fault.get("target")
        name = " ".join(str(part) for part in (fault.get("action", "fault"), target, fault.get("channel")) if part)
        duration = float(fault.get("duration_s") or 0.0)
        found.append(Incident(name, start, duration, target, not_played, action, hit))
    caps_ignored = sorted(set(meta.gateway_ignored) & CAP_KEYS)
    unjudged = (
        f"not judged: the scenario's [gateway] caps ({', '.join(caps_ignored)}) were not applied to this gateway, "
        "so the spike did not meet them"
        if caps_ignored
        else None
    )
    for spike in meta.spikes:
        start, end = float(spike.start_s), float(spike.end_s)
        found.append(Incident("spike", start, max(end - start, 0.0), None, unjudged))
    return sorted(found, key=lambda incident: incident.start_s)


def _cluster_record(events: pd.DataFrame, action: str, replica: str, logged_s: float) -> float:
    """When the cluster itself logged `action` on `replica` (nearest to the fault player's `logged_s`, within
    CAUSE_SLACK_S); `logged_s` when it did not (an injected fault, a gateway surge did not start)."""
    kind = CLUSTER_RECORD.get(action)
    if kind is None or not replica:
        return logged_s
    times = events.loc[
        (events["source"] == "cluster") & (events["kind"] == kind) & (events["target"] == replica), "t_s"
    ].to_numpy(float)
    times = times[np.abs(times - logged_s) <= CAUSE_SLACK_S]
    return logged_s if times.size == 0 else float(times[np.argmin(np.abs(times - logged_s))])


def _first_streak(ok: np.ndarray[Any, Any], start: int, length: int) -> int | None:
    run = 0
    for position in range(start, ok.size):
        run = run + 1 if ok[position] else 0
        if run == length:
            return position - length + 1
    return None


def recovery(frames: RunFrames, healthy: pd.Series, incident_list: list[Incident], slo: Slo) -> list[dict[str, Any]]:
    """docs/internals.md §5 `recovery`, one entry per incident.

    detect: the first router `check_failed`/`replica_down` the incident caused (`_attribute_detections`). fail
    over: the first success from a
    replica other than the victim (the detected replica, else the named target, else the replica that served
    most in the 3 s before). An `exec` fault against a service surge did not start has no router to watch:
    detect is then the end of the first failed attempt after the start (what a client of that service saw
    first), and fail over is unknown — surge cannot see that service's replicas — with the reason in
    `why_unknown` (figure name -> reason), so a report never shows a bare dash for it.
    recover: from the start to the first second of the first run of 3 recovered seconds that follows the first
    second that was not (0 when the incident never hurt; None when the run ended first). A recovered second is
    healthy *and* turns no more load away with 429s than before the incident (its rate-limited share at most the
    share of the RECOVERY_BASELINE_S before, plus the SLO's failure allowance): a 429 is not a failure, but a
    gateway still rate-limiting a spike's backlog has not absorbed it yet, and a steady per-user cap that
    limited as much before is not blamed on the incident.
    errors: shed, error and timeout attempts from the start until the later of recovery and the end of the look
    window. The look window (for the first unhealthy second and the detection event) runs from the start to the
    end of the incident plus 10 s, cut at the next incident, so one kill is not blamed on the spike before it.
    """
    healthy_now = healthy.to_numpy(bool)
    last_second = healthy_now.size
    limited = frames.windows["n_rate_limited"].to_numpy(float)
    answered = limited + class_sum(frames.windows, ADMITTED).to_numpy(float)
    successes = frames.history.loc[frames.history["outcome"] == "succeeded", ["replica", "done"]]
    started = float(frames.meta.started_unix)
    played = [incident for incident in incident_list if incident.not_played is None]
    look_ends = _look_ends(played)
    detections = _attribute_detections(frames.events, played, look_ends)
    results = []
    for incident in incident_list:
        if incident.not_played is not None:
            results.append(_not_played(incident))
            continue
        number = played.index(incident)
        first = max(math.floor(incident.start_s), 0)
        before = slice(max(first - RECOVERY_BASELINE_S, 0), first)
        usual = limited[before].sum() / answered[before].sum() if answered[before].sum() > 0 else 0.0
        ok = healthy_now & (limited <= (usual + 1.0 - slo.min_success_ratio) * answered)
        look_end_s = look_ends[number]
        horizon = min(max(math.floor(look_end_s), first + 1), last_second)
        window_bad = np.flatnonzero(~ok[first:horizon])
        recover_at: int | None
        recover_s: float | None
        if window_bad.size == 0:
            recover_at, recover_s = first, 0.0
        else:
            recover_at = _first_streak(ok, first + int(window_bad[0]) + 1, RECOVERY_STREAK_S)
            recover_s = None if recover_at is None else max(recover_at - incident.start_s, 0.0)
        why_unknown: dict[str, str] = {}
        if incident.action == "exec" and not frames.meta.embedded:
            detect_s = _first_failure(frames, incident, started, look_end_s)
            failover_s, why_unknown["failover_s"] = None, UNSEEN_REPLICAS
            if detect_s is None:
                why_unknown["detect_s"] = NO_FAILED_ATTEMPT
        else:
            detect_s, victim = detections.get(number, (None, None))
            victim = victim or _victim_without_event(frames, incident)
            failover_s = _failover(frames, successes, incident, victim, started) if victim else None
        end = last_second if recover_at is None else max(recover_at, horizon)
        errors = int(class_sum(frames.windows.iloc[first:end], FAILURES).sum())
        results.append(
            {
                "event": incident.name,
                "at_s": round(incident.start_s, 3),
                "detect_s": None if detect_s is None else round(detect_s, 3),
                "failover_s": None if failover_s is None else round(failover_s, 3),
                "recover_s": None if recover_s is None else round(recover_s, 3),
                "errors": errors,
                "recovered_within_slo": recover_s is not None and recover_s <= slo.max_recovery_s,
                "played": True,
                "not_played": None,
                "why_unknown": why_unknown,
            }
        )
    return results


def _not_played(incident: Incident) -> dict[str, Any]:
    """A fault that never reached the gateway: nothing to measure, so every figure and the verdict are unknown."""
    return {
        "event": incident.name,
        "at_s": round(incident.start_s, 3),
        "detect_s": None,
        "failover_s": None,
        "recover_s": None,
        "errors": None,
        "recovered_within_slo": None,
        "played": False,
        "not_played": incident.not_played,
        "why_unknown": {},
    }


def _look_ends(played: list[Incident]) -> list[float]:
    """Where each played incident's look window ends: its end plus RECOVERY_TAIL_S, cut at the next start."""
    ends = [incident.start_s + incident.duration_s + RECOVERY_TAIL_S for incident in played]
    return [min(end, played[n + 1].start_s) if n + 1 < len(played) else end for n, end in enumerate(ends)]


def _attribute_detections(
    events: pd.DataFrame, played: list[Incident], look_ends: list[float]
) -> dict[int, tuple[float, str | None]]:
    """Per played incident (by position), its detection: seconds from its start to the first router
    `check_failed`/`replica_down` it caused, and the replica that event names.

    An event is caused by the latest incident whose look window holds it; a fault's window opens CAUSE_SLACK_S
    early for events on the replica it hit, so a death the router logged a millisecond before the fault player
    logged the kill is the kill's, never the spike's before it (its detection is then 0, not negative).
    """
    found: dict[int, tuple[float, str | None]] = {}
    rows = events[events["kind"].isin(DETECTION_KINDS)]
    for t_s, target in zip(rows["t_s"].astype(float), rows["target"].fillna("").astype(str), strict=True):
        causes = [
            number
            for number, incident in enumerate(played)
            if incident.start_s - (CAUSE_SLACK_S if target and target == incident.hit else 0.0)
            <= t_s
            < look_ends[number]
        ]
        if causes:
            number = max(causes, key=lambda n: played[n].start_s)
            if number not in found:
                found[number] = (max(t_s - played[number].start_s, 0.0), target or None)
    return found


def _first_failure(frames: RunFrames, incident: Incident, started_unix: float, look_end_s: float) -> float | None:
    """Seconds from the start to the end of the first failed attempt (shed, error, timeout) that ended after it,
    within the look window; from the per-second counts when the folder has no history."""
    since = started_unix + incident.start_s
    if not frames.history.empty:
        failed = frames.history[frames.history["outcome"].isin(FAILURES)]
        done = failed["done"].to_numpy(float)
        done = done[(done >= since) & (done < started_unix + look_end_s)]
        return None if done.size == 0 else float(done.min()) - since
    first = max(math.floor(incident.start_s), 0)
    seconds = class_sum(frames.windows.iloc[first : max(math.ceil(look_end_s), first + 1)], FAILURES).to_numpy()
    hit = np.flatnonzero(seconds > 0)
    return None if hit.size == 0 else max(first + float(hit[0]) - incident.start_s, 0.0)


def _victim_without_event(frames: RunFrames, incident: Incident) -> str | None:
    """The replica a fault hit when no router event names it: a named replica, or for `primary` the one that
    served most just before; none for spikes, `all` or channel faults (nothing to fail over from)."""
    if incident.target and incident.target in frames.replicas.columns:
        return incident.target
    if incident.target != "primary":
        return None
    first = max(int(incident.start_s), 0)
    before = frames.replicas.iloc[max(first - 3, 0) : first].sum()
    if before.empty or before.max() == 0:
        return None
    return str(before.idxmax())


def _failover(
    frames: RunFrames, successes: pd.DataFrame, incident: Incident, victim: str, started_unix: float
) -> float | None:
    if not frames.history.empty:
        since = started_unix + incident.start_s
        done = successes["done"].to_numpy(float)
        served = done[(successes["replica"] != victim).to_numpy(bool) & (done >= since)]
        return None if served.size == 0 else float(served.min()) - since
    others = frames.replicas.drop(columns=[victim], errors="ignore")
    first = max(int(incident.start_s), 0)
    active = np.flatnonzero(others.iloc[first:].sum(axis=1).to_numpy() > 0)
    return None if active.size == 0 else max(first + float(active[0]) - incident.start_s, 0.0)


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


def business_dates(unix: pd.Series, clock: ClusterClock | None) -> pd.Series:
    """The gateway's business date (Asia/Shanghai, on its possibly fast simulated clock) of each wall time;
    without a clock, real time."""
    simulated = unix if clock is None else clock.sim_unix(unix)
    stamps = pd.to_datetime(simulated, unit="s", utc=True).dt.tz_convert(SHANGHAI)
    return stamps.dt.strftime("%Y-%m-%d")


def is_foreign(meta: RunMeta) -> bool:
    """Whether the run drove a target profile's API (docs/targets.md) rather than the §3 gateway."""
    return meta.target is not None


def caps(meta: RunMeta) -> tuple[dict[str, int], int | None]:
    """Card caps per channel code and the user cap, from the gateway config the run used (None: unknown); for a
    target profile, its `[ledger.caps]` (one card cap for every channel the cards were drawn on)."""
    if meta.target is not None:
        limits = meta.target.caps
        card_cap = None if limits is None else limits.card_daily_fen
        user = None if limits is None else limits.user_daily_fen
        return ({} if card_cap is None else dict.fromkeys(meta.target.channels, card_cap)), user
    config = meta.gateway_config or {}
    card = {
        str(channel["code"]): int(channel["card_daily_fen"])
        for channel in config.get("channels") or []
        if "code" in channel and "card_daily_fen" in channel
    }
    user = (config.get("limits") or {}).get("user_daily_fen")
    return card, None if user is None else int(user)


def cap_schedule(meta: RunMeta) -> tuple[invariants.CapOverride, ...]:
    """The dynamic limits (`limits.schedule`) of the gateway config the run used; empty when none or unknown."""
    limits = (meta.gateway_config or {}).get("limits") or {}
    return tuple(invariants.CapOverride.from_config(entry) for entry in limits.get("schedule") or [])


def caps_by_day(meta: RunMeta, days: list[str]) -> list[dict[str, Any]]:
    """Per business day, the user cap and each channel's card cap in force (the highest of the day), for the
    report's daily-caps section; empty when the gateway config is unknown."""
    card_caps, user_cap = caps(meta)
    schedule = cap_schedule(meta)
    return [
        {
            "business_date": day,
            "user_daily_fen": None if user_cap is None else invariants.cap_on_day(day, user_cap, schedule, "user"),
            "card_daily_fen": {
                code: invariants.cap_on_day(day, cap, schedule, "card") for code, cap in sorted(card_caps.items())
            },
        }
        for day in days
    ]


def repaid_per_day(frames: RunFrames) -> pd.DataFrame:
    """Amount and count of this run's repayments per business day: from its rows of the ledger (the truth) when
    the run has one, else from the acknowledged attempts of the history (one per repayment id)."""
    grouped = recorded_repayments(frames).groupby("business_date")["amount_fen"].agg(["sum", "count"])
    return grouped.rename(columns={"sum": "amount_fen", "count": "repayments"}).astype("int64").sort_index()


def recorded_repayments(frames: RunFrames) -> pd.DataFrame:
    """This run's repayments, what every money figure counts: its own rows of the ledger (its key prefix, as
    the invariants use) when the run has one — a ledger shared with other runs holds theirs too — else the
    acknowledged attempts (one per repayment id)."""
    if frames.ledger is not None:
        return invariants.own_rows(frames.ledger, frames.meta.key_prefix)
    return _acknowledged(frames)


def charges_per_day(frames: RunFrames) -> invariants.DailyTotals:
    """Every charge the caps counted, per card and per user and day: the whole ledger (a cap bounds every
    charge of a card's day, whoever made it), else this run's acknowledged attempts."""
    return invariants.daily_totals(frames.ledger if frames.ledger is not None else _acknowledged(frames))


def _acknowledged(frames: RunFrames) -> pd.DataFrame:
    acked = frames.history[frames.history["outcome"] == "succeeded"]  # a 201, or a target's rule said so
    return acked.drop_duplicates("repayment_id")


def declines_by_scope(frames: RunFrames, per_card_day: pd.DataFrame) -> pd.DataFrame:
    """Limit declines per business day and scope (`single`, `card`, `user`), one per payment key.

    History rows carry the code but not the problem's `scope`, so a DAILY_LIMIT_EXCEEDED is attributed to the
    card when the card's total that day (`per_card_day`: card_id, business_date, amount_fen) plus the declined
    amount passes the card cap, else to the user.
    """
    history = frames.history
    declines = history[history["code"].isin(["SINGLE_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED"])]
    declines = declines.drop_duplicates("key")
    if declines.empty:
        return pd.DataFrame(columns=["single", "card", "user"], dtype="int64")
    days = declines["business_date"].where(
        declines["business_date"] != "",
        business_dates(declines["done"], frames.clock),
    )
    card_caps, _ = caps(frames.meta)
    day_caps = invariants.card_caps_on_days(declines["channel"], days, card_caps, cap_schedule(frames.meta))
    keyed = pd.DataFrame(
        {
            "card_id": declines["card_id"].to_numpy(),
            "business_date": days.to_numpy(),
            "amount_fen": declines["amount_fen"].to_numpy(np.int64),
            "code": declines["code"].to_numpy(),
            "cap": np.nan_to_num(day_caps, nan=np.inf),
        }
    )
    keyed = keyed.merge(
        per_card_day.groupby(["card_id", "business_date"])["amount_fen"].sum().reset_index(),
        how="left",
        on=["card_id", "business_date"],
        suffixes=("", "_repaid"),
    )
    over_card = keyed["amount_fen"] + keyed["amount_fen_repaid"].fillna(0) > keyed["cap"]
    scope = np.where(keyed["code"] == "SINGLE_LIMIT_EXCEEDED", "single", np.where(over_card, "card", "user"))
    table = pd.crosstab(
        pd.Series(keyed["business_date"].to_numpy(), name="business_date"), pd.Series(scope, name="scope")
    )
    return table.reindex(columns=["single", "card", "user"], fill_value=0).astype("int64")


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
