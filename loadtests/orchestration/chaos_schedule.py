"""Seeded random fault schedules for the chaos suite: the same seed always gives the same schedule.

Process faults (kill, pause, restart) never overlap more than `max_down` replicas at a time, so the cluster
keeps a replica to fail over to — the suite is about losing nothing, not about a total outage, which the
router answers with 503 NO_HEALTHY_REPLICA by design. Lost responses are sprinkled in between.
"""

from __future__ import annotations

import random

from loadtests.scenario.parts import Fault, FaultAction


def chaos_schedule(
    seed: int,
    *,
    fault_phase_s: float,
    replicas: int,
    max_down: int = 1,
    mean_gap_s: float = 4.0,
) -> list[Fault]:
    rng = random.Random(seed)
    names = [f"r{i}" for i in range(1, replicas + 1)]
    faults: list[Fault] = []
    busy_until: dict[str, float] = {}
    t = rng.uniform(1.0, 3.0)
    while t < fault_phase_s - 2.0:
        down = [name for name, until in busy_until.items() if until > t]
        actions: list[FaultAction] = ["kill", "pause", "restart", "lose_response", "kill"]
        action = rng.choice(actions)
        if action == "lose_response":
            duration = round(rng.uniform(1.0, 3.0), 2)
            ratio = round(rng.uniform(0.1, 0.5), 2)
            faults.append(
                Fault(at_s=round(t, 2), action="lose_response", target="all", duration_s=duration, ratio=ratio)
            )
        elif len(down) < max_down:
            target = rng.choice(["primary", *[n for n in names if n not in down]])
            duration = round(min(rng.uniform(1.5, 5.0), fault_phase_s - t), 2)
            if action == "restart":
                faults.append(Fault(at_s=round(t, 2), action="restart", target=target))
                duration = 1.5  # a restarted replica is away while it boots
            else:
                faults.append(Fault(at_s=round(t, 2), action=action, target=target, duration_s=duration))
            # `primary` resolves at run time, so it may be any replica: count them all as busy
            for name in names if target == "primary" else [target]:
                busy_until[name] = max(busy_until.get(name, 0.0), t + duration)
        t += rng.expovariate(1.0 / mean_gap_s)
    return faults
