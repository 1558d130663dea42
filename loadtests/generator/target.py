"""Answers classified by a target profile's ordered rules, and the profile compiled for the generator.

Pure and light (no gevent, no Locust) so that rule matching is a unit test. A body that cannot be read
(bodies.read_json) is no JSON, so no `json` rule matches it and the status (and header fields) alone decide,
with UNREADABLE_BODY as the code recorded unless the rule that matched names one; a Retry-After is clamped
(policy.MAX_WAIT_S). The requests themselves are templates.py's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from loadtests.generator.bodies import MISSING, UNREADABLE_BODY, read_json, resolve, scalar_text
from loadtests.generator.policy import header_seconds
from loadtests.generator.templates import CompiledTemplate, RequestBuilder, Values
from loadtests.scenario.credentials import Signer
from loadtests.scenario.profile import TargetProfile
from loadtests.scenario.profile_answers import ResponseRule, SettlePoll, SettleRule
from loadtests.scenario.profile_templates import parse_pointer
from runfolder.outcomes import UNAUTHORIZED, OutcomeClass, classify


@dataclass(frozen=True, slots=True)
class Classified:
    """An answer in surge's terms: the outcome class, the code recorded, Retry-After (s) and the target's id."""

    outcome: OutcomeClass
    code: str
    retry_after_s: float | None
    payment_id: str
    unmatched: bool = False  # no rule of the profile matched: outcome `error`, code HTTP_<status>
    pending: bool = False  # a rule said `pending`: accepted, its final state learned later (outcome `succeeded`)


def _same(found: Any, wanted: Any) -> bool:
    """JSON equality without Python's True == 1: a rule for `true` does not match the number 1."""
    return isinstance(found, bool) is isinstance(wanted, bool) and found == wanted


class _CompiledRule:
    __slots__ = ("code", "headers", "json", "outcome", "payment_id", "pending", "retry_after_header", "statuses")

    def __init__(self, rule: ResponseRule | SettleRule) -> None:
        self.statuses = frozenset(rule.status)
        self.json = tuple(
            (parse_pointer(pointer), tuple(wanted) if isinstance(wanted, list) else (wanted,))
            for pointer, wanted in rule.json_.items()
        )
        self.headers = tuple(
            (name, tuple(wanted) if isinstance(wanted, list) else (wanted,)) for name, wanted in rule.headers.items()
        )
        self.pending = rule.outcome == "pending"
        self.outcome: OutcomeClass = "succeeded" if rule.outcome == "pending" else rule.outcome
        self.code = rule.code
        pointer = rule.payment_id if isinstance(rule, ResponseRule) else None
        self.payment_id = None if pointer is None else parse_pointer(pointer)
        self.retry_after_header = rule.retry_after_header if isinstance(rule, ResponseRule) else None

    def matches(self, status: int, body: Any, headers: Mapping[str, str]) -> bool:
        if status not in self.statuses:
            return False
        for tokens, wanted in self.json:
            found = resolve(body, tokens)
            if found is MISSING or not any(_same(found, value) for value in wanted):
                return False
        for name, values in self.headers:
            value = headers.get(name)
            if value is None or value not in values:
                return False
        return True


class Classifier:
    """The profile's ordered rules; the first that matches decides, none matching is outcome `error`."""

    def __init__(self, profile: TargetProfile) -> None:
        self._rules = tuple(_CompiledRule(rule) for rule in profile.response.rules)
        self._needs_body = any(rule.json or rule.payment_id is not None for rule in self._rules)

    def classify(
        self, status: int, content: bytes | None, headers: Mapping[str, str], now: float | None = None
    ) -> Classified:
        """`status` 0: no response (timeout or connection error, named by the caller)."""
        body: Any = None
        unreadable = False
        if self._needs_body and content:
            body, unreadable = read_json(content)
        for rule in self._rules:
            if rule.matches(status, body, headers):
                found = MISSING if rule.payment_id is None else resolve(body, rule.payment_id)
                wait = None
                if rule.retry_after_header is not None:
                    wait = header_seconds(headers.get(rule.retry_after_header), now)
                code = rule.code or (UNREADABLE_BODY if unreadable else "")
                paid = "" if found is MISSING else scalar_text(found)
                return Classified(rule.outcome, code, wait, paid, pending=rule.pending)
        if status in (401, 403):  # the credentials, not the service: kept apart in the report (UNAUTHORIZED)
            return Classified("error", UNAUTHORIZED, None, "", unmatched=True)
        return Classified("error", UNREADABLE_BODY if unreadable else f"HTTP_{status}", None, "", unmatched=True)


def no_response(code: str) -> Classified:
    """No usable answer: `code` TIMEOUT, CONNECTION_ERROR or RESPONSE_TOO_LARGE, whatever the profile's rules."""
    return Classified(classify(0, code), code, None, "")


SAMPLE_CHARS: Final = 300  # of an answer no rule matched, what the run folder keeps to show the user


def answer_sample(status: int, content: bytes | None, secrets: tuple[str, ...]) -> dict[str, Any]:
    """An answer no response rule matched, as `unmatched.json` keeps it: its status and the start of its body
    (SAMPLE_CHARS, decoded leniently), with every secret value the requests carry replaced — a target that
    echoes a request's token back must not put it in a run folder."""
    text = (content or b"")[: SAMPLE_CHARS * 4].decode("utf-8", "replace")
    for secret in secrets:
        text = text.replace(secret, "[secret]")
    return {
        "status": status,
        "body": text[:SAMPLE_CHARS],
        "cut": len(text) > SAMPLE_CHARS or len(content or b"") > SAMPLE_CHARS * 4,
    }


class StatusPoll:
    """`[settle.poll]` compiled: the status request of a pending payment and the reading of its answer."""

    def __init__(self, spec: SettlePoll, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        templates = spec.templates()
        self.method = spec.method
        self.name = spec.path
        self.first_wait_s = spec.poll_after_ms / 1000.0
        self._path = CompiledTemplate(templates["path"], lambda text: quote(text, safe=""), env)
        self._headers = {name: CompiledTemplate(templates[f"header {name}"], str, env) for name in spec.headers}
        self._rules = tuple(_CompiledRule(rule) for rule in spec.rules)

    def request(self, values: Values) -> tuple[str, str, dict[str, str]]:
        headers = {name: template.render(values) for name, template in self._headers.items()}
        return self.method, self._path.render(values), headers

    def read(self, status: int, content: bytes | None, headers: Mapping[str, str]) -> tuple[str, str]:
        """("succeeded" | "failed" | "" while pending or unmatched, the code)."""
        body, _ = read_json(content) if content else (None, False)
        for rule in self._rules:
            if rule.matches(status, body, headers):
                if rule.pending:
                    return "", ""
                return ("succeeded" if rule.outcome == "succeeded" else "failed"), rule.code
        return "", ""


class TargetApi:
    """A profile compiled for the generator: the request builder and the classifier of its answers."""

    def __init__(
        self, profile: TargetProfile, env: Mapping[str, str] | None = None, signer: Signer | None = None
    ) -> None:
        self.profile = profile
        self.builder = RequestBuilder(profile, env, signer)
        self.classifier = Classifier(profile)
        self.uses_attempt = self.builder.per_attempt
        poll = profile.settle.poll if profile.settle is not None else None
        self.poll = None if poll is None else StatusPoll(poll, env)
