"""What a user reads points inside the repository: no page, example or `--help` text cites a document the
repository does not ship (an outside contract's "CONTRACT §N")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loadtests.cli.main import SUBCOMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
READ_BY_USERS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "docs").rglob("*.toml"))]
READ_BY_USERS += sorted((ROOT / "examples").rglob("*.toml"))
READ_BY_USERS += sorted((ROOT / "loadtests" / "scenario").rglob("*.toml"))
OUTSIDE = re.compile(r"CONTRACT\s*§|CONTRACT\.md")


@pytest.mark.parametrize("path", READ_BY_USERS, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_page_cites_a_document_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not OUTSIDE.search(text), f"{path.relative_to(ROOT)} cites a contract the repository does not ship"


def test_no_help_text_cites_a_document_outside_the_repository() -> None:
    parser = build_parser()
    helps = [parser.format_help()]
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        helps += [sub.format_help() for sub in getattr(action, "choices", {}).values()]
    assert len(helps) == 1 + len(SUBCOMMANDS)
    for text in helps:
        assert not OUTSIDE.search(text), text
