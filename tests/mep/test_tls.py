"""TLS: the MEP's certificate is verified against our CA and a fixed server name."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mep_kubeedge_adapter.emulators.mep import AppIdentity, MepEmulator
from mep_kubeedge_adapter.emulators.pki import make_pki
from mep_kubeedge_adapter.mep.client import Mp1Client, Unavailable


def _make_pki(tmp: Path) -> tuple[Path, Path, Path]:
    """EdgeGallery's gateway certificate names ``edgegallery`` only (not the IP dialled)."""
    pki = make_pki(tmp, key_type="ec", server_name="edgegallery", alt_names=["edgegallery"])
    return pki.ca_file, pki.cert_file, pki.key_file


async def test_tls_with_server_name_override(tmp_path: Path) -> None:
    ca_file, cert_file, key_file = _make_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    ident = AppIdentity.generate()
    async with MepEmulator(ssl_context=context, identities=[ident]) as mep:
        assert mep.url.startswith("https://127.0.0.1:")
        async with Mp1Client(
            mep.url,
            ident.app_instance_id,
            ident.ak,
            ident.sk,
            ca_file=str(ca_file),
            tls_server_name="edgegallery",
        ) as good:
            assert await good.list_services() == []
        async with Mp1Client(
            mep.url, ident.app_instance_id, ident.ak, ident.sk, ca_file=str(ca_file)
        ) as wrong_name:
            with pytest.raises(Unavailable, match=r"(?i)certificate|hostname"):
                await wrong_name.list_services()
        async with Mp1Client(
            mep.url, ident.app_instance_id, ident.ak, ident.sk, tls_server_name="edgegallery"
        ) as untrusted:
            with pytest.raises(Unavailable):
                await untrusted.token()
