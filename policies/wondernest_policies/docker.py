"""Rules for the local target: pulumi-docker containers, images and volumes."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from wondernest_policies.model import Resource, Rule, at, holds, includes, items, mapping, mappings, unknown
from wondernest_policies.secret_values import command_problems, variable_problems

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
IMAGE = "docker:index/image:Image"
VOLUME = "docker:index/volume:Volume"

_REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_IMAGE_ID = re.compile(r"^sha256:[a-f0-9]{64}$")
ALLOWED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def image_reference_problem(ref: str) -> str | None:
    if _IMAGE_ID.match(ref):
        return None  # an image id is as pinned as a digest
    match = _REFERENCE.match(ref)
    if match is None:
        return f"{ref!r} is not an image reference."
    if match["tag"] is None and match["digest"] is None:
        return f"image {ref!r} is not pinned to a version tag or digest."
    if match["tag"] == "latest" and match["digest"] is None:
        return f"image {ref!r} uses 'latest', which is not a version."
    return None


def _image_pinned(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    key = {REMOTE_IMAGE: "name", IMAGE: "imageName", CONTAINER: "image"}[resource.type]
    ref = resource.get(key)
    if ref is None or unknown(ref):
        # A container's image is usually a RemoteImage's id, known only after apply;
        # the RemoteImage's own reference is checked where it is declared.
        return []
    problem = image_reference_problem(str(ref))
    return [problem] if problem else []


def _non_root(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    user = resource.get("user")  # not known yet, the engine's placeholder: neither empty nor root
    if not user:
        return ["no user is set, so the image's default (often root) applies."]
    name = str(user).split(":")[0]
    return ["runs as root."] if name in ("0", "root") else []


def _healthcheck(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    if resource.runs_once or not resource.kind_known:
        return []
    tests = at(resource.get("healthcheck"), "tests")
    # Docker reads the first word alone: NONE switches the check off whatever follows.
    ok = holds(at(tests, 0), lambda t: t is not None and t != "NONE")
    return [] if ok else ["has no healthcheck."]


def _restart(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    restart = resource.get("restart")
    if unknown(restart) or not resource.kind_known:
        return []
    if resource.runs_once:
        # Restarted, a job would run again behind `pulumi up`'s back.
        return [] if restart == "no" else [f"runs once, but its restart policy is {restart!r}."]
    return [] if restart in ("unless-stopped", "always", "on-failure") else [f"restart policy is {restart!r}."]


def _memory(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    memory = resource.get("memory")
    if unknown(memory):
        return []
    return [] if isinstance(memory, (int, float)) and memory > 0 else ["has no memory limit."]


def _not_privileged(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    return ["runs privileged."] if resource.get("privileged") is True else []


def _no_host_namespaces(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    shared = [key for key in ("networkMode", "pidMode", "ipcMode", "usernsMode") if resource.get(key) == "host"]
    return [f"shares the host's {', '.join(shared)}."] if shared else []


def _no_new_privileges(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    opts = resource.get("securityOpts") or []
    ok = holds(opts, lambda v: any(o in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true")
                                   for o in items(v)))  # fmt: skip
    return [] if ok else ["does not set no-new-privileges."]


def _capabilities(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    caps = resource.get("capabilities")
    if unknown(caps):
        return []
    caps = mapping(caps)
    problems = []
    if not includes(caps.get("drops") or [], "ALL"):
        problems.append("does not drop all capabilities.")
    extra = sorted(set(items(caps.get("adds"))) - ALLOWED_CAPABILITIES)
    if extra:
        problems.append(f"adds capabilities {extra}.")
    return problems


def _read_only_root(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    if holds(resource.get("readOnly"), lambda v: v is True):
        return []
    return ["has a writable root filesystem."]


def _no_secrets_in_env(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    problems = []
    for entry in items(resource.get("envs")):
        name, assigned, value = str(entry).partition("=")
        if assigned:
            problems += variable_problems(name, value)
    commands = {
        "the command": resource.get("command"),
        "the entrypoint": resource.get("entrypoints"),
        "the healthcheck": at(resource.get("healthcheck"), "tests"),
    }
    for label, command in commands.items():
        problems += command_problems(label, [str(c) for c in items(command)])
    return problems


def _loopback_ports(resource: Resource, config: Mapping[str, Any]) -> Iterable[str]:
    if config.get("allowPublicBind"):
        return []
    problems = []
    for port in mappings(resource.get("ports")):
        ip = port.get("ip")
        if unknown(ip):
            continue
        try:
            loopback = ip is not None and ipaddress.ip_address(ip).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            problems.append(f"publishes port {port.get('external')} on {ip or 'every interface'}.")
    return problems


def _data_volume_protected(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    if resource.labels.get("com.wondernest.holds-data") != "true":
        return []
    return [] if resource.protect else ["holds data but is not protected from deletion."]


CONTAINER_RULES: list[Rule] = [
    Rule(
        "docker-image-pinned",
        "Images are pinned to a version tag or digest: `latest` or an untagged reference changes under the "
        "stack without a diff, so what runs is not what was reviewed.",
        "high",
        "Pin the reference (`name:1.2.3` or `name@sha256:...`) in Pulumi.<stack>.yaml `images`.",
        (REMOTE_IMAGE, IMAGE, CONTAINER),
        _image_pinned,
    ),
    Rule(
        "docker-container-non-root",
        "Containers run as a non-root user: a process escaping its application starts without root.",
        "high",
        "Set `user` to the image's unprivileged uid.",
        (CONTAINER,),
        _non_root,
    ),
    Rule(
        "docker-container-healthcheck",
        "Containers have a healthcheck: `pulumi up` waits on it and Docker restarts what fails it. A job "
        "`pulumi up` runs to its end (`attach`, `mustRun: false`) is waited on until it exits instead.",
        "medium",
        "Declare a healthcheck that exercises the service, not just the process.",
        (CONTAINER,),
        _healthcheck,
    ),
    Rule(
        "docker-container-restart-policy",
        "Containers restart after a crash or a host reboot; a job `pulumi up` runs to its end never restarts.",
        "medium",
        "Set `restart` to `unless-stopped` (`no` for a job).",
        (CONTAINER,),
        _restart,
    ),
    Rule(
        "docker-container-memory-limit",
        "Containers have a memory limit, so one runaway process cannot starve the rest of the host.",
        "medium",
        "Set `memory` (MB).",
        (CONTAINER,),
        _memory,
    ),
    Rule(
        "docker-container-not-privileged",
        "No container runs privileged: that is root on the host.",
        "critical",
        "Remove `privileged`; grant the one capability needed instead.",
        (CONTAINER,),
        _not_privileged,
    ),
    Rule(
        "docker-container-no-host-namespaces",
        "No container shares the host's network, PID, IPC or user namespace.",
        "critical",
        "Use the platform's networks; remove `networkMode`/`pidMode`/`ipcMode: host`.",
        (CONTAINER,),
        _no_host_namespaces,
    ),
    Rule(
        "docker-container-no-new-privileges",
        "Containers set no-new-privileges, so setuid binaries cannot raise a process's privileges.",
        "high",
        "Add `no-new-privileges:true` to `securityOpts`.",
        (CONTAINER,),
        _no_new_privileges,
    ),
    Rule(
        "docker-container-capabilities-dropped",
        "Containers drop every Linux capability and add back at most NET_BIND_SERVICE.",
        "high",
        "Set `capabilities.drops: [ALL]` and add only what the image needs.",
        (CONTAINER,),
        _capabilities,
    ),
    Rule(
        "docker-container-read-only-root",
        "Root filesystems are read-only where the image allows: nothing written at run time outlives the "
        "container. Containers that receive uploaded files keep a writable root: the provider copies every "
        "upload through `/`, which Docker refuses for a read-only root even when the file lands on a volume.",
        "medium",
        "Set `readOnly: true` with a tmpfs for scratch space on containers that receive no uploads.",
        (CONTAINER,),
        _read_only_root,
    ),
    Rule(
        "secrets-not-in-env",
        "No secret is passed in an environment variable or on a command line, entrypoint or healthcheck (all "
        "readable through `docker inspect` and /proc), whether the variable's name says secret or the value is "
        "one (a known credential format, credentials in a URL, a random-looking token, a secret flag's literal "
        "value): secrets arrive as files.",
        "critical",
        "Upload the secret as a file (mode 0400) and pass its path in a `*_FILE` variable.",
        (CONTAINER,),
        _no_secrets_in_env,
    ),
    Rule(
        "published-ports-loopback",
        "Published ports bind the loopback address unless the stack explicitly allows a wider bind "
        "(policy config `allowPublicBind`, mirroring `network.allowPublicBind`).",
        "high",
        "Publish on 127.0.0.1, or set network.allowPublicBind and the policy's allowPublicBind together.",
        (CONTAINER,),
        _loopback_ports,
        config_schema={"allowPublicBind": {"type": "boolean", "default": False}},
    ),
    Rule(
        "data-volume-protected",
        "Volumes that hold data (label `com.wondernest.holds-data=true`) are protected: deleting one takes a "
        "deliberate `pulumi state unprotect`.",
        "high",
        "Declare the volume with `protect=True`.",
        (VOLUME,),
        _data_volume_protected,
    ),
]
