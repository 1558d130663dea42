"""The gateway configuration (docs/reference/gateway-config-keys.md): typed, frozen, and loud about mistakes.

A wrong or unknown key must stop the process with a message naming it — a silently ignored typo in a load
test's config makes every figure it prints a lie. The models here say what a valid config is and answer what
is in force at a moment on the gateway clock (the caps, the rates); `mock_gateway.config_sources` reads the
file, the environment and the overrides into them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mock_gateway.quotas import Caps


class _Section(BaseModel):
    # attribute docstrings are the keys' meanings in docs/reference/gateway-config-keys.md (scripts/gen_reference.py)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ClockConfig(_Section):
    speed: float = Field(default=1.0, gt=0, le=1_000_000)
    """Simulated seconds per wall second (1440: a business day a minute); business days are Asia/Shanghai days on this
    clock.
    """
    start: datetime | None = None
    """What the clock reads at start, with a UTC offset (default: now)."""
    anchor_unix: float | None = Field(default=None, ge=0)
    """The wall time (Unix seconds) at which the clock read `start`; set by the cluster so every replica agrees (leave
    unset).
    """

    @field_validator("start")
    @classmethod
    def _needs_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-11-11T00:00:00+08:00")
        return value


class LimitOverride(_Section):
    """One `[[limits.schedule]]` entry: limits in force on the gateway clock in [from, until).

    Festival days raise the daily caps (and the gateway's rates) for a while. Every replica and the router
    derive their clock from the same anchor, so all of them switch at the same simulated instant.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)

    from_: datetime = Field(alias="from")
    """When the overrides come into force on the gateway clock (ISO 8601 with offset)."""
    until: datetime
    """When they stop (exclusive)."""
    global_tps: float | None = Field(default=None, gt=0)
    """The whole gateway's attempts per second meanwhile."""
    replica_tps: float | None = Field(default=None, gt=0)
    """Each replica's attempts per second meanwhile."""
    user_tps: float | None = Field(default=None, gt=0)
    """Attempts per second per user_id meanwhile."""
    user_daily_fen: int | None = Field(default=None, gt=0)
    """The platform cap per user per business day in force meanwhile, in fen."""
    burst_ms: float | None = Field(default=None, ge=0, le=10_000)
    """The burst tolerance of the global and replica caps meanwhile, in ms."""
    card_daily_fen: int | None = Field(default=None, gt=0)
    """Every channel's per-card daily cap in force meanwhile, in fen."""
    single_fen: int | None = Field(default=None, gt=0)
    """Every channel's per-transaction limit in force meanwhile, in fen."""

    @field_validator("from_", "until")
    @classmethod
    def _needs_offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-11-11T00:00:00+08:00")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> LimitOverride:
        if self.until <= self.from_:
            raise ValueError(f"'until' must be after 'from' (got {self.until.isoformat()} <= {self.from_.isoformat()})")
        if not any(getattr(self, key) is not None for key in OVERRIDABLE):
            raise ValueError(f"must override at least one of {', '.join(OVERRIDABLE)}")
        return self

    def in_force(self, moment: datetime) -> bool:
        return self.from_ <= moment < self.until


OVERRIDABLE = ("global_tps", "replica_tps", "user_tps", "user_daily_fen", "burst_ms", "card_daily_fen", "single_fen")


class Rates(NamedTuple):
    """The per-second caps in force at one moment (what `limits.Admission` is built from)."""

    global_tps: float
    replica_tps: float
    user_tps: float
    burst_ms: float


class LimitsConfig(_Section):
    global_tps: float = Field(default=5000, gt=0)
    """Attempts per second for the whole gateway (the router; a lone replica applies it itself); past it, 429
    RATE_LIMITED.
    """
    replica_tps: float = Field(default=2000, gt=0)
    """Each replica's own capacity in attempts per second."""
    user_tps: float = Field(default=5, gt=0)
    """Attempts per second per user_id."""
    user_daily_fen: int = Field(default=20_000_000, gt=0)
    """Platform cap per user per business day, in fen."""
    burst_ms: float = Field(default=40, ge=0, le=10_000)  # GCRA burst tolerance of the global/replica caps
    """Burst tolerance of the global and replica caps (GCRA), in ms."""
    schedule: tuple[LimitOverride, ...] = ()
    """Dynamic limits: `[[limits.schedule]]` entries, each overriding limits between `from` and `until` on the
    gateway clock; where two are in force at once, the later one wins key by key."""


