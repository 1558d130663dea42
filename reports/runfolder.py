"""THE run-folder format (docs/internals.md §5, §6): what loadtests writes and reports reads, defined once.

Both sides import this module: the Locust process (generator/recorder, generator/history, the locustfile), surge's
own process (orchestration, cli) and `reports`. It is therefore kept light — standard library and pydantic only,
no pandas, numpy or hdrh — so importing it inside a gevent-patched Locust worker costs nothing.

What lives here, each in one place:

- the outcome classes of an attempt and their algebra (`classify`, `GOOD`, `FAILURES`, `ADMITTED`, `REJECTED`);
- the columns of `history/<worker>.csv` (`HISTORY_COLUMNS`, `Attempt`, `history_line`) and the sample of an
  answer no response rule matched beside it (`read_unmatched_sample`), of `events.csv`
  (`EVENT_COLUMNS`, `RunEvent`, `write_events_csv`, the fault players' kinds `FAULT_*`) and of a capacity
  search's `steps.csv` (`CapacityStep`, `STEP_COLUMNS`, `write_steps_csv`);
- the cluster's simulated clock as a run folder records it (`ClusterClock`, `read_cluster_clock`) and the
  Asia/Shanghai zone business dates are counted in (`SHANGHAI`);
- the JSON files as pydantic models: `RunMeta` (meta.json), `GeneratorVerdict` (generator.json), `Capacity`
  (capacity.json), `StopRecord` (stop.json), `Verdict` and `Summary` (summary.json), with `Slo`, the scenario
  `[slo]` table and its defaults;
- the one JSON writer (`write_json`, atomic) and the one JSON reader (`read_json_object`).

Every model keeps keys it does not know (`extra="allow"`): a folder written by a newer surge (or by a sibling
feature that adds a key before this module learns it) still reads, and rewriting it loses nothing. The files are
compatible with the folders written before this module existed — summary.json, junit.xml and timeseries.csv
byte for byte; meta.json and generator.json hold the same JSON values (non-ASCII text is now UTF-8 rather than
`\\u` escapes, an unset SLO bound `800.0` rather than `800`) — so there is no `format` key yet; the first
incompatible change must add one to meta.json and document it in docs/internals.md §5.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")  # business days are Asia/Shanghai days on the gateway's clock

# A JSON number kept as written: a float field would turn a recorded 30 into 30.0 and change the bytes.
Number = int | float


class RunFolderError(ValueError):
    """The folder is not a readable run folder; the message names the file and the problem in one line."""


# Outcome classes ----------------------------------------------------------------------------------------------

OutcomeClass = Literal["succeeded", "declined", "rate_limited", "shed", "error", "timeout"]
OUTCOME_CLASSES: Final[tuple[OutcomeClass, ...]] = ("succeeded", "declined", "rate_limited", "shed", "error", "timeout")

# The algebra every verdict, chart, live line and capacity probe uses:
#   good      = succeeded + declined        a business decline is the gateway working as specified (docs/scenarios.md)
#   failures  = shed + error + timeout      what the paying user felt as the gateway failing
#   admitted  = good + failures             every class but rate_limited: a 429 is advertised admission control
#                                           that the client honours and retries, not a failure
#   rejected  = rate_limited + shed         the gateway protecting itself: "not now, come back later"
#   success ratio = good / admitted         the `min_success_ratio` SLO
GOOD: Final[tuple[OutcomeClass, ...]] = ("succeeded", "declined")
FAILURES: Final[tuple[OutcomeClass, ...]] = ("shed", "error", "timeout")
ADMITTED: Final[tuple[OutcomeClass, ...]] = (*GOOD, *FAILURES)
REJECTED: Final[tuple[OutcomeClass, ...]] = ("rate_limited", "shed")

DECLINE_CODES: Final = frozenset({"SINGLE_LIMIT_EXCEEDED", "DAILY_LIMIT_EXCEEDED"})
TIMEOUT: Final = "TIMEOUT"
CONNECTION_ERROR: Final = "CONNECTION_ERROR"
RESPONSE_TOO_LARGE: Final = "RESPONSE_TOO_LARGE"  # an answer past the body bound: refused unread, connection closed
# Attempts that failed on the client's credentials, not on the service (a target profile's signing, tokens and
# TLS; docs/targets.md): outcome `error`, but kept apart from the service's errors by the report and verdicts.
AUTH_FAILED: Final = "AUTH_FAILED"  # no token: the token endpoint failed or refused the client
SIGN_FAILED: Final = "SIGN_FAILED"  # the request could not be signed
UNAUTHORIZED: Final = "UNAUTHORIZED"  # the target answered 401 or 403
TLS_FAILED: Final = "TLS_FAILED"  # the TLS handshake failed on a certificate (refused, expired, unverifiable)
TOKEN_EXPIRED: Final = "TOKEN_EXPIRED"  # noqa: S105 (a code, not a secret) — a 401 to a token that had expired: refreshed and re-sent once
AUTH_CODES: Final = frozenset({AUTH_FAILED, SIGN_FAILED, UNAUTHORIZED, TLS_FAILED, TOKEN_EXPIRED})


def classify(status: int, code: str) -> OutcomeClass:
    """One attempt's class from its status and problem code; `status` 0 means no response, and `code` is then
    TIMEOUT, CONNECTION_ERROR or RESPONSE_TOO_LARGE. A 409 IDEMPOTENCY_IN_FLIGHT is `shed`: the gateway refused
    to do the work now and said when to come back, exactly as a 503 does."""
    if status == 0:
        return "timeout" if code == TIMEOUT else "error"
    if 200 <= status < 300:
        return "succeeded"
    if status == 422 and code in DECLINE_CODES:
        return "declined"
    if status == 429:
        return "rate_limited"
    if status in (503, 409):
        return "shed"
    return "error"


def is_failure(outcome: str) -> bool:
    """A failure the SLOs count; every other class is handled by a well-behaved client by design (Locust's own
    statistics count those as successes)."""
    return outcome in FAILURES


def success_ratio(counts: Mapping[str, int]) -> float | None:
    """good / admitted from per-class counts; None when nothing was admitted (no evidence either way)."""
    admitted = sum(int(counts.get(name, 0)) for name in ADMITTED)
    if admitted == 0:
        return None
    return sum(int(counts.get(name, 0)) for name in GOOD) / admitted


# history/<worker>.csv ---------------------------------------------------------------------------------------------

HISTORY_COLUMNS: Final[tuple[str, ...]] = (
    *("payment_id", "key", "attempt", "user_id", "card_id", "channel", "amount_fen", "intended", "sent", "done"),
    *("status", "code", "outcome", "repayment_id", "replica", "business_date", "replayed", "part"),
    *("settlement", "settle_code", "final_at", "polls", "callbacks", "callback_refused", "callback_dups"),
    *("callback_status", "flipped_to"),
)
SETTLEMENT_COLUMNS: Final[tuple[str, ...]] = HISTORY_COLUMNS[18:]  # absent from folders written before them
ACCEPTED: Final = 202  # an async channel's "accepted, processing": the attempt's outcome class is `succeeded`
# `settlement` of an accepted attempt: the final state the client learned, `processing` when it learned none
# before its settle_timeout_s, `unwatched` when the process's pending set was full (never watched)
SETTLED_STATES: Final = ("succeeded", "failed")


@dataclass(slots=True)
class Attempt:
    """One history row; times are unix seconds, `status` 0 when no response came back, `part` the index of a
    split-plan part (0 otherwise). Not frozen: a frozen dataclass sets each of its 18 fields through
    object.__setattr__, 2.1 µs per attempt against 0.4 µs, and nothing changes a row once it is made."""

    payment_id: str
    key: str
    attempt: int
    user_id: str
    card_id: str
    channel: str
    amount_fen: int
    intended: float
    sent: float
    done: float
    status: int
    code: str
    outcome: OutcomeClass
    repayment_id: str
    replica: str
    business_date: str
    replayed: bool
    part: int
    # asynchronous settlement (a 202 answer), filled in by the watcher before the row is written; defaults for
    # every other attempt
    settlement: str = ""
    settle_code: str = ""
    final_at: float = 0.0  # unix time the client first learned the final state; 0 when it never did
    polls: int = 0
    callbacks: int = 0  # validly signed deliveries received for the payment
    callback_refused: int = 0  # of those, answered 500 on purpose (the scenario's callback_fail_ratio)
    callback_dups: int = 0  # deliveries received after one had been acknowledged
    callback_status: str = ""  # the final state the first delivery carried
    flipped_to: str = ""  # a final state reported later (poll or callback) that differs from the one learned


_HISTORY_LINE: Final = "%s,%s,%d,%s,%s,%s,%d,%.6f,%.6f,%.6f,%d,%s,%s,%s,%s,%s,%s,%d,%s,%s,%.6f,%d,%d,%d,%d,%s,%s\n"
_NEEDS_QUOTING: Final = re.compile(r'[,"\r\n]')


def history_line(a: Attempt) -> str:
    """One attempt as a line of the history CSV, in HISTORY_COLUMNS order ("\n" line ends, times with 6 decimals).

    Formatted with one `%` when no text needs quoting — 1 µs instead of 3.3 µs through csv.writer, per attempt
    the generator sends — as csv.writer would write it. A text with a comma, quote or line break (a code,
    replica or id a target chose may hold anything) makes csv.writer write the line with every cell quoted:
    with "\n" as its line end it would leave a lone "\r" unquoted, and the line would not read back."""
    texts = (a.payment_id, a.key, a.user_id, a.card_id, a.channel, a.code, a.outcome, a.repayment_id, a.replica,
             a.business_date, a.settle_code)  # fmt: skip
    cells = (
        a.payment_id, a.key, a.attempt, a.user_id, a.card_id, a.channel, a.amount_fen, a.intended, a.sent, a.done,
        a.status, a.code, a.outcome, a.repayment_id, a.replica, a.business_date, "true" if a.replayed else "false",
        a.part, a.settlement, a.settle_code, a.final_at, a.polls, a.callbacks, a.callback_refused, a.callback_dups,
        a.callback_status, a.flipped_to,
    )  # fmt: skip
    if not _NEEDS_QUOTING.search("".join(texts)):
        return _HISTORY_LINE % cells
    buffer = io.StringIO()
    times = {7: f"{a.intended:.6f}", 8: f"{a.sent:.6f}", 9: f"{a.done:.6f}", 20: f"{a.final_at:.6f}"}
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    quoted.writerow([times.get(k, cell) for k, cell in enumerate(cells)])
    return buffer.getvalue()


# events.csv ---------------------------------------------------------------------------------------------------

EVENT_COLUMNS: Final[tuple[str, ...]] = ("t_s", "unix", "source", "kind", "target", "detail")

# The `kind` of the fault players' rows (source `chaos`), written by loadtests' players and read by the reports.
# (The cluster's own kinds — replica_down, failover, … — are mock_gateway's, which may import nothing from here.)
FAULT_INJECTED: Final = "fault_injected"  # the fault's step succeeded (a built-in fault, or a command exited 0)
FAULT_CLEARED: Final = "fault_cleared"  # its undo succeeded
FAULT_FAILED: Final = "fault_failed"  # the injection or the undo failed: the run exits 3
FAULT_SKIPPED: Final = "fault_skipped"  # not played: a built-in fault against a gateway surge did not start


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One row of events.csv; `unix` is turned into `t_s` against the run's start when written."""

    unix: float
    source: str
    kind: str
    target: str
    detail: str


