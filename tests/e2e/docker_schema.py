"""What the Docker provider does with a container, network or volume after the
call: which changed argument replaces the resource, what an in-place update
really changes on the running container, and what Read writes back into the
state the next diff is computed against.

Sources: pulumi-docker 5.2.0 bundles kreuzwerker/terraform-provider-docker; the
newest stored upstream is v4.5.0 (commit 5074970c, the `upstream` submodule of
pulumi-docker's provider at v5.1.0 and after). 5.2.0's Python SDK adds two
arguments that source lacks (`devices_cgroup_rules`, and `owner`/`group` on an
upload); everything below is read from v4.5.0:

- C = internal/provider/resource_docker_container.go (the schema: ForceNew,
  Optional+Computed, defaults);
- F = internal/provider/resource_docker_container_funcs.go (Create ends with
  Read, F:673; Update, F:991-1077, makes one ContainerUpdate call with the
  restart policy, CPU shares, memory, memory reservation, cpuset and a non-zero
  memory swap, and starts the container when `must_run` turns true, nothing
  else, and does not Read afterwards; Read, F:750-981);
- H = internal/provider/helpers.go (nanoInt64ToDecimalString, H:133-149);
- N, NF = resource_docker_network.go / _funcs.go (no Update: every argument
  replaces; Read writes every label back, NF:176); VOL = resource_docker_volume.go;
- pulumi-docker provider/resources.go:114: only the container is
  DeleteBeforeReplace; a network or volume is created anew before the old one
  is deleted unless the program asks otherwise.

The diff follows terraform-plugin-sdk/v2: an argument the program leaves out
produces no diff when it is Optional+Computed, and otherwise compares its
default (or zero) with the state; sets compare without order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

MIB = 1024 * 1024

# C: arguments whose change replaces the container (ForceNew).
CONTAINER_FORCE_NEW = frozenset(
    {
        "name", "image", "readOnly", "hostname", "domainname", "command", "entrypoints", "user", "dns",
        "dnsOpts", "dnsSearches", "publishAllPorts", "workingDir", "capabilities", "securityOpts", "runtime",
        "platform", "stopSignal", "stopTimeout", "mounts", "volumes", "ports", "hosts", "ulimits", "envs",
        "privileged", "devices", "deviceRequests", "labels", "shmSize", "logDriver", "logOpts", "networkMode",
        "networksAdvanced", "pidMode", "usernsMode", "uploads", "sysctls", "ipcMode", "groupAdds", "tty",
        "stdinOpen", "storageOpts", "gpus", "cpus", "cgroupnsMode", "cgroupParent",
    }
)  # fmt: skip
# F:1016-1019: sent to ContainerUpdate.
CONTAINER_UPDATED = frozenset(
    {"restart", "maxRetryCount", "cpuShares", "memory", "memoryReservation", "cpuSet", "memorySwap"}
)
# Neither ForceNew nor sent anywhere by Update: a change is stored in state
# and never reaches the container (F:991-1077). `mustRun` false→true starts it.
CONTAINER_STATE_ONLY = frozenset(
    {
        "rm", "start", "wait", "waitTimeout", "attach", "logs", "removeVolumes", "destroyGraceSeconds",
        "containerReadRefreshTimeoutMilliseconds", "tmpfs", "init", "cpuPeriod", "cpuQuota", "healthcheck", "mustRun",
    }
)  # fmt: skip
# C: Optional+Computed: left out of the program, they never diff.
CONTAINER_COMPUTED = frozenset(
    {
        "hostname", "command", "entrypoints", "securityOpts", "runtime", "platform", "stopSignal", "stopTimeout",
        "envs", "labels", "shmSize", "logDriver", "ipcMode", "healthcheck", "init",
    }
)  # fmt: skip
CONTAINER_DEFAULTS: Mapping[str, Any] = {
    "restart": "no", "start": True, "mustRun": True, "wait": False, "waitTimeout": 60, "attach": False,
    "logs": False, "rm": False, "readOnly": False, "removeVolumes": True, "networkMode": "bridge",
    "memoryReservation": 0, "tty": False, "stdinOpen": False,
}  # fmt: skip
# C:187-193, C:248-254: a DiffSuppressFunc takes an empty new value for no change.
EMPTY_IS_UNCHANGED = frozenset({"user", "workingDir"})
# Set-typed arguments: their order means nothing.
SETS = frozenset(
    {"envs", "securityOpts", "labels", "volumes", "uploads", "networksAdvanced", "dns", "groupAdds", "ipamConfigs"}
)
KNOWN = CONTAINER_FORCE_NEW | CONTAINER_UPDATED | CONTAINER_STATE_ONLY

HEALTHCHECK_DURATIONS = ("interval", "timeout", "startPeriod", "startInterval")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def duration_ns(text: str) -> int:
    """Go's time.ParseDuration, for the forms a program writes (`15s`, `1m30s`, `500ms`)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if text == "0":
        return 0
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a Go duration")
    return int(sum(Fraction(n) * _UNITS[u] for n, u in parts))


