"""A run folder's file names live in one place, `RunFolder`: no other module of surge spells one, and every
name it gives is one the run-folder documentation describes."""

from __future__ import annotations

import re
from pathlib import Path

from runfolder.layout import RunFolder

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runfolder", "reports", "loadtests", "mock_gateway", "errortext")
FILES = [
    *(getattr(RunFolder(Path("run")), name) for name in ("meta", "generator", "windows", "events", "summary")),
    *(getattr(RunFolder(Path("run")), name) for name in ("junit", "report", "timeseries", "ledger", "capacity")),
    RunFolder(Path("run")).steps,
    RunFolder(Path("run")).memory,
    RunFolder(Path("run")).stop,
]


def test_every_file_is_named_under_the_folder_it_describes() -> None:
    folder = RunFolder(Path("somewhere/run"))
    assert folder.meta == Path("somewhere/run/meta.json")
    assert folder.history_of(3) == Path("somewhere/run/history/worker-3.csv")
    assert folder.unmatched_of(0) == Path("somewhere/run/history/worker-0.unmatched.json")
    assert folder.receiver_counters_of(1) == Path("somewhere/run/settlement/worker-1.json")


def test_a_folder_is_a_run_once_meta_or_summary_is_written(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    assert not folder.is_run()
    folder.meta.write_text("{}", encoding="utf-8")
    assert folder.is_run()


def test_no_module_but_the_layout_spells_a_run_folder_file_name() -> None:
    names = "|".join(re.escape(path.name) for path in FILES)
    spelled = re.compile(rf"""(?<!["\w])"({names})"(?!")""")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != ROOT / "runfolder" / "layout.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if spelled.search(line) and not line.lstrip().startswith("#")
    ]
    # Locust writes its own report.html inside the run folder's locust/ (its format, not surge's).
    found = [entry for entry in found if "locust_dir /" not in entry]
    assert found == []


def test_every_name_is_one_the_docs_describe() -> None:
    docs = (ROOT / "docs" / "internals.md").read_text(encoding="utf-8") + (ROOT / "README.md").read_text(
        encoding="utf-8"
    )
    assert [path.name for path in FILES if path.name not in docs] == []