class LatencyConfig(_Section):
    median: float = Field(default=20, ge=0, le=60_000)
    """Median simulated bank latency in ms (lognormal); 0 and 0: none."""
    p99: float = Field(default=120, ge=0, le=60_000)
    """99th-percentile simulated bank latency in ms; not below the median."""

    @model_validator(mode="after")
    def _p99_not_below_median(self) -> LatencyConfig:
        if self.p99 < self.median:
            raise ValueError(f"p99 must be >= median (got p99={self.p99:g}, median={self.median:g})")
        return self


class SettleDelayConfig(_Section):
    median: float = Field(default=2000, ge=0, le=3_600_000)
    """Median settlement delay in ms (lognormal); 0 and 0: the bank settles as soon as the payment's turn comes."""
    p99: float = Field(default=4000, ge=0, le=3_600_000)
    """99th-percentile settlement delay in ms; not below the median."""

    @model_validator(mode="after")
    def _p99_not_below_median(self) -> SettleDelayConfig:
        if self.p99 < self.median:
            raise ValueError(f"p99 must be >= median (got p99={self.p99:g}, median={self.median:g})")
        return self


class ChannelConfig(_Section):
    code: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9_]+$")
    """The bank code clients send as `channel` (capitals, digits, underscore)."""
    single_fen: int = Field(gt=0)
    """Per-transaction limit in fen; above it, 422 SINGLE_LIMIT_EXCEEDED with a suggested plan."""
    card_daily_fen: int = Field(gt=0)
    """Per card per business day, in fen; above it, 422 DAILY_LIMIT_EXCEEDED (scope card)."""
    concurrency: int = Field(default=64, gt=0, le=100_000)
    """Calls in flight to the bank; past it, a call waits up to `queue_timeout_ms`, then 503 CHANNEL_BUSY."""
    queue_timeout_ms: float = Field(default=200, ge=0, le=60_000)
    """How long a call waits for a free bank slot before 503 CHANNEL_BUSY."""
    latency_ms: LatencyConfig = LatencyConfig()
    """The bank's simulated latency."""
    tps: float = Field(default=0, ge=0, le=1_000_000)
    """The bank's per-second quota for this channel, for the whole gateway (0: none): each of N active-active
    replicas paces at 1/N of it (docs/gateway.md). Calls past it wait their turn (paced
    with asyncio-throttle) up to `queue_timeout_ms`, then 503 CHANNEL_BUSY. On an async channel it paces
    settlement instead: payments wait their turn in the settlement backlog, however long it grows."""
    settlement: Literal["sync", "async"] = "sync"
    """`sync`: the bank answers within the request (201 or a decline). `async`: the payment is accepted (202,
    status `processing`) and settled by the bank later; the client polls GET /v1/repayments/{id} or gets a
    callback at `notify_url` (docs/gateway.md, "Asynchronous settlement")."""
    settle_ms: SettleDelayConfig = SettleDelayConfig()
    """Async channels: the bank's settlement delay once the payment's turn in the quota came (lognormal)."""
    settle_fail_ratio: float = Field(default=0.0, ge=0, le=1)
    """Async channels: the share of accepted payments the bank refuses (status `failed`, code BANK_DECLINED); the
    day's caps they reserved are released."""
    unknown_ratio: float = Field(default=0.0, ge=0, le=1)
    """Async channels: the share of the bank's answers lost on the way back; the gateway queries the bank again
    after `unknown_ms` (a re-query takes a turn in the quota and may be lost again)."""
    unknown_ms: float = Field(default=1000, gt=0, le=3_600_000)
    """Async channels: how long the gateway waits for a lost answer before it queries the bank again."""

    @model_validator(mode="after")
    def _async_keys_on_async_channels(self) -> ChannelConfig:
        if self.settlement == "sync":
            # Set away from its default, not merely present: a config written back whole (the cluster's) has them all.
            fields = type(self).model_fields
            stray = sorted(key for key in ASYNC_CHANNEL_KEYS if getattr(self, key) != fields[key].get_default())
            if stray:
                raise ValueError(f'{stray[0]} applies only to a channel with settlement = "async"')
        return self


