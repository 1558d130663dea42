"""The gateway's `[signing] required = true` rehearsed by the generator: plain Locust drives a replica that wants
HMAC-signed requests through examples/gateway/target-signed.toml — every attempt signed afresh and accepted —
and the same run with a wrong key is refused attempt by attempt, recorded as UNAUTHORIZED, not as the gateway
failing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support.procs import ROOT, locust_exit_code, replica, run_locust
from tests.support.runs import history

pytestmark = pytest.mark.e2e
KEY = "gateway-rehearsal-key-4b2d"
SCENARIO = """
name = "signed"
duration_s = 3
seed = 5
[population]
users = 50
bill_fen = { median = 100000, p99 = 400000 }
[[rate]]
at_s = 0
per_s = 20
[arrivals]
pool = 20
"""
SIGNING = '[signing]\nrequired = true\nkey_env = "SURGE_TEST_GATEWAY_KEY"\n'


@pytest.mark.parametrize("right_key", [True, False], ids=["signed", "wrong-key"])
async def test_the_generator_signs_what_the_gateway_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, right_key: bool
) -> None:
    scenario = tmp_path / "signed.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    profile = tmp_path / "target.toml"
    text = (ROOT / "examples" / "gateway" / "target-signed.toml").read_text(encoding="utf-8")
    profile.write_text(text, encoding="utf-8")
    monkeypatch.setenv("SURGE_TEST_GATEWAY_KEY", KEY)
    monkeypatch.setenv("SURGE_SIGNING_KEY", KEY if right_key else "some-other-key")
    out = tmp_path / "run"
    with replica(tmp_path, SIGNING) as url:
        rc = await run_locust(url, scenario, out, "--target", str(profile))
    assert rc == locust_exit_code(out), (out / "locust" / "stdout.log").read_text()
    rows = history(out)
    codes = Counter(row["code"] for row in rows)
    assert len(rows) > 40
    if right_key:
        assert {row["status"] for row in rows} <= {"201", "422"}, codes
    else:
        assert codes == {"UNAUTHORIZED": len(rows)}  # refused, never retried, never a service error
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
