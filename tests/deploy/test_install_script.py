"""scripts/install-kubeedge.sh: syntax, shellcheck, and what its dry runs would do."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.deploy.conftest import ROOT

SCRIPT = ROOT / "scripts" / "install-kubeedge.sh"
# A PATH without keadm, kubectl or systemctl: a dry run must not need them.
BARE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C"}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env or BARE_ENV,
        cwd="/",
    )


def _commands(stdout: str) -> list[str]:
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def test_syntax() -> None:
    result = subprocess.run(
        ["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", "--severity=style", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_cloud_dry_run_prints_init_and_the_broker() -> None:
    result = _run("cloud", "--advertise-address", "192.0.2.10", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    assert commands[0] == (
        "keadm init --advertise-address=192.0.2.10 "
        "--kubeedge-version=v1.23.1 --kube-config=/nonexistent/.kube/config "
        "--set mosquitto.enable=true"
    )
    assert commands[1].startswith("kubectl --kubeconfig /nonexistent/.kube/config apply -f ")
    assert commands[1].endswith("/manifests/kubeedge/mosquitto.yaml")
    assert len(commands) == 2
    # The checks that make a real run idempotent are shown, answered "not there yet".
    assert (
        "? kubectl --kubeconfig /nonexistent/.kube/config -n kubeedge get deployment cloudcore"
        in result.stderr
    )
    assert "get daemonset edge-eclipse-mosquitto" in result.stderr


def test_cloud_metaserver_enables_the_dynamic_controller() -> None:
    result = _run(
        "cloud",
        "--advertise-address",
        "192.0.2.10",
        "--metaserver",
        "--kubeedge-version",
        "1.22.2",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    init = _commands(result.stdout)[0]
    assert "--set cloudCore.modules.dynamicController.enable=true" in init
    assert "--kubeedge-version=v1.22.2" in init
    assert "--metaserver" in result.stderr  # the printed join hint asks for it on the edge too


def test_edge_dry_run_joins_and_enables_the_metaserver() -> None:
    result = _run(
        "edge",
        "--cloudcore",
        "192.0.2.10",
        "--token",
        "secret.token.value",
        "--node-name",
        "edge-node-1",
        "--metaserver",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    assert commands[0] == (
        "keadm join --cloudcore-ipport=192.0.2.10:10000 --token=*** --edgenode-name=edge-node-1 "
        "--kubeedge-version=v1.23.1 --remote-runtime-endpoint=unix:///run/containerd/"
        "containerd.sock --cgroupdriver=systemd"
    )
    assert commands[1:] == [
        "cp -p /etc/kubeedge/config/edgecore.yaml /etc/kubeedge/config/edgecore.yaml"
        ".before-metaserver",
        "sed -i /metaServer:/\\,/enable:/\\ s/enable:\\ false/enable:\\ true/ "
        "/etc/kubeedge/config/edgecore.yaml",
        "systemctl restart edgecore",
    ]
    assert "secret.token.value" not in result.stdout + result.stderr
    assert "? systemctl is-active --quiet edgecore" in result.stderr


def test_edge_without_metaserver_only_joins() -> None:
    env = {**BARE_ENV, "KEADM_TOKEN": "t"}
    result = _run(
        "edge", "--cloudcore", "192.0.2.10:10000", "--node-name", "n1", "--dry-run", env=env
    )
    assert result.returncode == 0, result.stderr
    assert [c.split()[:2] for c in _commands(result.stdout)] == [["keadm", "join"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "usage"),
        (("mars",), "first argument must be 'cloud' or 'edge'"),
        (("cloud", "--dry-run"), "cloud needs --advertise-address"),
        (("edge", "--dry-run"), "edge needs --cloudcore"),
        (("edge", "--cloudcore", "h", "--dry-run"), "edge needs --token"),
        (("cloud", "--advertise-address", "a", "--bogus"), "unknown option '--bogus'"),
        (
            ("cloud", "--advertise-address", "a", "--kubeedge-version", "latest", "--dry-run"),
            "must look like v1.23.1",
        ),
    ],
)
def test_bad_arguments_fail_clearly(args: tuple[str, ...], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_old_versions_are_warned_about() -> None:
    result = _run("cloud", "--advertise-address", "a", "--kubeedge-version", "v1.16.1", "--dry-run")
    assert result.returncode == 0
    assert "1.16.0 and 1.16.1 drop twin updates" in result.stderr


def test_help() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "usage: install-kubeedge.sh cloud|edge" in result.stdout