def write_events_csv(path: Path, start_unix: float, events: Iterable[RunEvent]) -> None:
    """events.csv sorted by time (internals §5)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(EVENT_COLUMNS)
        for event in sorted(events, key=lambda e: e.unix):
            writer.writerow(
                [
                    f"{event.unix - start_unix:.3f}",
                    f"{event.unix:.6f}",
                    event.source,
                    event.kind,
                    event.target,
                    event.detail,
                ]
            )


# steps.csv (a capacity search) -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapacityStep:
    """One probe of a capacity search, one row of steps.csv: its rate, its measured window (`start_s`/`end_s`
    against `started_unix`, after the warm-up), what it got, and whether it met the SLOs (else what limited it)."""

    step: int
    rate_per_s: float
    start_s: float
    end_s: float
    offered: float
    goodput: float
    success_ratio: float
    p99_ms: float
    passed: bool
    limited_by: str


STEP_COLUMNS: Final[tuple[str, ...]] = tuple(field.name for field in fields(CapacityStep))


def write_steps_csv(path: Path, steps: Iterable[CapacityStep]) -> None:
    """steps.csv, rewritten whole after every probe so that a search cut short still leaves its steps."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(STEP_COLUMNS)
        writer.writerows(astuple(step) for step in steps)


# windows.jsonl, lightly ------------------------------------------------------------------------------------------


