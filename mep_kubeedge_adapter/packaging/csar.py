"""EdgeGallery app packages (CSAR) of the adapter and of the sample edge app.

A package is a zip that MECM takes on ``POST /packages`` and hands whole to the host's
AppLCM plugin (reference: mecm-applcm.md §3). Its layout::

    TOSCA-Metadata/TOSCA.meta                 Entry-Definitions: the APPD
    APPD/Definition/MainServiceTemplate.yaml  TOSCA: the app, its pod (VDU), app_configuration
    Artifacts/Deployment/Charts/<chart>.tgz   the Helm chart MECM deploys
    Image/SwImageDesc.json                    the container image the chart runs
    <app>.mf                                  metadata, then Source/Algorithm/Hash per file

The APPD's ``app_configuration`` is what EdgeGallery acts on: lcmcontroller provisions the
app's mepauth identity with ``requiredServices`` = the serNames of ``appServiceRequired``,
``appServiceOptional`` and ``appServiceProduced``, and the MEP shows an app only the services
named there. serNames are per node (``kubeedge-devices-<node>``, ``iots-<node>``), so a
package is built for the edge nodes it will serve. The names come from the registrar's own
:func:`~mep_kubeedge_adapter.mep.registrar.wanted_services`, never written here by hand.
The per-model and per-device services (``MKA_MEP__SERVICE_MODE``) depend on the devices
present at run time and cannot be declared in advance.

The sample app runs in the adapter's image (``/opt/mka/examples/sample_app.py``), so both
packages describe the same image in ``Image/SwImageDesc.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mep_kubeedge_adapter import __version__
from mep_kubeedge_adapter.mep.models import ServiceInfo
from mep_kubeedge_adapter.mep.registrar import wanted_services
from mep_kubeedge_adapter.packaging.archive import PackagingError, source_date_epoch, zip_archive
from mep_kubeedge_adapter.packaging.charts import (
    ADAPTER_CHART,
    SAMPLE_APP_CHART,
    ImageLocation,
    chart_archive,
    chart_metadata,
    chart_values,
)
from mep_kubeedge_adapter.packaging.yamlfmt import dump_yaml

__all__ = [
    "APPD_PATH",
    "APPS",
    "IMAGE_DESC_PATH",
    "TOSCA_META_PATH",
    "Csar",
    "build_csar",
    "produced_services",
    "required_services",
    "write_csar",
]

TOSCA_META_PATH = "TOSCA-Metadata/TOSCA.meta"
APPD_PATH = "APPD/Definition/MainServiceTemplate.yaml"
CHARTS_DIR = "Artifacts/Deployment/Charts"
IMAGE_DESC_PATH = "Image/SwImageDesc.json"
PROVIDER = "mep-kubeedge-adapter"
IMAGE_NAME = "mep-kubeedge-adapter"

APPS = {"adapter": ADAPTER_CHART, "sample-app": SAMPLE_APP_CHART}
"""Package kind (the CLI's name) to chart and package name."""

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DESCRIPTIONS = {
    ADAPTER_CHART: "KubeEdge device twins as MP1 services of the EdgeGallery MEP, one adapter "
    "per KubeEdge edge node",
    SAMPLE_APP_CHART: "Sample edge app: discovers the KubeEdge device service of its node over "
    "MP1, reads a twin through the MEP gateway and follows its changes",
}


@dataclass(frozen=True, slots=True)
class Csar:
    """A built app package: its file name and bytes, and the files inside it."""

    filename: str
    data: bytes
    files: dict[str, bytes]


def _check_nodes(nodes: Sequence[str]) -> list[str]:
    if not nodes:
        raise PackagingError(
            "name at least one edge node: the serNames in the APPD are per node "
            "(kubeedge-devices-<node>)"
        )
    checked: list[str] = []
    for node in nodes:
        if not _NODE_NAME.match(node) or len(node) > 253:
            raise PackagingError(f"{node!r} is not a Kubernetes node name")
        if node not in checked:
            checked.append(node)
    return checked


def _node_services(node: str) -> list[ServiceInfo]:
    # The public URL only shapes endpoint URIs, which an APPD does not carry.
    return [w.info for w in wanted_services([], mode="node", node=node, public_url="http://node")]


def produced_services(nodes: Sequence[str]) -> list[ServiceInfo]:
    """What the adapter registers on each of ``nodes`` in every service mode, in order."""
    return [info for node in _check_nodes(nodes) for info in _node_services(node)]


def required_services(nodes: Sequence[str]) -> list[ServiceInfo]:
    """The device service of each node, which the sample app discovers and calls."""
    return [_node_services(node)[0] for node in _check_nodes(nodes)]


def _transport(info: ServiceInfo) -> dict[str, Any]:
    transport = info.transportInfo
    if transport is None:  # pragma: no cover - rest_service_info always sets one
        raise PackagingError(f"service {info.serName} has no transport")
    return {
        "transport": {
            "type": transport.type,
            "protocol": transport.protocol,
            "version": transport.version,
        },
        "serializers": [str(info.serializer)],
    }


def _app_configuration(chart: str, nodes: Sequence[str]) -> dict[str, Any]:
    config: dict[str, Any] = {"appName": chart, "appSupportMp1": True}
    if chart == ADAPTER_CHART:
        config["appServiceProduced"] = [
            {
                "serName": info.serName,
                "version": info.version,
                "transportsSupported": [_transport(info)],
                "dnsRuleIdList": [],
                "trafficRuleIdList": [],
            }
            for info in produced_services(nodes)
        ]
    else:
        config["appServiceRequired"] = [
            {
                "serName": info.serName,
                "version": info.version,
                "serTransportDependencies": [_transport(info)],
                "requestedPermissions": True,
            }
            for info in required_services(nodes)
        ]
    config["appTrafficRule"] = []
    config["appDNSRule"] = []
    return config


_CPU_UNITS = {"": 1.0, "m": 1e-3}
_MEMORY_UNITS = {
    "": 2.0**-20,
    "Ki": 2.0**-10,
    "Mi": 1.0,
    "Gi": 2.0**10,
    "M": 1e6 / 2**20,
    "G": 1e9 / 2**20,
}
"""Kubernetes quantity suffixes to CPUs and to MiB."""


def _quantity(value: object, units: dict[str, float]) -> int:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", str(value))
    if not match or match.group(2) not in units:
        raise PackagingError(f"resource quantity {value!r} is not understood")
    return max(1, math.ceil(float(match.group(1)) * units[match.group(2)]))


def _limits(chart: str) -> tuple[int, int]:
    """The chart's container limits as (whole CPUs, MiB): the APPD's virtual compute."""
    limits = chart_values(chart).get("resources", {}).get("limits", {})
    if not isinstance(limits, dict) or "cpu" not in limits or "memory" not in limits:
        raise PackagingError(f"chart {chart}: values.yaml has no resources.limits.cpu/memory")
    return _quantity(limits["cpu"], _CPU_UNITS), _quantity(limits["memory"], _MEMORY_UNITS)


def _appd(chart: str, nodes: Sequence[str], image_name: str) -> bytes:
    meta = chart_metadata(chart)
    version = str(meta["version"])
    cpus, memory = _limits(chart)
    appd = {
        "tosca_definitions_version": "tosca_simple_profile_yaml_1_2",
        "description": _DESCRIPTIONS[chart],
        "imports": ["nfv_vnfd_types_v1_0.yaml"],
        "metadata": {
            "template_name": chart,
            "template_author": PROVIDER,
            "template_version": version,
            "vnfm_type": "MEPM",
            "vnfd_id": chart,
            "vnfd_version": f"v{version}",
            "vnfd_name": chart,
            "vnfd_description": _DESCRIPTIONS[chart],
        },
        "topology_template": {
            "node_templates": {
                "app": {
                    "type": "tosca.nodes.nfv.VNF",
                    "properties": {
                        "vnfd_id": chart,
                        "vnfd_version": f"v{version}",
                        "provider": PROVIDER,
                        "product_name": chart,
                        "software_version": str(meta.get("appVersion", version)),
                        "product_info_name": chart,
                        "product_info_description": _DESCRIPTIONS[chart],
                        "flavour_id": "default",
                        "flavour_description": "default flavour",
                    },
                    "artifacts": {
                        "app_deployment": {
                            "file": f"{CHARTS_DIR}/{chart}.tgz",
                            "type": "tosca.artifacts.Deployment",
                        }
                    },
                },
                "pod": {
                    "type": "tosca.nodes.nfv.Vdu.Compute",
                    "properties": {
                        "name": chart,
                        "description": "the app's pod, as the chart renders it",
                        "sw_image_data": {"name": image_name},
                        "vdu_profile": {
                            "min_number_of_instances": 1,
                            "max_number_of_instances": 1,
                            "initial_number_of_instances": 1,
                        },
                    },
                    "capabilities": {
                        "virtual_compute": {
                            "properties": {
                                "virtual_memory": {"virtual_mem_size": memory},
                                "virtual_cpu": {"num_virtual_cpu": cpus},
                            }
                        }
                    },
                },
                "app_configuration": {
                    "type": "tosca.nodes.nfv.app.configuration",
                    "properties": _app_configuration(chart, nodes),
                },
            }
        },
    }
    header = (
        f"# APPD of {chart} {version}, for the edge nodes {', '.join(_check_nodes(nodes))}.\n"
        "# Generated by mep_kubeedge_adapter.packaging; build a new package rather than edit.\n"
    )
    return (header + dump_yaml(appd)).encode("utf-8")


def _image_desc(chart: str, image: ImageLocation) -> tuple[str, bytes]:
    tag = str(chart_metadata(chart).get("appVersion", __version__))
    name = f"{IMAGE_NAME}:{tag}"
    desc = [
        {
            "id": "1",
            "name": name,
            "version": tag,
            "checksum": "",
            "containerFormat": "docker",
            "diskFormat": "raw",
            "minDisk": 1,
            "minRam": _limits(chart)[1],
            "swImage": image.reference(IMAGE_NAME, tag),
            "operatingSystem": "linux",
            "supportedVirtualisationEnvironment": "linux",
        }
    ]
    return name, (json.dumps(desc, indent=2) + "\n").encode("utf-8")


def _tosca_meta() -> bytes:
    return (
        "TOSCA-Meta-File-Version: 1.0\n"
        "CSAR-Version: 1.1\n"
        f"Created-by: {PROVIDER}\n"
        f"Entry-Definitions: {APPD_PATH}\n"
    ).encode()


def _manifest(chart: str, files: dict[str, bytes], epoch: int) -> bytes:
    released = time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch))
    lines = [
        "metadata:",
        f"app_product_name: {chart}",
        f"app_provider_id: {PROVIDER}",
        f"app_package_version: {chart_metadata(chart)['version']}",
        f"app_release_data_time: {released}",
        "app_type: container",
        "app_class: container",
        f"app_package_description: {_DESCRIPTIONS[chart]}",
        "",
    ]
    for path in sorted(files):
        lines += [
            f"Source: {path}",
            "Algorithm: SHA-256",
            f"Hash: {hashlib.sha256(files[path]).hexdigest()}",
            "",
        ]
    return "\n".join(lines).encode("utf-8")