def go_duration(ns: int) -> str:
    """Go's time.Duration.String(), which Read writes back (F:964-967):
    `2m0s`, `1h0m0s`, `500ms`, `0s`."""
    if ns == 0:
        return "0s"
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return f"{_trim(Fraction(ns, size))}{unit}"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = f"{_trim(Fraction(rest, 10**9))}s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds


def _trim(value: Fraction) -> str:
    text = f"{float(value):.9f}".rstrip("0").rstrip(".")
    return text or "0"


def nano_cpus(nano: int) -> str:
    """nanoInt64ToDecimalString (H:133-149), how Read writes `cpus` back:
    1e9 → "1.0", 1.5e9 → "1.5", and, by that code, 10e9 → "10."."""
    if nano == 0:
        return "0"
    value = Fraction(nano, 10**9)
    whole, frac = divmod(value.numerator * 10**9 // value.denominator, 10**9)
    text = f"{whole}.{frac:09d}"
    if text.count("0") == 9:
        return f"{whole}.{frac // 10**8}"
    return text.rstrip("0")


@dataclass
class Plan:
    changed: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    """The changed arguments that replace the resource."""


def _norm(key: str, value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list):
        items = [_norm(key, v) for v in value]
        return sorted(items, key=repr) if key in SETS else items
    if isinstance(value, dict):
        return {k: _norm(k, v) for k, v in sorted(value.items()) if v is not None}
    return value


def _healthcheck(value: Any) -> dict[str, Any] | None:
    """The block with its defaults (C:1053-1092): durations "0s", retries 0."""
    if not value:
        return None
    block = {"tests": list(value.get("tests") or []), "retries": int(value.get("retries") or 0)}
    for key in HEALTHCHECK_DURATIONS:
        block[key] = value.get(key) or "0s"
    return block


def _capabilities(value: Any) -> dict[str, list[str]] | None:
    if not value:
        return None
    return {"adds": sorted(value.get("adds") or []), "drops": sorted(value.get("drops") or [])}


def _ports_equal(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """suppressIfPortsDidNotChangeForMigrationV0ToV1 (C:1192-1247): same count,
    and each old port matched by internal, protocol, external and ip."""
    if len(old) != len(new):
        return False

    def key(p: Mapping[str, Any]) -> tuple[Any, ...]:
        return (int(p["internal"]), p.get("protocol") or "tcp", int(p.get("external") or 0), p.get("ip") or "0.0.0.0")

    return sorted(map(key, old)) == sorted(map(key, new))


def container_plan(state: Mapping[str, Any], config: Mapping[str, Any], replace_on_changes: Iterable[str]) -> Plan:
    """The provider's diff of a container's state against the next inputs,
    with the program's replaceOnChanges applied as the engine applies them."""
    unknown = set(config) - KNOWN - {"name"}
    if unknown:
        raise NotImplementedError(f"container arguments this model of the provider does not know: {sorted(unknown)}")
    plan = Plan()
    keys = (set(config) | set(state)) & KNOWN
    for key in sorted(keys):
        if key not in config and key in CONTAINER_COMPUTED:
            continue
        if key in EMPTY_IS_UNCHANGED and not config.get(key):
            continue
        new = config.get(key, CONTAINER_DEFAULTS.get(key))
        old = state.get(key, CONTAINER_DEFAULTS.get(key))
        if key == "healthcheck":
            same = _healthcheck(old) == _healthcheck(new)
        elif key == "capabilities":
            same = _capabilities(old) == _capabilities(new)
        elif key == "ports":
            same = _ports_equal(list(old or []), list(new or []))
        else:
            same = _norm(key, old or None) == _norm(key, new or None)
        if not same:
            plan.changed.append(key)
    forcing = set(CONTAINER_FORCE_NEW) | set(replace_on_changes)
    plan.replace = [key for key in plan.changed if key in forcing or "*" in forcing]
    return plan


def read_container(inspect: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The state Read writes (F:750-981): what Docker reports for the arguments
    it reads, the program's own values for those it never reads back (envs,
    labels, volumes, uploads, networksAdvanced, destroyGraceSeconds and the
    provider's own switches)."""
    host, conf = inspect["HostConfig"], inspect["Config"]
    state = dict(config)
    state.update(
        name=inspect["Name"].lstrip("/"),
        # F:840-845: the image id when the program gave one, else the reference.
        image=inspect["Image"] if str(config.get("image", "")).startswith("sha256:") else conf["Image"],
        user=conf.get("User") or "",
        command=list(conf.get("Cmd") or []),
        entrypoints=list(conf.get("Entrypoint") or []),
        workingDir=conf.get("WorkingDir") or "",
        hostname=conf.get("Hostname") or "",
        securityOpts=list(host.get("SecurityOpt") or []),
        restart=(host.get("RestartPolicy") or {}).get("Name") or "no",
        maxRetryCount=(host.get("RestartPolicy") or {}).get("MaximumRetryCount") or 0,
        readOnly=bool(host.get("ReadonlyRootfs")),
        privileged=bool(host.get("Privileged")),
        init=bool(host.get("Init")),
        memory=int(host.get("Memory") or 0) // MIB,
        shmSize=int(host.get("ShmSize") or 0) // MIB,
        logDriver=(host.get("LogConfig") or {}).get("Type") or "",
        stopSignal=conf.get("StopSignal") or "",
        stopTimeout=conf.get("StopTimeout") or 0,
    )
    swap = int(host.get("MemorySwap") or 0)
    state["memorySwap"] = swap // MIB if swap > 0 else swap
    reservation = int(host.get("MemoryReservation") or 0)
    state["memoryReservation"] = reservation // MIB if reservation > 0 else reservation
    if host.get("CapAdd") or host.get("CapDrop"):
        state["capabilities"] = {"adds": list(host.get("CapAdd") or []), "drops": list(host.get("CapDrop") or [])}
    if host.get("Tmpfs"):
        state["tmpfs"] = dict(host["Tmpfs"])
    else:
        state.pop("tmpfs", None)
    if config.get("logOpts"):
        state["logOpts"] = dict((host.get("LogConfig") or {}).get("Config") or {})
    if int(host.get("NanoCpus") or 0) > 0:
        state["cpus"] = nano_cpus(int(host["NanoCpus"]))
    check = conf.get("Healthcheck")
    if check is not None:
        state["healthcheck"] = {
            "tests": list(check.get("Test") or []),
            "interval": go_duration(int(check.get("Interval") or 0)),
            "timeout": go_duration(int(check.get("Timeout") or 0)),
            "startPeriod": go_duration(int(check.get("StartPeriod") or 0)),
            "startInterval": go_duration(int(check.get("StartInterval") or 0)),
            "retries": int(check.get("Retries") or 0),
        }
    running = bool(inspect["State"]["Running"])
    if config.get("ports") and (running or config.get("mustRun", True)):
        state["ports"] = [
            {"internal": int(port.split("/")[0]), "protocol": port.split("/")[1], "external": int(b["HostPort"]),
             "ip": b["HostIp"]}
            for port, bindings in sorted((inspect["NetworkSettings"].get("Ports") or {}).items())
            for b in bindings or []
        ]  # fmt: skip
    if not running:
        # F:816: an exited container's exit code.
        state["exitCode"] = int(inspect["State"].get("ExitCode") or 0)
        if config.get("mustRun", True):
            state["mustRun"] = False
    return state


# N: no Update, every argument replaces. Optional+Computed: driver, options, internal, ipamConfigs.
NETWORK_COMPUTED = frozenset({"driver", "options", "internal", "ipamConfigs"})
NETWORK_DEFAULTS: Mapping[str, Any] = {"ipamDriver": "default", "attachable": False, "ingress": False, "ipv6": False}
# VOL: only cluster.availability updates; Optional+Computed: name, driver.
VOLUME_COMPUTED = frozenset({"name", "driver"})


def read_network(inspect: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """NF:160-203, with ipam_config flattened as NS:11-39 does (non-empty fields only)."""
    ipam = inspect.get("IPAM") or {}
    state = dict(config)
    state.update(
        name=inspect["Name"],
        labels=[{"label": k, "value": v} for k, v in sorted((inspect.get("Labels") or {}).items())],
        driver=inspect["Driver"],
        options=dict(inspect.get("Options") or {}),
        internal=bool(inspect.get("Internal")),
        attachable=bool(inspect.get("Attachable")),
        ingress=bool(inspect.get("Ingress")),
        ipv6=bool(inspect.get("EnableIPv6")),
        ipamDriver=ipam.get("Driver") or "default",
        ipamConfigs=[
            {key: value for key, value in (("subnet", c.get("Subnet")), ("ipRange", c.get("IPRange")),
                                           ("gateway", c.get("Gateway")), ("auxAddress", c.get("AuxiliaryAddresses")))
             if value}
            for c in ipam.get("Config") or []
        ],
        scope=inspect.get("Scope"),
    )  # fmt: skip
    return state


def read_volume(inspect: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """VOL:288-360."""
    state = dict(config)
    state.update(
        name=inspect["Name"],
        labels=[{"label": k, "value": v} for k, v in sorted((inspect.get("Labels") or {}).items())],
        driver=inspect["Driver"],
        mountpoint=inspect["Mountpoint"],
    )
    if inspect.get("Options"):
        state["driverOpts"] = dict(inspect["Options"])
    return state


def replace_plan(
    state: Mapping[str, Any], config: Mapping[str, Any], *, computed: frozenset[str], defaults: Mapping[str, Any]
) -> Plan:
    """A network's or volume's diff: every changed argument replaces it."""
    plan = Plan()
    outputs = {"scope", "mountpoint"}
    for key in sorted((set(config) | set(state)) - outputs):
        if key not in config and (key in computed or (key not in defaults and not state.get(key))):
            continue
        new = config.get(key, defaults.get(key))
        old = state.get(key, defaults.get(key))
        if _norm(key, old or None) != _norm(key, new or None):
            plan.changed.append(key)
    plan.replace = list(plan.changed)
    return plan


def network_plan(state: Mapping[str, Any], config: Mapping[str, Any]) -> Plan:
    # ipam_config is a set whose elements hash over all four fields (N:99-137):
    # a field Docker fills that the program left out makes the element differ.
    return replace_plan(state, config, computed=NETWORK_COMPUTED, defaults=NETWORK_DEFAULTS)


def volume_plan(state: Mapping[str, Any], config: Mapping[str, Any]) -> Plan:
    return replace_plan(state, config, computed=VOLUME_COMPUTED, defaults={})
