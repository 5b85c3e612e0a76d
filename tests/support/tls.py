"""A throwaway certificate authority, and server and client certificates it signs."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA, the server's pair (named `localhost` only) and a client's pair."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _sign(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    usage: x509.ObjectIdentifier | None,
    *,
    host: str = "localhost",
    expired: bool = False,
) -> x509.Certificate:
    # An expired certificate ended a day ago (counted from now, never a fixed date).
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2 if expired else 0)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        names = [x509.DNSName(host)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_tls_files(directory: Path, *, host: str = "localhost", expired: bool = False) -> TlsFiles:
    """A CA, a server certificate for `host` (default `localhost`, not 127.0.0.1) and a
    client one; with `expired`, the server's certificate ended a day ago."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _sign(f"gateway test CA {directory.name}", ca_key, None, None)
    pem = serialization.Encoding.PEM
    paths = {}
    for who, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        server = who == "server"
        cert = _sign(who, key, (ca.subject, ca_key), usage, host=host, expired=server and expired)
        (directory / f"{who}.pem").write_bytes(cert.public_bytes(pem))
        paths[who] = (directory / f"{who}.pem", _write_key(key, directory / f"{who}.key"))
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    return TlsFiles(directory / "ca.pem", *paths["server"], *paths["client"])


def tls_server_args(files: TlsFiles, port: int) -> list[str]:
    """redis-server arguments: TLS only, on `port`, client certificates required."""
    return [
        *("--port", "0", "--tls-port", str(port)),
        *("--tls-cert-file", str(files.server_cert), "--tls-key-file", str(files.server_key)),
        *("--tls-ca-cert-file", str(files.ca), "--tls-auth-clients", "yes"),
    ]


def tls_client_options(files: TlsFiles) -> dict[str, object]:
    """redis-py options for a client that trusts the CA and shows its own certificate."""
    return {
        "ssl": True,
        "ssl_ca_certs": str(files.ca),
        "ssl_certfile": str(files.client_cert),
        "ssl_keyfile": str(files.client_key),
    }
