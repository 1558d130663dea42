"""The repaying user's behaviour for one ticket, on top of policy.py: pay, retry under one key, apply the policy.

A payment is one bill: one Idempotency-Key reused on every retry of it, retries paced by policy.py; after a
business decline the scenario's policy may start new payments — today's plan parts now, later parts as tickets
for after the business-day reset, or the same bill on another card — each with its own new key. The request is
the built-in §3 API's or a target profile's (templates.py, signed and with a token when the profile says so);
either way each attempt is recorded once, as a history row and in Locust's statistics.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import gevent

from loadtests.generator.answers import Answer, read_answer, read_target_answer
from loadtests.generator.driver import Generator, Ticket
from loadtests.generator.policy import (
    MAX_RETRY_AFTER_S,
    PATH,
    DeclineContext,
    backoff_s,
    on_decline,
    request_name,
    should_retry,
)
from loadtests.generator.population import Card, Payment, User
from loadtests.generator.target import answer_sample
from loadtests.generator.templates import Values
from loadtests.generator.transport import Transport
from runfolder.history import Attempt
from runfolder.outcomes import (
    ACCEPTED,
    AUTH_CODES,
    SETTLED_STATES,
    SIGN_FAILED,
    TOKEN_EXPIRED,
    UNAUTHORIZED,
    is_failure,
)

log = logging.getLogger("surge")


def new_key(prefix: str = "") -> str:
    """32 characters: the run's `prefix`, then random hex — an Idempotency-Key (or payment id) no one else will
    use, and one `surge verify` can attribute to its run even on a ledger other runs wrote to."""
    return prefix + os.urandom(16).hex()[len(prefix) :]


@dataclass
class _Job:
    card: Card
    amount_fen: int
    part: int
    intended: float


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
    ) -> tuple[Answer, Attempt]:
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
    ) -> tuple[Answer, Attempt]:
        """An attempt the credentials stopped before it was sent: a history row (status 0, outcome error)."""
        answer = Answer(0, code, "error", {}, None)
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
    ) -> tuple[Answer, Attempt]:
        """`token`: the access token the request carries, so that a 401 to an expired one is told apart."""
        self.gen.recorder.sending()
        target = self.gen.target
        reply = self.transport.send(request.method, request.path, request.body, request.headers)
        done = time.time()
        if target is None:
            answer = read_answer(reply)
        else:
            answer = read_target_answer(reply, target.classifier, done, self.gen.certificate_expired)
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
    answer: Answer,
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


def _held(answer: Answer) -> bool:
    """An attempt whose row the settler holds in callback mode (settlement.py): the answer left the payment's fate
    open (none, a 409 in flight, a 5xx other than a 503 shed before execution) or carried its final state."""
    status = answer.status
    return status in (0, 409) or (status >= 500 and status != 503) or answer.final_state in SETTLED_STATES
