"""A throwaway PostgreSQL server for the target tests: initdb + pg_ctl on a temp dir and a free loopback port.

Debian's `postgresql` package provides the binaries (`.ci/run` installs it). Without them the tests that need
a server skip with a message on a developer's machine, and fail under CI=true, where a skip would hide a
missing install step. PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import free_port

USER = "acme"
PASSWORD = "s3cret-Acme-pw-7f1"
DATABASE = "acme"


@dataclass(frozen=True)
class Postgres:
    port: int
    password: str = PASSWORD

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"


def binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def run(argv: list[str]) -> None:
    subprocess.run(_as_server_user(argv), check=True, capture_output=True, timeout=120)


def start(base: Path) -> Iterator[Postgres]:
    bindir = binaries()
    if bindir is None:
        message = "PostgreSQL binaries not found (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: required under CI")
        pytest.skip(message)
    base.mkdir(parents=True, exist_ok=True)
    data, pwfile = base / "data", base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(pwfile, "postgres")
        base.chmod(0o700)
    run([str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
         "-E", "UTF8", "--locale=C.UTF-8"])  # fmt: skip
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off"
    run([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "-t", "60", "start"])
    try:
        import psycopg

        with psycopg.connect(f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        yield Postgres(port)
    finally:
        run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
