"""Incidents (faults injected, spikes started) and how the run recovered from each: detect, fail over, recover.

Which incident caused what is read off events.csv, with the clocks of the fault player, the router and the
replicas allowed to disagree by CAUSE_SLACK_S; a fault that never reached the gateway is carried with its reason
so its recovery is unknown, never a pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports.frames import RunFrames
from reports.measure.counters import class_sum
from runfolder.events import FAULT_FAILED, FAULT_INJECTED, FAULT_SKIPPED
from runfolder.models import RunMeta, Slo
from runfolder.outcomes import ADMITTED, FAILURES, GOOD

RECOVERY_STREAK_S = 3
RECOVERY_TAIL_S = 10.0
RECOVERY_BASELINE_S = 5  # the seconds before an incident whose 429 share counts as its usual level


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


def incidents(meta: RunMeta, events: pd.DataFrame, until_s: float = math.inf) -> list[Incident]:
    """Faults (at the time chaos actually injected them, when events.csv says) and spikes, in time order, that
    started before `until_s` (a run stopped early: what was planned after the stop is no incident).

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
    return sorted((incident for incident in found if incident.start_s < until_s), key=lambda i: i.start_s)


def failed_faults(events: pd.DataFrame) -> list[str] | None:
    """Each fault step that failed (`fault_failed` in events.csv), told; None when the run played no fault."""
    chaos = events[events["source"] == "chaos"]
    if chaos.empty or not chaos["kind"].isin([FAULT_INJECTED, FAULT_FAILED]).any():
        return None
    failed = chaos[chaos["kind"] == FAULT_FAILED]
    return [
        f"{target} at {t_s:.1f} s: {detail}"
        for t_s, target, detail in zip(failed["t_s"], failed["target"], failed["detail"], strict=True)
    ]


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
