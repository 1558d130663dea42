"""Fixtures shared by the whole suite: a throwaway PostgreSQL server (tests/support/postgres.py), started only
for the tests that ask for it (target ledgers, examples/acme)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import Postgres, start


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Not under pytest's tmp_path: its root-only parent folders would keep the `postgres` user out."""
    base = Path(tempfile.mkdtemp(prefix="surge-pg-"))
    try:
        yield from start(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
