"""A Docker engine of the tests' own: `dockerd` with its data under `.e2e/` in
the checkout and its socket beside it, so nothing touches a Docker the
machine may already run, and everything it made goes when it stops."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from tests.servers import require_binary

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = ROOT / ".e2e"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"


@dataclass
class Engine:
    host: str
    """DOCKER_HOST for the CLI and the SDK: unix://<socket>."""
    client: docker.DockerClient
    data_root: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def build(
        self,
        tag: str,
        context: Path,
        *,
        dockerfile: Path | None = None,
        target: str | None = None,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """`docker build` against this engine; a failure raises with the build's last output."""
        command = ["docker", "build", "-t", tag]
        for key, value in (labels or {}).items():
            command += ["--label", f"{key}={value}"]
        if dockerfile is not None:
            command += ["-f", str(dockerfile)]
        if target:
            command += ["--target", target]
        for key, value in (build_args or {}).items():
            command += ["--build-arg", f"{key}={value}"]
        result = subprocess.run([*command, str(context)], env=self.env, text=True, capture_output=True, check=False)
        if result.returncode:
            raise RuntimeError(f"docker build of {tag} failed:\n{result.stdout[-3000:]}{result.stderr}")


def _connect(host: str, process: subprocess.Popen[bytes], log: Path) -> docker.DockerClient:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(docker.errors.DockerException):
            return docker.DockerClient(base_url=host, timeout=600)
        time.sleep(0.3)
    raise RuntimeError(f"dockerd did not answer in 60 s:\n{log.read_text()[-4000:]}")


def _stop_stale(pidfile: Path) -> None:
    """A run killed before its cleanup leaves its dockerd holding the data
    root's databases: stop it before starting another."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(pidfile.read_text())
        if "dockerd" in Path(f"/proc/{pid}/cmdline").read_text():
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.5)
    pidfile.unlink(missing_ok=True)


@contextlib.contextmanager
def own_engine() -> Iterator[Engine]:
    """Start dockerd (root only: it creates bridges and iptables rules), yield
    it, then remove every container, network and volume it holds, stop it and
    delete its data root (images included, unless E2E_KEEP_IMAGES=1)."""
    require_binary(DOCKERD, "docker.io")
    if os.geteuid() != 0:
        if os.environ.get("REQUIRE_SERVERS") == "1":
            pytest.fail("REQUIRE_SERVERS=1 but the Docker tests need root to start dockerd")
        pytest.skip("dockerd needs root")
    E2E_DIR.mkdir(exist_ok=True)
    pidfile = E2E_DIR / "dockerd.pid"
    _stop_stale(pidfile)
    # E2E_KEEP_IMAGES=1 keeps one data root, and so the built images, between runs.
    keep = os.environ.get("E2E_KEEP_IMAGES") == "1"
    if keep:
        data_root = E2E_DIR / "docker"
        data_root.mkdir(exist_ok=True)
    else:
        data_root = Path(tempfile.mkdtemp(prefix="docker-", dir=E2E_DIR))
    # A unix socket path is limited to 108 bytes: exec-root and socket in a short temp dir.
    run_dir = Path(tempfile.mkdtemp(prefix="wn-dockerd-"))
    socket = run_dir / "docker.sock"
    log = data_root / "dockerd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                DOCKERD,
                f"--data-root={data_root / 'data'}",
                f"--exec-root={run_dir / 'exec'}",
                f"--pidfile={pidfile}",
                f"--host=unix://{socket}",
                "--storage-driver=overlay2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host = f"unix://{socket}"
    try:
        client = _connect(host, process, log)
    except BaseException:
        process.kill()
        process.wait()
        raise
    try:
        yield Engine(host=host, client=client, data_root=data_root)
    finally:
        with contextlib.suppress(Exception):
            for container in client.containers.list(all=True):
                container.remove(force=True, v=True)
            client.networks.prune()
            for volume in client.volumes.list():
                volume.remove(force=True)
        client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if not keep:
            shutil.rmtree(data_root, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
