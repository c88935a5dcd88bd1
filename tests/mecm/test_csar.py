"""CSARs in EdgeGallery's layout are accepted; hostile or broken ones are refused precisely."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from mep_kubeedge_adapter.mecm.csar import inspect_package
from mep_kubeedge_adapter.mecm.unpack import PackageRefused, UnpackLimits, unpack_zip
from tests.mecm.packages import chart, csar, csar_files, mf, tgz, zip_bytes

LIMITS = UnpackLimits(max_files=100, max_file_bytes=8 << 20, max_total_bytes=16 << 20)


def _open(tmp_path: Path, data: bytes, limits: UnpackLimits = LIMITS) -> tuple[Path, list[str]]:
    archive = tmp_path / "p.csar"
    archive.write_bytes(data)
    target = tmp_path / "unpacked"
    files = unpack_zip(archive, target, limits)
    return target, files


def _accept(tmp_path: Path, data: bytes, limits: UnpackLimits) -> None:
    target, files = _open(tmp_path, data, limits)
    inspect_package(target, files, limits)


def _refused(tmp_path: Path, data: bytes, match: str, limits: UnpackLimits = LIMITS) -> None:
    with pytest.raises(PackageRefused, match=match):
        _accept(tmp_path, data, limits)


def test_a_v1_package_with_a_chart_is_accepted(tmp_path: Path) -> None:
    target, files = _open(tmp_path, csar())
    contents = inspect_package(target, files, LIMITS)
    assert contents.deploy == "chart"
    assert contents.artifacts == ("Artifacts/Deployment/Charts/demoapp.tgz",)
    assert contents.entry_definitions == "APPD/Definition/MainServiceTemplate.yaml"
    assert contents.metadata["app_product_name"] == "demoapp"


def test_plain_manifests_are_accepted_without_a_chart(tmp_path: Path) -> None:
    files = csar_files(None)
    files["Artifacts/Deployment/Kubernetes/app.yaml"] = (
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
    )
    target, names = _open(tmp_path, csar(files))
    contents = inspect_package(target, names, LIMITS)
    assert contents.deploy == "manifests"
    assert contents.artifacts == ("Artifacts/Deployment/Kubernetes/app.yaml",)


def test_a_signature_after_the_hashes_is_ignored(tmp_path: Path) -> None:
    files = csar_files(chart())
    files["demoapp.mf"] = (mf(files) + "\n-----BEGIN CMS-----\nMIIB\n-----END CMS-----\n").encode()
    target, names = _open(tmp_path, zip_bytes(files))
    assert inspect_package(target, names, LIMITS).deploy == "chart"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../evil.txt", r"leaves the package"),
        ("APPD/../../evil.txt", r"leaves the package"),
        ("/etc/evil", r"absolute path"),
        ("C:/evil", r"absolute path"),
        ("dir\\evil", r"invalid name"),
    ],
)
def test_paths_outside_the_package_are_refused(tmp_path: Path, name: str, match: str) -> None:
    files = csar_files(chart())
    files[name] = b"x"
    _refused(tmp_path, zip_bytes(files), match)
    assert not (tmp_path / "unpacked").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("TOSCA-Metadata/TOSCA.meta")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    _refused(tmp_path, buffer.getvalue(), r"symbolic link")


def test_a_zip_bomb_is_refused_and_nothing_stays(tmp_path: Path) -> None:
    files = csar_files(chart())
    files["Artifacts/Other/zeros.bin"] = bytes(4 << 20)  # compresses ~1000:1
    _refused(tmp_path, csar(files), r"zip bomb")
    assert not (tmp_path / "unpacked").exists()


def test_more_files_than_allowed_are_refused(tmp_path: Path) -> None:
    files = csar_files(chart())
    files.update({f"Artifacts/Docs/{i}.txt": b"x" for i in range(20)})
    _refused(
        tmp_path,
        csar(files),
        r"more than the limit of 10",
        UnpackLimits(max_files=10, max_file_bytes=1 << 20, max_total_bytes=1 << 30),
    )


def test_the_total_inflated_size_is_capped(tmp_path: Path) -> None:
    files = csar_files(chart())
    files["Artifacts/Other/a.bin"] = bytes(range(256)) * 400
    _refused(
        tmp_path,
        csar(files),
        r"inflates beyond the limit of 50000",
        UnpackLimits(max_files=100, max_file_bytes=1 << 20, max_total_bytes=50_000),
    )


def test_a_bad_hash_is_refused(tmp_path: Path) -> None:
    files = csar_files(chart())
    files["demoapp.mf"] = mf(files).encode()
    files["APPD/Definition/MainServiceTemplate.yaml"] += b"# changed after signing\n"
    _refused(tmp_path, zip_bytes(files), r"MainServiceTemplate.yaml' does not match its SHA-256")


def test_a_missing_chart_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, csar(csar_files(None)), r"no Helm chart \(\.tgz\) under Artifacts")


def test_a_missing_manifest_file_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, csar(with_mf=False), r"no manifest \(\.mf\)")


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        (None, r"TOSCA.meta is missing"),
        (b"TOSCA-Meta-File-Version: 1.0\nnonsense line\n", r"line 2 is not 'Key: value'"),
        (b"TOSCA-Meta-File-Version: 1.0\n", r"names no Entry-Definitions"),
        (b"Entry-Definitions: APPD/nothere.yaml\n", r"'APPD/nothere.yaml', which is missing"),
    ],
)
def test_a_bad_tosca_meta_is_refused(tmp_path: Path, meta: bytes | None, match: str) -> None:
    files = csar_files(chart())
    if meta is None:
        del files["TOSCA-Metadata/TOSCA.meta"]
    else:
        files["TOSCA-Metadata/TOSCA.meta"] = meta
    _refused(tmp_path, csar(files), match)


def test_a_chart_with_a_link_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("demoapp/Chart.yaml")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    _refused(tmp_path, csar(csar_files(buffer.getvalue())), r"link or special file")


def test_a_chart_without_chart_yaml_is_refused(tmp_path: Path) -> None:
    broken = tgz("demoapp", {"values.yaml": "a: 1\n"})
    _refused(tmp_path, csar(csar_files(broken)), r"has no demoapp/Chart.yaml")


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, b"PK\x03\x04 but not really", r"not a zip archive")
