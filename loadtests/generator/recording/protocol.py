"""What every Locust process of a run agrees on: the messages between master and workers, and the time line.

Messages travel on Locust's own worker↔master channel (`runner.send_message` / `register_message`), so a
multi-machine run needs no shared disk. Every process knows `hard_stop` and sends its final delta on its own
FINAL_AFTER_S after it; the master waits at most FINAL_WAIT_S more for the last of them. The end of a run
therefore never depends on Locust's own stop messages (a headless master quits without waiting for its
workers' last words).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

MSG_START = "surge_start"  # master → worker: {"settings", "index", "count", "offset_s"}
MSG_WINDOWS = "surge_windows"  # worker → master: {"index", "windows", "lag": final lag hdr | None, "history"}
MSG_STOP = "surge_stop"  # master → worker: the run stopped early; stop generating and send the last delta now
MSG_HISTORY = "surge_history"  # worker → master: {"index", "seq", "rows", "data": zlib CSV lines}
MSG_HISTORY_ACK = "surge_history_ack"  # master → worker: {"seq"} written to the run folder
MSG_PING = "surge_ping"  # master → worker: {"seq", "sent"}: a clock round trip
MSG_SHARE = "surge_share"  # master → worker: {"from_s", "index", "count"}: a worker joined, shares change then
MSG_PONG = "surge_pong"  # worker → master: {"seq", "sent", "clock": the worker's time.time() on receipt}
FINAL_AFTER_S = 0.5  # after hard_stop: every process sends its last delta
FINAL_WAIT_S = 5.0  # the master's bound on waiting for the last deltas of every worker
IN_FLIGHT_WAIT_S = 3.0  # a process's bound on waiting for its attempts still in flight before its last delta
HISTORY_DRAIN_S = 20.0  # after its last attempt, a worker's bound on sending the history still on its disk


@dataclass(frozen=True)
class RunSettings:
    """What every generating process must agree on; the master sends it to each worker in MSG_START."""

    scenario_ref: str
    scale: float
    duration_s: float | None
    out_dir: str
    t0: float
    hard_stop: float  # no attempt is recorded after this; the final deltas are sent FINAL_AFTER_S later
    late_ms: float
    expected_offered: float  # the rate curve's integral: what all processes together should offer
    channels: list[str] = field(default_factory=list)  # the bank codes cards are drawn on (read once, by the master)
    target: str = ""  # a target profile's path (docs/targets.md); "" for the built-in API
    abort: bool = True  # judge the scenario's [[abort]] rules (False: --no-abort)
    trace_salt: str = ""  # keys the pseudonyms of a replayed trace's identities; sent to workers, never written
    key_prefix: str = ""  # meta.json's, read by the master: a worker on another host has no run folder
    clock: dict[str, Any] | None = None  # the gateway's anchored clock (ClusterClock), read by the master
    host: str = ""  # the URL the users load: a worker checks it against the loopback guard itself
    max_clock_offset_s: float = 5.0  # a worker whose clock is further off the master's is refused (exit 3)
    from_s: float = 0.0  # a worker that joined late: its arrivals start here (seconds from t=0)


def on_own_clock(settings: RunSettings, offset_s: float) -> RunSettings:
    """The master's settings in the clock of a process `offset_s` ahead of it: the same instants, its numbers."""
    if not offset_s:
        return settings
    clock = settings.clock
    if clock is not None:
        clock = {**clock, "anchor_unix": float(clock["anchor_unix"]) + offset_s}
    return replace(settings, t0=settings.t0 + offset_s, hard_stop=settings.hard_stop + offset_s, clock=clock)


@dataclass(frozen=True)
class Running:
    """A process's generator once started: `stop` it, or `reshare(from_s, index, count)` — from `from_s` (seconds
    from the master's t=0) on, its arrivals are share `index` of `count` (a worker joined)."""

    stop: Callable[[], None]
    reshare: Callable[[float, int, int], None]
