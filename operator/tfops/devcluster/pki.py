"""Certificates for the local control plane: the cluster CA with a loopback
serving cert and an admin client cert, a front-proxy CA with the client cert the
API server proxies to aggregated APIs (metrics-server) with, and the
service-account signing key."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=7)
ADMIN_NAME = "tfops-dev-admin"
FRONT_PROXY_NAME = "front-proxy-client"


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    front_proxy_ca_cert: Path
    front_proxy_cert: Path
    front_proxy_key: Path
    service_account_key: Path
    service_account_pub: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def write_pki(directory: Path) -> Pki:
    """Write a fresh PKI into `directory` and return the file paths."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM

    def leaf(
        issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
        name: x509.Name,
        usage: x509.ObjectIdentifier,
        san: list[x509.GeneralName] | None,
        stem: str,
    ) -> tuple[Path, Path]:
        key = _key()
        builder = _builder(name, issuer[0].subject, key).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(issuer[1], hashes.SHA256())
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(pem))
        _write_key(key, key_path)
        return cert_path, key_path

    ca = _ca("tfops-dev-cluster-ca")
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca[0].public_bytes(pem))
    serving_cert, serving_key = leaf(
        ca,
        _name("127.0.0.1"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            # The first service IP: the in-cluster `kubernetes` Service.
            x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
        ],
        "serving",
    )
    admin_cert, admin_key = leaf(
        ca, _name(ADMIN_NAME, "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, None, "admin"
    )
    # Its own CA, as kubeadm sets it up: with the cluster CA as the request-header
    # CA, every client-cert request was verified twice (as a front proxy, then as
    # a client), about 3% of the API server's CPU under load.
    front_proxy_ca = _ca("tfops-dev-front-proxy-ca")
    front_proxy_ca_path = directory / "front-proxy-ca.crt"
    front_proxy_ca_path.write_bytes(front_proxy_ca[0].public_bytes(pem))
    front_proxy_cert, front_proxy_key = leaf(
        front_proxy_ca,
        _name(FRONT_PROXY_NAME),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        None,
        "front-proxy-client",
    )

    sa_key = _key()
    sa_key_path, sa_pub_path = directory / "sa.key", directory / "sa.pub"
    _write_key(sa_key, sa_key_path)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return Pki(
        ca_path,
        serving_cert,
        serving_key,
        admin_cert,
        admin_key,
        front_proxy_ca_path,
        front_proxy_cert,
        front_proxy_key,
        sa_key_path,
        sa_pub_path,
    )
