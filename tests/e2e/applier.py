"""Applies the program's graph to a real Docker engine, for the end-to-end tests.

The program runs under the mock runtime exactly as the other tests run it, but
each resource the monitor registers is performed for real as it arrives (the
runtime hands a resource over only once its inputs, and the resources it
depends on, are done, as the engine does): passwords and certificates are
generated, images built or found, networks, volumes and containers created
with the Docker SDK following terraform-provider-docker's
resource_docker_container_funcs.go (create; networks_advanced replacing the
default bridge; `uploads` as one tar each through CopyToContainer; start;
`wait` polling for healthy within wait_timeout; `attach` waiting for the exit),
and the dynamic Postgres provider runs its own check/diff/create/update/delete
against the container's database. The real outputs flow back into the
program, so what a resource receives is what `pulumi up` would give it.

A `State` kept between applies makes a second apply a diff: unchanged inputs
are no operation, a changed dynamic resource gets the provider's diff and
update or replace, any other changed resource is replaced. `destroy` removes
what `pulumi destroy --exclude-protected` would. A type it has no handler for
fails the apply.
"""

from __future__ import annotations

import base64
import io
import tarfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import pulumi

from tests.e2e import crypto, docker_schema
from tests.e2e.engine import Engine
from tests.harness import RecordingMocks
from tests.provider_host import ProviderHost

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
SECRET_SIG = "4dabf18193072939515e22adb298388d"
PROVIDER_KEY = "__provider"


class UnknownResourceType(Exception):
    pass


class ProtectedReplacement(Exception):
    """What the engine answers when a change would replace a protected resource
    (pulumi/pulumi pkg/resource/deploy/step_generator.go): nothing is done."""