def read_window_records(run_dir: Path) -> list[dict[str, Any]]:
    """windows.jsonl as plain dicts (no histogram decoded); empty when absent. `reports.frames` reads the same
    file into pandas frames; this is for the light readers (a capacity probe's verdict, merging probes)."""
    path = run_dir / "windows.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


_Seconds = TypeVar("_Seconds")  # a float, or anything that does float arithmetic element-wise (a pandas Series)


# The cluster clock ------------------------------------------------------------------------------------------


class ClusterClock(BaseModel):
    """The gateway's simulated clock (internals §3 `cluster.json:clock`): sim = start + (wall − anchor) · speed.

    mock_gateway has its own `SimClock` (it imports nothing outside itself); this is the same formula read from
    a run folder, for the generator (which business day a plan part falls on) and for the reports.
    """

    model_config = ConfigDict(frozen=True)

    start: datetime
    anchor_unix: float
    speed: float = 1.0

    @classmethod
    def wall(cls) -> ClusterClock:
        """Real time: what a gateway without a simulated clock shows."""
        return cls(start=datetime.fromtimestamp(0, SHANGHAI), anchor_unix=0.0, speed=1.0)

    def sim_unix(self, unix: _Seconds) -> _Seconds:
        """Simulated unix seconds of wall unix seconds: a float, or a whole column of them at once."""
        return self.start.timestamp() + (unix - self.anchor_unix) * self.speed  # type: ignore[operator,return-value]

    def sim_at(self, unix: float) -> datetime:
        return datetime.fromtimestamp(self.sim_unix(unix), SHANGHAI)

    def business_date(self, unix: float) -> date:
        return self.sim_at(unix).date()

    def unix_at(self, sim: datetime) -> float:
        """The wall time at which the gateway's clock will read `sim`."""
        return self.anchor_unix + (sim.timestamp() - self.start.timestamp()) / self.speed


