"""scripts/install-kubeedge.sh: syntax, shellcheck, and what its dry runs would do."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

SCRIPT = ROOT / "scripts" / "install-kubeedge.sh"
# A PATH without keadm, kubectl or systemctl: a dry run must not need them.
BARE_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C"}
JOIN = ("edge", "--cloudcore", "192.0.2.10", "--token", "t", "--node-name", "n1", "--dry-run")
TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)


def fake_proc(
    root: Path,
    processes: Iterable[tuple[int, str, str]] = (),
    listening: Iterable[int] = (),
    listening6: Iterable[int] = (),
    connected: Iterable[int] = (),
) -> Path:
    """A directory laid out like /proc: ``<pid>/comm``, ``<pid>/cmdline``, ``net/tcp[6]``.

    ``processes`` are (pid, comm, argv0); ``listening`` ports are in state LISTEN (0A),
    ``connected`` ones are local ports of established connections (01).
    """
    (root / "net").mkdir(parents=True, exist_ok=True)
    for pid, comm, argv0 in processes:
        (root / str(pid)).mkdir()
        (root / str(pid) / "comm").write_text(f"{comm}\n")
        (root / str(pid) / "cmdline").write_bytes(f"{argv0}\0--v=2\0".encode())
    (root / "self").mkdir(exist_ok=True)  # not a pid: ignored
    rows = [(p, "0A") for p in listening] + [(p, "01") for p in connected]
    tcp = "".join(
        f"   {i}: 0100007F:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 "
        f"00000000     0        0 {1000 + i} 1 0000000000000000 100 0 0 10 0\n"
        for i, (port, state) in enumerate(rows)
    )
    (root / "net" / "tcp").write_text(TCP_HEADER + tcp)
    tcp6 = "".join(
        f"   {i}: {'0' * 32}:{port:04X} {'0' * 32}:0000 0A 00000000:00000000 00:00000000 "
        f"00000000     0        0 {2000 + i} 1\n"
        for i, port in enumerate(listening6)
    )
    (root / "net" / "tcp6").write_text(TCP_HEADER + tcp6)
    return root


def _env(proc: Path) -> dict[str, str]:
    return {**BARE_ENV, "INSTALL_KUBEEDGE_PROC": str(proc)}


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


def test_edge_dry_run_joins_and_enables_the_metaserver(tmp_path: Path) -> None:
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
        env=_env(fake_proc(tmp_path)),
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


def test_edge_without_metaserver_only_joins(tmp_path: Path) -> None:
    env = {**_env(fake_proc(tmp_path)), "KEADM_TOKEN": "t"}
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


# ------------------------------------------------------------------------------ edge preflight


def test_preflight_passes_on_a_clean_node(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, processes=[(1, "systemd", "/sbin/init")], listening=[22])
    result = _run(*JOIN, env=_env(proc))
    assert result.returncode == 0, result.stderr
    assert [c.split()[:2] for c in _commands(result.stdout)] == [["keadm", "join"]]
    assert "preflight: no kubelet or kube-proxy running" in result.stderr
    assert f"? preflight: processes and listening ports in {proc}" in result.stderr


@pytest.mark.parametrize(
    ("process", "found"),
    [
        ((4242, "kubelet", "/usr/bin/kubelet"), "kubelet is running (pid 4242)"),
        ((77, "kube-proxy", "kube-proxy"), "kube-proxy is running (pid 77)"),
        # comm is cut to 15 characters and may differ; the program name still tells.
        ((9, "kp-wrapper", "/usr/local/bin/kube-proxy"), "kube-proxy is running (pid 9)"),
        # k3s runs the kubelet inside its own process.
        ((31, "k3s-agent", "/usr/local/bin/k3s"), "k3s-agent is running (pid 31)"),
    ],
)
def test_preflight_refuses_a_node_running_a_kubelet_or_kube_proxy(
    tmp_path: Path, process: tuple[int, str, str], found: str
) -> None:
    result = _run(*JOIN, env=_env(fake_proc(tmp_path, processes=[process])))
    assert result.returncode == 3
    assert _commands(result.stdout) == []  # nothing would be run
    assert f"install-kubeedge: preflight: {found}" in result.stderr
    assert "refusing to join this node" in result.stderr
    assert "Can EdgeCore share a node with a kubelet?" in result.stderr


@pytest.mark.parametrize(
    ("ports", "extra", "found"),  # ports: (IPv4, IPv6) listeners
    [
        (([], [10250]), (), "port 10250 is in use: that is the kubelet's port"),
        (([10256], []), (), "port 10256 is in use: that is kube-proxy's health port"),
        (([10350], []), (), "port 10350 is in use: edged serves"),
        (([10550], []), ("--metaserver",), "port 10550 is in use: EdgeCore's MetaServer"),
    ],
)
def test_preflight_refuses_busy_edgecore_ports(
    tmp_path: Path, ports: tuple[list[int], list[int]], extra: tuple[str, ...], found: str
) -> None:
    proc = fake_proc(tmp_path, listening=ports[0], listening6=ports[1])
    result = _run(*JOIN, *extra, env=_env(proc))
    assert result.returncode == 3, result.stderr
    assert found in result.stderr


def test_preflight_ignores_what_edgecore_does_not_need(tmp_path: Path) -> None:
    # The MetaServer port matters only with --metaserver; a connection from a local port is
    # not a listener.
    proc = fake_proc(tmp_path, listening=[10550], connected=[10250, 10350])
    result = _run(*JOIN, env=_env(proc))
    assert result.returncode == 0, result.stderr


def test_preflight_warns_about_a_broker_already_on_1883(tmp_path: Path) -> None:
    result = _run(*JOIN, env=_env(fake_proc(tmp_path, listening=[1883])))
    assert result.returncode == 0, result.stderr
    assert "preflight warning: port 1883 is in use already" in result.stderr
    assert [c.split()[:2] for c in _commands(result.stdout)] == [["keadm", "join"]]


def test_force_joins_anyway_and_still_says_why(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, processes=[(5, "kubelet", "kubelet")], listening=[10250, 10350])
    result = _run(*JOIN, "--force", env=_env(proc))
    assert result.returncode == 0, result.stderr
    assert [c.split()[:2] for c in _commands(result.stdout)] == [["keadm", "join"]]
    for found in ("kubelet is running (pid 5)", "port 10250", "port 10350"):
        assert found in result.stderr
    assert "--force given, joining anyway" in result.stderr


def test_cloud_side_has_no_edge_preflight(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, processes=[(5, "kubelet", "kubelet")], listening=[10250])
    result = _run("cloud", "--advertise-address", "192.0.2.10", "--dry-run", env=_env(proc))
    assert result.returncode == 0, result.stderr
    assert "preflight" not in result.stderr