def plain(value: Any) -> Any:
    """Inputs as a provider receives them: secrets unwrapped, whole floats as ints."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return plain(value["value"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class Applied:
    typ: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    options: dict[str, Any]


@dataclass
class State:
    """What the engine's state file holds: each resource's id, inputs, outputs and options, in creation order."""

    resources: dict[tuple[str, str], Applied] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, applied: Applied) -> None:
        with self.lock:
            self.resources.pop((applied.typ, applied.name), None)
            self.resources[(applied.typ, applied.name)] = applied


@dataclass
class Step:
    op: str
    """create, same, update, replace, delete, forget, skip."""
    typ: str
    name: str
    detail: str = ""
    """What changed, for an update or a replacement."""


def _swap(megabytes: Any) -> int | None:
    if megabytes is None:
        return None
    return int(megabytes) * MIB if int(megabytes) > 0 else int(megabytes)


def upload_tar(upload: Mapping[str, Any]) -> bytes:
    """One upload as the provider writes it (F:547-580): a one-file tar at the
    file's absolute path, mode from `permissions` (else 0744 executable, 0644),
    extracted at `/` before the container starts. v4.5.0 writes no owner into
    the header; pulumi-docker 5.2.0 adds `owner` and `group` to an upload
    ("numeric IDs can be used directly", its SDK's documentation), written here
    as the header's uid and gid."""
    sources = [k for k in ("content", "contentBase64", "source") if upload.get(k)]
    if len(sources) != 1:
        raise ValueError(f"upload {upload.get('file')}: exactly one of content, content_base64, source")
    if upload.get("content"):
        data = str(upload["content"]).encode()
    elif upload.get("contentBase64"):
        data = base64.b64decode(upload["contentBase64"])
    else:
        data = Path(upload["source"]).read_bytes()
    default_mode = 0o744 if upload.get("executable") else 0o644
    mode = int(upload["permissions"], 8) if upload.get("permissions") else default_mode
    info = tarfile.TarInfo(str(upload["file"]))
    info.mode = mode
    info.size = len(data)
    info.mtime = int(time.time())
    info.uid = int(upload.get("owner") or 0)
    info.gid = int(upload.get("group") or 0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class DockerResources:
    """Create and delete for the docker provider's resource types."""

    def __init__(self, engine: Engine, log: Callable[[str], None]) -> None:
        self.engine = engine
        self.api = engine.client.api
        self.log = log
        self.image_sizes: dict[str, int] = {}

    # --- docker:index/network:Network
    def create_network(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        ipam = None
        if inputs.get("ipamConfigs"):
            ipam = docker.types.IPAMConfig(
                driver=inputs.get("ipamDriver", "default"),
                pool_configs=[
                    docker.types.IPAMPool(subnet=c.get("subnet"), gateway=c.get("gateway"), iprange=c.get("ipRange"))
                    for c in inputs["ipamConfigs"]
                ],
            )
        created = self.api.create_network(
            inputs["name"],
            driver=inputs.get("driver"),
            options=inputs.get("options"),
            ipam=ipam,
            check_duplicate=True,
            internal=bool(inputs.get("internal")),
            labels={item["label"]: item["value"] for item in inputs.get("labels") or []},
            enable_ipv6=bool(inputs.get("ipv6")),
            attachable=bool(inputs.get("attachable")),
            ingress=bool(inputs.get("ingress")),
        )
        # NF:81: Create ends with Read.
        return created["Id"], docker_schema.read_network(self.api.inspect_network(created["Id"]), inputs)

    def delete_network(self, id_: str, _outputs: dict[str, Any]) -> None:
        network = self.engine.client.networks.get(id_)
        for container in network.attrs.get("Containers") or {}:
            network.disconnect(container, force=True)
        network.remove()

    # --- docker:index/volume:Volume
    def create_volume(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        volume = self.api.create_volume(
            inputs.get("name"),
            driver=inputs.get("driver", "local"),
            driver_opts=inputs.get("driverOpts"),
            labels={item["label"]: item["value"] for item in inputs.get("labels") or []},
        )
        # VOL:285: Create ends with Read.
        return volume["Name"], docker_schema.read_volume(self.api.inspect_volume(volume["Name"]), inputs)

    def delete_volume(self, id_: str, _outputs: dict[str, Any]) -> None:
        # The provider retries while a container still holds the volume; so does this.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.api.remove_volume(id_, force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    # --- docker:index/remoteImage:RemoteImage
    def create_remote_image(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """findImage: the local image by name first, a pull only when absent."""
        name = inputs["name"]
        try:
            image = self.engine.client.images.get(name)
        except docker.errors.ImageNotFound:
            image = self.engine.client.images.pull(name)
        digests = image.attrs.get("RepoDigests") or []
        return f"{image.id}{name}", {**inputs, "imageId": image.id, "repoDigest": digests[0] if digests else ""}

    def delete_remote_image(self, _id: str, outputs: dict[str, Any]) -> None:
        if not outputs.get("keepLocally"):
            self.engine.client.images.remove(outputs["name"], force=bool(outputs.get("forceRemove")))

    # --- docker:index/image:Image (built, not pushed)
    def create_image(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if not inputs.get("skipPush"):
            raise UnknownResourceType("docker Image with a push: no registry here")
        build = inputs.get("build") or {}
        started = time.monotonic()
        self.engine.build(
            inputs["imageName"],
            ROOT / build.get("context", "."),
            dockerfile=ROOT / build.get("dockerfile", "Dockerfile"),
            target=build.get("target"),
            build_args=build.get("args"),
        )
        image = self.engine.client.images.get(inputs["imageName"])
        self.image_sizes[inputs["imageName"]] = int(image.attrs["Size"])
        self.log(
            f"built {inputs['imageName']} in {time.monotonic() - started:.0f} s, {image.attrs['Size'] / MIB:.0f} MiB"
        )
        return inputs["imageName"], {**inputs, "repoDigest": "", "baseImageName": inputs["imageName"]}

    def delete_image(self, _id: str, _outputs: dict[str, Any]) -> None:
        """pulumi-docker leaves a built image in the local store on delete."""

    # --- docker:index/container:Container
    def create_container(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        api = self.api
        image = inputs["image"]
        self.engine.client.images.get(image)  # Unable to create container with image ...
        binds, container_paths = [], []
        for volume in inputs.get("volumes") or []:
            if volume.get("fromContainer") or volume.get("hostPath"):
                raise UnknownResourceType("container volumes from a container or a host path")
            mode = "ro" if volume.get("readOnly") else "rw"
            binds.append(f"{volume['volumeName']}:{volume['containerPath']}:{mode}")
            container_paths.append(volume["containerPath"])
        exposed: list[tuple[int, str]] = []
        bindings: dict[int | str, Any] = {}
        for port in inputs.get("ports") or []:
            key = f"{port['internal']}/{port.get('protocol', 'tcp')}"
            exposed.append((int(port["internal"]), port.get("protocol", "tcp")))
            bindings.setdefault(key, []).append((port.get("ip", ""), port.get("external")))
        caps = inputs.get("capabilities") or {}
        host_config = api.create_host_config(
            binds=binds or None,
            port_bindings=bindings or None,
            privileged=bool(inputs.get("privileged")),
            publish_all_ports=bool(inputs.get("publishAllPorts")),
            restart_policy={"Name": inputs.get("restart", "no"), "MaximumRetryCount": inputs.get("maxRetryCount", 0)},
            auto_remove=bool(inputs.get("rm")),
            read_only=bool(inputs.get("readOnly")),
            log_config=docker.types.LogConfig(type=inputs.get("logDriver", ""), config=inputs.get("logOpts") or {}),
            tmpfs=inputs.get("tmpfs") or None,
            cap_add=caps.get("adds") or None,
            cap_drop=caps.get("drops") or None,
            security_opt=inputs.get("securityOpts") or None,
            mem_limit=int(inputs["memory"]) * MIB if inputs.get("memory") else None,
            # F:342-348: a positive swap limit is MB; -1 (unlimited) is passed as is.
            memswap_limit=_swap(inputs.get("memorySwap")),
            shm_size=int(inputs["shmSize"]) * MIB if inputs.get("shmSize") else None,
            nano_cpus=int(float(inputs["cpus"]) * 1e9) if inputs.get("cpus") else None,
            init=bool(inputs.get("init", False)),
        )
        healthcheck = None
        if inputs.get("healthcheck"):
            check = inputs["healthcheck"]
            healthcheck = {
                "test": check["tests"],
                "interval": docker_schema.duration_ns(check.get("interval", "0s")),
                "timeout": docker_schema.duration_ns(check.get("timeout", "0s")),
                "start_period": docker_schema.duration_ns(check.get("startPeriod", "0s")),
                "retries": int(check.get("retries", 0)),
            }
        created = api.create_container(
            image,
            command=inputs.get("command"),
            entrypoint=inputs.get("entrypoints"),
            user=inputs.get("user"),
            environment=inputs.get("envs"),
            labels={item["label"]: item["value"] for item in inputs.get("labels") or []},
            healthcheck=healthcheck,
            host_config=host_config,
            name=inputs["name"],
            stop_signal=inputs.get("stopSignal"),
            stop_timeout=inputs.get("stopTimeout"),
            volumes=container_paths or None,
            ports=exposed or None,
            working_dir=inputs.get("workingDir"),
            hostname=inputs.get("hostname"),
        )
        cid = created["Id"]
        if inputs.get("networksAdvanced"):
            try:
                api.disconnect_container_from_network(cid, "bridge")
            except docker.errors.APIError as exc:
                if "is not connected to the network bridge" not in str(exc):
                    raise
            for network in inputs["networksAdvanced"]:
                api.connect_container_to_network(cid, network["name"], aliases=network.get("aliases") or None)
        for upload in inputs.get("uploads") or []:
            api.put_archive(cid, "/", upload_tar(upload))
        if inputs.get("start", True):
            api.start(cid)
            if inputs.get("wait"):
                self._wait_healthy(cid, inputs["name"], int(inputs.get("waitTimeout", 60)))
        exit_code = api.wait(cid)["StatusCode"] if inputs.get("attach") else None
        # F:673: Create ends with Read, so the state holds what Docker reports.
        # A service that is not running is not an error here: Read stores
        # must_run false (F:815-824) and the next update starts it.
        outputs = {**docker_schema.read_container(api.inspect_container(cid), inputs), "id": cid}
        if exit_code is not None:
            outputs["exitCode"] = exit_code
        if outputs.get("mustRun") is False and inputs.get("mustRun", True):
            self.log(f"{inputs['name']} is not running after create:\n{self.logs(cid)}")
        return cid, outputs

    def update_container(self, id_: str, state: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        """resourceDockerContainerUpdate (F:991-1077): one ContainerUpdate with
        the restart policy and the resource limits when one of them changed, a
        start when must_run turns true; everything else is only stored. No Read."""
        plan = docker_schema.container_plan(state, inputs, ())
        if set(plan.changed) & docker_schema.CONTAINER_UPDATED:
            self.api.update_container(
                id_,
                restart_policy={
                    "Name": inputs.get("restart", "no"),
                    "MaximumRetryCount": inputs.get("maxRetryCount", 0),
                },
                cpu_shares=int(inputs.get("cpuShares") or 0),
                mem_limit=int(inputs.get("memory") or 0) * MIB,
                mem_reservation=int(inputs.get("memoryReservation") or 0) * MIB,
                cpuset_cpus=inputs.get("cpuSet") or "",
                memswap_limit=_swap(inputs.get("memorySwap")) or None,
            )
        if state.get("mustRun") is False and inputs.get("mustRun", True) and inputs.get("start", True):
            self.api.start(id_)
        return {**state, **{key: inputs.get(key) for key in plan.changed}, "id": id_}

    def _wait_healthy(self, cid: str, name: str, timeout_s: int) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.api.inspect_container(cid)["State"]
            health = state.get("Health")
            if health is None:
                raise RuntimeError(f"{name}: `wait` without a healthcheck")
            if health["Status"] == "healthy":
                return
            if time.monotonic() > deadline:
                last = (health.get("Log") or [{}])[-1].get("Output", "")
                raise RuntimeError(
                    f"container {name} failed to be in healthy state in {timeout_s} s "
                    f"(status {state['Status']}, last probe: {last.strip()!r}):\n{self.logs(cid)}"
                )
            time.sleep(1)

    def logs(self, cid: str) -> str:
        logs: bytes = self.api.logs(cid, tail=40)
        return logs.decode(errors="replace")

    def delete_container(self, id_: str, outputs: dict[str, Any]) -> None:
        try:
            if not outputs.get("attach"):
                self.api.stop(id_, timeout=int(outputs.get("destroyGraceSeconds") or 0))
            self.api.remove_container(id_, v=outputs.get("removeVolumes", True), force=True)
        except docker.errors.NotFound:
            return


Handler = tuple[Callable[[dict[str, Any]], tuple[str, dict[str, Any]]], Callable[[str, dict[str, Any]], None] | None]


def _generated(
    compute: Callable[[dict[str, Any]], dict[str, Any]],
) -> Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]:
    return lambda inputs: ("none", compute(inputs))


class EngineMocks(RecordingMocks):
    """The mock runtime's resource hook, performing each resource on the engine,
    and the dynamic Postgres resources through Pulumi's own provider host."""

    def __init__(
        self,
        engine: Engine,
        state: State,
        *,
        skip: Mapping[tuple[str, str], str],
        log: Callable[[str], None],
        host: ProviderHost,
    ) -> None:
        super().__init__()
        self.state = state
        self.skip = dict(skip)
        self.log = log
        self.host = host
        self.steps: list[Step] = []
        self.docker = DockerResources(engine, log)
        d = self.docker
        self.handlers: dict[str, Handler] = {
            "random:index/randomPassword:RandomPassword": (_generated(crypto.random_password), None),
            "tls:index/privateKey:PrivateKey": (_generated(crypto.private_key), None),
            "tls:index/selfSignedCert:SelfSignedCert": (_generated(crypto.self_signed_cert), None),
            "tls:index/certRequest:CertRequest": (_generated(crypto.cert_request), None),
            "tls:index/locallySignedCert:LocallySignedCert": (_generated(crypto.locally_signed_cert), None),
            "docker:index/network:Network": (d.create_network, d.delete_network),
            "docker:index/volume:Volume": (d.create_volume, d.delete_volume),
            "docker:index/remoteImage:RemoteImage": (d.create_remote_image, d.delete_remote_image),
            "docker:index/image:Image": (d.create_image, d.delete_image),
            "docker:index/container:Container": (d.create_container, d.delete_container),
        }

    def _step(self, op: str, typ: str, name: str, detail: str = "") -> None:
        with self.state.lock:
            self.steps.append(Step(op, typ, name, detail))
        self.log(f"{op:8} {typ} {name}{f' ({detail})' if detail else ''}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        super().new_resource(args)  # records the declaration as every mock test sees it
        if not args.custom:
            return "", {}
        key = (args.typ, args.name)
        inputs = plain(dict(args.inputs))
        options = (self.monitor.options.get(key) if self.monitor else None) or {}
        if key in self.skip:
            self._step("skip", *key)
            return f"skipped-{args.name}", {**inputs, "skipped": self.skip[key]}
        old = self.state.resources.get(key)
        if args.typ.startswith("pulumi-python:dynamic"):
            return self._dynamic(key, inputs, options, old)
        if args.typ not in self.handlers:
            raise UnknownResourceType(f"{args.typ} ({args.name}): the applier has no handler for this type")
        create, delete = self.handlers[args.typ]
        plan = self._plan(args.typ, old, inputs, options)
        if old is not None and not plan.changed:
            self._step("same", *key)
            old.options = options
            old.inputs = inputs
            return old.id, old.outputs
        if old is not None and not plan.replace:
            self._step("update", *key, ", ".join(plan.changed))
            outputs = self.docker.update_container(old.id, old.outputs, inputs)
            self.state.put(Applied(args.typ, args.name, old.id, inputs, outputs, options))
            return old.id, outputs
        if old is not None:
            if old.options.get("protect"):
                raise ProtectedReplacement(
                    f"unable to replace resource {options.get('urn')} as it is currently marked for protection "
                    f"(changed: {', '.join(plan.replace)}). To unprotect the resource, remove the `protect` flag "
                    "from the resource in your Pulumi program and run `pulumi up`"
                )
            self._step("replace", *key, ", ".join(plan.replace))
            # pulumi-docker's resources.go:114 makes the container delete-before-replace;
            # anything else is created anew first unless the program asks otherwise.
            first = args.typ == "docker:index/container:Container" or bool(options.get("delete_before_replace"))
            if first and delete is not None:
                delete(old.id, old.outputs)
            id_, outputs = create(inputs)
            if not first and delete is not None:
                delete(old.id, old.outputs)
        else:
            self._step("create", *key)
            id_, outputs = create(inputs)
        self.state.put(Applied(args.typ, args.name, id_, inputs, outputs, options))
        return id_, outputs

    @staticmethod
    def _plan(typ: str, old: Applied | None, inputs: dict[str, Any], options: Mapping[str, Any]) -> docker_schema.Plan:
        """The provider's diff against what its Read stored; for the generated
        values and images, any changed input is a new resource."""
        if old is None:
            return docker_schema.Plan()
        if typ == "docker:index/container:Container":
            return docker_schema.container_plan(old.outputs, inputs, options.get("replace_on_changes") or ())
        if typ == "docker:index/network:Network":
            return docker_schema.network_plan(old.outputs, inputs)
        if typ == "docker:index/volume:Volume":
            return docker_schema.volume_plan(old.outputs, inputs)
        changed = sorted(k for k in set(old.inputs) | set(inputs) if old.inputs.get(k) != inputs.get(k))
        return docker_schema.Plan(changed, changed)

    def _dynamic(
        self, key: tuple[str, str], inputs: dict[str, Any], options: dict[str, Any], old: Applied | None
    ) -> tuple[str, dict[str, Any]]:
        """As the engine drives a provider: Check against the old inputs, then
        Create, or Diff against the old outputs and Update or replace."""
        urn = str(options.get("urn"))
        checked = self.host.check(urn, old.inputs if old else {}, inputs)
        if checked.failures:
            raise RuntimeError(f"{key[1]}: " + "; ".join(f"{prop}: {reason}" for prop, reason in checked.failures))
        news = checked.inputs
        if old is None:
            self._step("create", *key)
            id_, outputs = self.host.create(urn, news)
            self.state.put(Applied(key[0], key[1], id_, news, outputs, options))
            return id_, outputs
        diff = self.host.diff(old.id, urn, old.outputs, news, old.inputs)
        if diff.changes == "DIFF_NONE":
            self._step("same", *key)
            old.options = options
            return old.id, old.outputs
        if diff.replaces:
            self._step("replace", *key, ", ".join(diff.replaces))
            if diff.delete_before_replace:
                self.host.delete(old.id, urn, old.outputs, old.inputs)
            id_, outputs = self.host.create(urn, news)
            if not diff.delete_before_replace:
                self.host.delete(old.id, urn, old.outputs, old.inputs)
            self.state.put(Applied(key[0], key[1], id_, news, outputs, options))
            return id_, outputs
        self._step("update", *key)
        outputs = self.host.update(old.id, urn, old.outputs, news, old.inputs)
        self.state.put(Applied(key[0], key[1], old.id, news, outputs, options))
        return old.id, outputs

    def refresh(self) -> list[Step]:
        """`pulumi refresh` (what `pulumi up --refresh` does first): each
        resource's Read. A container, network or volume Docker no longer has
        leaves the state, so the next apply creates it; a container that is not
        running is stored with must_run false (F:815-824), so the next apply's
        update starts it; a Postgres object goes through the provider host."""
        done: list[Step] = []
        for applied in list(self.state.resources.values()):
            key = (applied.typ, applied.name)
            read = self._read(applied)
            if read is None:
                with self.state.lock:
                    del self.state.resources[key]
                done.append(Step("gone", *key))
            elif read != applied.outputs:
                applied.outputs = read
                done.append(Step("refreshed", *key))
        for step in done:
            self.log(f"{step.op:8} {step.typ} {step.name}")
        return done

    def _read(self, applied: Applied) -> dict[str, Any] | None:
        api = self.docker.api
        try:
            if applied.typ == "docker:index/container:Container":
                return {
                    **docker_schema.read_container(api.inspect_container(applied.id), applied.inputs),
                    "id": applied.id,
                }
            if applied.typ == "docker:index/network:Network":
                return docker_schema.read_network(api.inspect_network(applied.id), applied.inputs)
            if applied.typ == "docker:index/volume:Volume":
                return docker_schema.read_volume(api.inspect_volume(applied.id), applied.inputs)
        except docker.errors.NotFound:
            return None
        if applied.typ.startswith("pulumi-python:dynamic"):
            id_, outputs = self.host.read(applied.id, str(applied.options.get("urn")), applied.outputs, applied.inputs)
            return outputs if id_ else None
        return applied.outputs

    def destroy(self, *, exclude_protected: bool) -> list[Step]:
        """Delete in reverse creation order: dependents first, as the engine
        does. With `exclude_protected`, a protected resource and everything it
        depends on stay; a retain_on_delete resource leaves state only."""
        resources = list(self.state.resources.values())
        kept: set[tuple[str, str]] = set()
        if exclude_protected:
            pending = [(r.typ, r.name) for r in resources if r.options.get("protect")]
            while pending:
                key = pending.pop()
                if key in kept or key not in self.state.resources:
                    continue
                kept.add(key)
                pending += [_urn_key(urn) for urn in _dependency_urns(self.state.resources[key].options)]
        elif any(r.options.get("protect") for r in resources):
            raise RuntimeError("protected resources: unprotect them first")
        done: list[Step] = []
        for applied in reversed(resources):
            key = (applied.typ, applied.name)
            if key in kept:
                continue
            if applied.options.get("retain_on_delete"):
                done.append(Step("forget", *key))
            elif applied.typ.startswith("pulumi-python:dynamic"):
                self.host.delete(applied.id, str(applied.options.get("urn")), applied.outputs, applied.inputs)
                done.append(Step("delete", *key))
            else:
                delete = self.handlers[applied.typ][1]
                if delete is not None:
                    delete(applied.id, applied.outputs)
                done.append(Step("delete", *key))
            self.log(f"{done[-1].op:8} {applied.typ} {applied.name}")
            with self.state.lock:
                del self.state.resources[key]
        return done


def _dependency_urns(options: Mapping[str, Any]) -> list[str]:
    urns = list(options.get("dependencies") or [])
    for deps in (options.get("property_dependencies") or {}).values():
        urns += deps
    return urns


def _urn_key(urn: str) -> tuple[str, str]:
    """urn:pulumi:<stack>::<project>::<parent types$>type::name → (type, name)."""
    _, types, name = urn.rsplit("::", 2)
    return types.rsplit("$", 1)[-1], name
