"""`surge scenarios`: the built-in scenarios, one line each (name, duration, peak rate, description)."""

from __future__ import annotations

import argparse

from loadtests.scenario.files import builtin_scenarios, load_scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the list is short and fixed by the package."""


def run(args: argparse.Namespace) -> int:
    for name in sorted(builtin_scenarios()):
        scenario = load_scenario(name)
        peak = max(per_s for _, per_s in scenario.breakpoints())
        print(f"{name:<24} {scenario.duration_s:>5.0f}s  peak {peak:>6.0f}/s  {scenario.description}")
    return 0
