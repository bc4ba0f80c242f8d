"""The Docker provider's rules after the call, on the real engine, through the
applier (tests/e2e/docker_schema.py cites each from the provider's source):
what an update changes on a running container, what Read writes back, the
order of a replacement, and a protected volume never replaced."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker.errors
import pulumi
import pulumi_docker as pdocker
import pytest

from tests.e2e import docker_schema
from tests.e2e.applier import DockerResources, EngineMocks, ProtectedReplacement, State
from tests.e2e.engine import Engine
from tests.e2e.standins import python_base
from tests.harness import evaluate
from tests.provider_host import provider_host
from tests.test_docker_provider_fit import docker_inspect

pytestmark = [pytest.mark.servers, pytest.mark.e2e]

SLEEP = ["python3", "-c", "import time; time.sleep(3600)"]


@pytest.fixture
def prefix(engine: Engine) -> Iterator[str]:
    """A name prefix for one test's objects, all removed after it."""
    name = f"rules-{uuid.uuid4().hex[:6]}"
    yield name
    client = engine.client
    for container in client.containers.list(all=True, filters={"name": name}):
        container.remove(force=True, v=True)
    for network in client.networks.list(names=[f"{name}-net"]):
        network.remove()
    for volume in client.volumes.list(filters={"name": name}):
        volume.remove(force=True)


def apply(engine: Engine, state: State, program: Callable[[], dict[str, Any]]) -> EngineMocks:
    with provider_host() as host:
        mocks = EngineMocks(engine, state, skip={}, log=print, host=host)
        evaluate({}, program=program, mocks=mocks)
    return mocks


def ops(mocks: EngineMocks) -> dict[str, str]:
    return {step.name: step.op for step in mocks.steps}


def container_program(prefix: str, interval_s: int, replace: list[str]) -> Callable[[], dict[str, Any]]:
    def program() -> dict[str, Any]:
        pdocker.Container(
            "sleeper",
            name=f"{prefix}-sleeper",
            image=python_base(),
            command=SLEEP,
            user="1001:1001",
            memory=64,
            memory_swap=64,
            healthcheck=pdocker.ContainerHealthcheckArgs(
                tests=["CMD", "true"], interval=f"{interval_s}s", timeout="3s", retries=2, start_period="0s"
            ),
            restart="unless-stopped",
            opts=pulumi.ResourceOptions(replace_on_changes=replace),
        )
        return {}

    return program


def test_an_update_leaves_the_healthcheck_of_a_running_container_as_it_was(engine: Engine, prefix: str) -> None:
    state = State()
    apply(engine, state, container_program(prefix, 5, []))
    # Changed without replace_on_changes: the provider updates in place, which
    # stores the new healthcheck and sends Docker nothing about it.
    updated = apply(engine, state, container_program(prefix, 7, []))
    assert ops(updated)["sleeper"] == "update"
    running = engine.client.containers.get(f"{prefix}-sleeper")
    assert running.attrs["Config"]["Healthcheck"]["Interval"] == 5 * 10**9
    # With it, the change replaces the container, and the new one has the new healthcheck.
    replaced = apply(engine, state, container_program(prefix, 9, ["healthcheck"]))
    assert ops(replaced)["sleeper"] == "replace"
    running = engine.client.containers.get(f"{prefix}-sleeper")
    assert running.attrs["Config"]["Healthcheck"]["Interval"] == 9 * 10**9