CLUSTER_STATE_FILES: Final = (Path("cluster") / "cluster.json", Path("cluster.json"))


def read_cluster_clock(run_dir: Path) -> ClusterClock | None:
    """The anchored clock the cluster chose, from its state file in the run folder (`surge run` keeps it under
    `cluster/`, a probe or a plain run may hold it at the top); None when the folder has none. Only `clock` is
    taken from cluster.json: it also holds the admin token, which must never reach a report."""
    for candidate in CLUSTER_STATE_FILES:
        path = run_dir / candidate
        if not path.is_file():
            continue
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            return ClusterClock.model_validate(state["clock"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValidationError):
            return None
    return None


# The JSON files -------------------------------------------------------------------------------------------------


def write_json(path: Path, data: BaseModel | Mapping[str, Any], *, replace: bool = True) -> None:
    """Atomically, so a reader — CI, `surge compare`, a probe, the locustfile — never sees half a file: the text
    is made first (strict JSON, no NaN: a ValueError leaves the old file alone), written to an exclusively
    created scratch file beside the target (mode from the umask, like any other file of the folder) and renamed
    over it; a failure removes the scratch. UTF-8, two-space indent, one trailing newline.

    `replace=False` keeps a file already there (FileExistsError): the scratch is hard-linked to the name, which
    fails rather than overwrites, so of two racing writers the first one's whole file stays (stop.json)."""
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data)
    text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with scratch.open("x", encoding="utf-8") as out:
            out.write(text)
        if replace:
            scratch.replace(path)
        else:
            os.link(scratch, path)
            scratch.unlink()
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


