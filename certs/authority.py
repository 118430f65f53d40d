"""Make a CA and the certificates it signs (ECDSA P-256).

The API server verifies the webhook's certificate against the `caBundle` and the host in
`clientConfig` (a Service DNS name, or 127.0.0.1 for a local webhook: Go ignores a bare CN,
so every name and IP must be a SAN).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLOCK_SKEW = dt.timedelta(minutes=5)  # valid a little before "now": clocks differ


@dataclass(frozen=True)
class KeyPair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> KeyPair:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("expected an ECDSA private key")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use for an in-cluster Service."""
    base = f"{service}.{namespace}"
    return [service, base, f"{base}.svc", f"{base}.svc.cluster.local"]


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(common_name: str = "stateful-guard-ca", *, days: int = 3650) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def _leaf(
    ca: KeyPair,
    *,
    common_name: str,
    organizations: Iterable[str] = (),
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    days: int,
) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    builder = (
        _builder(x509.Name(attributes), ca.cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def make_serving_cert(
    ca: KeyPair,
    *,
    dns_names: Iterable[str],
    ips: Iterable[str] = (),
    days: int = 365,
) -> KeyPair:
    """A TLS server certificate with every name and IP as a SAN."""
    dns = list(dict.fromkeys(dns_names))
    addresses = list(dict.fromkeys(ips))
    if not dns and not addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP")
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in addresses]
    return _leaf(
        ca,
        common_name=(dns or addresses)[0],
        sans=sans,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        days=days,
    )


def make_client_cert(
    ca: KeyPair, *, user: str, groups: Iterable[str] = (), days: int = 365
) -> KeyPair:
    """A client certificate as the API server reads it: CN is the user, O the groups."""
    return _leaf(
        ca,
        common_name=user,
        organizations=groups,
        sans=[],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        days=days,
    )
