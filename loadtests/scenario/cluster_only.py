"""What a scenario asks that only surge's embedded cluster can give, and what to say when it is not there.

`surge run` applies a scenario's `[gateway]` table to the cluster it starts and plays its faults through that
cluster's admin API. Against a gateway surge did not start (`surge run --host`, or a plain `locust -f` run) both
are ignored: the run must say so rather than report a spike that never met the scenario's caps as absorbed, or a
kill that never happened as recovered. Pure (no I/O, no orchestration): the locustfile uses it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from loadtests.scenario.model import Scenario
from loadtests.scenario.parts import Fault

PROCESS_ACTIONS = frozenset({"kill", "pause", "resume", "restart"})
# Every built-in action drives the embedded cluster's admin API; a fault kind that can run against any target
# (docs/targets.md's `exec`) is simply absent from this set and is played with --host too.
EMBEDDED_ACTIONS = PROCESS_ACTIONS | {
    "latency",
    "errors",
    "channel_outage",
    "lose_response",
    "settlement_stall",
    "callback_loss",
    "callback_duplicate",
}


def skipped_faults(faults: Sequence[Fault]) -> list[Fault]:
    """The faults a gateway surge did not start cannot receive (they drive the embedded cluster's admin API)."""
    return [fault for fault in faults if fault.action in EMBEDDED_ACTIONS]


def ignored_warnings(scenario: Scenario, where: str) -> list[str]:
    """One line per thing the scenario asks that a run `where` (e.g. "with --host") ignores."""
    warnings = []
    if scenario.gateway:
        keys = ", ".join(sorted(scenario.gateway))
        warnings.append(
            f"the scenario's [gateway] table ({keys}) configures the embedded cluster and is ignored {where}"
        )
    skipped = skipped_faults(scenario.faults)
    if skipped:
        actions = ", ".join(sorted({fault.action for fault in skipped}))
        warnings.append(
            f"{len(skipped)} fault(s) ({actions}) need the embedded cluster and are not played {where}; "
            "their recovery is reported unknown"
        )
    return warnings
