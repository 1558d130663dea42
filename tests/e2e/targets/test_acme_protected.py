"""End to end against examples/acme with every protection on (server.py --protected, https with a client
certificate): OAuth2 tokens that expire every 10 s, HMAC-signed requests with a timestamp window and nonce
replay refusal. Real processes, a throwaway PostgreSQL; certificates made here with `cryptography`.

The protected run must equal an unprotected one (counts, ledger check) with no attempt refused, while the
server saw no nonce twice and no timestamp out of its window; a wrong key, an expired client certificate and
a token endpoint that is down are each reported as what they are within the first seconds, verdict unknown,
with no secret in any file or line."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.support.postgres import PASSWORD, Postgres
from tests.support.procs import ROOT, SURGE, free_port, wait_listening
from tests.support.runs import history

sys.path.insert(0, str(ROOT / "examples" / "acme"))
from make_certs import make_certs

pytestmark = pytest.mark.e2e
ACME = ROOT / "examples" / "acme"
SECRETS = {
    "ACME_SIGN_KEY": "sign-key-5c1e0b9a77d2",
    "ACME_CLIENT_ID": "surge-rehearsal",
    "ACME_CLIENT_SECRET": "client-secret-e83f1c04",
}
TOKEN = "acme-token-9d3e77"
AUTH_CODES = {"AUTH_FAILED", "SIGN_FAILED", "UNAUTHORIZED", "TLS_FAILED", "TOKEN_EXPIRED"}
SCENARIO = """
name = "acme-protected"
description = "steady 8/s over several token lifetimes, after 4 quiet seconds for Locust to boot"
duration_s = 30
seed = 11
[population]
users = 300
cards_per_user = [1, 2]
bill_fen = { median = 300000, p99 = 6000000 }
[[rate]]
at_s = 0
per_s = 0
[[rate]]
at_s = 4
per_s = 0
[[rate]]
at_s = 4.01
per_s = 8
[[rate]]
at_s = 30
per_s = 8
[client]
policy = "give-up"
[arrivals]
pool = 60
[slo]
min_success_ratio = 0.95
max_p99_ms = 1500
"""


@contextmanager
def acme(postgres: Postgres, log: Path, certs: dict[str, Path] | None, *extra: str) -> Iterator[str]:
    """acme-pay on a free port over an emptied payments table: protected (https, mutual TLS) with `certs`,
    else with the plain bearer token. Its base URL once it listens."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS payments")
    port = free_port()
    argv = [sys.executable, str(ACME / "server.py"), "--dsn", postgres.dsn, "--port", str(port), *extra]
    if certs is None:
        argv += ["--token", TOKEN]
    else:
        argv += ["--protected", "--token-ttl-s", "10", "--window-s", "30", "--tls-cert", str(certs["server.pem"]),
                 "--tls-key", str(certs["server.key"]), "--client-ca", str(certs["ca.pem"])]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **SECRETS})
    url = f"{'https' if certs else 'http'}://127.0.0.1:{port}"
    try:
        wait_listening(port, process=process, log=log)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def get(url: str, path: str, certs: dict[str, Path] | None) -> dict[str, object]:
    context = None
    if certs is not None:
        context = ssl.create_default_context(cafile=str(certs["ca.pem"]))
        context.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
    with urllib.request.urlopen(f"{url}{path}", timeout=5, context=context) as response:  # noqa: S310 (loopback)
        return dict(json.loads(response.read()))


def protected_profile(
    tmp_path: Path, certs: dict[str, Path], url: str, token_url: str | None = None, refresh_before_s: int = 5
) -> Path:
    """examples/acme/target-protected.toml beside its certs/ folder, pointed at this acme."""
    text = (ACME / "target-protected.toml").read_text(encoding="utf-8")
    text = text.replace("https://127.0.0.1:9443/oauth/token", token_url or f"{url}/oauth/token")
    text = text.replace("refresh_before_s = 5", f"refresh_before_s = {refresh_before_s}")
    profile = certs["ca.pem"].parent.parent / "target-protected.toml"
    profile.write_text(text, encoding="utf-8")
    return profile


