"""The EdgeGallery app packages (CSAR): layout, hashes, APPD, reproducibility, installability.

The APPD's serNames are checked against the registrar's own naming (never a list written
here) and, end to end, against what a running adapter registers with the MEP emulator.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from mep_kubeedge_adapter import __version__
from mep_kubeedge_adapter.demo import NODE as DEMO_NODE
from mep_kubeedge_adapter.demo import demo_stack
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker
from mep_kubeedge_adapter.emulators.mep import AppIdentity
from mep_kubeedge_adapter.mecm.render import render_chart
from mep_kubeedge_adapter.mep.models import NAME_PATTERN
from mep_kubeedge_adapter.mep.registrar import MepState, wanted_services
from mep_kubeedge_adapter.packaging import (
    APPS,
    ImageLocation,
    PackagingError,
    build_csar,
    chart_files,
)
from mep_kubeedge_adapter.packaging.__main__ import main as packaging_main
from mep_kubeedge_adapter.packaging.archive import DEFAULT_EPOCH, source_date_epoch
from mep_kubeedge_adapter.packaging.csar import APPD_PATH, IMAGE_DESC_PATH, TOSCA_META_PATH
from tests.deploy.conftest import ROOT

EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z
NODES = ["edge-node-1", "edge.node.2"]  # the second needs EdgeGallery's NAME mapping


def csar_entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        return {info.filename: zf.read(info) for info in zf.infolist()}


def parse_manifest(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(metadata, Source -> Hash) of a ``.mf``, refusing anything but SHA-256."""
    metadata: dict[str, str] = {}
    hashes: dict[str, str] = {}
    blocks = [b for b in text.split("\n\n") if b.strip()]
    head = blocks[0].splitlines()
    assert head[0] == "metadata:"
    for line in head[1:]:
        name, _, value = line.partition(": ")
        metadata[name] = value
    for block in blocks[1:]:
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        assert set(fields) == {"Source", "Algorithm", "Hash"}, block
        assert fields["Algorithm"] == "SHA-256"
        hashes[fields["Source"]] = fields["Hash"]
    return metadata, hashes


def appd_configuration(entries: dict[str, bytes]) -> dict[str, Any]:
    appd = yaml.safe_load(entries[APPD_PATH])
    templates = appd["topology_template"]["node_templates"]
    config = templates["app_configuration"]
    assert config["type"] == "tosca.nodes.nfv.app.configuration"
    properties: dict[str, Any] = config["properties"]
    return properties


def expected_names(node: str) -> list[str]:
    """What the registrar registers on ``node`` in node mode, in its order."""
    return [w.info.serName for w in wanted_services([], mode="node", node=node, public_url="x")]


# ------------------------------------------------------------------------------ layout


@pytest.mark.parametrize("app", sorted(APPS))
def test_layout_and_entry_definitions(app: str) -> None:
    csar = build_csar(app, NODES, epoch=EPOCH)
    chart = APPS[app]
    assert csar.filename == f"{chart}-{__version__}.csar"
    entries = csar_entries(csar.data)
    assert entries == csar.files
    assert set(entries) == {
        TOSCA_META_PATH,
        APPD_PATH,
        f"Artifacts/Deployment/Charts/{chart}.tgz",
        IMAGE_DESC_PATH,
        f"{chart}.mf",
    }
    meta = dict(line.split(": ", 1) for line in entries[TOSCA_META_PATH].decode().splitlines())
    assert meta["Entry-Definitions"] == APPD_PATH
    assert meta["TOSCA-Meta-File-Version"] == "1.0"


@pytest.mark.parametrize("app", sorted(APPS))
def test_manifest_hashes_every_file(app: str) -> None:
    entries = build_csar(app, NODES, epoch=EPOCH).files
    chart = APPS[app]
    metadata, hashes = parse_manifest(entries[f"{chart}.mf"].decode())
    assert set(hashes) == set(entries) - {f"{chart}.mf"}
    for path, digest in hashes.items():
        assert hashlib.sha256(entries[path]).hexdigest() == digest, path
    assert metadata["app_product_name"] == chart
    assert metadata["app_package_version"] == __version__
    assert metadata["app_type"] == "container"
    assert metadata["app_release_data_time"] == "2026-01-01 00:00"


