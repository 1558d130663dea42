"""A new user's path, as the docs write it: the README's `make run` and the acme walkthrough of docs/targets.md §1,
its shell commands extracted from the page and run as written, so a page that drifts from what works fails here.

The only changes to the page's commands: the ports and the database folder of its one `export` line become free
ones (the line itself must still read as the page has it), and a trap stops acme and PostgreSQL if a command
fails. Each command must exit 0 unless the page says `# exit N` on it; the first that does not ends the walk.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.postgres import binaries
from tests.support.procs import ROOT, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
VENV = Path(sys.executable).parents[1]
PLACES = "export ACME_PORT=9000 ACME_DB_PORT=55432 PGDIR=/tmp/acme-pg"


def section(page: Path, heading: str) -> str:
    text = page.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def console_commands(markdown: str) -> list[str]:
    """Every `$ ` command of the section's console blocks, continuation lines joined as the shell joins them."""
    commands: list[str] = []
    for block in re.findall(r"```console\n(.*?)```", markdown, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append(line[2:])
            elif commands and commands[-1].rstrip().endswith("\\"):
                commands[-1] += "\n" + line
    return commands


def expected_exit(command: str) -> int:
    found = re.search(r"#\s*exit (\d+)", command)
    return int(found.group(1)) if found else 0


def workdir(tmp_path: Path) -> Path:
    """The repository as a fresh clone looks after `make run`: examples/ and .venv/, and nothing in runs/."""
    here = tmp_path / "clone"
    here.mkdir()
    (here / "examples").symlink_to(ROOT / "examples")
    (here / ".venv").symlink_to(VENV)
    return here


def test_the_acme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if binaries() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries not found: .ci/run installs them")
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql)")
    commands = console_commands(section(ROOT / "docs" / "targets.md", "1. Run the acme example"))
    assert PLACES in commands, "the page's export line changed: update this test's substitution with it"
    pgdir = f"/tmp/surge-doc-pg-{uuid.uuid4().hex[:8]}"  # under /tmp itself: the postgres user must reach it
    places = f"export ACME_PORT={free_port()} ACME_DB_PORT={free_port()} PGDIR={pgdir}"
    script = [
        'trap \'kill $ACME_PID 2> /dev/null; $AS_PG "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop '
        '> /dev/null 2>&1; rm -rf "$PGDIR"\' EXIT',
    ]
    for number, command in enumerate(commands):
        script += [
            "{",
            places if command == PLACES else command,
            "}",
            f'rc=$?; echo "{number} $rc" >> "$DOC_RC_FILE"; [ $rc = {expected_exit(command)} ] || exit 1',
        ]
    here = workdir(tmp_path)
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env={**os.environ, "DOC_RC_FILE": str(tmp_path / "rc")},
    )
    codes = dict(line.split() for line in (tmp_path / "rc").read_text().splitlines())
    log = result.stdout[-4000:] + result.stderr[-4000:]
    for number, command in enumerate(commands):
        assert str(number) in codes, f"never reached: {command}\n{log}"
        assert int(codes[str(number)]) == expected_exit(command), f"{command}\nexit {codes[str(number)]}\n{log}"
    clean = json.loads((here / "runs" / "acme-clean" / "summary.json").read_text(encoding="utf-8"))
    assert clean["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}
    assert clean["totals"]["rate_limited"] > 0 and clean["totals"]["declined"] > 0  # as the page says
    bug = json.loads((here / "runs" / "acme-bug" / "summary.json").read_text(encoding="utf-8"))
    assert bug["invariants"]["lost"] > 0
    assert "lost payments (acknowledged, not in acme-pay's ledger), by key: " in result.stdout
    assert not Path(pgdir).exists() or not any(Path(pgdir).iterdir())


def test_make_run_is_what_the_readme_says_and_runs(tmp_path: Path) -> None:
    """`make run` as the README describes it (double11, scale 0.25, 80 s), run for 8 s — `--duration S` is the
    README's own option of `surge run` — from a clean folder: it ends with the path of a report that exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    said = re.search(r"make run\s+# .*runs (\w+) \(scale ([\d.]+), (\d+) s\)", readme)
    assert said is not None, "the README's `make run` line changed"
    assert "[--duration S]" in readme
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^run:.*\n\t\$\(VENV\)/bin/(surge run .*)$", makefile, flags=re.M)
    assert recipe is not None
    argv = recipe.group(1).split()
    scenario, scale, duration = said.groups()
    assert argv[:3] == ["surge", "run", scenario] and argv[argv.index("--scale") + 1] == scale
    assert argv[argv.index("--duration") + 1] == duration
    argv[argv.index("--duration") + 1] = "8"
    here = workdir(tmp_path)
    result = subprocess.run(
        [str(VENV / "bin" / argv[0]), *argv[1:]], cwd=here, capture_output=True, text=True, timeout=200, check=False
    )
    report = re.search(r"^report: (.+)$", result.stdout, flags=re.M)
    assert report is not None and Path(report.group(1)).is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((Path(report.group(1)).parent / "summary.json").read_text(encoding="utf-8"))
    assert result.returncode == summary["exit_code"], result.stdout[-3000:] + result.stderr[-3000:]
    assert Path(report.group(1)).is_relative_to(here / "runs")
