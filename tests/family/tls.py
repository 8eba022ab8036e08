"""Self-signed certificates like the one LingYi serves (``~/.lingyi/cert.pem`` + ``cert.key``), made on the fly.

LingYi's web app serves HTTPS with its own self-signed certificate and its bridge client, seeing those files,
insists on ``wss://`` (without verifying the hub's certificate). Tests need the same: a certificate file the hub
can be told to trust (or not), and server/client TLS contexts built from it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SelfSignedCert:
    """A certificate and its key on disk (PEM). ``path`` is what a client pins as its CA bundle."""

    path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.path, self.key_path)
        return context


def make_cert(
    directory: Path, *, common_name: str = "localhost", names: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> SelfSignedCert:
    """A new self-signed certificate for ``names`` (DNS names or IP addresses), written into ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if alternatives:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    certificate = builder.sign(key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "cert.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return SelfSignedCert(cert_path, key_path)


@cache
def lingyi_cert() -> SelfSignedCert:
    """One certificate for the whole test run (like ``~/.lingyi/cert.pem``), in a directory removed at exit."""
    directory = tempfile.TemporaryDirectory(prefix="lingyi-cert-")
    cert = make_cert(Path(directory.name))
    _keep.append(directory)
    return cert


def unverified_client_context() -> ssl.SSLContext:
    """The client context LingYi's bridge client uses with ``wss://``: TLS, but any certificate is accepted."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_keep: list[tempfile.TemporaryDirectory] = []
