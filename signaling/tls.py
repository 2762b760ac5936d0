"""HTTPS: the server's TLS context, reloaded in place, and a self-signed development certificate.

``visio serve --tls-cert FILE --tls-key FILE`` serves HTTPS and WSS on its
port. A renewed certificate (certbot, acme.sh, an internal CA) is picked up
without a restart: on SIGHUP, and when either file's modification time
changes (checked every few seconds). A broken renewal is logged and the
running certificate kept.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import ssl
from pathlib import Path

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 5.0  # seconds between two looks at the files' modification times
DEV_CERT_DAYS = 365


def server_context(cert: Path, key: str | Path) -> ssl.SSLContext:
    """A server context with modern defaults (TLS 1.2 minimum) and the given chain."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class ReloadingCertificate:
    """One ``SSLContext`` for the listening socket; new handshakes see a reloaded chain."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.context = server_context(cert, key)  # fails at start-up on a bad pair
        self.reloads = 0
        self._stamp = self._mtimes()
        self._watch: asyncio.Task[None] | None = None

    def reload(self) -> bool:
        """Loads the files again; on any error logs it and keeps the current certificate."""
        self._stamp = self._mtimes()
        try:
            server_context(self.cert, self.key)  # validate the new pair before using it
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            logger.error("TLS certificate %s not reloaded, keeping the current one: %s",
                         self.cert, exc)
            return False
        self.reloads += 1
        logger.info("TLS certificate %s reloaded", self.cert)
        return True

    def start_watching(self, interval: float = WATCH_INTERVAL) -> None:
        self._watch = asyncio.ensure_future(self._watch_files(interval))

    async def stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)

    async def _watch_files(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._mtimes() != self._stamp:
                self.reload()

    def _mtimes(self) -> tuple[float, float]:
        try:
            return self.cert.stat().st_mtime, self.key.stat().st_mtime
        except OSError:
            return -1.0, -1.0


def write_dev_certificate(cert_path: Path, key_path: Path,
                          names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> None:
    """A self-signed certificate (ECDSA P-256) for local HTTPS; the key file is mode 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "visio development"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "visio")])
    alternative: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DEV_CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    key_path.touch(mode=0o600, exist_ok=True)
    key_path.chmod(0o600)
    key_path.write_bytes(key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
