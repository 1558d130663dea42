"""The open-model driver inside one Locust process, and the repaying user's behaviour on top of policy.py.

Each process walks its worker's share of the arrival schedule (arrivals.py); a bounded pool of Locust users
claims arrivals in time order, each sleeping until its ticket's intended send time, and pays. A ticket begun
more than `late_ms` after its time counts `late`; one no user reaches within DROP_AFTER_S counts `dropped` and
is discarded, so a saturated pool shows up as a number instead of as a queue that silently slows the arrivals
down (which is what a closed-model Locust run does).

A payment is one bill: one Idempotency-Key reused on every retry of it, retries paced by policy.py; after a
business decline the scenario's policy may start new payments — today's plan parts now, later parts as tickets
for after the business-day reset, or the same bill on another card — each with its own new key.

The request and the reading of its answer are the built-in §3 API's, or a target profile's (target.py): the
Payer's decisions only ever look at the answer's outcome class, code and Retry-After, so both APIs get the
same clients.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import random
import ssl
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import gevent
from gevent.lock import Semaphore

from loadtests.generator.auth import Tokens, no_answer_code
from loadtests.generator.http1 import TooLarge
from loadtests.generator.policy import (
    MAX_RETRY_AFTER_S,
    PATH,
    ClientRetryBudget,
    DeclineContext,
    backoff_s,
    on_decline,
    request_name,
    retry_after_s,
    should_retry,
)
from loadtests.generator.population import Card, Payment, Population, User
from loadtests.generator.recorder import ProcessRecorder
from loadtests.generator.settlement import Settler, accepted_hints
from loadtests.generator.target import (
    UNREADABLE_BODY,
    Classifier,
    TargetApi,
    Values,
    answer_sample,
    no_response,
    read_json,
    scalar_text,
)
from loadtests.generator.transport import Reply, Transport
from loadtests.scenario.shapes import Scenario
from loadtests.scenario.trace import TraceArrival
from reports.runfolder import (
    ACCEPTED,
    AUTH_CODES,
    CONNECTION_ERROR,
    RESPONSE_TOO_LARGE,
    SETTLED_STATES,
    SIGN_FAILED,
    TIMEOUT,
    TOKEN_EXPIRED,
    UNAUTHORIZED,
    Attempt,
    ClusterClock,
    OutcomeClass,
    classify,
    is_failure,
)

log = logging.getLogger("surge")
DROP_AFTER_S = 1.0
WATCH_S = 0.1  # the watcher wakes this often: stale arrivals are dropped on time, lag is measured between arrivals
WARM_CHUNK = 500  # users built between two yields to the hub while the population is built before t=0
WARM_MARGIN_S = 0.2  # building users stops this long before t=0, so the first arrivals find an idle hub


@dataclass(order=True, slots=True)
class Ticket:
    """An arrival (payment None: the user draws a bill) or a deferred plan part, due at `intended` (unix)."""

    intended: float
    payment: Payment | None = field(default=None, compare=False)
    payment_id: str = field(default="", compare=False)
    part: int = field(default=0, compare=False)
    trace: TraceArrival | None = field(default=None, compare=False)  # what a replayed trace says about the arrival
    starved: bool = field(default=False, compare=False)  # taken late because every user of the pool was busy


class Generator:
    """This process's share of the load: the arrival schedule, the deferred plan parts, and what payers share.

    Free users pull work (`claim`) instead of a scheduler pushing it through a queue: a user that finishes
    claims the earliest arrival nobody has claimed and sleeps until its intended time. Tickets are claimed in
    time order, so no arrival waits while a user sleeps on a later one — the same open model as a scheduler
    greenlet feeding a queue, without its two extra greenlet switches and a timer per arrival (measured at 1,000
    arrivals/s with a bare POST: 53 % of a core instead of 60 %).
    """

    def __init__(
        self,
        scenario: Scenario,
        population: Population,
        clock: ClusterClock,
        recorder: ProcessRecorder,
        arrival_times: Iterator[float],
        *,
        seed: str,
        trace_arrivals: Iterator[TraceArrival] | None = None,
        target: TargetApi | None = None,
        tokens: Tokens | None = None,
        key_prefix: str = "",
        users: int | None = None,
    ) -> None:
        self.scenario = scenario
        self.users = scenario.arrivals.pool if users is None else users  # this process's share of the pool
        self.paying = 0  # users inside Payer.pay now
        self._parts_held = 0  # users that took a deferred plan part and sleep until its time
        self.key_prefix = key_prefix  # the run's own: meta.json `key_prefix`, so a shared ledger can be told apart
        self.population = population
        self.clock = clock
        self.recorder = recorder
        self.t0 = recorder.t0
        self.run_end = self.t0 + scenario.duration_s
        self.hard_stop = self.run_end + drain_s(scenario)
        self.rng = random.Random(seed)
        # Bills from their own stream: retries' jitter (self.rng) differs between client policies, and must not
        # change which bills arrive, so a study's variants meet the same bills in the same order.
        self.bills = random.Random(f"{seed}/bills")
        self.budget = ClientRetryBudget()
        self.target = target  # None: the built-in §3 API
        self.tokens = tokens  # a target profile's [auth.oauth2], shared by the process's users
        self.sign_failure = ""  # the first signing error, logged once
        self._times = arrival_times
        self._specs = trace_arrivals  # in step with arrival_times: one per arrival of a replayed trace
        self._upcoming_spec: TraceArrival | None = None
        self._upcoming = self._next_arrival()
        self._deferred: list[Ticket] = []
        # One release per deferred ticket wakes one user that found nothing to claim: waking every idle user for
        # each plan part (an Event) cost a pool of hundreds a claim each per part, and the generator its timing.
        self._more = Semaphore(0)
        self._stopped = False
        self._claimed: dict[int, float] = {}  # id(ticket) → intended: fresh arrivals claimed, not yet begun
        self._returned: list[Ticket] = []  # claimed by a user Locust then stopped (a rebalance): offered, unbegun
        self._void: set[int] = set()  # id(ticket) of claimed arrivals a new share took away (reshare)
        self._greenlet: gevent.Greenlet[[], None] | None = None
        self.bodies: dict[str, str] = {}  # card id → its request body up to the amount (Payer._builtin_request)
        self.transport: Transport | None = None  # the process's connections, opened by the first user (locustfile)
        self.settler: Settler | None = None  # watches 202-accepted payments ([client] settlement), set by start
        self.tls_context: ssl.SSLContext | None = None  # a target profile's [tls], for the process's connections
        self.certificate_expired = False  # its client certificate is past its end (auth.tls_refused)

    def start(self, settler: Settler | None = None) -> None:
        if self.tokens is not None:
            self.tokens.start()  # the first token is fetched now, before t=0
        self.settler = settler
        if settler is not None:
            settler.start()
        self._greenlet = gevent.spawn(self._watch)
        gevent.spawn(self._warm)

    def _warm(self) -> None:
        """Build the population's users in the time left before t=0 (a lone process has START_LEAD_S, `surge run`
        several seconds): a user first met mid-run costs its arrival ~10 µs of this process's time."""
        users = self.population.spec.users
        for start in range(0, users, WARM_CHUNK):
            if self._stopped or time.time() > self.t0 - WARM_MARGIN_S:
                return
            for index in range(start, min(users, start + WARM_CHUNK)):
                self.population.user(index)
            gevent.sleep(0)

    def stop(self) -> None:
        """No arrival, retry or plan part starts after this; attempts in flight finish.

        Arrivals a user had claimed and was sleeping towards are cancelled: taken back from `offered`, so that
        offered = sent + dropped holds for a run stopped early (they were never due while the run lived).
        """
        self._stopped = True
        self.hard_stop = min(self.hard_stop, time.time())  # Payer starts no attempt that cannot end before it
        for intended in self._claimed.values():
            self.recorder.cancelled(intended)
        self._claimed.clear()
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
        if self.settler is not None:
            self.settler.finish()
        if self.tokens is not None:
            self.tokens.stop()
            counts = self.tokens.counts
            log.info("surge: oauth2 tokens: %d fetched, %d fetches failed, %d renewed after a 401",
                     counts["fetched"], counts["failed"], counts["renewed"])  # fmt: skip

    def defer(self, ticket: Ticket) -> None:
        heapq.heappush(self._deferred, ticket)
        self._more.release()

    def claim(self) -> Ticket | None:
        """The earliest unclaimed arrival or deferred part, or None when nothing is left to claim for now."""
        if self._stopped:
            return None
        now = time.time()
        self._expire(now)
        upcoming = self._upcoming
        if self._returned and (upcoming is None or self._returned[0].intended <= upcoming):
            ticket = heapq.heappop(self._returned)
            self._claimed[id(ticket)] = ticket.intended
            return ticket
        while self._deferred and (upcoming is None or self._deferred[0].intended <= upcoming):
            ticket = heapq.heappop(self._deferred)
            if ticket.intended <= self.hard_stop:
                self._parts_held += 1
                return ticket
        if upcoming is None:
            return None
        spec = self._upcoming_spec
        self._upcoming = self._next_arrival()
        self.recorder.offered(upcoming)
        starved = now - upcoming > self.recorder.late_s and self._pool_full()
        ticket = Ticket(upcoming, trace=spec, starved=starved)
        self._claimed[id(ticket)] = upcoming
        return ticket

    def begin(self, ticket: Ticket, now: float) -> bool:
        """At the ticket's time: count it sent (late past `late_ms`), or dropped when no user reached it within
        DROP_AFTER_S. A fresh arrival a user could take only after it was due (past `late_ms`) while every
        other user of the pool was paying or waiting for an earlier arrival counts `starved` too: the pool ran
        out. One taken in time and begun late, or taken late while users were free (start-up, a stalled
        process), is the generator's own lateness."""
        fresh = ticket.payment is None
        if fresh:
            self._claimed.pop(id(ticket), None)
            if id(ticket) in self._void:
                self._void.discard(id(ticket))
                return False  # another process's now (reshare): taken back from offered already
        else:
            self._parts_held -= 1
        if self._stopped:
            return False  # claimed before the stop: cancelled (and un-offered) by stop()
        starved = ticket.starved
        if now - ticket.intended > DROP_AFTER_S:
            if fresh:
                self.recorder.dropped(ticket.intended, starved=starved)
            return False
        if fresh:
            self.recorder.taken(ticket.intended, now, starved=starved)
        return True

    def release(self, ticket: Ticket) -> None:
        """A user Locust stopped (moved to another process by a rebalance) while it held `ticket`: the next
        free user takes it, so the arrival is neither lost nor offered twice."""
        if ticket.payment is None:
            if self._claimed.pop(id(ticket), None) is not None and id(ticket) not in self._void:
                heapq.heappush(self._returned, ticket)
        else:
            self._parts_held -= 1
            self.defer(ticket)

    def reshare(self, from_unix: float, arrivals: Iterator[float]) -> None:
        """From `from_unix` on, this process's arrivals are `arrivals` (seconds from t=0, rising, a new split of
        the schedule with a worker that joined); what it had claimed from its old share past that instant is
        taken back from `offered` and never begun. Not for a replayed trace (its rows come with their arrivals)."""
        for ticket_id, intended in list(self._claimed.items()):
            if intended >= from_unix:
                del self._claimed[ticket_id]
                self._void.add(ticket_id)
                self.recorder.cancelled(intended)
        kept = [ticket for ticket in self._returned if ticket.intended < from_unix]
        for ticket in self._returned:
            if ticket.intended >= from_unix:
                self.recorder.cancelled(ticket.intended)
        self._returned = kept
        heapq.heapify(self._returned)
        from_s = from_unix - self.t0
        old = self._times
        self._times = itertools.chain(
            itertools.takewhile(lambda t: t < from_s, old), itertools.dropwhile(lambda t: t < from_s, arrivals)
        )
        if self._upcoming is not None and self._upcoming >= from_unix:
            self._upcoming = self._next_arrival()

    def idle(self, timeout_s: float) -> None:
        """Nothing to claim: wait for a deferred ticket (or the timeout) instead of polling."""
        self._more.acquire(timeout=timeout_s)

    def _next_arrival(self) -> float | None:
        upcoming = next(self._times, None)
        if self._specs is not None:
            self._upcoming_spec = None if upcoming is None else next(self._specs)
        return None if upcoming is None else self.t0 + upcoming

    def _expire(self, now: float) -> None:
        """Arrivals no user claimed within DROP_AFTER_S are offered and dropped now, so the windows show them
        on time even when every user is stuck in a slow request."""
        while self._upcoming is not None and self._upcoming < now - DROP_AFTER_S:
            self.recorder.offered(self._upcoming)
            self.recorder.dropped(self._upcoming, starved=self._pool_full())
            self._upcoming = self._next_arrival()

    def _pool_full(self) -> bool:
        """Every user but (at most) one is paying or holds an earlier arrival or plan part: the pool, not the
        process, is what an arrival due now waits for."""
        return self.paying + len(self._claimed) + self._parts_held >= self.users - 1

    def _watch(self) -> None:
        """Wakes every WATCH_S until the hard stop: drops what nobody claimed, and measures this process's
        scheduling lag even when no arrival is due (the users measure it at each arrival)."""
        while time.time() < self.hard_stop:
            wake = time.time() + WATCH_S
            gevent.sleep(WATCH_S)
            now = time.time()
            self.recorder.lag.record(max(0.0, now - wake) * 1000.0)
            self._expire(now)


