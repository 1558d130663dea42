"""Throwaway certificates for acme's mutual TLS (examples/acme/server.py --tls-cert … --client-ca …).

A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, all signed by that CA, made
with the `cryptography` package (surge depends on it): no openssl command line to get right.

    python examples/acme/make_certs.py examples/acme/certs         # ca.pem server.pem/.key client.pem/.key
    python examples/acme/make_certs.py /tmp/certs --client-expired    # a client certificate that expired yesterday

The keys are written unencrypted with mode 0600: for a loopback rehearsal, never for anything real.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FILES = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    usage: x509.ObjectIdentifier,
    valid: tuple[dt.datetime, dt.datetime],
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name("acme test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def make_certs(folder: Path, *, client_expired: bool = False) -> dict[str, Path]:
    """Write the CA, server and client certificates and keys into `folder`; their paths by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    year = (now - dt.timedelta(days=1), now + dt.timedelta(days=365))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("acme test CA"))
        .issuer_name(_name("acme test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(year[0])
        .not_valid_after(year[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .sign(ca_key, hashes.SHA256())
    )
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    loopback = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = _issue("127.0.0.1", server_key, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH, valid=year, names=loopback)
    expired = (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    client_valid = expired if client_expired else year
    client_usage = ExtendedKeyUsageOID.CLIENT_AUTH
    client = _issue("surge load generator", client_key, ca_key, usage=client_usage, valid=client_valid)
    paths = {name: folder / name for name in FILES}
    for name, certificate in (("ca.pem", ca), ("server.pem", server), ("client.pem", client)):
        paths[name].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["server.key"], server_key)
    _write_key(paths["client.key"], client_key)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--client-expired", action="store_true", help="the client certificate expired yesterday")
    args = parser.parse_args()
    for path in make_certs(args.folder, client_expired=args.client_expired).values():
        print(path)


if __name__ == "__main__":
    main()
