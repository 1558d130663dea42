"""The scenario's own rows of events.csv: phases and spikes, labelled as a reader of the report expects."""

from __future__ import annotations

from loadtests.orchestration.one_run import _scenario_events
from loadtests.scenario.files import load_scenario


def test_spike_start_names_the_spikes_peak() -> None:
    """double11 rises to 400/s; the spike ends when the rate is back under half of it (200/s)."""
    scenario = load_scenario("double11")
    [spike] = [event for event in _scenario_events(scenario, 1000.0) if event.kind == "spike_start"]
    assert spike.detail == "to 400/s"
    [quarter] = [event for event in _scenario_events(scenario.scaled(0.25), 0.0) if event.kind == "spike_start"]
    assert quarter.detail == "to 100/s"
