"""The values an app instance's chart renders with, from MECM's instantiate parameters.

Order (each layer over the one before): the chart's own values.yaml (Helm merges it), then
``appconfig.appnamespace`` and ``appconfig.aksk.{appInsId,accesskey,secretkey,secretname}``
(what EdgeGallery charts read, as k8splugin writes them), then every other parameter.

Other parameters are Helm ``--set`` style: a dotted key is a path (``imagelocation.domainname``),
``true``/``false`` become booleans and decimal integers become numbers, so that a
``global.mepagent.enabled=false`` parameter really turns a guarded template off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = [
    "AK",
    "NAMESPACE_PARAMETERS",
    "SK",
    "aksk_secret_name",
    "chart_values",
    "instance_namespace",
]

AK: Final = "ak"
SK: Final = "sk"
NAMESPACE_PARAMETERS: Final = ("appnamespace", "appconfig.appnamespace")
"""Parameters that choose the namespace instead of the chart's ``appconfig.appnamespace``."""
_RESERVED: Final = frozenset({AK, SK, *NAMESPACE_PARAMETERS})
_INTEGER: Final = re.compile(r"^-?(0|[1-9][0-9]{0,17})$")
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_KEY: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def aksk_secret_name(instance_id: str) -> str:
    """The AK/SK Secret of an app instance (SPEC §7)."""
    return f"{instance_id}-aksk"


def instance_namespace(parameters: Mapping[str, str], chart_values: Mapping[str, Any]) -> str:
    """The namespace to deploy into: a parameter, else the chart's ``appconfig.appnamespace``."""
    chosen: Any = None
    for key in NAMESPACE_PARAMETERS:
        if parameters.get(key):
            chosen = parameters[key]
            break
    if chosen is None:
        appconfig = chart_values.get("appconfig")
        if isinstance(appconfig, Mapping):
            chosen = appconfig.get("appnamespace")
    namespace = str(chosen) if chosen else "default"
    if not _DNS_LABEL.match(namespace):
        raise AdapterError(
            ErrorKind.INVALID, f"appnamespace {namespace!r} is not a valid namespace"
        )
    return namespace


def chart_values(
    parameters: Mapping[str, str], *, instance_id: str, namespace: str
) -> dict[str, Any]:
    """The values passed to Helm over the chart's values.yaml."""
    values: dict[str, Any] = {
        "appconfig": {
            "appnamespace": namespace,
            "aksk": {
                "appInsId": instance_id,
                "accesskey": parameters.get(AK, ""),
                "secretkey": parameters.get(SK, ""),
                "secretname": aksk_secret_name(instance_id),
            },
        }
    }
    for key in sorted(parameters):
        if key in _RESERVED:
            continue
        _set_path(values, key, _typed(parameters[key]))
    return values


def _typed(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if _INTEGER.match(text):
        return int(text)
    return text


def _set_path(values: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if not all(_KEY.match(p) for p in parts):
        raise AdapterError(ErrorKind.INVALID, f"parameter {dotted!r} is not a valid value path")
    node = values
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
