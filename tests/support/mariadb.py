"""A throwaway MariaDB server for the MySQL ledger tests: mariadb-install-db + mariadbd on a temp dir and a free
loopback port, with its own socket and pid file there (never the system server's 3306 or /run/mysqld).

Debian's `mariadb-server` package provides the binaries (`.ci/run` installs it). Without them the tests that need
a server skip with a message on a developer's machine, and fail under CI=true, where a skip would hide a
missing install step. MariaDB runs as root only when told to, so as root the server gets `--user=root` (the
temp dir stays root's: nothing to hand over, unlike PostgreSQL's `postgres` user). The database and its user
are created while the data dir is initialised (`--extra-file`), so the first login that succeeds over TCP is
the test user's own. The user may write to its database: a write the ledger copy lets through would show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from tests.support.procs import free_port

USER = "surge"
PASSWORD = "my-Maria-pw-5e2"
DATABASE = "pay"
READY_TIMEOUT_S = 60
SYSTEM_PORT = 3306


@dataclass(frozen=True)
class MariaDB:
    port: int
    password: str = PASSWORD

    @property
    def dsn(self) -> str:
        return f"mysql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def connect(self) -> pymysql.Connection:
        """A direct PyMySQL connection (autocommit) for setting up and checking the team's tables."""
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password, database=DATABASE, autocommit=True
        )


def binaries() -> tuple[Path, Path] | None:
    """(install-db, server): MariaDB's names, else the older mysql_* ones; the server lives in /usr/sbin."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
    install = shutil.which("mariadb-install-db", path=path) or shutil.which("mysql_install_db", path=path)
    server = shutil.which("mariadbd", path=path) or shutil.which("mysqld", path=path)
    return (Path(install), Path(server)) if install and server else None


def loopback_port() -> int:
    port = free_port()
    while port == SYSTEM_PORT:  # never the default port, where a system server may listen
        port = free_port()
    return port


def _wait_until_ready(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {server.returncode}: {_tail(log)}")
        try:
            pymysql.connect(
                host="127.0.0.1", port=port, user=USER, password=PASSWORD, database=DATABASE, connect_timeout=2
            ).close()
            return
        except pymysql.err.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd not ready after {READY_TIMEOUT_S}s: {_tail(log)}") from exc
            time.sleep(0.1)


def _tail(log: Path) -> str:
    return " | ".join(log.read_text(errors="replace").splitlines()[-5:]) if log.exists() else "(no log)"


def start(base: Path) -> Iterator[MariaDB]:
    found = binaries()
    if found is None:
        message = "MariaDB binaries not found (apt-get install mariadb-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: required under CI")
        pytest.skip(message)
    install_db, mariadbd = found
    base.mkdir(parents=True, exist_ok=True)
    data, setup, log = base / "data", base / "setup.sql", base / "server.log"
    setup.write_text(  # bootstrap runs without grant tables until FLUSH PRIVILEGES loads them
        f"FLUSH PRIVILEGES;\nCREATE DATABASE {DATABASE};\n"
        f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';\n"
        f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{USER}'@'%';\n"
    )
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [str(install_db), "--no-defaults", f"--datadir={data}", *as_root, "--skip-test-db", "--skip-name-resolve",
         "--auth-root-authentication-method=socket", f"--extra-file={setup}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = loopback_port()
    server = subprocess.Popen(
        [str(mariadbd), "--no-defaults", f"--datadir={data}", *as_root, "--bind-address=127.0.0.1",
         f"--port={port}", f"--socket={base / 'sock'}", f"--pid-file={base / 'pid'}", f"--log-error={log}",
         f"--tmpdir={base}", "--skip-name-resolve", "--skip-log-bin", "--skip-symbolic-links",
         "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--innodb-use-native-aio=0",
         "--innodb-buffer-pool-size=16M", "--innodb-temp-data-file-path=ibtmp1:1M:autoextend"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_until_ready(server, port, log)
        yield MariaDB(port)
    finally:
        server.terminate()  # SIGTERM: mariadbd shuts down cleanly
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
