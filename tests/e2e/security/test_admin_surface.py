"""The admin surface is locked: bearer token on every admin route of router and replica, loopback binding by
default, and the token never written where logs or reports would carry it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.security.conftest import Target

ADMIN_ROUTES = {
    "router": [("GET", "/admin/replicas"), ("POST", "/admin/replicas/r1/kill"), ("POST", "/admin/faults"),
               ("DELETE", "/admin/faults")],
    "replica": [("POST", "/admin/faults"), ("DELETE", "/admin/faults"), ("GET", "/admin/faults"),
                ("POST", "/admin/drain")],
}  # fmt: skip


def call(url: str, method: str, token: str | None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback test target
            return response.status, {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.parametrize("which", ["router", "lone_replica"])
@pytest.mark.parametrize("token", [None, "", "wrong", "Bearer"])
def test_admin_routes_need_the_token(which: str, token: str | None, request: pytest.FixtureRequest) -> None:
    target: Target = request.getfixturevalue(which)
    for method, path in ADMIN_ROUTES[target.name]:
        status, problem = call(target.url + path, method, token)
        assert status == 401, f"{method} {path} with {token!r}"
        assert problem.get("status") == 401
    status, _ = call(target.url + "/admin/faults", "DELETE", target.token)
    assert status in (200, 204), "the right token is accepted"


def test_token_never_in_events_or_logs(router: Target, tmp_path: Path) -> None:
    state_dirs = [p.parent for p in Path(router.ledger).parent.glob("cluster.json")]
    for folder in state_dirs or [Path(router.ledger).parent]:
        for path in folder.glob("*"):
            if (
                path.name in {"cluster.json"}
                or not path.is_file()
                or path.suffix in {".sqlite", ".sqlite-wal", ".sqlite-shm"}
            ):
                continue
            assert router.token not in path.read_text(errors="replace"), path


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "mock_gateway", "--port", "0", "--host", "0.0.0.0"],  # noqa: S104 - refused on purpose
        [sys.executable, "-m", "mock_gateway.cluster.serve", "--port", "0", "--replicas", "1", "--host", "0.0.0.0"],  # noqa: S104
    ],
)
def test_public_bind_refused_without_flag(command: list[str], tmp_path: Path) -> None:
    if "mock_gateway.cluster.serve" in command:
        command = [*command, "--state-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "allow-public-bind" in result.stderr
    assert "Traceback" not in result.stderr
