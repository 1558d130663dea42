"""Watching payments accepted with 202 until their final state: polling, or a signed callback receiver.

The open model holds: the paying user hands an accepted payment to the `Settler` and is free at once. Poll mode
puts each pending payment's next status GET on the process's one poll timer (ticks.py: the polls due within a
tick share its wake-up), until final or the deadline; callback mode runs one loopback receiver per process
(receiver.py: read in the users' gevent loop, llhttp).

The pending set is bounded (`[client] settle_pending_max`, per process): a payment accepted while it is full is
recorded `unwatched` at once and judged from the ledger alone, so a bank that stops settling cannot make the
generator's memory or greenlets grow without end. Every watcher stops `settle_timeout_s` after the run's last
arrival (plus `scenario.model.SETTLE_GRACE_S`); what is not final then is recorded `processing` (stuck).

An accepted attempt's history row is written when its watching ends, so that duplicates delivered after the
final state count in it (`callback_dups`, `flipped_to`). Only callbacks with a valid `Surge-Signature: sha256=
<hex HMAC-SHA256 of the body>` are acknowledged; the rest are refused (401) and counted, as are bodies that are
not the documented JSON (`settlement/<worker>.json`); a delivery before its 202 was read is kept (`Settler`).
"""

from __future__ import annotations

import hmac
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from loadtests.generator.bodies import MISSING, read_json, resolve, scalar_text
from loadtests.generator.policy import retry_after_s
from loadtests.generator.receiver import Receiver
from loadtests.generator.target import StatusPoll
from loadtests.generator.templates import Values
from loadtests.generator.ticks import Ticks
from loadtests.generator.transport import Reply, Transport
from loadtests.scenario.profile_answers import SettleCallback
from loadtests.scenario.profile_templates import parse_pointer, parse_template
from runfolder.history import Attempt
from runfolder.layout import write_json
from runfolder.outcomes import SETTLED_STATES

POLL_FIRST_S = 0.25  # without a poll_after_ms or Retry-After: the first wait, doubled up to POLL_MAX_S
POLL_MAX_S = 4.0
# Polls due within one tick go out together, on one wake-up of the process: each goes out at most this much after
# its due time (never before it). A tenth of the shortest backoff step; a status is only ever learned a poll
# interval (0.25-4 s, or the server's poll_after_ms) after it changed, and what it adds is measured, not hidden:
# time to final state is the answer's own time (docs/perf/generator-settlement.md has the figures).
POLL_TICK_S = 0.025
EARLY_MAX = 10_000  # deliveries kept for keys not watched (yet): a 202 not read yet, a POST timed out
CALLBACK_PATH = "/surge/callback"


@dataclass(slots=True)
class Watch:
    """One accepted payment: its deferred history row and what the client has learned of it so far."""

    row: Attempt
    status_path: str
    first_wait_s: float | None
    acked: bool = False  # a delivery was acknowledged (callbacks after it are duplicates)
    backoff_s: float = POLL_FIRST_S  # poll mode: the wait before the next poll when the server wishes none

    def learn(self, state: str, code: str, now: float) -> bool:
        """The first final state the client learns is the payment's; a later, different one is a flip. True:
        this one was the first."""
        row = self.row
        if row.settlement in SETTLED_STATES:
            if state != row.settlement and not row.flipped_to:
                row.flipped_to = state
            return False
        row.settlement, row.settle_code, row.final_at = state, code, now
        return True


@dataclass(frozen=True, slots=True)
class CallbackFormat:
    """What a delivery looks like: where its key, state and code sit, which values are final, how it is
    signed and what the receiver answers. The built-in gateway's (`builtin_callbacks`) or a target profile's
    `[settle.callback]` (`target_callbacks`)."""

    key: tuple[str, ...]
    status: tuple[str, ...]
    code: tuple[str, ...] | None
    succeeded: tuple[Any, ...]
    failed: tuple[Any, ...]
    signature_header: str | None  # None: deliveries are not signed
    signature_prefix: str
    secret: bytes
    ack_status: str = "200 OK"
    ack_body: bytes = b""


def builtin_callbacks(secret: str) -> CallbackFormat:
    return CallbackFormat(("idempotency_key",), ("status",), ("code",), ("succeeded",), ("failed",),
                          "Surge-Signature", "sha256=", secret.encode())  # fmt: skip