def new_key(prefix: str = "") -> str:
    """32 characters: the run's `prefix`, then random hex — an Idempotency-Key (or payment id) no one else will
    use, and one `surge verify` can attribute to its run even on a ledger other runs wrote to."""
    return prefix + os.urandom(16).hex()[len(prefix) :]


def drain_s(scenario: Scenario) -> float:
    """After the last arrival: time for in-flight attempts and a quick last retry to end (bounded), and for the
    settlement watchers (`Scenario.settle_tail_s`) when the client watches settlement."""
    return min(10.0, scenario.client.timeout_s + 1.0) + scenario.settle_tail_s()


@dataclass
class _Job:
    card: Card
    amount_fen: int
    part: int
    intended: float


@dataclass(slots=True)
class _Answer:
    """One answer in surge's terms, whichever API gave it (the built-in §3 one or a target profile's)."""

    status: int
    code: str
    outcome: OutcomeClass
    problem: dict[str, Any]
    wait_s: float | None  # the server's Retry-After, in seconds
    repayment_id: str = ""
    replica: str = ""
    business_date: str = ""
    replayed: bool = False
    pending: bool = False  # a target profile's rule said `pending`: accepted, settled later
    final_state: str = ""  # succeeded / failed: the answer carried an async payment's final state
    final_code: str = ""
    location: str = ""  # a 202's Location (the status path)
    poll_after_s: float | None = None  # a 202's poll_after_ms / Retry-After
    unmatched: bool = False  # a target's answer no response rule of its profile matched


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    name: str
    body: str
    headers: dict[str, str]