def build_csar(
    app: str,
    nodes: Sequence[str],
    *,
    image: ImageLocation | None = None,
    epoch: int | None = None,
) -> Csar:
    """The app package of ``app`` (``"adapter"`` or ``"sample-app"``) for ``nodes``.

    ``nodes`` are the edge nodes whose adapter services the APPD declares (produced by the
    adapter, required by the sample app). ``epoch`` defaults to :func:`source_date_epoch`;
    the same inputs give the same bytes.
    """
    if app not in APPS:
        raise PackagingError(f"no app {app!r}; the apps are {', '.join(APPS)}")
    chart = APPS[app]
    image = image or ImageLocation()
    epoch = source_date_epoch() if epoch is None else epoch
    image_name, image_desc = _image_desc(chart, image)
    files = {
        TOSCA_META_PATH: _tosca_meta(),
        APPD_PATH: _appd(chart, nodes, image_name),
        f"{CHARTS_DIR}/{chart}.tgz": chart_archive(chart, epoch=epoch, image=image),
        IMAGE_DESC_PATH: image_desc,
    }
    files[f"{chart}.mf"] = _manifest(chart, files, epoch)
    version = chart_metadata(chart)["version"]
    return Csar(f"{chart}-{version}.csar", zip_archive(files, epoch=epoch), files)


def write_csar(csar: Csar, out_dir: Path) -> Path:
    """Write ``csar`` into ``out_dir`` (created if missing), replacing an older copy whole."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / csar.filename
    partial = target.with_name(f".{csar.filename}.partial")
    partial.write_bytes(csar.data)
    partial.replace(target)
    return target
