"""The checks `make up` runs with the machine's python3 before installing anything."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from components.commands import preflight
from components.commands.preflight import Finding, check_docker, check_ports, check_pulumi, check_python, check_servers

ROOT = Path(__file__).resolve().parent.parent


def _fake_tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only the fake tools a test writes into it."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def test_python_version_floor() -> None:
    assert check_python((3, 11)).ok
    old = check_python((3, 10))
    assert not old.ok and "3.10" in old.detail and "3.11" in old.detail


def test_pulumi_missing_says_how_to_install(bin_dir: Path) -> None:
    finding = check_pulumi()
    assert not finding.ok and "not on PATH" in finding.detail and "pulumi.com/docs/install" in finding.detail


@pytest.mark.parametrize(
    ("script", "ok", "detail"),
    [
        ("echo v3.140.0", True, "3.140.0"),
        ("echo v2.25.2", False, "2.25.2 found; the program is written for 3.x"),
        ("echo 'segfault in plugin' >&2; exit 3", False, "`pulumi version` failed: segfault in plugin"),
        ("echo 'not a version'", False, "`pulumi version` failed"),
    ],
)
def test_pulumi_version(bin_dir: Path, script: str, ok: bool, detail: str) -> None:
    _fake_tool(bin_dir, "pulumi", script)
    finding = check_pulumi()
    assert finding.ok is ok
    assert detail in finding.detail


def test_docker_cli_missing(bin_dir: Path) -> None:
    finding = check_docker()
    assert not finding.ok and "docker CLI is not on PATH" in finding.detail


def test_docker_engine_unreachable_names_the_socket(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere.sock")
    _fake_tool(bin_dir, "docker", "echo 'Cannot connect to the Docker daemon at unix:///nowhere.sock' >&2; exit 1")
    finding = check_docker()
    assert not finding.ok
    assert "no Docker engine reachable at unix:///nowhere.sock (Cannot connect to the Docker daemon" in finding.detail
    assert "docker group" in finding.detail


def test_docker_engine_version(bin_dir: Path) -> None:
    _fake_tool(bin_dir, "docker", 'test "$3" = "{{.Server.Version}}" && echo 28.2.2')
    assert check_docker() == Finding(True, "docker", "engine 28.2.2")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _docker_ps(rows: list[dict[str, str]], returncode: int = 0) -> preflight.Runner:
    def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        assert list(command[:2]) == ["docker", "ps"]
        assert "label=com.wondernest.app=wondernest" in command
        assert "label=com.wondernest.stack=dev" in command
        out = "".join(json.dumps(row) + "\n" for row in rows)
        return subprocess.CompletedProcess(list(command), returncode, out, "")

    return run


def test_a_busy_port_fails_with_the_command_that_moves_it(busy_port: int) -> None:
    free = _free_port()
    findings = check_ports(
        "127.0.0.1",
        {"wondernest:api.hostPort": busy_port, "wondernest:redis.hostPort": free},
        app="wondernest",
        stack="dev",
        run=_docker_ps([], returncode=1),
    )
    assert findings[0] == Finding(
        False,
        "wondernest:api.hostPort",
        f"127.0.0.1:{busy_port} is in use; free it or choose another port: "
        "pulumi config set --path 'wondernest:api.hostPort' <port> --stack dev",
    )
    assert findings[1].ok


def test_a_port_held_by_the_stacks_own_container_is_fine(busy_port: int) -> None:
    row = {"Names": "wondernest-dev-api", "Ports": f"127.0.0.1:{busy_port}->8080/tcp"}
    findings = check_ports(
        "127.0.0.1", {"wondernest:api.hostPort": busy_port}, app="wondernest", stack="dev", run=_docker_ps([row])
    )
    assert findings == [
        Finding(True, "wondernest:api.hostPort", f"127.0.0.1:{busy_port} held by this stack's wondernest-dev-api")
    ]


def test_an_address_not_on_this_machine() -> None:
    (finding,) = check_ports(
        "192.0.2.1", {"wondernest:api.hostPort": 8080}, app="wondernest", stack="dev", run=_docker_ps([])
    )
    assert not finding.ok and "192.0.2.1 is not an address of this machine" in finding.detail


def test_missing_servers_fail_only_when_required(tmp_path: Path) -> None:
    present = tmp_path / "redis-server"
    present.touch()
    binaries = {str(present): "redis-server", str(tmp_path / "promtool"): "prometheus"}
    (skipped,) = check_servers(binaries, required=False)
    assert skipped.ok and skipped.warning and "SKIPPED" in skipped.detail
    assert "not installed: prometheus; `make servers` installs them" in skipped.detail
    (failed,) = check_servers(binaries, required=True)
    assert not failed.ok and failed.detail.startswith("REQUIRE_SERVERS=1 and not installed: prometheus")
    assert check_servers({str(present): "redis-server"}, required=True) == [Finding(True, "servers", "all installed")]


def test_pg_bindir_moves_where_postgres_is_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "postgres").touch()
    monkeypatch.setenv("PG_BINDIR", str(tmp_path))
    assert check_servers({"/usr/lib/postgresql/15/bin/postgres": "postgresql-15"}, required=True)[0].ok


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "components.commands.preflight", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_usage_and_report() -> None:
    usage = _cli("everything")
    assert (
        usage.returncode == 2
        and usage.stderr == "usage: python3 -m components.commands.preflight {python|tools|servers}\n"
    )
    python = _cli("python")
    assert python.returncode == 0
    assert python.stdout == f"preflight ok   python: {sys.version_info.major}.{sys.version_info.minor}\n"


def test_report_sends_failures_to_stderr_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert preflight.report([Finding(True, "a", "fine"), Finding(False, "b", "broken")]) == 1
    out, err = capsys.readouterr()
    assert out == "preflight ok   a: fine\n" and err == "preflight FAIL b: broken\n"