def target_callbacks(spec: SettleCallback, env: Mapping[str, str]) -> CallbackFormat:
    secret = "".join(value if kind == "text" else env.get(value, "")
                     for kind, value in parse_template(spec.secret, "settle.callback.secret"))  # fmt: skip

    def values(value: Any) -> tuple[Any, ...]:
        return tuple(value) if isinstance(value, list) else (value,)

    return CallbackFormat(
        parse_pointer(spec.key),
        parse_pointer(spec.status),
        None if spec.code is None else parse_pointer(spec.code),
        values(spec.succeeded),
        values(spec.failed),
        spec.signature_header,
        spec.signature_prefix,
        secret.encode(),
        ack_status=f"{spec.ack_status} {HTTPStatus(spec.ack_status).phrase}",
        ack_body=spec.ack_body.encode(),
    )


@dataclass(slots=True)
class ReceiverCounters:
    bad_signature: int = 0
    unknown_key: int = 0
    malformed: int = 0


class Settler:
    """This process's accepted payments until their final state (module docstring).

    A gateway may commit, settle and deliver before its 202 has been read (the bank was faster than the answer), or
    deliver for a POST the client timed out on. So a validly signed delivery for a key not (yet) watched is kept
    (`EARLY_MAX` of them per process, acknowledged like any other) and given to the key's payment when its 202 is
    read. In callback mode the row of an attempt that left the payment's fate open (no answer, a 409 or a 5xx other
    than a 503 shed) or that carried its final state at once (the key sent again after settlement) is held too
    (at most `settle_pending_max` of them) and written at the end: a delivery kept for its key, when no 202 ever
    came, is its outcome as the target gave it (`settlement`, `callback_status`, `final_at`), so the invariants judge
    that key from it instead of as unknown. Only deliveries for a key this process never sent, or past the bound,
    are counted `unknown_key`.
    """

    def __init__(
        self,
        *,
        mode: str,
        deadline: float,
        pending_max: int,
        fail_ratio: float,
        callbacks: CallbackFormat,
        write_row: Callable[[Attempt], None],
        counters_path: Path | None,
        seed: str,
    ) -> None:
        self.mode = mode
        self.transport: Transport | None = None  # the process's connections, handed over by the first payer
        self.deadline = deadline
        self.pending_max = pending_max
        self.fail_ratio = fail_ratio
        self.callbacks = callbacks
        self.status_poll: StatusPoll | None = None  # a target profile's [settle.poll]; None: the built-in API
        self.write_row = write_row
        self.counters_path = counters_path
        self.rng = random.Random(seed)
        self.watches: dict[str, Watch] = {}  # key → every payment accepted in this process
        self.pending = 0  # watched and not yet final: the bounded set
        self.early: dict[str, list[tuple[str, str, bool, float]]] = {}  # key → (state, code, acked, at), unwatched
        self.early_count = 0  # deliveries in `early` (its bound)
        self.held: list[Attempt] = []  # attempts that left the payment open or answered final (module docstring)
        self.held_keys: dict[str, Attempt] = {}  # key → its latest held attempt
        self.counters = ReceiverCounters()
        self.server: Receiver | None = None
        self.notify_url = ""
        self.polls: Ticks[Watch] = Ticks(POLL_TICK_S, self._poll)  # poll mode: every pending payment's next poll
        self._finished = False

    def start(self) -> None:
        """In callback mode: the loopback receiver on a free port (its URL goes into every request body)."""
        if self.mode != "callback":
            return
        self.server = Receiver(self._receive, self.callbacks.signature_header)
        self.server.start()
        self.notify_url = f"http://127.0.0.1:{self.server.port}{CALLBACK_PATH}"

    def watch(self, row: Attempt, location: str, poll_after_s: float | None) -> None:
        """An attempt answered 202: watch it (without blocking the caller) or, the set being full, record it
        unwatched."""
        if self.pending >= self.pending_max or self._finished:
            row.settlement = "unwatched"
            self.write_row(row)
            return
        path = location if location.startswith("/") else f"/v1/repayments/{row.repayment_id}"
        watch = Watch(row, path, poll_after_s)
        self.watches[row.key] = watch
        self._replay(watch)
        if watch.row.settlement in SETTLED_STATES:
            return  # learned before its 202 was read: it never waits
        self.pending += 1  # in callback mode freed by the delivery that makes it final (no greenlet, no timer)
        if self.mode == "poll":
            self._next_poll(watch, watch.first_wait_s if watch.first_wait_s is not None else POLL_FIRST_S)

    def hold(self, row: Attempt) -> bool:
        """Callback mode: keep the row of an attempt that left the payment open or answered its final state at
        once, to be written at the end with what deliveries for its key said; False: write it now."""
        if self.mode != "callback" or self._finished or len(self.held) >= self.pending_max:
            return False
        self.held.append(row)
        self.held_keys[row.key] = row
        return True

    def _replay(self, watch: Watch) -> None:
        """The deliveries kept for this payment's key, in their order; none is learned before its attempt ended."""
        deliveries = self.early.pop(watch.row.key, [])
        self.early_count -= len(deliveries)
        for state, code, acked, at in deliveries:
            self._delivered(watch, state, code, acked=acked, now=max(at, watch.row.done))

    def _ask(self, transport: Transport, watch: Watch) -> tuple[Reply, str, str, float | None, str, str]:
        """One status request: (reply, state, code, the server's wish before the next, method, name)."""
        row, poll = watch.row, self.status_poll
        if poll is None:
            reply = transport.send("GET", watch.status_path, "", {"Accept": "application/json"})
            state, code, hint = _status(reply)
            return reply, state, code, hint, "GET", "/v1/repayments/{id} [poll]"
        values = Values(row.key, row.user_id, row.card_id, row.channel, row.amount_fen, row.attempt,
                        payment_id=row.repayment_id)  # fmt: skip
        method, path, headers = poll.request(values)
        watch.status_path = path
        reply = transport.send(method, path, "", headers)
        state, code = ("", "") if reply.status_code == 0 else poll.read(reply.status_code, reply.content,
                                                                          reply.headers)  # fmt: skip
        return (
            reply,
            state,
            code,
            _poll_after_s({}, retry_after_s(_text(reply, "Retry-After"), {})),
            method,
            f"{poll.name} [poll]",
        )

    def _next_poll(self, watch: Watch, wait: float) -> None:
        """The payment's next status request `wait` seconds from now, on the poll timer; one that would fall past
        the deadline (or the process's end) is not made and the payment leaves the pending set, not final."""
        due = time.time() + wait
        if due >= self.deadline or self._finished:
            self.pending -= 1
            return
        self.polls.at(due, watch)

    def _poll(self, watch: Watch) -> None:
        """One status request (in its own greenlet, started by the poll timer), then the payment's next one. An
        answer that is no answer or not final is polled again within the deadline, as any other."""
        wait: float | None = None  # stays None when the payment is final (or this poll broke): it leaves the set
        try:
            transport = self.transport
            assert transport is not None  # a payer handed it over before its first 202
            sent = time.time()
            reply, state, code, hint, method, name = self._ask(transport, watch)
            done = time.time()
            watch.row.polls += 1
            failure = None if 200 <= reply.status_code < 300 else f"{reply.status_code} poll"
            transport.report(method, watch.status_path, name, reply, sent=sent, done=done, failure=failure,
                             context={"key": watch.row.key})  # fmt: skip
            if state in SETTLED_STATES:
                watch.learn(state, code, done)
                return
            watch.backoff_s = min(POLL_MAX_S, watch.backoff_s * 2)
            wait = hint if hint is not None else watch.backoff_s * (0.9 + 0.2 * self.rng.random())
        finally:
            if wait is None:
                self.pending -= 1
            else:
                self._next_poll(watch, wait)

    def _receive(self, method: str, path: str, signature: str, body: bytes) -> tuple[str, bytes]:
        """One delivery: verified, then acknowledged (200), refused on purpose (500) or refused (401/400);
        the (status line, body) to answer."""
        now = time.time()
        if method != "POST" or path != CALLBACK_PATH:
            return "404 Not Found", b""
        form = self.callbacks
        if form.signature_header is not None:
            expected = form.signature_prefix + hmac.digest(form.secret, body, "sha256").hex()  # one C call
            if not hmac.compare_digest(signature, expected):
                self.counters.bad_signature += 1
                return "401 Unauthorized", b""
        data, _ = read_json(body)
        found_key, found_state = resolve(data, form.key), resolve(data, form.status)
        if found_key is MISSING or found_state is MISSING or not scalar_text(found_key):
            self.counters.malformed += 1
            return "400 Bad Request", b""
        key = scalar_text(found_key)
        state = "succeeded" if found_state in form.succeeded else "failed" if found_state in form.failed else ""
        found_code = MISSING if form.code is None else resolve(data, form.code)
        code = "" if found_code is MISSING else scalar_text(found_code)
        acked = self.rng.random() >= self.fail_ratio
        watch = self.watches.get(key)
        if watch is not None:
            if self._delivered(watch, state, code, acked=acked, now=now):
                self.pending -= 1
        elif self.early_count < EARLY_MAX:
            self.early.setdefault(key, []).append((state, code, acked, now))
            self.early_count += 1
        else:
            self.counters.unknown_key += 1
        if not acked:
            return "500 Internal Server Error", b""
        return form.ack_status, form.ack_body

    def _delivered(self, watch: Watch, state: str, code: str, *, acked: bool, now: float) -> bool:
        """A delivery for a watched payment, counted; True: it made the payment final."""
        row = watch.row
        row.callbacks += 1
        if not row.callback_status and state in SETTLED_STATES:
            row.callback_status = state
        if watch.acked:
            row.callback_dups += 1
        if not acked:
            row.callback_refused += 1
            return False
        watch.acked = True
        return state in SETTLED_STATES and watch.learn(state, code, now)

    def finish(self) -> None:
        """The process's end: every accepted payment's row is written (`processing` when not learned final)."""
        if self._finished:
            return
        self._finished = True
        self.polls.stop()
        if self.server is not None:
            self.server.stop()
        for watch in self.watches.values():
            if watch.row.settlement not in SETTLED_STATES:
                watch.row.settlement = "processing"
            self.write_row(watch.row)
        for key, row in self.held_keys.items():
            if key not in self.watches:  # no 202 came for it: what was delivered is all the target said
                self._replay(Watch(row, "", None))
        for row in self.held:
            self.write_row(row)
        self.counters.unknown_key += self.early_count
        if self.counters_path is not None and self.mode == "callback":
            self.counters_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.counters_path, vars_of(self.counters))


