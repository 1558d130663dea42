"""The curve maths on bare corners, without a scenario file: the rate between points, spikes and phases."""

from __future__ import annotations

import pytest

from loadtests.scenario import timeline


def test_the_rate_is_linear_between_points_and_flat_outside_them() -> None:
    points = [(10.0, 100.0), (20.0, 300.0)]
    assert timeline.curve_rate(points, 0.0) == 100.0
    assert timeline.curve_rate(points, 15.0) == pytest.approx(200.0)
    assert timeline.curve_rate(points, 25.0) == 300.0
    assert timeline.curve_rate([(5.0, 1.0), (5.0, 9.0)], 5.0) == 1.0  # a step: the value before it, at it


def test_breakpoints_cover_the_run_and_drop_points_past_its_end() -> None:
    corners = timeline.breakpoints([(0.0, 10.0), (30.0, 40.0), (90.0, 0.0)], 60.0)
    assert corners[0] == (0.0, 10.0) and corners[1] == (30.0, 40.0)
    assert corners[-1][0] == 60.0 and corners[-1][1] == pytest.approx(20.0)  # the curve's value at the end
    assert len(corners) == 3


def test_a_five_fold_rise_within_five_seconds_is_a_spike_until_the_rate_halves() -> None:
    corners = [(0.0, 100.0), (10.0, 100.0), (12.0, 1000.0), (20.0, 1000.0), (30.0, 0.0), (60.0, 0.0)]
    assert timeline.spikes(corners, 60.0) == [(10.0, 25.0)]  # 1000 → 0 over 10 s crosses 500 at t = 25
    slow = [(0.0, 100.0), (10.0, 100.0), (20.0, 1000.0), (60.0, 1000.0)]
    assert timeline.spikes(slow, 60.0) == []  # ten-fold, but over 10 s: a ramp
    assert timeline.spikes([(0.0, 0.0), (1.0, 500.0), (60.0, 500.0)], 60.0) == []  # from zero: a warm-up


def test_phases_name_each_stretch_and_a_spike_overrides_what_it_covers() -> None:
    corners = [(0.0, 100.0), (10.0, 100.0), (12.0, 1000.0), (20.0, 1000.0), (30.0, 0.0), (60.0, 0.0)]
    named = timeline.phases(corners, timeline.spikes(corners, 60.0))
    assert named == [("steady-1", 0.0, 10.0), ("spike-1", 10.0, 25.0), ("fall-1", 25.0, 30.0), ("steady-2", 30.0, 60.0)]
