"""Running a study: every variant planned and validated first, then run one after another into DIR/<variant>/.

The order is the contract: a bad study (a key, a variant's gateway config, a folder that already holds results)
is a `UsageError` before the first cluster starts. Each variant then gets a fresh embedded cluster and ledger (a
run folder of its own) and the scenario's seed, so the variants differ only in what the study changes. With
`repeat` N, every variant runs N times, repetition k with the seed `seed + k - 1` (the same for every variant),
repetition by repetition, so a machine that grows busier mid-study weighs on every variant alike.

Interruption: study.json and study.html are rewritten after every variant, so whatever stops the study keeps
the variants that finished. `run_study` is the one place that decides what a stop means: on KeyboardInterrupt
(SIGINT; a SIGTERM, which during a variant stops that run cleanly and between variants is turned into one
here) it writes the page as unfinished — the variant that
was running is kept as a row when its own run folder got as far as a summary — and re-raises for the CLI's
exit code. A harness failure of one variant (exit 3) is recorded and the study goes on to the next.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from loadtests.errors import HarnessError, UsageError
from loadtests.orchestration.embedded import validated_config
from loadtests.orchestration.scenario_file import write_scenario
from loadtests.orchestration.stopping import StoppedBySignal
from loadtests.scenario.model import Scenario
from loadtests.scenario.study import Study, variant_scenario
from runfolder.claim import FolderTaken, claim
from runfolder.layout import RunFolder
from runfolder.verdict import ExitCode


@dataclass(frozen=True, slots=True)
class VariantPlan:
    """One run of a variant, ready to run: its scenario (the study's rates and faults, the repetition's seed),
    folder and replicas."""

    name: str
    scenario: Scenario
    run_dir: Path
    replicas: int
    scale: float
    duration_s: float | None  # None: the scenario's own
    repetition: int = 1

    @property
    def scenario_path(self) -> Path:
        """Where the variant's scenario is written for Locust to load (inside its own run folder)."""
        return self.run_dir / "scenario.toml"


RunVariant = Callable[[VariantPlan], int]


def plan_study(
    study: Study,
    scenario: Scenario,
    out: Path,
    *,
    scale: float | None = None,
    duration_s: float | None = None,
    repeat: int = 1,
) -> list[VariantPlan]:
    """Every run of every variant, its scenario and gateway config validated; nothing is written. Raises
    `UsageError` naming the variant and the key. `scale` and `duration_s` (the command line's) win over the
    study file's. One run per variant goes to DIR/<variant>/, several to DIR/<variant>/run-<k>/."""
    if (out / "study.json").exists():
        raise UsageError(f"--out {out} already holds a study; choose an empty folder")
    plans = []
    for repetition in range(1, repeat + 1):
        seeded = scenario.model_copy(update={"seed": scenario.seed + repetition - 1})
        for variant in study.variants:
            merged = variant_scenario(seeded, variant)
            try:
                validated_config(None, merged.gateway)
            except UsageError as exc:
                raise UsageError(f"study {study.name}: variant {variant.name!r}: {exc}") from None
            run_dir = out / variant.name if repeat == 1 else out / variant.name / f"run-{repetition}"
            if RunFolder(run_dir).is_run():
                raise UsageError(f"--out {out}: {run_dir} already holds a run; choose an empty folder")
            plans.append(
                VariantPlan(
                    variant.name,
                    merged,
                    run_dir,
                    study.replicas_of(variant),
                    scale or study.scale,
                    duration_s or study.duration_s,
                    repetition,
                )
            )
    return plans


def study_header(study: Study, scenario: Scenario, plans: list[VariantPlan]) -> dict[str, Any]:
    """The head of study.json: what was studied (`study`, `scenario`) and under which settings."""
    return {
        "study": study.name,
        "description": study.description,
        "scenario": scenario.name,
        "seed": scenario.seed,
        "seeds": sorted({plan.scenario.seed for plan in plans}) or [scenario.seed],
        "repeat": max((plan.repetition for plan in plans), default=1),
        "scale": plans[0].scale if plans else study.scale,
        "duration_s": (plans[0].duration_s if plans else None) or scenario.duration_s,
        "variants_planned": list(dict.fromkeys(plan.name for plan in plans)),
    }


def _stop_on_sigterm(_signal: int, _frame: FrameType | None) -> None:
    """SIGTERM between two variants (no `surge run` is handling signals then): stop as a variant's SIGTERM does."""
    raise StoppedBySignal("sigterm")


def run_study(
    header: dict[str, Any],
    plans: list[VariantPlan],
    out: Path,
    run_variant: RunVariant,
    on_variant: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every plan in order; one row per run. Writes study.json/html after each run.

    Every variant's folder is claimed first (a leftover folder is refused before anything runs) and handed
    over to that variant's own `surge run`, which finds the study's scenario.toml in it."""
    out.mkdir(parents=True, exist_ok=True)
    for plan in plans:
        try:
            claim(plan.run_dir, hand_over=True)
        except FolderTaken as exc:
            raise UsageError(f"--out {out}: {exc}; choose an empty folder") from None
    from reports.study.page import write_study  # pandas, plotly: only once every folder is claimed
    from reports.study.rows import variant_row

    rows: list[dict[str, Any]] = []
    current: VariantPlan | None = None
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)  # each variant's `surge run` installs its own
    try:
        for plan in plans:
            current = plan
            plan.run_dir.mkdir(parents=True, exist_ok=True)
            write_scenario(plan.scenario, plan.scenario_path)
            problem = ""
            try:
                code = run_variant(plan)
            except HarnessError as exc:
                code, problem = exc.exit_code, str(exc)
            rows.append(variant_row(plan.name, plan.run_dir, code, problem, **_run_of(plan)))
            current = None
            write_study(out, header, rows, finished=False)
            if on_variant is not None:
                on_variant(rows[-1])
    except KeyboardInterrupt as exc:
        code = exc.exit_code if isinstance(exc, StoppedBySignal) else ExitCode.SIGINT
        if current is not None and RunFolder(current.run_dir).summary.exists():
            rows.append(variant_row(current.name, current.run_dir, code, "interrupted", **_run_of(current)))
        write_study(out, {**header, "interrupted": True}, rows, finished=False)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    write_study(out, header, rows, finished=True)
    return rows


def _run_of(plan: VariantPlan) -> dict[str, Any]:
    """Which repetition a run was, and its seed, for its row."""
    return {"repetition": plan.repetition, "seed": plan.scenario.seed}
