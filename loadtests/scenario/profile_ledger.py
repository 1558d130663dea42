"""A target profile's `[ledger]`: the one read-only query surge runs against the team's database after the load,
so that the money invariants are judged from what the target recorded rather than from what the client saw.

The URL's scheme and the query's single statement are checked here, before anything starts; the query itself
runs in loadtests.orchestration.target_ledger. A password in the URL is never written or printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pydantic import Field, field_validator

from loadtests.scenario.parts import Strict
from loadtests.scenario.profile_templates import TOKEN, WHOLE_ENV, Scalar

DATABASE_SCHEMES = frozenset({"postgresql", "postgres", "mysql", "sqlite"})
DEFAULT_LEDGER_TIMEOUT_S = 60.0


class LedgerCaps(Strict):
    card_daily_fen: int | None = Field(default=None, gt=0)
    """A card's cap per business day, in fen, for every channel; unset: not checked."""
    user_daily_fen: int | None = Field(default=None, gt=0)
    """A user's cap per business day, in fen, over all cards; unset: not checked."""


class LedgerStatus(Strict):
    """How the ledger query's `status` values map onto processing / succeeded / failed."""

    processing: list[Scalar] = Field(default_factory=list)
    """Values meaning the payment is not final yet."""
    succeeded: list[Scalar] = Field(default_factory=list)
    """Values meaning it settled (money moved)."""
    failed: list[Scalar] = Field(default_factory=list)
    """Values meaning it failed (no money)."""

    def state(self, value: Any) -> str:
        """processing / succeeded / failed of one `status` value; ValueError when the mapping lacks it."""
        for name in ("processing", "succeeded", "failed"):
            if value in getattr(self, name):
                return name
        raise ValueError(f"status {value!r} is not in [ledger.status]")


class LedgerSpec(Strict):
    url: str = Field(min_length=1)
    """The database URL (postgresql://, mysql:// or sqlite:///); ${NAME} expanded (percent-encoded inside the URL,
    so a password may hold `@`, `/` or `?`; or the whole URL from one variable: `"${DATABASE_URL}"`); its password
    never written or printed."""
    query: str = Field(min_length=1)
    """One read-only SELECT returning `key`, `card_id`, `user_id`, `amount_fen`, `business_date` (and optionally
    `payment_id`, `channel`), run once after the load; no `;` but a trailing one."""
    timeout_s: float = Field(default=DEFAULT_LEDGER_TIMEOUT_S, gt=0, le=3600)
    """The longest the query may run (the database's statement timeout); past it the run ends with exit 3."""
    caps: LedgerCaps = LedgerCaps()
    """The caps over_cap is checked against; without any, over_cap is unknown."""
    status: LedgerStatus | None = None
    """With a `status` column in the query: which of its values mean processing, succeeded and failed (only
    succeeded rows are money); required when the query returns `status`, checked when the rows are read."""

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not WHOLE_ENV.fullmatch(value.strip()):  # a URL from one variable is checked once expanded
            check_database_scheme(value)
        return value

    @field_validator("query")
    @classmethod
    def _one_statement(cls, value: str) -> str:
        return single_statement(value)


def check_database_scheme(url: str) -> None:
    """ValueError unless `url` is a postgresql://, mysql:// or sqlite:/// URL."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in DATABASE_SCHEMES:
        raise ValueError(f"'url' must be a postgresql://, mysql:// or sqlite:/// URL (got scheme {scheme!r})")


def single_statement(query: str) -> str:
    """`query` without its trailing `;`; ValueError if a `;` is left, since a `;` could end the SELECT and start
    a write (`SELECT …; COMMIT; DROP TABLE …`). No SQL is parsed: a `;` inside a string literal or a comment is
    refused too (write it as CHR(59))."""
    statement = query.strip().rstrip(";").rstrip()
    if ";" in statement:
        raise ValueError("one statement only: the query holds a ';' before its end")
    if not statement:
        raise ValueError("the query is empty")
    return statement


def expand_url(url: str, env: Mapping[str, str]) -> str:
    """A database URL with ${NAME} expanded: a variable that is the whole URL as it is, one inside the URL
    percent-encoded, so that a password holding `@`, `:`, `/`, `?` or `#` stays the password (the URL parser
    decodes it) instead of splitting the URL and showing half of itself where the password is masked."""
    whole = WHOLE_ENV.fullmatch(url.strip())
    if whole:
        return env.get(whole.group(1), "")
    return TOKEN.sub(
        lambda match: quote(env.get(match.group(1), ""), safe="") if match.group(1) else match.group(0), url
    )
