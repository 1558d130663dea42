"""`surge studies`: the built-in studies, one line each (name, scenario, variants, description)."""

from __future__ import annotations

import argparse

from loadtests.scenario.study import builtin_studies, load_study


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the list is short and fixed by the package."""


def run(args: argparse.Namespace) -> int:
    for name in sorted(builtin_studies()):
        study, scenario = load_study(name)
        print(f"{name:<24} {scenario.name:<16} {len(study.variants)} variants  {study.description}")
    return 0
