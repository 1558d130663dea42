"""Where each file of a run folder lives, and the one way its JSON files are written and read.

A run folder is written by three processes (surge, the Locust master, the reports) and read by CI, `surge
compare` and people; every writer goes through `write_json` (atomic, so no reader sees half a file) and every
reader through `read_json_object`, which turns a missing or broken file into one readable `RunFolderError`.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from errortext.validation import describe

# A JSON number kept as written: a float field would turn a recorded 30 into 30.0 and change the bytes.
Number = int | float


# memory.csv's header: written by surge's own process while the load runs, read by the reports
MEMORY_COLUMNS: Final[tuple[str, ...]] = ("t_s", "process", "pid", "rss_bytes")


class RunFolderError(ValueError):
    """The folder is not a readable run folder; the message names the file and the problem in one line."""


def write_json(path: Path, data: BaseModel | Mapping[str, Any], *, replace: bool = True) -> None:
    """Atomically, so a reader — CI, `surge compare`, a probe, the locustfile — never sees half a file: the text
    is made first (strict JSON, no NaN: a ValueError leaves the old file alone), written to an exclusively
    created scratch file beside the target (mode from the umask, like any other file of the folder) and renamed
    over it; a failure removes the scratch. UTF-8, two-space indent, one trailing newline.

    `replace=False` keeps a file already there (FileExistsError): the scratch is hard-linked to the name, which
    fails rather than overwrites, so of two racing writers the first one's whole file stays (stop.json)."""
    payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data)
    text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with scratch.open("x", encoding="utf-8") as out:
            out.write(text)
        if replace:
            scratch.replace(path)
        else:
            os.link(scratch, path)
            scratch.unlink()
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class RunFolder:
    """Every file of a run folder, named once: writers and readers on every side ask this object for a path
    instead of spelling a file name, so a renamed file is one change here (docs/internals.md §5, §6)."""

    path: Path

    @property
    def meta(self) -> Path:
        return self.path / "meta.json"

    @property
    def generator(self) -> Path:
        return self.path / "generator.json"

    @property
    def windows(self) -> Path:
        return self.path / "windows.jsonl"

    @property
    def events(self) -> Path:
        return self.path / "events.csv"

    @property
    def history(self) -> Path:
        """The folder of per-process attempt files (`worker-N.csv`, `worker-N.unmatched.json`)."""
        return self.path / "history"

    def history_of(self, worker: int) -> Path:
        return self.history / f"worker-{worker}.csv"

    def unmatched_of(self, worker: int) -> Path:
        return self.history / f"worker-{worker}.unmatched.json"

    @property
    def receiver_counters(self) -> Path:
        """The folder of each process's callback receiver counters (`worker-N.json`)."""
        return self.path / "settlement"

    def receiver_counters_of(self, worker: int) -> Path:
        return self.receiver_counters / f"worker-{worker}.json"

    @property
    def stop(self) -> Path:
        """Written once by whoever stopped the run early (the first writer wins)."""
        return self.path / "stop.json"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def junit(self) -> Path:
        return self.path / "junit.xml"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    @property
    def timeseries(self) -> Path:
        return self.path / "timeseries.csv"

    @property
    def memory(self) -> Path:
        """The embedded gateway's resident memory, one row per process and second (MEMORY_COLUMNS)."""
        return self.path / "memory.csv"

    @property
    def ledger(self) -> Path:
        """The gateway's (or the target's) ledger copied in at the end of the run."""
        return self.path / "ledger.sqlite"

    @property
    def capacity(self) -> Path:
        return self.path / "capacity.json"

    @property
    def steps(self) -> Path:
        return self.path / "steps.csv"

    @property
    def locust(self) -> Path:
        """Locust's own output: its CSV statistics (prefix `locust`), report.html, locust.log."""
        return self.path / "locust"

    def is_run(self) -> bool:
        """Whether a run already wrote here (meta.json at its start, summary.json at its end)."""
        return self.summary.exists() or self.meta.exists()


def read_json_object(path: Path, *, required: bool) -> dict[str, Any]:
    """A JSON object file of a run folder; `{}` when an optional one is absent; RunFolderError otherwise."""
    if not path.exists():
        if required:
            raise RunFolderError(f"{path} is missing: not a run folder")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} must hold a JSON object")
    return data


def read_window_records(run_dir: Path) -> list[dict[str, Any]]:
    """windows.jsonl as plain dicts (no histogram decoded); empty when absent. `reports.frames` reads the same
    file into pandas frames; this is for the light readers (a capacity probe's verdict, merging probes)."""
    path = RunFolder(run_dir).windows
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class OpenModel(BaseModel):
    """A run-folder file: unknown keys are kept (see `runfolder.models`)."""

    model_config = ConfigDict(extra="allow")


_Model = TypeVar("_Model", bound=BaseModel)


def read_optional(path: Path, model: type[_Model]) -> _Model | None:
    """An optional JSON file of the folder as `model`; None when absent (or empty)."""
    raw = read_json_object(path, required=False)
    return _validated(path, raw, model) if raw else None


def _validated(path: Path, raw: dict[str, Any], model: type[_Model]) -> _Model:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RunFolderError(f"{path}: {describe(exc)}") from None


def read_model(path: Path, model: type[_Model]) -> _Model:
    """A required JSON file of the folder as `model`; RunFolderError when it is missing or does not fit."""
    return _validated(path, read_json_object(path, required=True), model)