def test_read_writes_back_what_docker_stores(engine: Engine, prefix: str) -> None:
    """Durations in Go's form, the swap limit Docker defaults to, cpus as
    nanoseconds print; the mock tests' model of `docker inspect` agrees."""
    resources = DockerResources(engine, print)
    config: dict[str, Any] = {
        "name": f"{prefix}-loose",
        "image": python_base(),
        "command": SLEEP,
        "user": "1001:1001",
        "memory": 64,
        "cpus": "1",
        "healthcheck": {"tests": ["CMD", "true"], "interval": "120s", "timeout": "5s", "startPeriod": "60s"},
        "restart": "unless-stopped",
        "mustRun": True,
    }
    _, state = resources.create_container(config)
    assert state["healthcheck"]["interval"] == "2m0s" and state["healthcheck"]["startPeriod"] == "1m0s"
    assert state["cpus"] == "1.0"
    assert state["memorySwap"] in (128, -1), "twice the memory, or -1 where the host has no swap accounting"
    plan = docker_schema.container_plan(state, config, ())
    assert sorted(plan.changed) == ["cpus", "healthcheck", "memorySwap"]
    assert plan.replace == ["cpus"]
    # Written as the program writes them, nothing differs.
    tidy = {
        **config,
        "name": f"{prefix}-tidy",
        "cpus": "1.0",
        "memorySwap": 64,
        "healthcheck": {"tests": ["CMD", "true"], "interval": "2m0s", "timeout": "5s", "startPeriod": "1m0s"},
    }
    cid, state = resources.create_container(tidy)
    assert docker_schema.container_plan(state, tidy, ()).changed == []
    # The model of `docker inspect` the mock tests use holds for these fields.
    real = engine.client.api.inspect_container(cid)
    model = docker_inspect(tidy)
    for section, field in (
        ("HostConfig", "Memory"),
        ("HostConfig", "MemorySwap"),
        ("HostConfig", "NanoCpus"),
        ("HostConfig", "ReadonlyRootfs"),
        ("Config", "User"),
    ):
        assert real[section][field] == model[section][field], field
    for field in ("Test", "Interval", "Timeout", "StartPeriod"):
        assert real["Config"]["Healthcheck"][field] == model["Config"]["Healthcheck"][field], field


def network_program(prefix: str, label: str, *, delete_first: bool) -> Callable[[], dict[str, Any]]:
    def program() -> dict[str, Any]:
        pdocker.Network(
            "net",
            name=f"{prefix}-net",
            driver="bridge",
            ipam_configs=[pdocker.NetworkIpamConfigArgs(subnet="172.29.9.0/24", gateway="172.29.9.1")],
            labels=[pdocker.NetworkLabelArgs(label="purpose", value=label)],
            opts=pulumi.ResourceOptions(delete_before_replace=delete_first),
        )
        return {}

    return program


def test_a_named_network_replaced_new_first_collides_with_itself(engine: Engine, prefix: str) -> None:
    state = State()
    created = apply(engine, state, network_program(prefix, "a", delete_first=False))
    assert ops(created)["net"] == "create"
    assert apply(engine, state, network_program(prefix, "a", delete_first=False)).steps[0].op == "same"
    with pytest.raises(docker.errors.APIError, match="already exists"):
        apply(engine, state, network_program(prefix, "b", delete_first=False))
    replaced = apply(engine, state, network_program(prefix, "b", delete_first=True))
    assert ops(replaced)["net"] == "replace"
    assert engine.client.networks.get(f"{prefix}-net").attrs["Labels"] == {"purpose": "b"}


def volume_program(prefix: str, label: str) -> Callable[[], dict[str, Any]]:
    def program() -> dict[str, Any]:
        pdocker.Volume(
            "data",
            name=f"{prefix}-data",
            labels=[pdocker.VolumeLabelArgs(label="purpose", value=label)],
            opts=pulumi.ResourceOptions(protect=True, delete_before_replace=True),
        )
        return {}

    return program


def test_a_protected_volume_is_never_replaced(engine: Engine, prefix: str) -> None:
    state = State()
    apply(engine, state, volume_program(prefix, "a"))
    engine.client.containers.run(
        python_base(),
        ["sh", "-c", "echo kept > /data/file"],
        volumes={f"{prefix}-data": {"bind": "/data", "mode": "rw"}},
        remove=True,
    )
    with pytest.raises(ProtectedReplacement, match="marked for protection") as refused:
        apply(engine, state, volume_program(prefix, "b"))
    assert "labels" in str(refused.value)
    kept = engine.client.containers.run(
        python_base(), ["cat", "/data/file"], volumes={f"{prefix}-data": {"bind": "/data", "mode": "ro"}}, remove=True
    )
    assert kept == b"kept\n"
    assert engine.client.volumes.get(f"{prefix}-data").attrs["Labels"] == {"purpose": "a"}
