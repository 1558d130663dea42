"""A target profile's [request.sign] and per-attempt placeholders (docs/targets.md §4): each attempt rendered and
signed afresh, the signature verifiable by the server's own code, in the header, the body or the query; and
every credential mistake caught before the run (exit 2, one line, no secret in it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from loadtests.generator.target import Classifier, TargetApi
from loadtests.generator.templates import Values
from loadtests.scenario.profile import load_profile, signer
from loadtests.scenario.profile_templates import ProfileError
from tests.support.procs import SURGE

SECRET = "hmac-secret-77aa"
VALUES = Values("s1234567key", "u000001", "u000001-c1", "ICBC", 123450, 1)
BASE = """
name = "signed"
base_url = "http://127.0.0.1:9000"
[request]
path = "/pay"
body = '''{"reqNo": "{key}", "amt": "{amount_yuan}", "ts": "{timestamp_ms}", "nonce": "{nonce}"}'''
[request.headers]
X-Request-Id = "{key}"
X-Trace = "{uuid}"
[request.sign]
%s
[[response.rules]]
status = 200
outcome = "succeeded"
"""
HMAC_SIGN = """algorithm = "hmac-sha256"
key = "${SIGN_KEY}"
message = "{method}\\n{path}\\n{timestamp_ms}\\n{nonce}\\n{body}"
header = "X-Signature"
"""


def api(tmp_path: Path, sign: str, env: dict[str, str] | None = None) -> TargetApi:
    path = tmp_path / "profile.toml"
    path.write_text(BASE % sign, encoding="utf-8")
    env = {"SIGN_KEY": SECRET, **(env or {})}
    profile = load_profile(path, allow_remote=False, env=env)
    return TargetApi(profile, env, signer(profile, env, tmp_path))


def canonical(method: str, path: str, body: str) -> bytes:
    fields = json.loads(body)
    return f"{method}\n{path}\n{fields['ts']}\n{fields['nonce']}\n{body}".encode()


def test_hmac_signature_is_the_servers_own_over_the_request_as_sent(tmp_path: Path) -> None:
    built = api(tmp_path, HMAC_SIGN).builder.build(VALUES)
    wanted = hmac.new(SECRET.encode(), canonical("POST", "/pay", built.body), hashlib.sha256).digest()
    assert built.headers["X-Signature"] == base64.b64encode(wanted).decode()
    assert built.headers["X-Request-Id"] == VALUES.key


def test_each_attempt_is_fresh_and_a_retry_keeps_its_key(tmp_path: Path) -> None:
    builder = api(tmp_path, HMAC_SIGN).builder
    first, retry = builder.build(VALUES), builder.build(VALUES)
    one, two = json.loads(first.body), json.loads(retry.body)
    assert one["reqNo"] == two["reqNo"] == VALUES.key
    assert one["nonce"] != two["nonce"] and len(one["nonce"]) == 32
    assert first.headers["X-Trace"] != retry.headers["X-Trace"]
    assert first.headers["X-Signature"] != retry.headers["X-Signature"]
    assert abs(int(one["ts"]) / 1000 - time.time()) < 5


def test_hmac_equals_the_standard_librarys_for_short_and_long_keys() -> None:
    from loadtests.scenario.credentials import make_signer

    for secret in ("k", SECRET, "x" * 64, "y" * 65, "长密钥" * 40):
        sign = make_signer("hmac-sha256", key="${K}", key_file=None, encoding="hex", function=None, env={"K": secret})
        for message in (b"", b"POST\n/pay\n1\nn\n{}", bytes(range(256)) * 3):
            assert sign(message) == hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_hex_encoding(tmp_path: Path) -> None:
    built = api(tmp_path, HMAC_SIGN + 'encoding = "hex"\n').builder.build(VALUES)
    wanted = hmac.new(SECRET.encode(), canonical("POST", "/pay", built.body), hashlib.sha256).hexdigest()
    assert built.headers["X-Signature"] == wanted


def test_rsa_sha256_pkcs1v15_verifies_with_the_public_key(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "rsa.pem").write_bytes(pem)
    sign = HMAC_SIGN.replace('"hmac-sha256"', '"rsa-sha256"').replace('key = "${SIGN_KEY}"', 'key_file = "rsa.pem"')
    built = api(tmp_path, sign).builder.build(VALUES)
    signature = base64.b64decode(built.headers["X-Signature"])
    key.public_key().verify(signature, canonical("POST", "/pay", built.body), padding.PKCS1v15(), hashes.SHA256())


def test_ed25519_from_an_environment_variable_with_escaped_newlines(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    escaped = pem.decode().strip().replace("\n", "\\n")  # as a CI secret store often holds a PEM
    sign = HMAC_SIGN.replace('"hmac-sha256"', '"ed25519"').replace("SIGN_KEY", "ED_KEY")
    built = api(tmp_path, sign, {"ED_KEY": escaped}).builder.build(VALUES)
    key.public_key().verify(base64.b64decode(built.headers["X-Signature"]), canonical("POST", "/pay", built.body))


def test_body_field_signs_the_body_without_it(tmp_path: Path) -> None:
    sign = HMAC_SIGN.replace('header = "X-Signature"', 'body_field = "/sign"').replace(
        "{method}\\n{path}\\n{timestamp_ms}\\n{nonce}\\n{body}", "{body}"
    )
    built = api(tmp_path, sign).builder.build(VALUES)
    sent = json.loads(built.body)
    signature = sent.pop("sign")
    assert "X-Signature" not in built.headers
    # the server's check: the body less the field, as the template wrote it (here json.dumps's own spacing)
    message = json.dumps(sent).encode()
    assert signature == base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest()).decode()


def test_query_parameter_and_a_python_hook(tmp_path: Path) -> None:
    (tmp_path / "bank_sign.py").write_text(
        "def sign(message: bytes, key: str) -> str:\n    return key[:4] + '-' + str(len(message))\n", encoding="utf-8"
    )
    sign = 'algorithm = "python"\nfunction = "bank_sign:sign"\nkey = "${SIGN_KEY}"\nmessage = "{path}|{key}"\n'
    sign += 'query = "sign"\n'
    built = api(tmp_path, sign).builder.build(VALUES)
    parts = urlsplit(built.path)
    assert parts.path == "/pay"
    assert dict(parse_qsl(parts.query)) == {"sign": f"{SECRET[:4]}-{len('/pay|' + VALUES.key)}"}


def test_an_unmatched_401_or_403_is_unauthorized_not_a_service_error(tmp_path: Path) -> None:
    classifier = Classifier(api(tmp_path, HMAC_SIGN).profile)
    assert classifier.classify(401, b"", {}).code == "UNAUTHORIZED"
    assert classifier.classify(403, b"", {}).code == "UNAUTHORIZED"
    assert classifier.classify(500, b"", {}).code == "HTTP_500"


@pytest.mark.parametrize(
    ("sign", "env", "message"),
    [
        ('algorithm = "hmac-sha256"\nmessage = "{body}"\nheader = "X-S"', {}, "hmac-sha256 needs its key"),
        (
            'algorithm = "rsa-sha256"\nkey = "${SIGN_KEY}"\nmessage = "{body}"\nheader = "X-S"',
            {},
            "the rsa-sha256 key does not load",
        ),
        (
            'algorithm = "hmac-sha256"\nkey = "literal-secret"\nmessage = "{body}"\nheader = "X-S"',
            {},
            "'key' must be ${NAME}",
        ),
        (
            'algorithm = "python"\nfunction = "no_such_module_x:sign"\nmessage = "{body}"\nheader = "X-S"',
            {},
            "cannot import no_such_module_x",
        ),
        (
            'algorithm = "hmac-sha256"\nkey = "${SIGN_KEY}"\nmessage = "{body}"',
            {},
            "give 'header', 'body_field' or 'query'",
        ),
        (
            'algorithm = "hmac-sha256"\nkey = "${SIGN_KEY}"\nmessage = "{access_token}"\nheader = "X"',
            {},
            "{access_token} needs an [auth.oauth2]",
        ),
        (
            'algorithm = "hmac-sha256"\nkey = "${NOT_SET_KEY_X}"\nmessage = "{body}"\nheader = "X"',
            {},
            "${NOT_SET_KEY_X} is not set",
        ),
    ],
)
def test_a_credential_mistake_is_one_line_before_the_run(
    tmp_path: Path, sign: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ProfileError) as caught:
        api(tmp_path, sign, env)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)


def test_body_outside_the_message_is_an_unknown_placeholder(tmp_path: Path) -> None:
    path = tmp_path / "profile.toml"
    path.write_text((BASE % HMAC_SIGN).replace('X-Trace = "{uuid}"', 'X-Trace = "{body}"'), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"unknown placeholder \{body\}"):
        load_profile(path, allow_remote=False, env={"SIGN_KEY": SECRET})


def test_the_cli_refuses_a_key_that_does_not_load_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "profile.toml"
    path.write_text(BASE % HMAC_SIGN.replace('"hmac-sha256"', '"ed25519"'), encoding="utf-8")
    result = subprocess.run(
        [str(SURGE), "run", "double11", "--target", str(path), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env={**os.environ, "SIGN_KEY": SECRET},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "the ed25519 key does not load" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()
