"""One answer in surge's terms — status, outcome class, code, Retry-After — whichever API gave it.

The built-in §3 API's answers are read here from their JSON; a target profile's are classified by its rules
(target.py). The Payer's decisions only ever look at what `Answer` holds, so both APIs get the same clients.
A missing response is named TIMEOUT, CONNECTION_ERROR or RESPONSE_TOO_LARGE, never left blank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gevent

from loadtests.generator.auth import no_answer_code
from loadtests.generator.bodies import UNREADABLE_BODY, read_json, scalar_text
from loadtests.generator.http1 import TooLarge
from loadtests.generator.policy import retry_after_s
from loadtests.generator.settlement import accepted_hints
from loadtests.generator.target import Classifier, no_response
from loadtests.generator.transport import Reply
from runfolder.outcomes import ACCEPTED, CONNECTION_ERROR, RESPONSE_TOO_LARGE, TIMEOUT, OutcomeClass, classify


@dataclass(slots=True)
class Answer:
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


def _header(response: Reply, name: str) -> str | None:
    value = response.headers.get(name)
    return None if value is None else str(value)


def _no_answer_code(response: Reply) -> str:
    """Why no answer was read: TIMEOUT, RESPONSE_TOO_LARGE (the body bound, http1.py) or CONNECTION_ERROR."""
    error = response.error
    if isinstance(error, TimeoutError | gevent.Timeout) or "timed out" in str(error).lower():
        return TIMEOUT
    return RESPONSE_TOO_LARGE if isinstance(error, TooLarge) else CONNECTION_ERROR


def read_answer(response: Reply) -> Answer:
    """An answer of the §3 API; a missing response is TIMEOUT, CONNECTION_ERROR or RESPONSE_TOO_LARGE. A body
    that is JSON but cannot be read (bodies.read_json) is classified by the status alone, code UNREADABLE_BODY."""
    status = int(response.status_code or 0)
    if status == 0:
        code = _no_answer_code(response)
        return Answer(0, code, classify(0, code), {}, None)
    data, unreadable = read_json(response.content or b"{}")
    if not isinstance(data, dict):
        data = {}
    if status == ACCEPTED:
        location, wait = accepted_hints(response, data)
        return Answer(
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
        return Answer(
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
    return Answer(status, code, classify(status, code), data, retry_after_s(_header(response, "Retry-After"), data))


def read_target_answer(
    response: Reply, classifier: Classifier, now: float, certificate_expired: bool = False
) -> Answer:
    """An answer of a target's own API, classified by its profile's rules (no suggested plan, no scope)."""
    status = int(response.status_code or 0)
    refused = no_answer_code(response.error, certificate_expired) if status == 0 else None
    if refused is not None:  # a TLS handshake refused on a certificate: the profile's [tls], not the service
        return Answer(0, refused, "error", {}, None)
    if status == 0:
        verdict = no_response(_no_answer_code(response))
    else:
        verdict = classifier.classify(status, response.content, response.headers or {}, now)
    problem = {"code": verdict.code} if verdict.outcome == "declined" else {}
    return Answer(
        status,
        verdict.code,
        verdict.outcome,
        problem,
        verdict.retry_after_s,
        verdict.payment_id,
        unmatched=verdict.unmatched,
        pending=verdict.pending,
    )
