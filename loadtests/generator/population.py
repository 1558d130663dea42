"""Seeded synthetic borrowers: users, their cards on the configured bank channels, and festival-sized bills.

Everything is a pure function of (seed, index), so user 42 has the same cards in every worker process and in
every rerun — the invariant checks and a rerun after a fix see the same people. Bills are lognormal, pinned by
the scenario's median and p99: a p99 above the channels' card limits is what makes SINGLE/DAILY_LIMIT_EXCEEDED
declines (and their split plans) appear as they do after a festival.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from loadtests.scenario.parts import Population as PopulationSpec
from loadtests.scenario.trace import TraceArrival

log = logging.getLogger("surge")

Z_99 = 2.3263478740408408  # the standard normal's 99th percentile


@dataclass(frozen=True, slots=True)
class Card:
    card_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    cards: tuple[Card, ...]


@dataclass(frozen=True, slots=True)
class Payment:
    """One bill to repay: what a ticket turns into when a user takes it."""

    user: User
    card: Card
    amount_fen: int


class Population:
    """The scenario's users; `draw` picks who repays next with the caller's RNG (one per generator process)."""

    def __init__(self, spec: PopulationSpec, channels: Sequence[str], seed: int) -> None:
        if not channels:
            raise ValueError("a population needs at least one channel")
        self.spec = spec
        self.channels = tuple(channels)
        self.seed = seed
        self._mu = math.log(spec.bill_fen.median)
        self._sigma = math.log(spec.bill_fen.p99 / spec.bill_fen.median) / Z_99
        self._users: dict[int, User] = {}  # seeding a Random per user costs more than an HTTP call: build once
        self._unknown_channels: set[str] = set()

    def user(self, index: int) -> User:
        """User `index`, the same in every process: 1..N cards on distinct channels where there are enough."""
        user = self._users.get(index)
        if user is None:
            user = self._users[index] = self._build_user(index)
        return user

    def _build_user(self, index: int) -> User:
        """Cards from a hash of (seed, index): as deterministic as a seeded Random, and 50x cheaper to set up."""
        digest = hashlib.blake2b(f"{self.seed}/user/{index}".encode(), digest_size=16).digest()
        bits = int.from_bytes(digest, "big")
        low, high = self.spec.cards_per_user
        bits, extra = divmod(bits, high - low + 1)
        free = list(self.channels)
        channels: list[str] = []
        for _ in range(low + extra):
            pool = free or list(self.channels)  # distinct banks while there are enough
            bits, pick = divmod(bits, len(pool))
            channels.append(pool.pop(pick) if free else pool[pick])
        user_id = f"u{index:06d}"
        return User(user_id, tuple(Card(f"{user_id}-c{k + 1}", channel) for k, channel in enumerate(channels)))

    def bill(self, rng: random.Random) -> int:
        """A bill in fen, lognormal with the spec's median and p99; never below one fen."""
        return max(1, round(rng.lognormvariate(self._mu, self._sigma)))

    def draw(self, rng: random.Random) -> Payment:
        user = self.user(rng.randrange(self.spec.users))
        return Payment(user, rng.choice(user.cards), self.bill(rng))

    def replayed(self, arrival: TraceArrival, rng: random.Random) -> Payment:
        """A replayed trace row as a payment: what the trace says (pseudonymous user and card, channel, amount),
        the population for what it does not. A card without its user is its own user; a user without a card
        pays from one card of its own; a channel the gateway does not have is mapped onto one it has (by a hash
        of the card, so the same card stays on the same bank), with one warning per channel."""
        channel = self._known(arrival.channel)
        amount = arrival.amount_fen if arrival.amount_fen is not None else self.bill(rng)
        if arrival.user_id is None and arrival.card_id is None:
            user = self.user(rng.randrange(self.spec.users))
            if channel is None:
                return Payment(user, rng.choice(user.cards), amount)
            card = next((c for c in user.cards if c.channel == channel), Card(f"{user.user_id}-{channel}", channel))
            return Payment(User(user.user_id, (*user.cards, card)), card, amount)
        user_id = arrival.user_id or str(arrival.card_id)
        card_id = arrival.card_id or f"{user_id}-c1"
        if channel is None:
            pick = int.from_bytes(hashlib.blake2b(card_id.encode(), digest_size=4).digest(), "big")
            channel = self.channels[pick % len(self.channels)]
        card = Card(card_id, channel)
        return Payment(User(user_id, (card,)), card, amount)

    def _known(self, channel: str | None) -> str | None:
        if channel is None or channel in self.channels:
            return channel
        if channel not in self._unknown_channels:
            self._unknown_channels.add(channel)
            log.warning("surge: trace channel %r is not a channel of the gateway (%s): its rows go to one of those",
                        channel, ", ".join(self.channels))  # fmt: skip
        return None
