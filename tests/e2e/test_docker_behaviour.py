"""The Docker behaviours the local stack's design rests on, each shown on the
real engine: what an internal network publishes, where the provider's uploads
may land, and what a new named volume starts with."""

from __future__ import annotations

import io
import socket
import tarfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest
from docker.models.containers import Container

from tests.e2e.applier import upload_tar
from tests.e2e.engine import Engine
from tests.e2e.standins import python_base
from tests.servers import free_port

pytestmark = [pytest.mark.servers, pytest.mark.e2e]

SERVE = ["python3", "-m", "http.server", "8000"]


@pytest.fixture
def made(engine: Engine) -> Iterator[list[object]]:
    """Containers, networks and volumes a test makes, removed after it."""
    things: list[object] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, Container):
            thing.remove(force=True, v=True)
        else:
            thing.remove()  # type: ignore[attr-defined]


def _name() -> str:
    return f"behaviour-{uuid.uuid4().hex[:8]}"


def _answers(port: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                if conn.recv(12).startswith(b"HTTP/"):
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _serving(engine: Engine, made: list[object], *, internal: bool) -> int:
    network = engine.client.networks.create(_name(), driver="bridge", internal=internal)
    made.append(network)
    port = free_port()
    container = engine.client.containers.create(
        python_base(), SERVE, ports={"8000/tcp": ("127.0.0.1", port)}, name=_name(), network=network.name
    )
    made.append(container)
    container.start()
    return port


def test_a_container_on_an_internal_network_publishes_nothing(engine: Engine, made: list[object]) -> None:
    # Why the backend network is internal: a published port there would not be reachable anyway,
    # and nothing on it reaches out. The same server on a normal bridge answers.
    assert _answers(_serving(engine, made, internal=False))
    assert not _answers(_serving(engine, made, internal=True))


def test_uploads_through_the_root_are_refused_by_a_read_only_root_even_onto_a_volume(
    engine: Engine, made: list[object]
) -> None:
    volume = engine.client.volumes.create(_name())
    made.append(volume)
    container = engine.client.containers.create(
        python_base(), ["sleep", "60"], name=_name(), read_only=True, volumes={volume.name: {"bind": "/run/secrets"}}
    )
    made.append(container)
    upload = upload_tar({"file": "/run/secrets/token", "content": "s3cret", "permissions": "0400", "owner": "1001"})
    # As the docker provider copies: the whole path in the tar, extracted at `/`.
    with pytest.raises(docker.errors.APIError, match="read-only"):
        container.put_archive("/", upload)
    # `docker cp` to a path on the volume is allowed: Docker checks the destination directory.
    relative = io.BytesIO()
    with tarfile.open(fileobj=relative, mode="w") as tar:
        info = tarfile.TarInfo("token")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"s3cret"))
    assert container.put_archive("/run/secrets", relative.getvalue())
    # A writable root takes the provider's upload, owner and mode as given.
    writable = engine.client.containers.create(
        python_base(),
        ["stat", "-c", "%a %u:%g", "/run/secrets/token"],
        name=_name(),
        volumes={volume.name: {"bind": "/run/secrets"}},
    )
    made.append(writable)
    writable.put_archive("/", upload)
    writable.start()
    assert writable.wait()["StatusCode"] == 0
    assert writable.logs().decode().strip() == "400 1001:0"


def test_a_new_named_volume_starts_as_a_copy_of_the_image_directory(engine: Engine, made: list[object]) -> None:
    # Why the backup image creates /backups owned by 1001: a new volume mounted
    # there is owned by 1001 too, so the non-root service can write to it.
    image, _ = engine.client.images.build(
        fileobj=io.BytesIO(
            f"FROM {python_base()}\nRUN install -d -o 1001 -g 1001 -m 0700 /backups && touch /backups/seed\n".encode()
        ),
        tag=f"{_name()}:latest",
        rm=True,
    )
    assert image.id is not None
    volume = engine.client.volumes.create(_name())
    made.append(volume)
    listing = engine.client.containers.run(
        image.id,
        ["sh", "-c", "stat -c '%a %u:%g' /backups && ls /backups"],
        volumes={volume.name: {"bind": "/backups"}},
        remove=True,
    )
    assert listing.decode().split("\n")[:2] == ["700 1001:1001", "seed"]
    engine.client.images.remove(image.id, force=True)


def test_a_paused_container_is_unhealthy_at_once_and_healthy_again_after_its_next_probe(
    engine: Engine, made: list[object]
) -> None:
    """Docker stops a container's health monitor when it is paused and marks it
    unhealthy on the spot, with no probe failed (moby, container/health.go,
    CloseMonitorChannel: "unhealthy when the monitor has stopped"); unpaused,
    the next probe makes it healthy again. The runbook reads it that way."""
    container = engine.client.containers.run(
        python_base(),
        ["python3", "-c", "import time; time.sleep(3600)"],
        name=_name(),
        detach=True,
        healthcheck={"test": ["CMD", "true"], "interval": 10**9, "timeout": 10**9, "retries": 30},
    )
    made.append(container)

    def health() -> dict[str, Any]:
        return dict(engine.client.api.inspect_container(str(container.id))["State"]["Health"])

    def wait_healthy() -> None:
        deadline = time.monotonic() + 30
        while health()["Status"] != "healthy":
            assert time.monotonic() < deadline, "never healthy"
            time.sleep(0.2)

    wait_healthy()
    container.pause()
    try:
        state = engine.client.api.inspect_container(str(container.id))["State"]
        assert state["Status"] == "paused"
        assert state["Health"]["Status"] == "unhealthy"
        assert state["Health"]["FailingStreak"] == 0
    finally:
        container.unpause()
    wait_healthy()


def test_the_python_stand_in_lets_root_pip_install_system_wide_as_the_official_image_does(engine: Engine) -> None:
    """The official image's Python is built into /usr/local with no
    EXTERNALLY-MANAGED marker; Debian's carries one, which would refuse a
    Dockerfile's `RUN pip install` that the real image accepts."""
    script = "import pathlib as p, sysconfig as s; print(p.Path(s.get_path('stdlib'), 'EXTERNALLY-MANAGED').exists())"
    output = engine.client.containers.run(python_base(), ["python", "-c", script], remove=True)
    assert output == b"False\n"
