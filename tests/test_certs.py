"""Certificates: what the API server needs to trust the webhook, written safely."""

from __future__ import annotations

import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import files
from certs.authority import KeyPair, make_ca, make_client_cert, make_serving_cert


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    ]


def test_serving_certificate_has_everything_go_checks() -> None:
    ca = make_ca(days=30)
    leaf = make_serving_cert(
        ca, dns_names=["svc.ns.svc", "svc.ns.svc"], ips=["127.0.0.1", "::1"], days=7
    )
    dns, ips = _sans(leaf.cert)
    assert dns == ["svc.ns.svc"]
    assert ips == ["127.0.0.1", "::1"]
    assert isinstance(leaf.key, ec.EllipticCurvePrivateKey)
    assert leaf.key.curve.name == "secp256r1"
    eku = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.cert.verify_directly_issued_by(ca.cert)
    validity = leaf.cert.not_valid_after_utc - leaf.cert.not_valid_before_utc
    assert 7 * 86400 <= validity.total_seconds() <= 7 * 86400 + 600


def test_client_certificate_carries_user_and_groups() -> None:
    ca = make_ca()
    client = make_client_cert(
        ca,
        user="system:serviceaccount:sg:webhook",
        groups=["system:serviceaccounts", "system:serviceaccounts:sg"],
    )
    subject = client.cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:serviceaccount:sg:webhook"
    )
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:serviceaccounts",
        "system:serviceaccounts:sg",
    ]
    eku = client.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_pem_round_trip() -> None:
    pair = make_ca()
    again = KeyPair.from_pem(pair.cert_pem, pair.key_pem)
    assert again.cert == pair.cert


def test_issue_writes_private_keys_0600_and_keeps_the_ca(tmp_path: Path) -> None:
    first = files.issue(tmp_path, service="stateful-guard", namespace="sg", ips=["10.1.2.3"])
    for key in (first.key, first.ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ca_before = first.ca_cert.read_bytes()
    cert_before = first.cert.read_bytes()
    files.issue(tmp_path, service="stateful-guard", namespace="sg")
    assert first.ca_cert.read_bytes() == ca_before, "re-issuing keeps the caBundle valid"
    assert first.cert.read_bytes() != cert_before
    dns, ips = _sans(x509.load_pem_x509_certificate(cert_before))
    assert {"stateful-guard.sg.svc", "stateful-guard.sg.svc.cluster.local", "localhost"} <= set(dns)
    assert ipaddress.ip_address("10.1.2.3") in map(ipaddress.ip_address, ips)


def test_ensure_makes_once_and_reuses(tmp_path: Path) -> None:
    made, done, _ = files.ensure(tmp_path / "certs", service="s", namespace="n")
    assert done == "made"
    content = made.cert.read_bytes()
    again, done, missing = files.ensure(tmp_path / "certs", service="s", namespace="n")
    assert (done, missing) == ("reused", []) and again.cert.read_bytes() == content


def test_reused_certificates_get_newly_asked_names(tmp_path: Path) -> None:
    """`serve --service foo --namespace bar` over certificates made for the defaults: issued
    again from our CA (same CA, so caBundle stays valid); without the CA's key, reused and
    the missing names reported."""
    made, _, _ = files.ensure(tmp_path / "certs", service="s", namespace="n")
    ca = made.ca_cert.read_bytes()
    again, done, missing = files.ensure(tmp_path / "certs", service="foo", namespace="bar")
    assert (done, missing) == ("re-issued", [])
    assert "foo.bar.svc" in files.dns_names_of(again.cert)
    assert again.ca_cert.read_bytes() == ca
    made.ca_key.unlink()  # certificates someone else's CA signed
    _, done, missing = files.ensure(tmp_path / "certs", service="other", namespace="ns")
    assert done == "reused"
    assert missing == ["other", "other.ns", "other.ns.svc", "other.ns.svc.cluster.local"]


def test_certs_command(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "certs",
            "--out",
            str(tmp_path),
            "--service",
            "sg",
            "--namespace",
            "guard",
            "--dns",
            "webhook.example.com",
            "--ip",
            "192.0.2.10",
            "--days",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert run.stdout.split() == [str(tmp_path / n) for n in ("ca.crt", "tls.crt", "tls.key")]
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    dns, ips = _sans(cert)
    assert "sg.guard.svc" in dns and "webhook.example.com" in dns
    assert "192.0.2.10" in ips
