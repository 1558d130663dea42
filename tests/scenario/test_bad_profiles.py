"""Every mistake in a target profile is exit 2 and one line, before anything starts (docs/targets.md)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from loadtests.scenario.profile import load_profile
from loadtests.scenario.profile_templates import ProfileError
from tests.support.procs import SURGE

ACME = (Path(__file__).resolve().parents[2] / "examples" / "acme" / "target.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[request]\n", "[request]\nbodyy = ''\n"), "unknown key 'request.bodyy'"),
        (('"{user_id}"', '"{user}"'), "unknown placeholder {user}"),
        (('payment_id = "/data/payNo"', 'payment_id = "data/payNo"'), "must start with '/'"),
        (('json = { "/code" = "0000" }\noutcome = "succeeded"', 'outcome = "error"'), "no rule maps a 2xx"),
        (("http://127.0.0.1:9000", "http://10.1.2.3:9000"), "not a loopback address; pass --allow-remote"),
        (("${ACME_DB_PASSWORD}", "${SURGE_TEST_UNSET_VAR}"), "${SURGE_TEST_UNSET_VAR} is not set"),
        (("status = 429", "status = 700"), "HTTP statuses 100-599"),
        (('X-Request-Id = "{key}"', 'X-Request-Id = "{key}"\nHost = "evil.example"'), "request.headers.Host:"),
        (('X-Request-Id = "{key}"', 'X-Request-Id = "{key}"\ntransfer-encoding = "chunked"'),
         "request.headers.transfer-encoding:"),
        (('X-Request-Id = "{key}"', 'X-Request-Id = "{key}\\r\\nX-Injected: 1"'), "request.headers.X-Request-Id:"),
        (('path = "/api/v2/pay"', 'path = "/api/v2/pay\\r\\nX-Injected: 1"'), "request.path:"),
    ],
)  # fmt: skip
def test_a_bad_profile_is_exit_2_with_one_line(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in ACME
    profile = tmp_path / "target.toml"
    profile.write_text(ACME.replace(old, new, 1), encoding="utf-8")
    env = {**os.environ, "ACME_DB_PASSWORD": "x", "ACME_DB_PORT": "5432", "ACME_TOKEN": "t"}
    result = subprocess.run(
        [str(SURGE), "run", "double11", "--target", str(profile), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert not (tmp_path / "run").exists()  # nothing started, no run folder


def test_a_header_whose_variable_holds_a_line_break_is_refused_before_the_run(tmp_path: Path) -> None:
    """`${ACME_TOKEN}` is sent in a header as it is: a CR/LF in it would split the request head on every
    attempt, so the run does not start (exit 2, one line naming the header and the variable, not its value)."""
    profile = tmp_path / "target.toml"
    profile.write_text(ACME, encoding="utf-8")
    env = {**os.environ, "ACME_DB_PASSWORD": "x", "ACME_DB_PORT": "5432", "ACME_TOKEN": "t0k3n\r\nX-Injected: 1"}
    result = subprocess.run(
        [str(SURGE), "run", "double11", "--target", str(profile), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "request.headers.Authorization: ${ACME_TOKEN} holds a control character" in lines[0]
    assert "t0k3n" not in result.stderr and "t0k3n" not in result.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('X-Request-Id = "{key}"', 'content-type = "text/plain"'), "request.headers.content-type: surge sets"),
        (('X-Request-Id = "{key}"', 'Content-Length = "5"'), "request.headers.Content-Length: surge sets"),
        (('X-Request-Id = "{key}"', 'Connection = "close"'), "request.headers.Connection: surge sets"),
        (('X-Request-Id = "{key}"', 'X-Note = "\\u5f20"'), "request.headers.X-Note: holds a control character"),
        (('path = "/api/v2/pay"', 'path = "/api/v2/pay HTTP/1.0"'), "request.path: holds a space"),
        (('path = "/api/v2/pay"', 'path = "/api/v2/pay#frag"'), "request.path: holds a space"),
        (('path = "/api/v2/pay"', 'path = "/api/v2/pay\\u0000"'), "request.path: holds a space"),
    ],
)  # fmt: skip
def test_headers_surge_owns_and_text_that_would_break_the_request_head_are_refused(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    """The same guard as above through the loader itself, for the rest of the framing headers and characters."""
    old, new = change
    profile = tmp_path / "target.toml"
    profile.write_text(ACME.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ProfileError, match=message.replace("(", r"\(")):
        load_profile(profile, allow_remote=False, env={"ACME_DB_PASSWORD": "x", "ACME_DB_PORT": "1", "ACME_TOKEN": "t"})
