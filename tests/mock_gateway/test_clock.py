"""The simulated clock: speed, anchor, Shanghai business days and resets."""

from __future__ import annotations

from datetime import date, datetime

from mock_gateway.clock import SimClock, business_date, resets_at
from tests.mock_gateway.conftest import ManualWall


def test_speed_and_anchor() -> None:
    wall = ManualWall(1000.0)
    clock = SimClock(speed=60, start=datetime.fromisoformat("2026-11-11T00:00:00+08:00"), anchor_unix=990.0, wall=wall)
    assert clock.now().isoformat() == "2026-11-11T00:10:00+08:00"
    wall.advance(1)
    assert clock.now().isoformat() == "2026-11-11T00:11:00+08:00"


def test_business_day_and_reset_follow_shanghai() -> None:
    late_utc = datetime.fromisoformat("2026-11-10T23:30:00+00:00")  # 07:30 on the 11th in Shanghai
    assert business_date(late_utc) == date(2026, 11, 11)
    assert resets_at(late_utc).isoformat() == "2026-11-12T00:00:00+08:00"
    just_before = datetime.fromisoformat("2026-11-11T15:59:59+00:00")
    assert business_date(just_before) == date(2026, 11, 11)
    assert business_date(datetime.fromisoformat("2026-11-11T16:00:00+00:00")) == date(2026, 11, 12)


def test_default_start_is_now() -> None:
    wall = ManualWall(1_800_000_000.0)
    clock = SimClock(wall=wall)
    assert clock.now().timestamp() == 1_800_000_000.0
