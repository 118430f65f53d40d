"""Certificate files on disk, named as in a `kubernetes.io/tls` Secret plus the CA.

Writes are atomic (temp file, then rename) so a reloading server never reads half a pair,
and private keys are created 0600.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509

from certs.authority import KeyPair, make_ca, make_serving_cert, service_dns_names

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"


@dataclass(frozen=True)
class CertFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.directory / CA_KEY

    @property
    def cert(self) -> Path:
        return self.directory / TLS_CERT

    @property
    def key(self) -> Path:
        return self.directory / TLS_KEY


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pair(cert_path: Path, key_path: Path, pair: KeyPair) -> None:
    """Key first, so a reader that sees the new certificate also finds its key."""
    write_atomic(key_path, pair.key_pem, mode=0o600)
    write_atomic(cert_path, pair.cert_pem)


def load_or_make_ca(files: CertFiles, *, days: int = 3650) -> KeyPair:
    """The CA in the directory, or a new one written there (re-issuing keeps caBundle valid)."""
    if files.ca_cert.exists() and files.ca_key.exists():
        return KeyPair.from_pem(files.ca_cert.read_bytes(), files.ca_key.read_bytes())
    ca = make_ca(days=days)
    write_pair(files.ca_cert, files.ca_key, ca)
    return ca


def issue(
    directory: Path,
    *,
    service: str,
    namespace: str,
    dns_names: list[str] | None = None,
    ips: list[str] | None = None,
    days: int = 365,
) -> CertFiles:
    """Write a serving certificate (and the CA if missing) for the Service and local use."""
    files = CertFiles(directory)
    ca = load_or_make_ca(files)
    names = [*service_dns_names(service, namespace), "localhost", *(dns_names or [])]
    addresses = ["127.0.0.1", "::1", *(ips or [])]
    write_pair(
        files.cert, files.key, make_serving_cert(ca, dns_names=names, ips=addresses, days=days)
    )
    return files


def dns_names_of(cert_path: Path) -> set[str]:
    """The DNS SANs of a PEM certificate file."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(sans.get_values_for_type(x509.DNSName))


def ensure(
    directory: Path, *, service: str, namespace: str
) -> tuple[CertFiles, Literal["made", "reused", "re-issued"], list[str]]:
    """Serving files in `directory`, made once and reused. Reused files that lack the
    Service names now asked for are issued again from the directory's CA, when it holds the
    CA's key (ours); else they are reused as they are. Returns the files, what was done, and
    the names the certificate still lacks (to warn of)."""
    files = CertFiles(directory)
    if not (files.cert.exists() and files.key.exists()):
        return issue(directory, service=service, namespace=namespace), "made", []
    missing = sorted(set(service_dns_names(service, namespace)) - dns_names_of(files.cert))
    if not missing:
        return files, "reused", []
    if files.ca_cert.exists() and files.ca_key.exists():
        return issue(directory, service=service, namespace=namespace), "re-issued", []
    return files, "reused", missing
