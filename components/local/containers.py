"""The hardening every local container shares, so no component can forget a piece."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from ipaddress import IPv4Address

import pulumi
import pulumi_docker as docker

from components.model.app import probe_command
from components.model.naming import Names

MIB = 1024 * 1024


@dataclass(frozen=True)
class Publish:
    """A container port published on the host, on one address only."""

    internal: int
    external: int
    address: IPv4Address


@dataclass(frozen=True)
class SecretFile:
    path: str
    content: pulumi.Input[str]
    owner: str
    """Numeric uid (and gid) of the container user that reads it."""


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: pulumi.Input[str]
    user: str
    memory_bytes: int
    networks: Sequence[tuple[pulumi.Input[str], Sequence[str]]]
    """(network name, aliases on it) pairs."""
    healthcheck: docker.ContainerHealthcheckArgs | None
    """None only for a `one_shot` job."""
    labels: Mapping[str, str]
    envs: Sequence[pulumi.Input[str]] = ()
    command: Sequence[str] | None = None
    config_files: Mapping[str, str] = field(default_factory=dict)
    """Path → rendered text, uploaded world-readable."""
    secret_files: Sequence[SecretFile] = ()
    volumes: Sequence[docker.ContainerVolumeArgs] = ()
    publish: Sequence[Publish] = ()
    capabilities_add: Sequence[str] = ()
    read_only: bool = False
    """True wherever the image allows; False wherever files are uploaded. The
    provider copies every upload through the container's root (`/`), and Docker
    refuses that for a read-only root even when the file's path is on a volume."""
    tmpfs: Mapping[str, str] = field(default_factory=dict)
    shm_size_mb: int | None = None
    cpus: float | None = None
    metrics_job: str | None = None
    """The Prometheus job that covers this service (itself or through its exporter)."""
    stop_signal: str | None = None
    stop_timeout_s: int = 30
    wait_timeout_s: int = 120
    one_shot: bool = False
    """A job `pulumi up` runs to its end and leaves exited (migrations), not a
    service: never restarted, and waited on until it exits rather than until
    it is healthy. Its exit code is not checked by the provider; whatever
    depends on the job's work must refuse to start without it."""


# Arguments the provider neither replaces the container for nor sends to
# Docker on an update (terraform-provider-docker's resourceDockerContainerUpdate
# changes only the restart policy and resource limits): a change to one would
# show in a preview, be stored in state and never reach the running container.
# The program's own change to one replaces the container instead.
REPLACE_ON_CHANGES = ["healthcheck", "tmpfs", "init", "cpuPeriod", "cpuQuota", "rm", "mounts"]


def go_duration(seconds: int) -> str:
    """A whole number of seconds as Go's time.Duration.String() writes it (`2m0s`,
    `1h0m0s`): the provider reads healthcheck durations back in that form, so
    any other spelling (`120s`) differs from the state on every preview."""
    if seconds < 0:
        raise ValueError(f"{seconds}: a duration is not negative")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def docker_cpus(cpus: float) -> str:
    """`cpus` as the provider reads it back from Docker's NanoCpus
    (nanoInt64ToDecimalString: 1 → "1.0", 1.5 → "1.5", 10 → "10."). The
    argument forces a replacement, so any other spelling would replace the
    container on every `up`."""
    nano = round(Fraction(str(cpus)) * 10**9)
    if nano <= 0:
        raise ValueError(f"{cpus}: cpus must be positive")
    whole, frac = divmod(nano, 10**9)
    text = f"{whole}.{frac:09d}"
    if text.count("0") == 9:
        return f"{whole}.{frac // 10**8}"
    return text.rstrip("0")


def healthcheck(
    tests: Sequence[str], *, interval_s: int, timeout_s: int, retries: int, start_period_s: int
) -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(
        tests=list(tests),
        interval=go_duration(interval_s),
        timeout=go_duration(timeout_s),
        retries=retries,
        start_period=go_duration(start_period_s),
    )


# A job declares no healthcheck: left out, it would inherit the image's
# HEALTHCHECK and show "unhealthy" after it exited 0. Docker fills each zero
# field of a NONE check from the image's, which the provider would read back
# as a change on every `up`: none is left zero.
NO_HEALTHCHECK = healthcheck(["NONE"], interval_s=60, timeout_s=60, retries=1, start_period_s=60)


def wget_probe(port: int, path: str) -> docker.ContainerHealthcheckArgs:
    """A healthcheck for images that ship busybox (or alpine) wget and no shell tools beyond it."""
    return healthcheck(
        ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}{path}"],
        interval_s=15,
        timeout_s=5,
        retries=5,
        start_period_s=30,
    )


