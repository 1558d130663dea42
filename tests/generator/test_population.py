"""Seeded borrowers: the same people in every process, bills with the festival's heavy tail."""

from __future__ import annotations

import random

import pytest

from loadtests.generator.population import Population
from loadtests.scenario.parts import BillDistribution
from loadtests.scenario.parts import Population as Spec

CHANNELS = ["ICBC", "CCB", "ABC", "BOC", "CMB"]


def test_a_user_is_the_same_in_every_process_and_has_cards_in_range_on_known_channels() -> None:
    spec = Spec(users=1000, cards_per_user=(1, 3))
    one, other = Population(spec, CHANNELS, seed=5), Population(spec, CHANNELS, seed=5)
    counts = set()
    for index in range(300):
        user = one.user(index)
        assert user == other.user(index)
        assert 1 <= len(user.cards) <= 3
        assert {card.channel for card in user.cards} <= set(CHANNELS)
        assert len({card.channel for card in user.cards}) == len(user.cards)  # distinct banks while there are enough
        assert len({card.card_id for card in user.cards}) == len(user.cards)
        counts.add(len(user.cards))
    assert counts == {1, 2, 3}
    assert Population(spec, CHANNELS, seed=6).user(7) != one.user(7) or Population(spec, CHANNELS, seed=6).user(
        8
    ) != one.user(8)


def test_bills_hit_the_median_and_p99_and_the_tail_passes_the_card_limits() -> None:
    spec = Spec(bill_fen=BillDistribution(median=200_000, p99=8_000_000))
    population = Population(spec, CHANNELS, seed=1)
    rng = random.Random(0)
    bills = sorted(population.bill(rng) for _ in range(40_000))
    assert bills[len(bills) // 2] == pytest.approx(200_000, rel=0.05)
    assert bills[int(len(bills) * 0.99)] == pytest.approx(8_000_000, rel=0.15)
    assert sum(1 for bill in bills if bill > 5_000_000) / len(bills) > 0.01  # above a 50 000-yuan single limit
    assert all(isinstance(bill, int) and bill >= 1 for bill in bills)


def test_draw_picks_a_card_of_the_drawn_user() -> None:
    population = Population(Spec(users=50), CHANNELS, seed=2)
    rng = random.Random(1)
    for _ in range(200):
        payment = population.draw(rng)
        assert payment.card in payment.user.cards
        assert payment.user == population.user(int(payment.user.user_id[1:]))


def test_more_cards_than_channels_reuse_channels() -> None:
    population = Population(Spec(users=10, cards_per_user=(3, 3)), ["ICBC"], seed=0)
    assert [card.channel for card in population.user(0).cards] == ["ICBC"] * 3
    with pytest.raises(ValueError, match="channel"):
        Population(Spec(), [], seed=0)