def read_json_object(path: Path, *, required: bool) -> dict[str, Any]:
    """A JSON object file of a run folder; `{}` when an optional one is absent; RunFolderError otherwise."""
    if not path.exists():
        if required:
            raise RunFolderError(f"{path} is missing: not a run folder")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} must hold a JSON object")
    return data


def read_unmatched_sample(run_dir: Path) -> dict[str, Any] | None:
    """The first `history/<worker>.unmatched.json`: a 2xx answer of a target that no response rule matched,
    as the generating process kept it (`{"status", "body", "cut"}`); None when no process kept one."""
    for path in sorted((run_dir / "history").glob("*.unmatched.json")):
        with contextlib.suppress(RunFolderError):
            return read_json_object(path, required=False) or None
    return None


class _Open(BaseModel):
    """A run-folder file: unknown keys are kept (see the module docstring)."""

    model_config = ConfigDict(extra="allow")


class Slo(BaseModel):
    """A scenario's `[slo]` table (docs/scenarios.md) and its defaults, also what meta.json records the run was judged
    by. Unknown keys are errors: a misspelt bound must not silently become the default."""

    # attribute docstrings are the keys' meanings in docs/reference/scenario-keys.md (scripts/gen_reference.py);
    # defaults are validated so that an unset bound reads 800.0 like a set one, wherever it is shown
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, validate_default=True)

    min_success_ratio: float = Field(default=0.99, ge=0, le=1)
    """Good (succeeded + declined) over admitted attempts, overall and per phase; business declines are not failures."""
    max_p99_ms: float = Field(default=800, gt=0)
    """Intended-time p99 latency of admitted attempts, overall and per phase."""
    max_recovery_s: float = Field(default=5, ge=0)
    """After each fault and each spike: seconds until 3 recovered seconds in a row (healthy, and rate-limiting
    no more than before it; docs/report.md)."""
    max_lost: int = Field(default=0, ge=0)
    """Acknowledged repayments missing from the ledger."""
    max_over_cap: int = Field(default=0, ge=0)
    """Card- or user-days charged above their daily cap."""
    max_settle_p99_s: float = Field(default=60, gt=0)
    """Asynchronous settlement: p99 of the time to final state (from the intended send time to when the client
    first learned the payment's final state). Judged only in a run whose client watches settlement."""
    max_stuck: int = Field(default=0, ge=0)
    """Accepted payments still not final `settle_timeout_s` after the run's last arrival (async settlement)."""
    max_flipped: int = Field(default=0, ge=0)
    """Payments whose final state changed after the client learned it (async settlement)."""


class Phase(BaseModel):
    name: str
    start_s: float
    end_s: float


class Span(BaseModel):
    start_s: float
    end_s: float


class TargetCaps(BaseModel):
    """A target profile's `[ledger.caps]`: what over_cap is checked against (None: not checked)."""

    card_daily_fen: int | None = None
    user_daily_fen: int | None = None


class TargetMeta(_Open):
    """meta.json `target` of a run against a target profile (docs/targets.md): what the reports need, never a header
    value, a body or the ledger URL (they may hold secrets)."""

    name: str
    profile: str = ""
    base_url: str = ""
    ledger: bool = False
    caps: TargetCaps | None = None
    channels: list[str] = Field(default_factory=list)  # the bank codes the cards were drawn on


