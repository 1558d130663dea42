"""stop.json: how a run that did not reach its scenario's end was stopped — written once, by whoever stopped it
first, and read by the reports, which cut charts and verdicts at that moment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict

from runfolder.layout import Number, OpenModel, RunFolder, read_optional, write_json
from runfolder.verdict import ExitCode

StoppedBy = Literal["sigint", "sigterm", "web-ui", "abort"]


class Aborted(OpenModel):
    """The `[[abort]]` rule that tripped, when (seconds since t=0), and the value it saw."""

    model_config = ConfigDict(extra="allow", frozen=True)

    rule: str
    at_s: Number
    value: Number


class Stopped(OpenModel):
    """summary.json `stopped`: when (seconds since t=0; negative: before the load began), by whom, and why."""

    model_config = ConfigDict(extra="allow", frozen=True)

    at_s: Number
    by: StoppedBy
    reason: str = ""


class StopRecord(OpenModel):
    """stop.json: how a run that did not reach its scenario's end was stopped — the one record of it.

    Written once by whoever stopped the run first (`write_stop`): `surge` on SIGINT/SIGTERM (before it asks
    Locust to stop), the Locust master on a web-UI stop or a tripped `[[abort]]` rule; later writers keep the
    first record. Charts and verdicts stop at `at_s`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    at_unix: Number
    at_s: Number
    by: StoppedBy
    reason: str = ""
    aborted: Aborted | None = None

    @property
    def exit_code(self) -> int | None:
        """The exit code the stop itself imposes (130, 143, 1 for an abort); None for a web-UI stop."""
        return {"sigint": ExitCode.SIGINT, "sigterm": ExitCode.SIGTERM, "abort": ExitCode.FAIL}.get(self.by)

    @property
    def stopped(self) -> Stopped:
        return Stopped(at_s=self.at_s, by=self.by, reason=self.reason)


def write_stop(run_dir: Path, record: StopRecord) -> StopRecord:
    """Record the stop unless one is recorded already; the record in force (the first) is returned."""
    try:
        write_json(RunFolder(run_dir).stop, record, replace=False)
    except FileExistsError:
        return read_stop(run_dir) or record
    return record


def read_stop(run_dir: Path) -> StopRecord | None:
    """The run's stop record, or None when the run ran to its end."""
    return read_optional(RunFolder(run_dir).stop, StopRecord)
