"""A target profile's credentials made usable: signing keys loaded into signers, TLS files checked.

Used twice with the same code: by `load_profile` before anything starts (a key that does not load, a signing
function that cannot be imported, a certificate file that is not one: exit 2, one line) and by the generator,
which builds its signer and TLS context here once per process. Secrets are read from the environment or a file
at that moment and live only inside the signer's closure: never in a model that could be dumped into the run
folder, never in a message (errors name the key, not its value).

`cryptography` is imported only by a profile that signs with a key pair or checks a certificate: every other
run's Locust process boots without it (its import is a third of a second on a busy machine).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import re
import ssl
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from loadtests.errors import UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

Signer = Callable[[bytes], str]  # the canonical message's bytes -> the signature as sent


class CredentialError(UsageError):
    """A key, certificate or signing function that cannot be used; the message never holds a secret."""


BLOCK = 64  # SHA-256's block size in bytes: HMAC pads its key to it
ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(text: str, env: Mapping[str, str]) -> str:
    """A key is only ${NAME}s (the profile checks it): each replaced from `env`."""
    return ENV.sub(lambda match: env.get(match.group(1), ""), text)


def key_text(key: str | None, key_file: str | None, env: Mapping[str, str]) -> str:
    """The secret or PEM key from `${NAME}` or its file. A PEM key put in an environment variable with its line
    breaks written as `\\n` (as CI secret stores often hold it) gets them back."""
    if key_file is not None:
        try:
            return Path(key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.__class__.__name__
            raise CredentialError(f"request.sign.key_file {key_file}: cannot be read ({why})") from None
    text = _expand(key or "", env)
    if "-----BEGIN" in text and "\n" not in text:
        text = text.replace("\\n", "\n")
    return text


def _encode(encoding: str) -> Callable[[bytes], str]:
    if encoding == "hex":
        return bytes.hex
    return lambda raw: base64.b64encode(raw).decode("ascii")


def _private_key(text: str, algorithm: str) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    try:
        loaded = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CredentialError(
            f"request.sign: the {algorithm} key does not load (an unencrypted PEM private key is needed)"
        ) from None
    if algorithm == "rsa-sha256" and isinstance(loaded, rsa.RSAPrivateKey):
        return loaded
    if algorithm == "ed25519" and isinstance(loaded, ed25519.Ed25519PrivateKey):
        return loaded
    kind = type(loaded).__name__.removeprefix("_")
    raise CredentialError(f"request.sign: the key is a {kind}, not a {algorithm} key")


def import_function(reference: str, search: Path | None) -> Callable[[bytes, str], str]:
    """`module:function`, importable from `search` (the profile's folder) or the Python path."""
    module_name, _, name = reference.partition(":")
    if search is not None and str(search) not in sys.path:
        sys.path.insert(0, str(search))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error raised while importing the user's module is "cannot be imported"
        raise CredentialError(f"request.sign.function {reference}: cannot import {module_name} ({exc})") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise CredentialError(f"request.sign.function {reference}: {module_name} has no function {name}")
    return function  # type: ignore[no-any-return]


def _hmac_sha256(secret: bytes, encode: Callable[[bytes], str]) -> Signer:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer pads hashed once: each message then costs two copies
    of a hash state and two short updates — under half of `hmac.new` per call, which looks the digest up by
    name in OpenSSL 3 every time. Equal to hmac.new(secret, message, sha256) (tests/targets/test_signing.py)."""
    if len(secret) > BLOCK:
        secret = hashlib.sha256(secret).digest()
    padded = secret.ljust(BLOCK, b"\0")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in padded))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in padded))

    def sign(message: bytes) -> str:
        state = inner.copy()
        state.update(message)
        result = outer.copy()
        result.update(state.digest())
        return encode(result.digest())

    return sign


def make_signer(
    algorithm: str,
    *,
    key: str | None,
    key_file: str | None,
    encoding: str,
    function: str | None,
    env: Mapping[str, str],
    search: Path | None = None,
) -> Signer:
    """A signer for one profile's [request.sign]; CredentialError if its key or function cannot be used."""
    text = key_text(key, key_file, env) if key is not None or key_file is not None else ""
    if algorithm == "python":
        assert function is not None
        user_function = import_function(function, search)
        return lambda message: str(user_function(message, text))
    if not text:
        raise CredentialError(f"request.sign: the {algorithm} key is empty")
    encode = _encode(encoding)
    if algorithm == "hmac-sha256":
        return _hmac_sha256(text.encode(), encode)
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private = _private_key(text, algorithm)
    if isinstance(private, rsa.RSAPrivateKey):
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        rsa_key = private
        return lambda message: encode(rsa_key.sign(message, pkcs1, sha256))
    ed_key = private
    return lambda message: encode(ed_key.sign(message))


def client_context(
    *, ca_file: str | None, cert_file: str | None, key_file: str | None, verify: bool, factory: type[ssl.SSLContext]
) -> ssl.SSLContext:
    """The TLS client context of a profile's [tls]; `factory` is ssl.SSLContext or gevent's cooperative one.
    Verification (certificate and host name) is on unless `verify` is false."""
    context = factory(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        try:
            if ca_file is not None:
                context.load_verify_locations(cafile=ca_file)
            else:
                context.load_default_certs()
        except (OSError, ssl.SSLError) as exc:
            raise CredentialError(f"tls.ca_file {ca_file}: not a readable PEM CA bundle ({_reason(exc)})") from None
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise CredentialError(
                f"tls.cert_file {cert_file}: the client certificate and key do not load ({_reason(exc)})"
            ) from None
    return context


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc.__class__.__name__)


def certificate_expiry(cert_file: str) -> datetime | None:
    """When the client certificate stopped being valid, if it already has (else None): a warning before the
    run, since a server refusing it shows up as attempts refused at the handshake."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        return None
    not_after = certificate.not_valid_after_utc
    return not_after if not_after < datetime.now(UTC) else None