class Payer:
    """One user's behaviour for one ticket: pay, retry with the same key, then apply the decline policy."""

    def __init__(self, generator: Generator, transport: Transport) -> None:
        self.gen = generator
        self.transport = transport
        if generator.settler is not None and generator.settler.transport is None:
            generator.settler.transport = transport

    def pay(self, ticket: Ticket) -> None:
        self.gen.paying += 1
        try:
            self._pay(ticket)
        finally:
            self.gen.paying -= 1

    def _pay(self, ticket: Ticket) -> None:
        gen = self.gen
        if ticket.payment is not None:
            payment = ticket.payment
        elif ticket.trace is not None:
            payment = gen.population.replayed(ticket.trace, gen.bills)
        else:
            payment = gen.population.draw(gen.bills)
        payment_id = ticket.payment_id or new_key()
        jobs = deque([_Job(payment.card, payment.amount_fen, ticket.part, ticket.intended)])
        tried: set[str] = set()
        while jobs:
            job = jobs.popleft()
            problem = self._one_payment(payment_id, payment.user, job)
            if problem is None or job.part != 0:
                continue  # done, or a plan part declined again: a real client stops chasing here
            now = time.time()
            ctx = DeclineContext(payment.user, job.card, now, gen.run_end, gen.clock, tried)
            decision = on_decline(gen.scenario.client.policy, problem, ctx)
            tried.add(job.card.card_id)
            if decision.followed_plan:
                gen.recorder.plan_followed(now)
            if decision.card is not None:
                jobs.append(_Job(decision.card, job.amount_fen, 0, now))
            jobs.extend(_Job(job.card, part.amount_fen, part.part, now) for part in decision.now)
            for part in decision.later:
                later = Payment(payment.user, job.card, part.amount_fen)
                gen.defer(Ticket(part.unix, later, payment_id, part.part))

    def _one_payment(self, payment_id: str, user: User, job: _Job) -> dict[str, Any] | None:
        """Attempts under one key until an answer that ends it; the problem body if it was a business decline."""
        gen = self.gen
        timeout_s = gen.scenario.client.timeout_s
        key = new_key(gen.key_prefix)
        target = gen.target
        notify_url = "" if gen.settler is None else gen.settler.notify_url
        values = None if target is None else Values(key, user.user_id, job.card.card_id, job.card.channel,
                                                    job.amount_fen, 1, notify_url=notify_url)  # fmt: skip
        request = self._builtin_request(key, user, job) if values is None else None
        intended = job.intended
        gen.budget.on_first_attempt(intended)
        attempt = 0
        for retry in range(gen.scenario.client.max_retries + 1):
            attempt += 1
            sent = time.time()
            if sent + timeout_s > gen.hard_stop:
                return None  # it could not end before the run does; unsent, so it is not in the history
            if values is None:
                assert request is not None
                answer, row = self._attempt(request, payment_id, key, attempt, user, job, intended, sent)
            else:
                answer, row = self._target_attempt(values, payment_id, attempt, user, job, intended, sent)
                if answer.code == TOKEN_EXPIRED:  # one refresh, one re-send of this attempt (same key), counted
                    attempt += 1
                    sent = time.time()
                    if sent + timeout_s > gen.hard_stop:
                        return None
                    answer, row = self._target_attempt(values, payment_id, attempt, user, job, intended, sent)
            if (answer.status == ACCEPTED or answer.pending) and gen.settler is not None:
                gen.settler.watch(row, answer.location, answer.poll_after_s)  # its watcher writes the row
                return None
            if answer.outcome == "succeeded":
                return None
            if answer.outcome == "declined":
                return answer.problem
            if answer.code in AUTH_CODES:
                return None  # credentials do not heal by retrying: the profile is wrong (docs/targets.md)
            if not should_retry(answer.status, answer.outcome) or retry >= gen.scenario.client.max_retries:
                return None
            wish = answer.wait_s
            if wish is not None and wish > MAX_RETRY_AFTER_S:
                return None
            intended = row.done + backoff_s(retry + 1, wish, gen.rng)
            if intended + timeout_s > gen.hard_stop or not gen.budget.try_spend(row.done):
                return None
            gevent.sleep(max(0.0, intended - time.time()))
        return None

    def _target_attempt(
        self, values: Values, payment_id: str, attempt: int, user: User, job: _Job, intended: float, sent: float
    ) -> tuple[_Answer, Attempt]:
        """One attempt at a target profile's API: a token, the request built and signed afresh, then sent; an
        attempt without a token (AUTH_FAILED) or that could not be signed (SIGN_FAILED) is recorded unsent."""
        gen = self.gen
        target, tokens = gen.target, gen.tokens
        assert target is not None
        token = ""
        if tokens is not None:
            found = tokens.current(gen.scenario.client.timeout_s)
            if found is None:
                code = tokens.failure_code
                return self._unsent(code, payment_id, values.key, attempt, user, job, intended, sent)
            token = found
        if attempt != values.attempt:
            values = replace(values, attempt=attempt)
        try:
            built = target.builder.build(values, token)
        except Exception as exc:  # a user's signing function may raise anything: the attempt is SIGN_FAILED
            if not gen.sign_failure:
                gen.sign_failure = exc.__class__.__name__
                log.error("surge: signing failed (%s); unsigned attempts count SIGN_FAILED", gen.sign_failure)
            return self._unsent(SIGN_FAILED, payment_id, values.key, attempt, user, job, intended, sent)
        request = _Request(built.method, built.path, target.builder.name, built.body, built.headers)
        return self._attempt(request, payment_id, values.key, attempt, user, job, intended, sent, token)

    def _unsent(
        self, code: str, payment_id: str, key: str, attempt: int, user: User, job: _Job, intended: float, sent: float
    ) -> tuple[_Answer, Attempt]:
        """An attempt the credentials stopped before it was sent: a history row (status 0, outcome error)."""
        answer = _Answer(0, code, "error", {}, None)
        self.gen.recorder.sending()
        row = _row(answer, payment_id, key, attempt, user, job, intended, sent, time.time())
        self.gen.recorder.attempt(row, answer.outcome)
        return answer, row

    def _builtin_request(self, key: str, user: User, job: _Job) -> _Request:
        """The §3 request. Its body is exactly what json.dumps writes, but the part before the amount is made once
        per card: json.dumps per attempt cost more than surge's whole recording of the attempt."""
        card = job.card
        prefix = self.gen.bodies.get(card.card_id)
        if prefix is None:
            fields = {"user_id": user.user_id, "card_id": card.card_id, "channel": card.channel}
            settler = self.gen.settler
            if settler is not None and settler.notify_url:
                fields["notify_url"] = settler.notify_url
            prefix = self.gen.bodies[card.card_id] = json.dumps(fields)[:-1] + ', "amount_fen": '
        headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
        return _Request("POST", PATH, PATH, f"{prefix}{job.amount_fen}}}", headers)

    def _attempt(
        self,
        request: _Request,
        payment_id: str,
        key: str,
        attempt: int,
        user: User,
        job: _Job,
        intended: float,
        sent: float,
        token: str | None = None,
    ) -> tuple[_Answer, Attempt]:
        """`token`: the access token the request carries, so that a 401 to an expired one is told apart."""
        self.gen.recorder.sending()
        target = self.gen.target
        reply = self.transport.send(request.method, request.path, request.body, request.headers)
        done = time.time()
        if target is None:
            answer = _read(reply)
        else:
            answer = _read_target(reply, target.classifier, done, self.gen.certificate_expired)
        tokens = self.gen.tokens
        if token and tokens is not None and reply.status_code not in (0, 401, 403):
            tokens.accepted(token)
        if (
            token
            and tokens is not None
            and answer.code == UNAUTHORIZED
            and reply.status_code == 401
            and tokens.expired(token)
            and tokens.renew(token, self.gen.scenario.client.timeout_s) is not None
        ):
            answer.code = TOKEN_EXPIRED
        row = _row(answer, payment_id, key, attempt, user, job, intended, sent, done)
        settler = self.gen.settler
        if settler is not None and answer.final_state in SETTLED_STATES:  # learned at once, nothing to watch
            row.settlement, row.settle_code, row.final_at = answer.final_state, answer.final_code, done
        watched = (answer.status == ACCEPTED or answer.pending) and settler is not None
        held = not watched and settler is not None and _held(answer) and settler.hold(row)
        self.gen.recorder.attempt(row, answer.outcome, deferred=watched or held)
        if answer.unmatched and 200 <= answer.status < 300 and target is not None and not self.gen.recorder.sampled:
            self.gen.recorder.sample_unmatched(answer_sample(answer.status, reply.content, target.builder.secrets))
        failure = f"{answer.status} {answer.code}".strip() if is_failure(answer.outcome) else None
        context = {"intended": intended, "attempt": attempt, "part": job.part, "payment_id": payment_id, "key": key,
                   "outcome": answer.outcome}  # fmt: skip
        name = request_name(attempt, job.part, request.name)
        self.transport.report(
            request.method, request.path, name, reply, sent=sent, done=done, failure=failure, context=context
        )
        return answer, row