@pytest.mark.parametrize("app", sorted(APPS))
def test_the_packaged_chart_renders_and_matches_the_shipped_chart(app: str) -> None:
    chart = APPS[app]
    entries = build_csar(app, NODES, epoch=EPOCH).files
    archive = entries[f"Artifacts/Deployment/Charts/{chart}.tgz"]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = tar.getmembers()
        packed = {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    assert packed == {f"{chart}/{path}": data for path, data in chart_files(chart).items()}
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(EPOCH, 0, 0, "", 0o644)}
    assert render_chart(archive, {}, release=chart, namespace="default").objects


@pytest.mark.parametrize("app", sorted(APPS))
@pytest.mark.parametrize(
    "image", [ImageLocation(), ImageLocation("registry.example:5000", "mec")], ids=repr
)
def test_image_description_names_the_image_the_chart_runs(app: str, image: ImageLocation) -> None:
    entries = build_csar(app, NODES, image=image, epoch=EPOCH).files
    chart = APPS[app]
    descriptions = json.loads(entries[IMAGE_DESC_PATH])
    assert isinstance(descriptions, list) and len(descriptions) == 1
    desc = descriptions[0]
    required = {"name", "version", "containerFormat", "diskFormat", "minDisk", "minRam", "swImage"}
    assert required <= set(desc)
    assert desc["version"] == __version__
    archive = entries[f"Artifacts/Deployment/Charts/{chart}.tgz"]
    objects = render_chart(archive, {}, release=chart, namespace="default").objects
    images = {
        c["image"]
        for o in objects
        if o["kind"] in ("DaemonSet", "Deployment")
        for c in [
            *o["spec"]["template"]["spec"]["containers"],
            *o["spec"]["template"]["spec"].get("initContainers", []),
        ]
    }
    assert images == {desc["swImage"]}
    appd = yaml.safe_load(entries[APPD_PATH])
    pod = appd["topology_template"]["node_templates"]["pod"]["properties"]
    assert pod["sw_image_data"]["name"] == desc["name"]


# ------------------------------------------------------------------------------ APPD


def test_adapter_appd_produces_what_the_registrar_registers() -> None:
    config = appd_configuration(build_csar("adapter", NODES, epoch=EPOCH).files)
    assert config["appSupportMp1"] is True
    produced = [s["serName"] for s in config["appServiceProduced"]]
    assert produced == [name for node in NODES for name in expected_names(node)]
    assert "edge.node.2" not in " ".join(produced)  # dots mapped, per EdgeGallery's NAME rule
    assert all(NAME_PATTERN.match(name) and len(name) <= 128 for name in produced)
    assert {s["version"] for s in config["appServiceProduced"]} == {"1.0"}
    assert "appServiceRequired" not in config


def test_sample_app_appd_requires_each_nodes_device_service() -> None:
    config = appd_configuration(build_csar("sample-app", NODES, epoch=EPOCH).files)
    assert config["appSupportMp1"] is True
    assert [s["serName"] for s in config["appServiceRequired"]] == [
        expected_names(node)[0] for node in NODES
    ]
    assert all(s["requestedPermissions"] is True for s in config["appServiceRequired"])
    assert "appServiceProduced" not in config


def test_appd_names_the_chart_it_deploys() -> None:
    entries = build_csar("adapter", ["n1"], epoch=EPOCH).files
    appd = yaml.safe_load(entries[APPD_PATH])
    assert appd["tosca_definitions_version"] == "tosca_simple_profile_yaml_1_2"
    assert appd["metadata"]["vnfm_type"] == "MEPM"
    app = appd["topology_template"]["node_templates"]["app"]
    assert app["artifacts"]["app_deployment"]["file"] in entries
    assert app["properties"]["software_version"] == __version__


@pytest.mark.parametrize(
    ("nodes", "message"),
    [([], "at least one edge node"), (["Edge_Node"], "not a Kubernetes node name")],
)
def test_bad_nodes_are_refused(nodes: list[str], message: str) -> None:
    with pytest.raises(PackagingError, match=message):
        build_csar("adapter", nodes, epoch=EPOCH)
    with pytest.raises(PackagingError, match="no app"):
        build_csar("nginx", ["n1"], epoch=EPOCH)