def vars_of(counters: ReceiverCounters) -> dict[str, int]:
    return {"bad_signature": counters.bad_signature, "unknown_key": counters.unknown_key,
            "malformed": counters.malformed}  # fmt: skip


def _status(reply: Reply) -> tuple[str, str, float | None]:
    """(status, code, the server's wish before the next poll in seconds) of a status answer."""
    if not 200 <= reply.status_code < 300:
        return "", "", _poll_after_s({}, retry_after_s(_text(reply, "Retry-After"), {}))
    data, _ = read_json(reply.content or b"{}")
    if not isinstance(data, dict):
        return "", "", None
    hint = retry_after_s(_text(reply, "Retry-After"), {})
    hint = _poll_after_s(data, hint)
    return scalar_text(data.get("status")), scalar_text(data.get("code")), hint


def _text(reply: Reply, name: str) -> str | None:
    value = reply.headers.get(name)
    return None if value is None else str(value)


def accepted_hints(reply: Reply, data: dict[str, Any]) -> tuple[str, float | None]:
    """The Location and the first poll wait of a 202 answer (`poll_after_ms`, else Retry-After)."""
    location = _text(reply, "Location") or ""
    return location, _poll_after_s(data, retry_after_s(_text(reply, "Retry-After"), {}))


def _poll_after_s(data: dict[str, Any], otherwise: float | None) -> float | None:
    """`poll_after_ms` as seconds (at most POLL_MAX_S: a wild value must not park a watcher past its deadline)."""
    millis = data.get("poll_after_ms")
    if isinstance(millis, int | float) and not isinstance(millis, bool) and millis >= 0:
        return min(float(millis) / 1000.0, POLL_MAX_S)
    return None if otherwise is None else min(otherwise, POLL_MAX_S)
