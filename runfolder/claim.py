"""Claiming a run folder atomically, so two runs can never write into one folder.

A check-then-create ("is there a meta.json yet?") lets two `surge run --out X` started together both pass the
check and interleave their files (a false `phantom` followed); two web-UI tests started in the same second got
the same timestamped name. The claim is an exclusive create (`O_CREAT | O_EXCL`) of a marker file, which exactly
one process wins. Light on purpose: the Locust process claims folders for plain `locust -f` runs too.

A folder that exists and holds anything is refused, not only one with a summary.json or meta.json: a leftover
`history/old.csv` would be merged into the new run, a leftover `ledger.sqlite` read as its ledger. The one
exception is a claim this same command made for itself and handed over (`claim(..., hand_over=True)`): a
study claims each variant's folder and writes its scenario.toml there before that variant's `surge run`
claims it, once, in the same process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from runfolder.layout import RunFolder

CLAIM_FILE = ".surge-claim"
MAX_SUFFIX = 1000
SHOWN_ENTRIES = 3

_handed_over: set[Path] = set()  # folders this process claimed for its own next claim of them


class FolderTaken(Exception):
    """The folder already holds a run or is claimed by another process."""


def claim(path: Path, *, hand_over: bool = False) -> Path:
    """Claim exactly `path` (created if missing); `FolderTaken` if another run holds it or held it, or if it is
    not empty. `hand_over`: this process will claim it once more itself (and may write into it meanwhile)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _handed_over.remove(path.resolve())
    except KeyError:
        pass
    else:
        return path
    if RunFolder(path).is_run():
        raise FolderTaken(f"{path} already holds a run")
    entries = sorted(entry.name for entry in path.iterdir() if entry.name != CLAIM_FILE)
    if entries:
        shown = ", ".join(entries[:SHOWN_ENTRIES]) + (", …" if len(entries) > SHOWN_ENTRIES else "")
        raise FolderTaken(f"{path} is not empty (it holds {shown})")
    try:
        handle = os.open(path / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise FolderTaken(
            f"{path} is claimed by another surge run (or by one that crashed: remove {CLAIM_FILE} if none runs)"
        ) from None
    with os.fdopen(handle, "w", encoding="utf-8") as marker:
        marker.write(f"pid {os.getpid()} at {time.time():.3f}\n")
    if hand_over:
        _handed_over.add(path.resolve())
    return path


def claim_new(root: Path, stem: str) -> Path:
    """A fresh folder `root/stem`, else `root/stem-2`, `-3`, …: runs started in the same second never share."""
    for number in range(1, MAX_SUFFIX + 1):
        path = root / (stem if number == 1 else f"{stem}-{number}")
        try:
            return claim(path)
        except FolderTaken:
            continue
    raise FolderTaken(f"{root}/{stem}: {MAX_SUFFIX} folders of that name are taken")
