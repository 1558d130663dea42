"""The open-model driver inside one Locust process: the arrival schedule, deferred plan parts, the user pool.

Each process walks its worker's share of the arrival schedule (arrivals.py); a bounded pool of Locust users
claims arrivals in time order, each sleeping until its ticket's intended send time, and pays (payer.py). A
ticket begun more than `late_ms` after its time counts `late`; one no user reaches within DROP_AFTER_S counts
`dropped` and is discarded, so a saturated pool shows up as a number instead of as a queue that silently slows
the arrivals down (which is what a closed-model Locust run does).
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import random
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import gevent
from gevent.lock import Semaphore

from loadtests.generator.auth import Tokens
from loadtests.generator.policy import ClientRetryBudget
from loadtests.generator.population import Payment, Population
from loadtests.generator.recording.recorder import ProcessRecorder
from loadtests.generator.settlement import Settler
from loadtests.generator.target import TargetApi
from loadtests.generator.transport import Transport
from loadtests.scenario.model import Scenario
from loadtests.scenario.trace import TraceArrival
from runfolder.clock import ClusterClock

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
        several seconds): a user first met mid-run costs its arrival ~10 µs of this process's time.

        Then freeze the garbage collector's view of what exists: the modules, the population and the users live to
        the end, and each full collection during the load would walk them all for nothing — 30–70 ms of a stalled
        loop at ~170,000 objects (gc.callbacks at 2,400 arrivals/s), a lag every arrival in that stretch feels."""
        users = self.population.spec.users
        for start in range(0, users, WARM_CHUNK):
            if self._stopped or time.time() > self.t0 - WARM_MARGIN_S:
                break
            for index in range(start, min(users, start + WARM_CHUNK)):
                self.population.user(index)
            gevent.sleep(0)
        if not self._stopped:
            gc.freeze()

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


def drain_s(scenario: Scenario) -> float:
    """After the last arrival: time for in-flight attempts and a quick last retry to end (bounded), and for the
    settlement watchers (`Scenario.settle_tail_s`) when the client watches settlement."""
    return min(10.0, scenario.client.timeout_s + 1.0) + scenario.settle_tail_s()