def _row(
    answer: _Answer,
    payment_id: str,
    key: str,
    attempt: int,
    user: User,
    job: _Job,
    intended: float,
    sent: float,
    done: float,
) -> Attempt:
    """The history row of one attempt."""
    return Attempt(
        payment_id=payment_id,
        key=key,
        attempt=attempt,
        user_id=user.user_id,
        card_id=job.card.card_id,
        channel=job.card.channel,
        amount_fen=job.amount_fen,
        intended=intended,
        sent=sent,
        done=done,
        status=answer.status,
        code=answer.code,
        outcome=answer.outcome,
        repayment_id=answer.repayment_id,
        replica=answer.replica,
        business_date=answer.business_date,
        replayed=answer.replayed,
        part=job.part,
    )


def _held(answer: _Answer) -> bool:
    """An attempt whose row the settler holds in callback mode (settlement.py): the answer left the payment's fate
    open (none, a 409 in flight, a 5xx other than a 503 shed before execution) or carried its final state."""
    status = answer.status
    return status in (0, 409) or (status >= 500 and status != 503) or answer.final_state in SETTLED_STATES


def _header(response: Reply, name: str) -> str | None:
    value = response.headers.get(name)
    return None if value is None else str(value)


def _no_answer_code(response: Reply) -> str:
    """Why no answer was read: TIMEOUT, RESPONSE_TOO_LARGE (the body bound, http1.py) or CONNECTION_ERROR."""
    error = response.error
    if isinstance(error, TimeoutError | gevent.Timeout) or "timed out" in str(error).lower():
        return TIMEOUT
    return RESPONSE_TOO_LARGE if isinstance(error, TooLarge) else CONNECTION_ERROR


