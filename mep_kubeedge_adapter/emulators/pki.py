"""Throwaway TLS material: a private CA and a server certificate it signed.

EdgeGallery's installer gives the MEPM's services (k8splugin, and the KubeEdge plugin for
MECM beside it) ``server_tls.crt``/``server_tls.key`` and the ``ca.crt`` that signed them.
lcmcontroller connects with ServerName ``edgegallery.org`` and, for TLS 1.2, offers only
ECDHE-RSA suites, so the server key is RSA (reference: mecm-applcm.md §1.3). The demo and the
tests make such a set here; an EC key can be asked for to see a plugin refuse it.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = ["SERVER_NAME", "Pki", "make_pki"]

SERVER_NAME: Final = "edgegallery.org"
"""The name lcmcontroller puts in its TLS ServerName."""


@dataclass(frozen=True)
class Pki:
    """The CA certificate (PEM) and the server certificate and key files it signed."""

    ca_pem: bytes
    cert_file: Path
    key_file: Path
    ca_file: Path


_CA_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


def _private_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(
    directory: Path,
    *,
    key_type: Literal["rsa", "ec"] = "rsa",
    server_name: str = SERVER_NAME,
    alt_names: Sequence[str] = (SERVER_NAME, "localhost", "127.0.0.1"),
    days: int = 1,
) -> Pki:
    """A CA and a server certificate for ``server_name``, valid for ``alt_names`` (DNS names
    or IP addresses), with the extensions a strict verifier wants (CA key usage, key ids).

    Writes ``ca.crt``, ``server.crt`` and ``server.key`` (0600) into ``directory``.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "throwaway MEPM CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if key_type == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    names: list[x509.GeneralName] = []
    for name in alt_names:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    ca_file = directory / "ca.crt"
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    ca_file.write_bytes(ca_pem)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(_private_pem(key))
    return Pki(ca_pem, cert_file, key_file, ca_file)
