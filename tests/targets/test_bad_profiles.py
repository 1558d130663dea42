"""Every mistake in a target profile is exit 2 and one line, before anything starts (CONTRACT §7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SURGE = Path(sys.executable).with_name("surge")
ACME = (Path(__file__).resolve().parents[2] / "examples" / "acme" / "target.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[request]\n", "[request]\nbodyy = ''\n"), "request.bodyy: unknown key"),
        (('"{user_id}"', '"{user}"'), "unknown placeholder {user}"),
        (('payment_id = "/data/payNo"', 'payment_id = "data/payNo"'), "must start with '/'"),
        (('json = { "/code" = "0000" }\noutcome = "succeeded"', 'outcome = "error"'), "no rule maps a 2xx"),
        (("http://127.0.0.1:9000", "http://10.1.2.3:9000"), "not a loopback address; pass --allow-remote"),
        (("${ACME_DB_PASSWORD}", "${SURGE_TEST_UNSET_VAR}"), "${SURGE_TEST_UNSET_VAR} is not set"),
        (("status = 429", "status = 700"), "HTTP statuses 100-599"),
    ],
)
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
