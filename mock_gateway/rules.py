"""The business rules of a repayment: decide (pay or decline), the decline's problem document with its
suggested plan, and the cheap guess that lets an obvious decline skip the bank. Pure: no HTTP, no I/O.

The ledger calls `make_decider(config, replica)` inside its transaction, with the authoritative totals no other
writer can change meanwhile; the replica's request path calls `obvious_decline` earlier with its last view of
the totals. The caps arithmetic and the plan itself live in `quotas.py`; this module turns them into answers.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import date, datetime
from typing import NamedTuple, Protocol

from mock_gateway.clock import business_date, resets_at
from mock_gateway.config import ChannelConfig, GatewayConfig
from mock_gateway.errors import DailyLimitExceeded, LimitExceeded, SingleLimitExceeded, ValidationFailed
from mock_gateway.quotas import Caps, Decline, Usage, check, remaining
from mock_gateway.validation import Charge, show


class Decision(NamedTuple):
    """What the business rules answered; `repayment_id` is set only when money moves."""

    status: int
    body: str
    repayment_id: str | None


class Decide(Protocol):
    def __call__(self, charge: Charge, usage: Usage, moment: datetime) -> Decision: ...


def caps_for(config: GatewayConfig, channel_code: str, moment: datetime) -> Caps:
    """The caps a charge on `channel_code` is held to at `moment` on the gateway clock, dynamic limits
    (`limits.schedule`) included (the channel is validated before a charge exists)."""
    channel = config.channel(channel_code)
    if channel is None:
        raise ValidationFailed([("channel", f"unknown channel {show(channel_code)}")])
    return config.money_caps(channel, moment)


def make_decider(config: GatewayConfig, replica: str) -> Decide:
    """The rule applied inside the ledger transaction, on totals no other writer can change meanwhile."""

    poll_after_ms = {channel.code: poll_after(channel) for channel in config.channels if channel.settlement == "async"}

    def decide(charge: Charge, usage: Usage, moment: datetime) -> Decision:
        caps = caps_for(config, charge.channel, moment)  # the caps in force at the moment of the charge
        today = business_date(moment)
        decline = check(charge.amount_fen, caps, usage, today)
        if decline is not None:
            error = decline_error(decline, charge, moment)
            return Decision(error.status, json.dumps(error.body()), None)
        repayment_id = new_repayment_id()
        left = remaining(caps, Usage(usage.card_fen + charge.amount_fen, usage.user_fen + charge.amount_fen))
        body = {
            "repayment_id": repayment_id,
            "status": "succeeded",
            "user_id": charge.user_id,
            "card_id": charge.card_id,
            "channel": charge.channel,
            "amount_fen": charge.amount_fen,
            "business_date": today.isoformat(),
            "replica": replica,
            "remaining": {"card_fen": left.card_fen, "user_fen": left.user_fen},
        }
        poll_ms = poll_after_ms.get(charge.channel)
        if poll_ms is not None:
            # Accepted: the day's caps are reserved now (the row counts in the totals) and released if the bank
            # refuses; the bank settles later.
            body["status"] = "processing"
            body["poll_after_ms"] = poll_ms
            return Decision(202, json.dumps(body), repayment_id)
        return Decision(201, json.dumps(body), repayment_id)

    return decide


def poll_after(channel: ChannelConfig) -> int:
    """When a client should first ask for an accepted payment's state: the bank's median settlement delay,
    at least 100 ms (a client polling faster only loads the gateway)."""
    return max(100, round(channel.settle_ms.median))


def obvious_decline(charge: Charge, caps: Caps, guess: tuple[str, Usage] | None, today: date) -> bool:
    """A cheap guess from the cap table and a last known (business day, usage); may under-estimate, never
    decides: the ledger step re-checks on the authoritative totals."""
    if charge.amount_fen > caps.single_fen:
        return True
    if guess is None:
        return False
    day, usage = guess
    return day == today.isoformat() and check(charge.amount_fen, caps, usage, today) is not None


def new_repayment_id() -> str:
    """`rp_` + 32 hex digits, time-ordered like a UUIDv7 (microseconds, then 72 random bits): new ids land at the
    end of the primary-key B-tree instead of on a random page, one page less to write per commit."""
    return f"rp_{time.time_ns() // 1000:014x}{secrets.token_hex(9)}"


def decline_error(decline: Decline, charge: Charge, moment: datetime) -> LimitExceeded:
    """The 422 problem of a business decline, with the suggested plan (empty when no plan fits)."""
    plan = [part.as_json() for part in decline.plan]
    advice = "pay it as the suggested plan" if plan else "no plan within the next month fits every cap"
    if decline.scope == "single":
        return SingleLimitExceeded(
            f"amount_fen {charge.amount_fen} is over channel {charge.channel}'s per-transaction limit of "
            f"{decline.limit_fen} fen; {advice}",
            extra={"limit_fen": decline.limit_fen, "suggested_plan": plan},
        )
    subject = f"card {charge.card_id!r}" if decline.scope == "card" else f"user {charge.user_id!r}"
    return DailyLimitExceeded(
        f"{subject} may repay {decline.limit_fen} fen a day and has {decline.remaining_fen} fen left today, "
        f"less than amount_fen {charge.amount_fen}; {advice}",
        extra={
            "scope": decline.scope,
            "limit_fen": decline.limit_fen,
            "remaining_fen": decline.remaining_fen,
            "resets_at": resets_at(moment).isoformat(),
            "suggested_plan": plan,
        },
    )