class SettlementMeta(BaseModel):
    """meta.json `settlement`: how the run's client watched asynchronous settlement (None: it did not)."""

    mode: Literal["poll", "callback"]
    settle_timeout_s: float
    pending_max: int
    callback_fail_ratio: float = 0.0


class WorkerClock(BaseModel):
    """meta.json `clocks[]`: a Locust worker's clock as the master measured it at test start (docs/distributed.md).

    The worker's clock read `offset_s` more than the master's, within ± `uncertainty_s` (half the shortest of a
    few round trips over Locust's message channel). Arrival times are the master's: the worker corrected for
    the offset, and its history rows are in the master's time. `within_bound` false: the run was refused."""

    worker: str  # worker-<index>, as its history file is named
    node: str = ""  # Locust's id of the worker process (host name and a random suffix)
    offset_s: float
    uncertainty_s: float  # -1: the worker never answered
    max_offset_s: float  # the bounds it was held to (--surge-max-clock-offset, and the channel's precision)
    max_uncertainty_s: float
    within_bound: bool = True

    def refusal(self) -> str:
        """Why this worker was refused, in one line (`within_bound` false)."""
        who = f"{self.worker} ({self.node})"
        if self.uncertainty_s < 0:
            return f"{who} did not answer the clock check; the run was not started"
        if self.uncertainty_s > self.max_uncertainty_s:
            return (
                f"{who} clock offset is known only to ±{self.uncertainty_s * 1000:.0f} ms (bound "
                f"±{self.max_uncertainty_s * 1000:.0f} ms): the channel to it is too slow; the run was not started"
            )
        return (
            f"{who} clock is {self.offset_s:+.3f} s off the master's (±{self.uncertainty_s * 1000:.0f} ms), beyond "
            f"the {self.max_offset_s:g} s bound; sync its clock (NTP) or raise --max-clock-offset; the run was "
            "not started"
        )


class RunMeta(_Open):
    """meta.json (internals §5, §6): what ran, against what, with which versions — written before the load.

    Defaults are for folders written by older versions that lacked a key; every writer sets every field.
    """

    kind: Literal["run", "capacity"] = "run"
    scenario: str
    description: str = ""
    scenario_ref: str | None = None
    seed: int
    key_prefix: str | None = None
    scale: Number = 1.0
    duration_s: Number | None = None
    started_unix: Number
    host: str = ""
    embedded: bool = False
    workers: int = 1
    replicas: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    git_commit: str | None = None
    gateway_config: dict[str, Any] | None = None
    gateway_ignored: list[str] = Field(default_factory=list)
    """The keys of the scenario's [gateway] table the run did not apply (a gateway surge did not start)."""
    slo: Slo = Field(default_factory=Slo)
    phases: list[Phase] = Field(default_factory=list)
    spikes: list[Span] = Field(default_factory=list)
    faults: list[dict[str, Any]] = Field(default_factory=list)
    client_policy: str | None = None
    rate: list[dict[str, float]] = Field(default_factory=list)
    target: TargetMeta | None = None  # a run against a target profile; None for the §3 gateway
    settlement: SettlementMeta | None = None  # the client watched asynchronous settlement
    clocks: list[WorkerClock] = Field(default_factory=list)  # a distributed run's workers; empty otherwise

    @property
    def is_capacity_search(self) -> bool:
        """A `surge find-capacity` folder (internals §6): probes overload the gateway on purpose."""
        return self.kind == "capacity"

    def clock(self, run_dir: Path) -> ClusterClock | None:
        """The gateway's clock during the run: the cluster's own record, else the config's start and speed
        anchored at the run's start, else None (real time)."""
        found = read_cluster_clock(run_dir)
        if found is not None:
            return found
        config = (self.gateway_config or {}).get("clock") or {}
        if not config.get("start"):
            return None
        anchor = config.get("anchor_unix") or self.started_unix
        return ClusterClock(start=config["start"], anchor_unix=anchor, speed=config.get("speed") or 1.0)


