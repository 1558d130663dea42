"""The end of a plain `locust -f loadtests/locustfile.py` run (headless, or each test of a web UI session).

`surge run` analyses its run folder itself, after it has collected the ledger and the events; the locustfile
then runs with `--surge-managed` and never comes here. Without it nobody else will, so the master does it:

    <run>/locust/report.html, locust_stats.csv, locust_failures.csv, locust_exceptions.csv   Locust's own view
    <run>/timeseries.csv, summary.json, junit.xml, report.html                               surge's (reports)

and sets Locust's process exit code to surge's (0 every SLO and invariant held, 1 one failed, 3 a verdict is
unknown — without a ledger the invariants are — or the folder could not be analysed), logging the verdict and
the folder's path through the "surge" logger, which Locust prints and its web UI shows in the Logs tab. The
analysis runs in a process of its own (`python -m reports`): pandas and plotly never enter the Locust process.
"""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from locust.env import Environment
from locust.html import get_html_report
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from errortext.console_text import one_line
from runfolder.layout import RunFolder, RunFolderError, read_json_object
from runfolder.verdict import (
    GENERATOR_BOTTLENECK,
    NOT_THE_GATEWAYS,
    ExitCode,
    Headline,
    State,
    format_value,
    headline,
    verdicts_of,
)

log = logging.getLogger("surge")


def save_locust_output(environment: Environment, locust_dir: Path) -> None:
    """Locust's own HTML report and CSVs, as `--html`/`--csv` would write them, next to surge's files."""
    locust_dir.mkdir(parents=True, exist_ok=True)
    html = get_html_report(environment, show_download_link=False)  # type: ignore[no-untyped-call]
    (locust_dir / "report.html").write_text(html, encoding="utf-8")
    stats = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for name, write in (
        ("stats", stats.requests_csv),
        ("failures", stats.failures_csv),
        ("exceptions", stats.exceptions_csv),
    ):
        with (locust_dir / f"locust_{name}.csv").open("w", newline="", encoding="utf-8") as handle:
            write(csv.writer(handle))


def finish_plain_run(environment: Environment, run_dir: Path) -> int:
    """Write the whole run folder, log the verdict, set and return Locust's exit code."""
    run_dir = run_dir.resolve()
    try:
        save_locust_output(environment, RunFolder(run_dir).locust)
    except OSError as exc:
        log.warning("surge: Locust's own report was not saved: %s", exc)
    summary = _analyse(run_dir)
    if summary is None:
        environment.process_exit_code = ExitCode.HARNESS
        return ExitCode.HARNESS
    code = int(summary["exit_code"])
    verdicts = verdicts_of(summary)
    unmatched = summary.get("unmatched_answers")
    if unmatched:  # before the verdicts: a wrong response rule, not the service, is what they describe
        log.warning("surge: %s", one_line(unmatched["line"]))
        sample = unmatched.get("sample")
        if sample:
            log.warning("surge:   e.g. HTTP %s: %s", sample.get("status"), one_line(sample.get("body", "")))
    for verdict in verdicts:
        line = "surge:   %-9s %-40s %12s  bound %-10s %s%s"
        value, bound = format_value(verdict.value, verdict.unit), format_value(verdict.bound, verdict.unit)
        reason = f" — {verdict.reason}" if verdict.reason else ""
        failed = verdict.state is State.FAIL
        (log.error if failed else log.info)(line, verdict.kind, verdict.name, value, bound, verdict.state, reason)
    if summary.get("valid") is False:
        because = summary.get("invalid_because") or GENERATOR_BOTTLENECK
        log.error("surge: %s: %s; %s", Headline.INVALID_RUN, because, NOT_THE_GATEWAYS)
    log.info("surge: verdict %s (exit code %d)", headline(code, verdicts), code)
    log.info("surge: run folder %s", one_line(run_dir))
    log.info("surge: report %s", one_line(RunFolder(run_dir).report))
    environment.process_exit_code = code
    return code


def _analyse(run_dir: Path) -> dict[str, Any] | None:
    """The run folder finalized by `python -m reports` (gevent's subprocess: the hub keeps serving meanwhile),
    and its summary; None, said in one line, when it cannot be analysed."""
    done = subprocess.run([sys.executable, "-m", "reports", str(run_dir)], capture_output=True, text=True, check=False)
    problem = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    if done.returncode == 0:
        try:
            return read_json_object(RunFolder(run_dir).summary, required=True)
        except RunFolderError as exc:
            problem = str(exc)
    log.error("surge: the run folder %s cannot be analysed: %s", one_line(run_dir), one_line(problem))
    return None
