"""The local graph written for what the Docker provider does after the call
(tests/e2e/docker_schema.py, from the provider's source): every change a
container needs reaches it, and a second `pulumi up` finds nothing to change
in what the provider read back after the first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from components.local.containers import docker_cpus, go_duration
from tests.e2e import docker_schema
from tests.harness import Evaluation, evaluate, stack_config

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
MIB = 1024 * 1024
# The provider's own switches: they steer what it does, not the container.
PROVIDER_SWITCHES = {
    "start", "wait", "waitTimeout", "attach", "logs", "removeVolumes", "destroyGraceSeconds",
    "containerReadRefreshTimeoutMilliseconds", "mustRun",
}  # fmt: skip


@pytest.fixture(scope="module")
def dev() -> Evaluation:
    return evaluate(stack_config())


def plain(value: Any) -> Any:
    """Inputs as the provider gets them: secrets unwrapped."""
    if isinstance(value, dict):
        if "4dabf18193072939515e22adb298388d" in value:
            return plain(value["value"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def docker_inspect(config: Mapping[str, Any]) -> dict[str, Any]:
    """What Docker stores for a container created from these arguments, as
    `docker inspect` shows it (checked against a real engine in
    tests/e2e/test_docker_behaviour.py): durations in nanoseconds, sizes in
    bytes, a swap limit of twice the memory when none is given."""
    check = config.get("healthcheck")
    memory = int(config.get("memory") or 0) * MIB
    swap = config.get("memorySwap")
    return {
        "Name": "/" + str(config["name"]),
        "Image": config["image"] if str(config["image"]).startswith("sha256:") else "sha256:" + "0" * 64,
        "State": {"Running": config.get("mustRun", True)},
        "Config": {
            "Image": config["image"],
            "User": config.get("user") or "",
            "Cmd": config.get("command") or ["image-default"],
            "Entrypoint": config.get("entrypoints"),
            "WorkingDir": "/",
            "Hostname": "0123456789ab",
            "StopSignal": config.get("stopSignal") or "SIGTERM",
            "StopTimeout": config.get("stopTimeout"),
            "Healthcheck": None
            if not check
            else {
                "Test": check["tests"],
                **{
                    field: docker_schema.duration_ns(check.get(key) or "0s")
                    for field, key in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "startPeriod"))
                },
                "Retries": check.get("retries") or 0,
            },
        },
        "HostConfig": {
            "SecurityOpt": config.get("securityOpts"),
            "RestartPolicy": {"Name": config.get("restart", "no"), "MaximumRetryCount": 0},
            "ReadonlyRootfs": config.get("readOnly", False),
            "Privileged": config.get("privileged", False),
            "Init": None,
            "Memory": memory,
            "MemorySwap": 2 * memory if swap is None else int(swap) * MIB,
            "MemoryReservation": 0,
            "ShmSize": int(config.get("shmSize") or 64) * MIB,
            "LogConfig": {"Type": config.get("logDriver") or "json-file", "Config": config.get("logOpts") or {}},
            "CapAdd": (config.get("capabilities") or {}).get("adds"),
            "CapDrop": (config.get("capabilities") or {}).get("drops"),
            "Tmpfs": config.get("tmpfs"),
            "NanoCpus": int(float(config["cpus"]) * 10**9) if config.get("cpus") else 0,
        },
        "NetworkSettings": {
            "Ports": {
                f"{int(p['internal'])}/{p.get('protocol', 'tcp')}": [
                    {"HostIp": p["ip"], "HostPort": str(int(p["external"]))}
                ]
                for p in config.get("ports") or []
            }
        },
    }


def test_every_container_is_replaced_for_what_an_update_would_not_apply(dev: Evaluation) -> None:
    never_applied = docker_schema.CONTAINER_STATE_ONLY - PROVIDER_SWITCHES
    assert never_applied == {"healthcheck", "tmpfs", "init", "cpuPeriod", "cpuQuota", "rm"}
    for container in dev.of_type(CONTAINER):
        covered = set(container.options["replace_on_changes"])
        assert never_applied <= covered, container.name
        # Everything else the program sets either replaces or is applied by ContainerUpdate.
        for key in container.inputs:
            assert key in docker_schema.KNOWN | {"name"}, (container.name, key)


def test_a_second_up_finds_nothing_to_change_in_what_the_provider_read_back(dev: Evaluation) -> None:
    for container in dev.of_type(CONTAINER):
        config = plain(container.inputs)
        state = docker_schema.read_container(docker_inspect(config), config)
        plan = docker_schema.container_plan(state, config, container.options["replace_on_changes"])
        assert plan.changed == [], (container.name, {k: (state.get(k), config.get(k)) for k in plan.changed})


def test_what_the_program_leaves_to_docker_would_show_in_every_preview(dev: Evaluation) -> None:
    """The model sees the defects the program avoids: a duration written
    `120s`, a swap limit left to Docker, cpus written `1`."""
    api = plain(dev.named(CONTAINER, "api").inputs)
    for broken, key in (
        ({**api, "healthcheck": {**api["healthcheck"], "startPeriod": "120s"}}, "healthcheck"),
        ({k: v for k, v in api.items() if k != "memorySwap"}, "memorySwap"),
        ({**api, "cpus": "1"}, "cpus"),
    ):
        state = docker_schema.read_container(docker_inspect(broken), broken)
        plan = docker_schema.container_plan(state, broken, ())
        assert plan.changed == [key], key


def test_named_networks_and_volumes_are_deleted_before_they_are_replaced(dev: Evaluation) -> None:
    for resource in [*dev.of_type(NETWORK), *dev.of_type(VOLUME)]:
        assert resource.inputs["name"], resource.name
        assert resource.options["delete_before_replace"], resource.name


def test_networks_state_the_gateway_docker_reads_back(dev: Evaluation) -> None:
    for network in dev.of_type(NETWORK):
        config = plain(network.inputs)
        subnet = config["ipamConfigs"][0]["subnet"]
        inspect = {
            "Name": config["name"],
            "Labels": {item["label"]: item["value"] for item in config["labels"]},
            "Driver": "bridge",
            "Options": {},
            "Internal": config.get("internal", False),
            "IPAM": {
                "Driver": "default",
                "Config": [{"Subnet": subnet, "Gateway": config["ipamConfigs"][0]["gateway"]}],
            },
        }
        assert docker_schema.network_plan(docker_schema.read_network(inspect, config), config).changed == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5, "5s"), (60, "1m0s"), (90, "1m30s"), (120, "2m0s"), (3600, "1h0m0s"), (3725, "1h2m5s")],
)
def test_durations_are_written_as_go_prints_them(seconds: int, text: str) -> None:
    assert go_duration(seconds) == text
    assert docker_schema.go_duration(docker_schema.duration_ns(text)) == text


@pytest.mark.parametrize(
    ("cpus", "text"),
    # helpers_test.go's table (1.0, 1.5, 2.0, 2.25), and 10 as the helper's code prints it.
    [(1, "1.0"), (1.5, "1.5"), (2, "2.0"), (2.25, "2.25"), (0.5, "0.5"), (10, "10.")],
)
def test_cpus_are_written_as_the_provider_reads_them_back(cpus: float, text: str) -> None:
    assert docker_cpus(cpus) == text
    assert docker_schema.nano_cpus(round(cpus * 10**9)) == text