def read_meta(run_dir: Path) -> RunMeta:
    """meta.json, the one file that makes a folder a run folder."""
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a directory")
    return _validated(run_dir / "meta.json", read_json_object(run_dir / "meta.json", required=True), RunMeta)


class LostWorker(BaseModel):
    """generator.json `lost_workers[]`: a Locust worker that fell silent mid-run (docs/distributed.md)."""

    worker: str  # worker-<index>
    node: str = ""  # Locust's id of the process
    at_s: float  # the last time the master heard from it, against started_unix
    dropped: int  # its scheduled arrivals it never reported sent, counted dropped in their own seconds


class GeneratorVerdict(_Open):
    """generator.json: was the load generator the bottleneck? (`valid` false: the run measured surge, not the
    gateway.) `started_unix` is the arrival schedule's t=0 the generator used."""

    valid: bool = True
    reasons: list[str] = Field(default_factory=list)
    cpu_pct_max: Number = 0.0
    lag_ms_p99: Number = 0.0
    late: int = 0
    dropped: int = 0
    starved: int = 0
    limited_by: Literal["generator", "pool"] | None = None
    started_unix: Number | None = None
    # history rows a worker recorded that never reached the master's run folder, in all and per worker: the
    # invariants are then unknown (a distributed run, docs/distributed.md)
    history_missing: int = 0
    history_missing_by: dict[str, int] = Field(default_factory=dict)
    history_backlog_max_bytes: int = 0  # the most history any worker held that the master had not yet written
    lost_workers: list[LostWorker] = Field(default_factory=list)  # the run is invalid when any is listed

    @property
    def bottleneck(self) -> str:
        """What made the run invalid, in words for a banner: the generator, or the scenario's own user pool
        (`limited_by` "pool": the generator kept up, but every user was busy when arrivals fell due)."""
        if self.limited_by == "pool":
            return "the scenario's user pool ran out ([arrivals] pool), not the gateway"
        return "the load generator was the bottleneck"


def read_generator(run_dir: Path) -> GeneratorVerdict | None:
    """generator.json, or None when the generator never finished (no verdict either way)."""
    return _optional(run_dir / "generator.json", GeneratorVerdict)


class Capacity(_Open):
    """capacity.json of a capacity search (internals §6): the knee and how it was found."""

    max_rate_per_s: Number | None = None
    spread: Number | None = None
    limited_by: str | None = None
    bracket: list[Number] | None = None
    probes: int | None = None


def read_capacity(run_dir: Path) -> Capacity | None:
    """capacity.json, or None when the folder is not a capacity search."""
    return _optional(run_dir / "capacity.json", Capacity)


# stop.json ------------------------------------------------------------------------------------------------------

STOP_FILE: Final = "stop.json"
StoppedBy = Literal["sigint", "sigterm", "web-ui", "abort"]
EXIT_SIGINT, EXIT_SIGTERM, EXIT_ABORTED = 130, 143, 1  # 128 + signal number, as shells report a signal's end


class Aborted(_Open):
    """The `[[abort]]` rule that tripped, when (seconds since t=0), and the value it saw."""

    model_config = ConfigDict(extra="allow", frozen=True)

    rule: str
    at_s: Number
    value: Number


class Stopped(_Open):
    """summary.json `stopped`: when (seconds since t=0; negative: before the load began), by whom, and why."""

    model_config = ConfigDict(extra="allow", frozen=True)

    at_s: Number
    by: StoppedBy
    reason: str = ""