ASYNC_CHANNEL_KEYS = frozenset({"settle_ms", "settle_fail_ratio", "unknown_ratio", "unknown_ms"})


def _default_channels() -> tuple[ChannelConfig, ...]:
    """Quick-pay limits in the shape the big banks publish: single and daily caps differ per bank."""
    yuan = 100
    table = [
        ("ICBC", 50_000, 50_000, 20, 120),
        ("CCB", 50_000, 100_000, 25, 150),
        ("ABC", 20_000, 50_000, 30, 180),
        ("BOC", 10_000, 20_000, 20, 100),
        ("CMB", 50_000, 200_000, 15, 90),
    ]
    return tuple(
        ChannelConfig(
            code=code,
            single_fen=single * yuan,
            card_daily_fen=daily * yuan,
            latency_ms=LatencyConfig(median=median, p99=p99),
        )
        for code, single, daily, median, p99 in table
    )


class RouterConfig(_Section):
    mode: Literal["active-standby", "active-active"] = "active-standby"
    """One primary with standbys taking over on failure, or every healthy replica sharing the traffic."""
    check_interval_ms: float = Field(default=200, gt=0, le=60_000)
    """How often the router checks each replica's /readyz."""
    fall: int = Field(default=2, gt=0, le=100)
    """Failed checks in a row before a replica is taken out."""
    rise: int = Field(default=2, gt=0, le=100)
    """Good checks in a row before it is back."""


class ServerConfig(_Section):
    max_body_bytes: int = Field(default=16_384, ge=256, le=16 * 1024 * 1024)
    """Largest request body accepted; above it, 413 PAYLOAD_TOO_LARGE."""
    host: str = Field(default="127.0.0.1", min_length=1)
    """The address to bind; loopback unless `allow_public_bind`."""
    allow_public_bind: bool = False
    """Allow binding a non-loopback address (a load-test mock never should by accident)."""


class LedgerConfig(_Section):
    path: Path = Path("surge-ledger.sqlite")
    """The SQLite ledger shared by every replica of a cluster."""
    synchronous: Literal["normal", "full"] = "normal"
    """SQLite's `synchronous` setting: `full` survives a power cut, `normal` a process crash."""
    busy_timeout_ms: int = Field(default=5000, gt=0, le=600_000)
    """How long a write waits for the ledger's lock."""


class SettlementConfig(_Section):
    notify_secret: str = Field(default="surge-notify-secret", min_length=1, max_length=256)
    """The key of the `Surge-Signature: sha256=<hex HMAC-SHA256 of the body>` header on settlement callbacks; set
    your own to exercise your verifier (or SURGE_SETTLEMENT__NOTIFY_SECRET)."""
    lease_ms: float = Field(default=3000, ge=200, le=600_000)
    """How long a replica's hold on its pending settlements lasts without renewal (renewed every third of it):
    a paused replica's settlements move to another replica after this, a killed one's within a third of it."""
    callback_attempts: int = Field(default=8, ge=1, le=100)
    """Deliveries of one callback before the gateway gives up (first try included)."""
    callback_backoff_ms: float = Field(default=250, gt=0, le=600_000)
    """Wait before the first retry of a callback; each further retry waits twice as long, up to
    `callback_backoff_max_ms`."""
    callback_backoff_max_ms: float = Field(default=4000, gt=0, le=3_600_000)
    """The longest wait between two deliveries of one callback."""
    callback_timeout_ms: float = Field(default=2000, gt=0, le=60_000)
    """How long one delivery may take before it counts as failed and is retried."""


