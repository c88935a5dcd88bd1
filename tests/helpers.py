"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import looptime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mep_kubeedge_adapter.domain import DeviceId
from mep_kubeedge_adapter.registry import DeviceRegistry


@contextlib.contextmanager
def virtual_time() -> Iterator[None]:
    """Run the block on virtual time: the running loop's clock jumps to its next timer
    whenever nothing is ready, so sleeps, timeouts and periodic loops of seconds or
    minutes pass at once and exactly (``looptime``).

    For code that runs inside this process's loop only; a real external process (mosquitto)
    answers in real time, which this clock would not wait for. The loop's clock continues
    from its real value, so timers set before the block keep their place.
    """
    loop = asyncio.get_running_loop()
    patched = looptime.patch_event_loop(
        cast(asyncio.BaseEventLoop, loop), start=loop.time(), _enabled=False
    )
    with patched.looptime_enabled():
        yield


async def until(
    registry: DeviceRegistry, predicate: Callable[[], bool], timeout: float = 15
) -> None:
    """Wait for the registry to reach a state, woken by its change events (no polling)."""
    changed = asyncio.Event()
    unsubscribe = registry.subscribe(lambda _event: changed.set())
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await changed.wait()
                changed.clear()
    finally:
        unsubscribe()


def reported(registry: DeviceRegistry, device: DeviceId, prop: str) -> str | None:
    """The reported value of a property, or None."""
    current = registry.get(device)
    if current is None or prop not in current.properties:
        return None
    value = current.properties[prop].reported
    return value.value if value else None


def desired(registry: DeviceRegistry, device: DeviceId, prop: str) -> str | None:
    """The desired value of a property, or None."""
    current = registry.get(device)
    if current is None or prop not in current.properties:
        return None
    value = current.properties[prop].desired
    return value.value if value else None


def make_pki(
    tmp: Path, *, names: tuple[str, ...] = ("edgegallery",), addresses: tuple[str, ...] = ()
) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``names`` and ``addresses``: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names]
                + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "srv.pem", tmp / "srv.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file
