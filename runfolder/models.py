"""The JSON files of a run folder as pydantic models: meta.json (`RunMeta`), generator.json (`GeneratorVerdict`),
capacity.json (`Capacity`) and summary.json (`Summary`), with `Slo`, the scenario `[slo]` table and its defaults.

Every model keeps keys it does not know (`extra="allow"`): a folder written by a newer surge (or by a sibling
feature that adds a key before this module learns it) still reads, and rewriting it loses nothing. The files are
compatible with the folders written before these models existed — summary.json byte for byte; meta.json and
generator.json hold the same JSON values — so there is no `format` key yet; the first incompatible change must
add one to meta.json and document it in docs/internals.md §5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from runfolder.clock import ClusterClock, read_cluster_clock
from runfolder.layout import Number, OpenModel, RunFolder, RunFolderError, read_model, read_optional
from runfolder.stop import Aborted, Stopped
from runfolder.verdict import SUMMARY_KEYS, Verdict


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


class TargetMeta(OpenModel):
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


class RunMeta(OpenModel):
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
    return read_model(RunFolder(run_dir).meta, RunMeta)


class LostWorker(BaseModel):
    """generator.json `lost_workers[]`: a Locust worker that fell silent mid-run (docs/distributed.md)."""

    worker: str  # worker-<index>
    node: str = ""  # Locust's id of the process
    at_s: float  # the last time the master heard from it, against started_unix
    dropped: int  # its scheduled arrivals it never reported sent, counted dropped in their own seconds


class GeneratorVerdict(OpenModel):
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
    return read_optional(RunFolder(run_dir).generator, GeneratorVerdict)


class Capacity(OpenModel):
    """capacity.json of a capacity search (internals §6): the knee and how it was found."""

    max_rate_per_s: Number | None = None
    spread: Number | None = None
    limited_by: str | None = None
    bracket: list[Number] | None = None
    probes: int | None = None


def read_capacity(run_dir: Path) -> Capacity | None:
    """capacity.json, or None when the folder is not a capacity search."""
    return read_optional(RunFolder(run_dir).capacity, Capacity)


class Totals(OpenModel):
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


class Latency(OpenModel):
    """summary.json `latency_ms.intended` / `.service`: percentiles of the run's merged HDR histogram, in ms (null
    when nothing completed). `p99_interval_ms` is how far the p99 could move by chance alone, [low, high]: the
    order statistics at ranks n·p ± 2·√(n·p·(1−p)); a comparison's noise band (null in folders written before it)."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    p99_interval_ms: tuple[float, float] | None = None


class Summary(OpenModel):
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
    success_ratio: float | None = None
    """Good over admitted attempts of the whole run; null when nothing was admitted."""
    latency_ms: dict[str, Latency] = Field(default_factory=dict)
    """`intended` and `service`: the whole run's latency of admitted attempts."""

    @field_validator(*SUMMARY_KEYS.values(), mode="before")
    @classmethod
    def _kind_from_list(cls, entries: Any, info: ValidationInfo) -> Any:
        """An entry read back from summary.json is of the kind its list says (it does not carry it)."""
        kind = next(kind for kind, key in SUMMARY_KEYS.items() if key == info.field_name)
        return [entry if isinstance(entry, Verdict) else {**entry, "kind": kind} for entry in entries or []]