class SigningConfig(_Section):
    required: bool = False
    """Refuse `POST /v1/repayments` unless HMAC-signed (401 SIGNATURE_INVALID): X-Timestamp (Unix ms within
    `window_s`), X-Nonce (never seen before) and X-Signature, the base64 HMAC-SHA256 of
    "POST\\n/v1/repayments\\n<X-Timestamp>\\n<X-Nonce>\\n<body>" (docs/gateway.md)."""
    key_env: str = Field(default="SURGE_SIGNING_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the HMAC key: the key is never in the config, so never in a run folder."""
    window_s: float = Field(default=30.0, gt=0, le=3600)
    """How far X-Timestamp may be from the gateway's wall clock, in seconds; nonces are remembered this long."""


class AdminConfig(_Section):
    token: str = ""
    """Bearer token of the /admin/ endpoints (or SURGE_ADMIN_TOKEN); empty: generated at start and printed."""


class GatewayConfig(_Section):
    clock: ClockConfig = ClockConfig()
    """The gateway's clock, which may run faster than wall time."""
    limits: LimitsConfig = LimitsConfig()
    """Per-second caps and the platform's daily cap."""
    channels: tuple[ChannelConfig, ...] = Field(default_factory=_default_channels)
    """The bank quick-pay channels; default ICBC, CCB, ABC, BOC and CMB with the limits the banks publish."""
    router: RouterConfig = RouterConfig()
    """How the router spreads traffic and checks health."""
    server: ServerConfig = ServerConfig()
    """The HTTP servers."""
    ledger: LedgerConfig = LedgerConfig()
    """Where repayments are recorded."""
    settlement: SettlementConfig = SettlementConfig()
    """Asynchronous settlement: callback signing and retries, and how pending payments are held by replicas."""
    admin: AdminConfig = AdminConfig()
    """The admin API."""
    signing: SigningConfig = SigningConfig()
    """Require HMAC-signed payment requests, as a payment platform does."""

    @field_validator("channels")
    @classmethod
    def _unique_codes(cls, value: tuple[ChannelConfig, ...]) -> tuple[ChannelConfig, ...]:
        if not value:
            raise ValueError("must list at least one channel")
        codes = [channel.code for channel in value]
        duplicates = sorted({code for code in codes if codes.count(code) > 1})
        if duplicates:
            raise ValueError(f"channel codes must be unique (got {', '.join(duplicates)} twice)")
        return value

    def async_channels(self) -> frozenset[str]:
        """The codes of the channels whose payments are settled after acceptance."""
        return frozenset(channel.code for channel in self.channels if channel.settlement == "async")

    def channel(self, code: str) -> ChannelConfig | None:
        for channel in self.channels:
            if channel.code == code:
                return channel
        return None

    def money_caps(self, channel: ChannelConfig, moment: datetime) -> Caps:
        """The single, card-daily and user-daily caps of `channel` in force at `moment` on the gateway clock."""
        single, card, user = channel.single_fen, channel.card_daily_fen, self.limits.user_daily_fen
        for override in self.limits.schedule:
            if override.in_force(moment):
                single = override.single_fen or single
                card = override.card_daily_fen or card
                user = override.user_daily_fen or user
        return Caps(single, card, user)

    def rates_at(self, moment: datetime) -> Rates:
        """The per-second caps in force at `moment` on the gateway clock, dynamic limits included."""
        limits = self.limits
        rates = Rates(limits.global_tps, limits.replica_tps, limits.user_tps, limits.burst_ms)
        for override in limits.schedule:
            if override.in_force(moment):
                rates = Rates(
                    override.global_tps or rates.global_tps,
                    override.replica_tps or rates.replica_tps,
                    override.user_tps or rates.user_tps,
                    rates.burst_ms if override.burst_ms is None else override.burst_ms,
                )
        return rates

    def schedules_rates(self) -> bool:
        """Whether some `[[limits.schedule]]` entry changes a per-second cap (else admission needs no clock)."""
        keys = ("global_tps", "replica_tps", "user_tps", "burst_ms")
        return any(getattr(entry, key) is not None for entry in self.limits.schedule for key in keys)

    def user_daily_fen(self, moment: datetime) -> int:
        """The platform's per-user daily cap in force at `moment`."""
        return self.money_caps(self.channels[0], moment).user_daily_fen

    def public_dict(self) -> dict[str, Any]:
        """The config as JSON-able data without its secrets (admin token, notify secret), for run folders."""
        data = self.model_dump(mode="json", by_alias=True)
        data["admin"].pop("token", None)
        data["settlement"].pop("notify_secret", None)
        return data