def _read(response: Reply) -> _Answer:
    """An answer of the §3 API; a missing response is TIMEOUT, CONNECTION_ERROR or RESPONSE_TOO_LARGE. A body
    that is JSON but cannot be read (target.read_json) is classified by the status alone, code UNREADABLE_BODY."""
    status = int(response.status_code or 0)
    if status == 0:
        code = _no_answer_code(response)
        return _Answer(0, code, classify(0, code), {}, None)
    data, unreadable = read_json(response.content or b"{}")
    if not isinstance(data, dict):
        data = {}
    if status == ACCEPTED:
        location, wait = accepted_hints(response, data)
        return _Answer(
            status,
            "",
            "succeeded",
            {},
            None,
            repayment_id=scalar_text(data.get("repayment_id")),
            replica=scalar_text(data.get("replica")) or scalar_text(_header(response, "X-Replica")),
            replayed=(_header(response, "Idempotent-Replayed") or "").lower() == "true",
            location=location,
            poll_after_s=wait,
        )
    if 200 <= status < 300:
        return _Answer(
            status,
            UNREADABLE_BODY if unreadable else "",
            "succeeded",
            {},
            None,
            repayment_id=scalar_text(data.get("repayment_id")),
            replica=scalar_text(data.get("replica")) or scalar_text(_header(response, "X-Replica")),
            business_date=scalar_text(data.get("business_date")),
            replayed=(_header(response, "Idempotent-Replayed") or "").lower() == "true",
            # an async payment asked again after settlement: 200 with its status document (a final state)
            final_state=scalar_text(data.get("status")) if status == 200 else "",
            final_code=scalar_text(data.get("code")) if status == 200 else "",
        )
    code = UNREADABLE_BODY if unreadable else scalar_text(data.get("code"))
    return _Answer(status, code, classify(status, code), data, retry_after_s(_header(response, "Retry-After"), data))


def _read_target(response: Reply, classifier: Classifier, now: float, certificate_expired: bool = False) -> _Answer:
    """An answer of a target's own API, classified by its profile's rules (no suggested plan, no scope)."""
    status = int(response.status_code or 0)
    refused = no_answer_code(response.error, certificate_expired) if status == 0 else None
    if refused is not None:  # a TLS handshake refused on a certificate: the profile's [tls], not the service
        return _Answer(0, refused, "error", {}, None)
    if status == 0:
        verdict = no_response(_no_answer_code(response))
    else:
        verdict = classifier.classify(status, response.content, response.headers or {}, now)
    problem = {"code": verdict.code} if verdict.outcome == "declined" else {}
    return _Answer(
        status,
        verdict.code,
        verdict.outcome,
        problem,
        verdict.retry_after_s,
        verdict.payment_id,
        unmatched=verdict.unmatched,
        pending=verdict.pending,
    )