def python_probe(
    port: int,
    path: str,
    *,
    request_timeout_s: int,
    interval_s: int,
    timeout_s: int,
    retries: int,
    start_period_s: int,
) -> docker.ContainerHealthcheckArgs:
    """A healthcheck for the images built from app/: they carry python but no wget or curl."""
    return healthcheck(
        probe_command("python", port, path, request_timeout_s=request_timeout_s),
        interval_s=interval_s,
        timeout_s=timeout_s,
        retries=retries,
        start_period_s=start_period_s,
    )


def hardened_container(resource_name: str, spec: ContainerSpec, opts: pulumi.ResourceOptions) -> docker.Container:
    if (spec.healthcheck is None) != spec.one_shot:
        raise ValueError(f"{spec.name}: a service needs a healthcheck, and only a one-shot job goes without")
    if spec.read_only and (spec.config_files or spec.secret_files):
        raise ValueError(f"{spec.name}: Docker refuses uploads into a read-only root; deliver the files another way")
    memory_mb = max(spec.memory_bytes // MIB, 6)
    return docker.Container(
        resource_name,
        name=spec.name,
        image=spec.image,
        user=spec.user,
        envs=list(spec.envs) or None,
        command=list(spec.command) if spec.command is not None else None,
        uploads=_uploads(spec) or None,
        volumes=list(spec.volumes) or None,
        networks_advanced=[
            docker.ContainerNetworksAdvancedArgs(name=network, aliases=list(aliases))
            for network, aliases in spec.networks
        ],
        ports=[
            docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=str(p.address), protocol="tcp")
            for p in spec.publish
        ]
        or None,
        healthcheck=spec.healthcheck or NO_HEALTHCHECK,
        labels=[
            docker.ContainerLabelArgs(label=key, value=value)
            for key, value in sorted(
                {**spec.labels, **_metrics_label(spec), **config_digest_labels(spec.config_files)}.items()
            )
        ],
        memory=memory_mb,
        # Stated, equal to the memory: no swap. Left out, Docker makes it twice
        # the memory, the provider reads that back and every preview shows it.
        memory_swap=memory_mb,
        restart="no" if spec.one_shot else "unless-stopped",
        must_run=not spec.one_shot,
        # Unset for services, as it always was: a new explicit `false` would show in every diff.
        attach=True if spec.one_shot else None,
        wait=not spec.one_shot,
        wait_timeout=None if spec.one_shot else spec.wait_timeout_s,
        read_only=spec.read_only,
        tmpfs=dict(spec.tmpfs) or None,
        shm_size=spec.shm_size_mb,
        cpus=None if spec.cpus is None else docker_cpus(spec.cpus),
        privileged=False,
        security_opts=["no-new-privileges:true"],
        capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=sorted(spec.capabilities_add) or None),
        log_driver="json-file",
        log_opts={"max-size": "10m", "max-file": "3"},
        stop_signal=spec.stop_signal,
        stop_timeout=spec.stop_timeout_s,
        destroy_grace_seconds=spec.stop_timeout_s,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(replace_on_changes=REPLACE_ON_CHANGES)),
    )


def labelled_volume(
    resource_name: str, names: Names, component: str, opts: pulumi.ResourceOptions, *, holds_data: bool = False
) -> docker.Volume:
    """A named volume `<app>-<stack>-<resource_name>` with the platform's labels;
    `holds_data` marks it for the policy that requires such volumes protected."""
    labels = names.labels(component)
    if holds_data:
        labels["com.wondernest.holds-data"] = "true"
    return docker.Volume(
        resource_name,
        name=names.resource(resource_name),
        labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
        # Named: a replacement created first would collide with its own name.
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
    )


def _metrics_label(spec: ContainerSpec) -> dict[str, str]:
    return {"com.wondernest.metrics-job": spec.metrics_job} if spec.metrics_job else {}


def remote_image(resource_name: str, ref: str, opts: pulumi.ResourceOptions) -> docker.RemoteImage:
    # keep_locally: a `pulumi destroy` must not force a re-download on the next `up`.
    return docker.RemoteImage(resource_name, name=ref, keep_locally=True, opts=opts)


def config_digest_labels(config_files: Mapping[str, str]) -> dict[str, str]:
    """One label per rendered file with a digest of its text.

    A secret file makes the whole `uploads` property secret, so a preview shows
    it only as [secret]; these labels keep a changed config file visible to the
    reviewer (the text itself is in the code diff of the renderer)."""
    return {
        f"com.wondernest.config.{path.rsplit('/', 1)[-1]}": hashlib.sha256(text.encode()).hexdigest()[:16]
        for path, text in config_files.items()
    }


def _uploads(spec: ContainerSpec) -> list[docker.ContainerUploadArgs]:
    uploads = [
        docker.ContainerUploadArgs(file=path, content=text, permissions="0444")
        for path, text in sorted(spec.config_files.items())
    ]
    uploads += [
        docker.ContainerUploadArgs(
            file=f.path,
            content=pulumi.Output.secret(f.content),
            owner=f.owner,
            group=f.owner,
            permissions="0400",
        )
        for f in spec.secret_files
    ]
    return uploads
