"""What the local stack needs from this machine, checked before anything is installed.

Standard library only: `make up` runs it with the machine's own python3, so a
missing Pulumi CLI, an unreachable Docker engine or a busy host port is reported
in a second, with one message each, instead of after a venv install.

    python3 -m components.commands.preflight tools     # python, the Pulumi CLI, the Docker engine
    python3 -m components.commands.preflight servers   # the server binaries the tests start

The host ports come from the stack config, so `components.commands.check_config --ports`
checks them with `check_ports` once the config's few dependencies are installed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

MIN_PYTHON = (3, 11)
PULUMI_MAJOR = 3
TIMEOUT_SECONDS = 15

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    detail: str
    warning: bool = False
    """Not a failure, but not all well either: said loudly, on stderr."""


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no output)"


def check_python(version: tuple[int, int] = (sys.version_info.major, sys.version_info.minor)) -> Finding:
    shown = ".".join(map(str, version))
    if version < MIN_PYTHON:
        return Finding(False, "python", f"python3 is {shown}; the program needs 3.11 or newer")
    return Finding(True, "python", shown)


def check_pulumi(run: Runner = _run) -> Finding:
    if shutil.which("pulumi") is None:
        return Finding(
            False,
            "pulumi",
            "the Pulumi CLI is not on PATH; install it (https://www.pulumi.com/docs/install/) and open a new shell",
        )
    try:
        result = run(["pulumi", "version"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding(False, "pulumi", f"`pulumi version` did not answer: {exc}")
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", result.stdout.strip())
    if result.returncode != 0 or match is None:
        return Finding(False, "pulumi", f"`pulumi version` failed: {_first_line(result.stderr or result.stdout)}")
    if int(match[1]) != PULUMI_MAJOR:
        return Finding(False, "pulumi", f"Pulumi CLI {match[0]} found; the program is written for 3.x")
    return Finding(True, "pulumi", match[0])


def check_docker(run: Runner = _run) -> Finding:
    if shutil.which("docker") is None:
        return Finding(False, "docker", "the docker CLI is not on PATH; install Docker Engine and start it")
    try:
        result = run(["docker", "version", "--format", "{{.Server.Version}}"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding(False, "docker", f"the Docker engine did not answer within {TIMEOUT_SECONDS}s: {exc}")
    if result.returncode != 0 or not result.stdout.strip():
        host = os.environ.get("DOCKER_HOST", "the default socket")
        return Finding(
            False,
            "docker",
            f"no Docker engine reachable at {host} ({_first_line(result.stderr)}). Start it "
            "(e.g. `sudo systemctl start docker`) and check that your user may use it (the docker group)",
        )
    return Finding(True, "docker", f"engine {result.stdout.strip()}")


def _ports_held_by_stack(app: str, stack: str, run: Runner) -> dict[int, str]:
    """Host ports published by this stack's own containers: a second `make up`
    finds its ports taken by the containers it is about to update, which is fine."""
    try:
        result = run(
            [
                "docker", "ps",
                "--filter", f"label=com.wondernest.app={app}",
                "--filter", f"label=com.wondernest.stack={stack}",
                "--format", "{{json .}}",
            ]
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {}
    held: dict[int, str] = {}
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        row = json.loads(line)
        for published in str(row.get("Ports", "")).split(","):
            match = re.search(r":(\d+)->", published)
            if match:
                held[int(match[1])] = str(row.get("Names", "?"))
    return held


def _in_use(address: str, port: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "in use"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{address} is not an address of this machine"
            return exc.strerror or str(exc)
    return None


def check_ports(address: str, ports: Mapping[str, int], *, app: str, stack: str, run: Runner = _run) -> list[Finding]:
    held = _ports_held_by_stack(app, stack, run)
    findings = []
    for key, port in ports.items():
        problem = _in_use(address, port)
        if problem is None:
            findings.append(Finding(True, key, f"{address}:{port} free"))
        elif port in held:
            findings.append(Finding(True, key, f"{address}:{port} held by this stack's {held[port]}"))
        else:
            findings.append(
                Finding(
                    False,
                    key,
                    f"{address}:{port} is {problem}; free it or choose another port: "
                    f"pulumi config set --path '{key}' <port> --stack {stack}",
                )
            )
    return findings


def report(findings: Sequence[Finding]) -> int:
    for finding in findings:
        mark = ("WARN" if finding.warning else "ok  ") if finding.ok else "FAIL"
        stream = sys.stdout if finding.ok and not finding.warning else sys.stderr
        stream.write(f"preflight {mark} {finding.what}: {finding.detail}\n")
    return 0 if all(f.ok for f in findings) else 1


# What the server tests start, by the Debian package that brings it.
SERVER_BINARIES = {
    "/usr/lib/postgresql/15/bin/postgres": "postgresql-15",
    "/usr/bin/redis-server": "redis-server",
    "/usr/bin/promtool": "prometheus",
    "/usr/bin/amtool": "prometheus-alertmanager",
    "/usr/bin/prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "/usr/bin/prometheus-redis-exporter": "prometheus-redis-exporter",
    "/usr/bin/prometheus-node-exporter": "prometheus-node-exporter",
}


def check_servers(binaries: Mapping[str, str] = SERVER_BINARIES, required: bool | None = None) -> list[Finding]:
    """Missing servers skip their tests, unless REQUIRE_SERVERS=1 makes them failures."""
    if required is None:
        required = os.environ.get("REQUIRE_SERVERS") == "1"
    pg_bindir = os.environ.get("PG_BINDIR")
    missing = []
    for path, package in binaries.items():
        if pg_bindir and path.startswith("/usr/lib/postgresql/15/bin/"):
            path = os.path.join(pg_bindir, os.path.basename(path))
        if not os.path.exists(path):
            missing.append(package)
    if not missing:
        return [Finding(True, "servers", "all installed")]
    detail = f"not installed: {', '.join(missing)}; `make servers` installs them"
    if required:
        return [Finding(False, "servers", f"REQUIRE_SERVERS=1 and {detail}")]
    return [Finding(True, "servers", f"their tests will be SKIPPED ({detail})", warning=True)]


CHECKS: dict[str, Callable[[], list[Finding]]] = {
    "python": lambda: [check_python()],
    "tools": lambda: [check_python(), check_pulumi(), check_docker()],
    "servers": check_servers,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in CHECKS:
        sys.stderr.write(f"usage: python3 -m components.commands.preflight {{{'|'.join(CHECKS)}}}\n")
        return 2
    return report(CHECKS[args[0]]())


if __name__ == "__main__":
    sys.exit(main())
