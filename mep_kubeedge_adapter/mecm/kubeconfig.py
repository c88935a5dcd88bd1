"""Checking a kubeconfig that MECM uploads, before it is stored or used.

A kubeconfig can make the client run a program (``exec``, ``auth-provider``) or read any file
of this host (``certificate-authority``, ``client-certificate``, ``client-key``, ``tokenFile``
as paths). An uploaded one may do neither: credentials and certificates must be inline
(``*-data``, ``token``, ``username``/``password``). The server address is the caller's to
choose (it is the cluster's API server).
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = ["MAX_KUBECONFIG_BYTES", "check_kubeconfig"]

MAX_KUBECONFIG_BYTES: Final = 5 * 1024 * 1024
"""lcmcontroller's own limit on an uploaded config file."""
_FILE_KEYS: Final = ("certificate-authority", "client-certificate", "client-key", "tokenFile")
_PROGRAM_KEYS: Final = ("exec", "auth-provider")


def _refuse(detail: str) -> AdapterError:
    return AdapterError(ErrorKind.INVALID, f"kubeconfig refused: {detail}")


def check_kubeconfig(content: bytes) -> None:
    """Raise AdapterError INVALID unless ``content`` is a self-contained kubeconfig."""
    if not content.strip():
        raise _refuse("the file is empty")
    if len(content) > MAX_KUBECONFIG_BYTES:
        raise _refuse(f"larger than {MAX_KUBECONFIG_BYTES} bytes")
    try:
        document: Any = yaml.safe_load(content)
    except yaml.YAMLError:
        raise _refuse("not valid YAML") from None
    if not isinstance(document, dict):
        raise _refuse("not a kubeconfig (no mapping at the top)")
    clusters = document.get("clusters")
    if not isinstance(clusters, list) or not clusters:
        raise _refuse("no clusters")
    for entry in clusters:
        cluster = entry.get("cluster") if isinstance(entry, dict) else None
        if not isinstance(cluster, dict) or not isinstance(cluster.get("server"), str):
            raise _refuse("a cluster has no server")
        _no_files(cluster, "cluster")
    for entry in document.get("users") or []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if user is None:
            continue
        if not isinstance(user, dict):
            raise _refuse("a user entry is not a mapping")
        for key in _PROGRAM_KEYS:
            if key in user:
                raise _refuse(f"users may not use {key!r} (it would run a program here)")
        _no_files(user, "user")


def _no_files(section: dict[str, Any], what: str) -> None:
    for key in _FILE_KEYS:
        if section.get(key):
            raise _refuse(f"a {what} refers to a file ({key}); use {key}-data instead")