def surge_run(
    postgres: Postgres, profile: Path, url: str, out: Path, duration_s: float, scenario: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **SECRETS, "ACME_DB_PASSWORD": postgres.password,
                   "ACME_DB_PORT": str(postgres.port), "ACME_TOKEN": TOKEN, **env}  # fmt: skip
    command = [str(SURGE), "run", str(scenario), "--target", str(profile), "--host", url,
               "--duration", str(duration_s), "--out", str(out)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=duration_s + 120, cwd=ROOT)


def early_codes(out: Path, before_s: int) -> Counter[str]:
    """The codes of the attempts completed in the run's first `before_s` seconds."""
    found: Counter[str] = Counter()
    for line in (out / "windows.jsonl").read_text(encoding="utf-8").splitlines():
        window = json.loads(line)
        if window["t"] < before_s:
            found.update(window.get("codes") or {})
    return found


def assert_no_secret(out: Path, result: subprocess.CompletedProcess[str]) -> None:
    secrets = [*SECRETS.values(), PASSWORD]
    for secret in secrets:
        assert secret not in result.stdout + result.stderr
    for path in out.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in content, path


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "acme-protected.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


def test_every_protection_on_changes_nothing_but_the_credentials(
    postgres: Postgres, tmp_path: Path, scenario: Path
) -> None:
    certs = make_certs(tmp_path / "protected" / "certs")
    on = tmp_path / "on"
    with acme(postgres, tmp_path / "acme-on.log", certs) as url:
        result = surge_run(postgres, protected_profile(tmp_path, certs, url), url, on, 30, scenario)
        seen = get(url, "/_stats", certs)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = history(on)
    codes = Counter(row["code"] for row in rows)
    assert not AUTH_CODES & set(codes), codes  # not one attempt refused, over 2.6 token lifetimes of load
    assert seen["tokens_issued"] >= 4  # refreshed ahead of expiry: ~every 5 s
    assert seen["expired_token"] == seen["bad_signature"] == seen["stale"] == seen["replayed"] == 0, seen
    assert seen["nonces"] == len(rows)  # every attempt reached the server with its own nonce
    assert float(str(seen["max_skew_s"])) < 30
    assert "oauth2 tokens" not in result.stdout  # the count is in the Locust log, not the verdict table

    off = tmp_path / "off"
    with acme(postgres, tmp_path / "acme-off.log", None) as url:
        plain = surge_run(postgres, ACME / "target.toml", url, off, 30, scenario)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    summary_on = json.loads((on / "summary.json").read_text())
    summary_off = json.loads((off / "summary.json").read_text())
    for name in ("offered", "sent", "succeeded", "declined", "error", "timeout"):
        assert summary_on["totals"][name] == summary_off["totals"][name], name
    assert summary_on["invariants"] == summary_off["invariants"] == {
        "lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}  # fmt: skip
    print("acme protected:", json.dumps({"totals": summary_on["totals"], "server": seen}))
    assert_no_secret(on, result)


def test_a_wrong_signing_key_is_reported_as_unauthorized_not_as_the_service_failing(
    postgres: Postgres, tmp_path: Path, scenario: Path
) -> None:
    certs = make_certs(tmp_path / "protected" / "certs")
    out = tmp_path / "run"
    with acme(postgres, tmp_path / "acme.log", certs) as url:
        profile = protected_profile(tmp_path, certs, url)
        result = surge_run(postgres, profile, url, out, 5, scenario, ACME_SIGN_KEY="not-the-key-0a1b")
    assert result.returncode == 3, result.stdout + result.stderr
    assert early_codes(out, 4)["UNAUTHORIZED"] > 0
    summary = json.loads((out / "summary.json").read_text())
    credentials = next(entry for entry in summary["run_verdicts"] if entry["name"] == "credentials")
    assert credentials["verdict"] == "unknown"
    assert "refused as unauthorized" in credentials["reason"]
    assert any(line.startswith("credentials: ") and "check the profile's credentials" in line
               for line in result.stdout.splitlines())  # fmt: skip
    assert all(entry["verdict"] == "unknown" for entry in summary["slos"])  # not "the service failed"
    assert_no_secret(out, result)


def test_an_expired_client_certificate_is_reported_as_a_tls_refusal(
    postgres: Postgres, tmp_path: Path, scenario: Path
) -> None:
    expired = make_certs(tmp_path / "protected" / "certs", client_expired=True)
    out = tmp_path / "run"
    with acme(postgres, tmp_path / "acme.log", expired) as url:
        result = surge_run(postgres, protected_profile(tmp_path, expired, url), url, out, 5, scenario)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "expired" in result.stderr  # said before the run starts
    assert early_codes(out, 4)["TLS_FAILED"] > 0  # the token endpoint is behind the same TLS: no token either
    assert {row["code"] for row in history(out)} == {"TLS_FAILED"}
    summary = json.loads((out / "summary.json").read_text())
    assert all(entry["verdict"] == "unknown" for entry in summary["slos"])
    assert_no_secret(out, result)


def test_a_token_endpoint_that_is_down_is_reported_as_auth_failed(
    postgres: Postgres, tmp_path: Path, scenario: Path
) -> None:
    certs = make_certs(tmp_path / "protected" / "certs")
    out = tmp_path / "run"
    with acme(postgres, tmp_path / "acme.log", certs) as url:
        down = f"https://127.0.0.1:{free_port()}/oauth/token"
        result = surge_run(postgres, protected_profile(tmp_path, certs, url, down), url, out, 5, scenario)
    assert result.returncode == 3, result.stdout + result.stderr
    assert early_codes(out, 4)["AUTH_FAILED"] > 0
    assert {row["code"] for row in history(out)} == {"AUTH_FAILED"}  # nothing was sent without a token
    summary = json.loads((out / "summary.json").read_text())
    assert all(entry["verdict"] == "unknown" for entry in summary["slos"])
    assert_no_secret(out, result)


def test_a_token_the_server_expires_early_is_refreshed_once_and_the_attempt_re_sent(
    postgres: Postgres, tmp_path: Path, scenario: Path
) -> None:
    """acme's clock runs 4 s ahead of what its tokens announce, surge refreshes 1 s before the announced end:
    for ~3 s of each token's life acme refuses a token it had accepted. Each such 401 is TOKEN_EXPIRED, one fresh
    token, the same attempt re-sent with the same key — paid — and never UNAUTHORIZED."""
    certs = make_certs(tmp_path / "protected" / "certs")
    out = tmp_path / "run"
    with acme(postgres, tmp_path / "acme.log", certs, "--token-early-s", "4") as url:
        profile = protected_profile(tmp_path, certs, url, refresh_before_s=1)
        surge_run(postgres, profile, url, out, 15, scenario)
        seen = get(url, "/_stats", certs)
    rows = history(out)
    codes = Counter(row["code"] for row in rows)
    assert codes["TOKEN_EXPIRED"] > 0 and seen["expired_token"] == codes["TOKEN_EXPIRED"], (codes, seen)
    assert codes["UNAUTHORIZED"] == 0 and codes["AUTH_FAILED"] == 0, codes
    by_key: dict[str, dict[int, dict[str, str]]] = {}
    for row in rows:
        by_key.setdefault(row["key"], {})[int(row["attempt"])] = row
    for attempts in by_key.values():
        for number, row in attempts.items():
            if row["code"] == "TOKEN_EXPIRED":  # re-sent once, the same key, as the next attempt
                assert attempts[number + 1]["code"] != "TOKEN_EXPIRED"
                assert attempts[number + 1]["outcome"] in ("succeeded", "declined")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["invariants"] == {"lost": 0, "phantom": 0, "duplicate": 0, "over_cap": 0}
    assert "credentials" not in {v["name"] for v in summary["run_verdicts"]}  # refreshed: the credentials held
    assert_no_secret(out, subprocess.CompletedProcess([], 0, "", ""))