@pytest.mark.integration
async def test_appd_sernames_are_what_a_running_adapter_registers(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    """The adapter's CSAR built for the demo node, against the demo adapter on that node.

    The sample app's identity gets the ``requiredServices`` lcmcontroller would provision
    from its own package's APPD (required + optional + produced serNames); with them it must
    see the adapter's device service in MP1 discovery.
    """
    from mep_kubeedge_adapter.mep.client import Mp1Client
    from mep_kubeedge_adapter.mep.discovery import select_endpoints

    produced = appd_configuration(build_csar("adapter", [DEMO_NODE], epoch=EPOCH).files)
    sample = appd_configuration(build_csar("sample-app", [DEMO_NODE], epoch=EPOCH).files)
    provisioned = [
        s["serName"]
        for group in ("appServiceRequired", "appServiceOptional", "appServiceProduced")
        for s in sample.get(group, [])
    ]
    app = AppIdentity.generate(required_services=provisioned, app_name="sample-edge-app")
    adapter_identity = AppIdentity.generate(required_services=[], app_name="adapter")
    async with demo_stack(
        tmp_path, broker=broker, identity=adapter_identity, other_identities=[app]
    ) as demo:
        assert demo.adapter.registrar is not None
        await asyncio.wait_for(demo.adapter.registrar.wait_state(MepState.REGISTERED), 30)
        registered = {
            s["serName"]
            for s in demo.mep.services()
            if s["_links"]["appInstanceId"] == adapter_identity.app_instance_id
        }
        assert registered == {s["serName"] for s in produced["appServiceProduced"]}
        async with Mp1Client(demo.mep.url, app.app_instance_id, app.ak, app.sk) as client:
            name = provisioned[0]
            uris = select_endpoints(await client.discover(ser_name=name), ser_name=name)
        assert uris and uris[0].startswith(demo.mep.url)


# ------------------------------------------------------------------------------ reproducible


@pytest.mark.parametrize("app", sorted(APPS))
def test_two_builds_are_byte_identical(app: str) -> None:
    first = build_csar(app, NODES, epoch=EPOCH)
    second = build_csar(app, NODES, epoch=EPOCH)
    assert first.data == second.data
    later = build_csar(app, NODES, epoch=EPOCH + 86400)
    assert later.data != first.data  # the epoch is in the archive, nothing else is
    with zipfile.ZipFile(io.BytesIO(first.data)) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(2026, 1, 1, 0, 0, 0)}
    assert {(i.create_system, i.external_attr >> 16) for i in infos} == {(3, 0o100644)}


def test_the_build_command_twice_gives_the_same_files(tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
        result = subprocess.run(
            [sys.executable, "-m", "mep_kubeedge_adapter.packaging", "build", "--out", str(out)]
            + [arg for node in NODES for arg in ("--node", node)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0] == outputs[1]
    assert set(outputs[0]) == {
        f"{chart}-{__version__}.{ext}" for chart in APPS.values() for ext in ("csar", "tgz")
    }


def test_source_date_epoch() -> None:
    assert source_date_epoch({}) == DEFAULT_EPOCH
    assert source_date_epoch({"SOURCE_DATE_EPOCH": str(EPOCH)}) == EPOCH
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "5"}) == DEFAULT_EPOCH  # zip dates start 1980
    with pytest.raises(PackagingError, match="whole seconds"):
        source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"})


def test_cli_reports_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert packaging_main(["build", "--out", str(tmp_path), "--node", "Bad_Node"]) == 2
    assert "not a Kubernetes node name" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ installed


@pytest.mark.integration
def test_builds_from_an_installed_wheel(tmp_path: Path) -> None:
    """The charts are package data: a wheel carries them, and builds the same package."""
    # A copy of what the Dockerfile copies too: setuptools builds in the source tree, and a
    # stale build/ there must neither leak into this wheel nor be left behind.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "mep_kubeedge_adapter", source / "mep_kubeedge_adapter", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    build = subprocess.run(
        [*pip, "--wheel-dir", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("mep_kubeedge_adapter-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for chart in APPS.values():
        for path in chart_files(chart):
            assert f"mep_kubeedge_adapter/packaging/charts/{chart}/{path}" in names
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    script = (
        "import sys, mep_kubeedge_adapter.packaging as p\n"
        f"assert p.__file__.startswith({str(site)!r}), p.__file__\n"
        f"sys.stdout.buffer.write(p.build_csar('sample-app', {NODES!r}, epoch={EPOCH}).data)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=120,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert run.stdout == build_csar("sample-app", NODES, epoch=EPOCH).data
