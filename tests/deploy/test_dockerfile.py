"""The Dockerfile's structure (no engine is needed): stages, user, health check, entry point."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field

import pytest

from mep_kubeedge_adapter import __version__
from tests.deploy.conftest import OVERLAYS, ROOT, kustomize

OCI_LABELS = {"title", "description", "version", "revision", "created", "source", "licenses"}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|apt-get|apk add|pip)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)
    parent: Stage | None = None
    """The stage this one is built FROM, whose image (labels, entry point, ...) it inherits."""

    def all(self, keyword: str) -> list[str]:
        """``keyword``'s arguments in this image, inherited ones first."""
        inherited = self.parent.all(keyword) if self.parent else []
        return inherited + [args for kw, args in self.instructions if kw == keyword]


def _instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "a continuation line ends the Dockerfile"
    parsed = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        parsed.append((keyword.upper(), args.strip()))
    return parsed


def _stages() -> tuple[dict[str, str], list[Stage]]:
    """ARGs before the first FROM, and the stages; a stage built FROM another stage gets that
    stage's image as its base."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            parent = next((s for s in stages if s.name == base), None)
            stages.append(Stage(parent.base if parent else base, name, parent=parent))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def _final() -> Stage:
    return _stages()[1][-1]


def _stage(name: str) -> Stage:
    return next(stage for stage in _stages()[1] if stage.name == name)


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), "exec form (a JSON list)"
    return [str(v) for v in value]


def test_multi_stage_on_one_slim_python_base() -> None:
    _, stages = _stages()
    assert len(stages) >= 2
    assert stages[-1].name == "runtime", "the adapter is the default target"
    bases = {stage.base for stage in stages}
    assert len(bases) == 1, "the virtualenv must run on the interpreter it was built with"
    base = bases.pop()
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    assert any("--from=build" in c for c in _final().all("COPY"))


def test_final_stage_has_no_build_tools() -> None:
    for args in _final().all("RUN"):
        assert not BUILD_TOOLS.search(args), args
    for name in ("build", "build-mecm"):
        runs = _stage(name).all("RUN")
        assert any("pip uninstall -y pip setuptools wheel" in r for r in runs), name


def test_runs_as_the_non_root_user_the_manifests_expect() -> None:
    users = _final().all("USER")
    assert users, "USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so runAsNonRoot can verify it"
    daemonset = next(o for o in kustomize(OVERLAYS["base"]) if o["kind"] == "DaemonSet")
    adapter = daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert (adapter["runAsUser"], adapter["runAsGroup"]) == (int(uid), int(gid))
    last_user = max(i for i, (kw, _) in enumerate(_final().instructions) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in _final().instructions[last_user:])


def test_healthcheck_probes_healthz() -> None:
    checks = _final().all("HEALTHCHECK")
    assert len(checks) == 1
    assert "/healthz" in checks[0] and "CMD" in checks[0]
    assert "MKA_API__PORT" in checks[0]


def test_entrypoint_is_the_cli() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = pyproject["project"]["scripts"]
    entrypoint = _exec_form(_final().all("ENTRYPOINT")[-1])
    assert entrypoint == ["mep-kubeedge-adapter"]
    assert scripts["mep-kubeedge-adapter"] == "mep_kubeedge_adapter.cli:main"
    assert _exec_form(_final().all("CMD")[-1]) == ["run"]
    assert _final().all("EXPOSE") == ["8080"]


def test_base_image_label_is_filled_in() -> None:
    # ${BASE_IMAGE} in a stage expands to nothing unless the stage declares ARG BASE_IMAGE.
    stage = _stage("runtime-base")
    assert "BASE_IMAGE" in stage.all("ARG")
    assert any('image.base.name="${BASE_IMAGE}"' in label for label in stage.all("LABEL"))


def test_oci_labels() -> None:
    labels = " ".join(_final().all("LABEL"))
    found = set(re.findall(r"org\.opencontainers\.image\.([a-z.]+)=", labels))
    assert found >= OCI_LABELS
    version_args = [a for a in _final().all("ARG") if a.startswith("VERSION=")]
    assert version_args == [f"VERSION={__version__}"]


def _ignored(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins, ``!`` re-includes."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = {path} | {"/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)}
        if pattern.startswith("**/"):
            tail = pattern[3:]
            hit = any(fnmatch.fnmatch(part, tail) for part in path.split("/"))
        else:
            hit = any(fnmatch.fnmatch(c, pattern) for c in candidates)
        if hit:
            ignored = not negate
    return ignored


def test_copied_files_exist_and_are_in_the_build_context() -> None:
    sources: list[str] = []
    for stage in _stages()[1]:
        for args in stage.all("COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            if "--from=" in args:
                continue
            sources.extend(words[:-1])
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source), f"{source} is excluded by .dockerignore"
    for unwanted in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "docs/architecture.md"):
        assert _ignored(unwanted), unwanted


@pytest.mark.parametrize(
    "path", ["/opt/mka/share/demo_devices.yaml", "/opt/mka/examples/sample_app.py"]
)
def test_files_the_manifests_use_are_in_the_image(path: str) -> None:
    destinations = [a.split()[-1] for a in _final().all("COPY")]
    assert path in destinations


# ------------------------------------------------------------------------------ the two images


def _installed_extras(stage: Stage) -> set[str]:
    return set(re.findall(r'pip install "\.\[([a-z,]+)\]"', " ".join(stage.all("RUN"))))


def test_the_adapter_image_leaves_the_mecm_extra_out() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]
    assert any(dep.startswith("helm-python-sdk") for dep in extras["mecm"])
    assert _installed_extras(_stage("build")) == {"emulators"}
    assert any("--from=build " in c for c in _final().all("COPY"))


def test_the_mecm_plugin_image() -> None:
    plugin = _stage("mecm-plugin")
    assert _installed_extras(_stage("build-mecm")) == {"mecm"}
    assert any("--from=build-mecm " in c for c in plugin.all("COPY"))
    assert _exec_form(plugin.all("ENTRYPOINT")[-1]) == ["mep-kubeedge-adapter"]
    assert _exec_form(plugin.all("CMD")[-1]) == ["mecm-plugin"]
    assert plugin.all("EXPOSE") == ["8096"]
    uid, _, _ = plugin.all("USER")[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0
    env = " ".join(plugin.all("ENV"))
    assert "MKA_MECM__DATA_DIR=/var/lib/mka-mecm" in env
    assert plugin.all("VOLUME") == ['["/var/lib/mka-mecm"]']
    checks = plugin.all("HEALTHCHECK")
    assert len(checks) == 1 and "MKA_MECM__PORT" in checks[0]
    labels = " ".join(plugin.all("LABEL"))
    assert set(re.findall(r"org\.opencontainers\.image\.([a-z.]+)=", labels)) >= OCI_LABELS
    for args in plugin.all("RUN"):
        assert not BUILD_TOOLS.search(args), args