class StopRecord(_Open):
    """stop.json: how a run that did not reach its scenario's end was stopped — the one record of it.

    Written once by whoever stopped the run first (`write_stop`): `surge` on SIGINT/SIGTERM (before it asks
    Locust to stop), the Locust master on a web-UI stop or a tripped `[[abort]]` rule; later writers keep the
    first record. Charts and verdicts stop at `at_s`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    at_unix: Number
    at_s: Number
    by: StoppedBy
    reason: str = ""
    aborted: Aborted | None = None

    @property
    def exit_code(self) -> int | None:
        """The exit code the stop itself imposes (130, 143, 1 for an abort); None for a web-UI stop."""
        return {"sigint": EXIT_SIGINT, "sigterm": EXIT_SIGTERM, "abort": EXIT_ABORTED}.get(self.by)

    @property
    def stopped(self) -> Stopped:
        return Stopped(at_s=self.at_s, by=self.by, reason=self.reason)


def write_stop(run_dir: Path, record: StopRecord) -> StopRecord:
    """Record the stop unless one is recorded already; the record in force (the first) is returned."""
    try:
        write_json(run_dir / STOP_FILE, record, replace=False)
    except FileExistsError:
        return read_stop(run_dir) or record
    return record


def read_stop(run_dir: Path) -> StopRecord | None:
    """The run's stop record, or None when the run ran to its end."""
    return _optional(run_dir / STOP_FILE, StopRecord)


class Verdict(_Open):
    """One SLO, invariant or run check in summary.json `slos` / `invariant_verdicts` (and one JUnit test case)."""

    name: str
    value: bool | Number | None
    bound: bool | Number | str | None
    """A number or flag; for the `aborted` run check, the text of the `[[abort]]` rule that tripped."""
    passed: bool | None
    """None: unknown — surge could not check it (`reason` says why); never a pass."""
    verdict: Literal["pass", "fail", "unknown"]
    reason: str | None = None


class Totals(_Open):
    """docs/internals.md §5 `totals`: every counter of the run summed over its seconds."""

    offered: int
    sent: int
    succeeded: int
    declined: int
    rate_limited: int
    shed: int
    error: int
    timeout: int
    late: int
    dropped: int


class Summary(_Open):
    """summary.json: the README's fields first, then what the report and `surge compare` read (internals §10).

    Declared fields are written in this order and undeclared ones after them, so a new key is declared here, in
    its place, rather than passed through as an extra.
    """

    scenario: str | None
    description: str | None = None
    seed: int | None
    scale: Number | None
    duration_s: Number | None = None
    started_unix: Number | None = None
    valid: bool
    validity_reasons: list[str] = Field(default_factory=list)
    invalid_because: str | None = None
    """Why the run is invalid, in words (null when valid): the load generator, or the scenario's user pool."""
    exit_code: int
    interrupted: bool = False
    """Stopped early by a signal or the web UI (not by an `[[abort]]` rule)."""
    stopped: Stopped | None = None
    aborted: Aborted | None = None
    not_started: bool = False
    """Stopped before the first arrival: nothing was measured and every verdict is unknown."""
    unmatched_answers: dict[str, Any] | None = None
    """A target's 2xx answers no response rule matched: `{count, answered_2xx, line, sample}`, or null."""
    totals: Totals
    slos: list[Verdict]
    invariants: dict[str, int | None]
    invariant_verdicts: list[Verdict] = Field(default_factory=list)
    run_verdicts: list[Verdict] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list)
    invariant_outcomes: dict[str, int] | None = None
    ledger_other_rows: int | None = None
    invariant_examples: dict[str, list[dict[str, Any]]] | None = None
    recovery: list[dict[str, Any]] = Field(default_factory=list)


_Model = TypeVar("_Model", bound=BaseModel)


def _optional(path: Path, model: type[_Model]) -> _Model | None:
    """An optional JSON file of the folder as `model`; None when absent (or empty)."""
    raw = read_json_object(path, required=False)
    return _validated(path, raw, model) if raw else None


def _validated(path: Path, raw: dict[str, Any], model: type[_Model]) -> _Model:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RunFolderError(f"{path}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"{where}: {error['msg']}"
