"""The policy pack run as Pulumi runs it: a plugin process spoken to over gRPC.

The Python language host starts a policy pack (pulumi/pulumi,
sdk/python/cmd/pulumi-language-python/main.go, RunPlugin for an analyzer) as
`<python> -u -m pulumi.policy <engine address> <pack dir>` in the pack's
directory, with PULUMI_ORGANIZATION, PULUMI_PROJECT, PULUMI_STACK,
PULUMI_DRY_RUN and PULUMI_CONFIG in its environment; the pack prints its port.
The engine then calls GetPluginInfo, ConfigureStack, GetAnalyzerInfo, Configure
with the policy config reconciled as pkg/resource/analyzer/config.go does
(schema defaults, then the pack's config file, `all` first), Analyze for each
resource and AnalyzeStack for the graph. Properties go over the wire as
sdk/go/common/resource/plugin/analyzer_plugin.go marshals them: unknowns kept
(as the engine's sentinel), secrets kept (as secret objects), numbers doubles.

`engine_form` turns what the mock runtime recorded into the resources the
engine would send, URNs included: the engine's URN carries the whole chain of
parent types joined by `$` (the stack's own type aside), where the mock
runtime's names only the immediate parent.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.output import Unknown
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, engine_pb2, engine_pb2_grpc

from tests.harness import Declared, asset_form

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "policies"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
STACK_TYPE = "pulumi:pulumi:Stack"
LEVELS = {"advisory": analyzer_pb2.ADVISORY, "mandatory": analyzer_pb2.MANDATORY, "disabled": analyzer_pb2.DISABLED}
LEVEL_NAMES = {value: name for name, value in LEVELS.items()}


@dataclass
class EngineResource:
    type: str
    name: str
    urn: str
    properties: dict[str, Any]
    custom: bool
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    protect: bool = False
    provider: EngineResource | None = None
    outputs: dict[str, Any] | None = None
    """The resource's state after the step: AnalyzeStack reads these (the
    engine's stepGenerator.AnalyzeResources passes `v.Outputs`), Analyze the inputs."""

    @property
    def state(self) -> dict[str, Any]:
        return self.properties if self.outputs is None else self.outputs

    def changed(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> EngineResource:
        """The resource declared otherwise: its inputs changed, and its state with them."""
        outputs = None if self.outputs is None else change(copy.deepcopy(self.outputs))
        return dataclasses.replace(self, properties=change(copy.deepcopy(self.properties)), outputs=outputs)


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    urn: str
    message: str
    level: str


def _wire(value: Any) -> Any:
    if isinstance(value, Unknown):
        return UNKNOWN
    if (asset := asset_form(value)) is not None:
        return {k: _wire(v) for k, v in asset.items()}
    if isinstance(value, Mapping):
        return {str(k): _wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    raise TypeError(f"{type(value).__name__} cannot cross the analyzer protocol")


def to_struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(_wire(dict(props)))
    return struct


def _type_of(mock_urn: str) -> str:
    return mock_urn.split("::")[2].split("$")[-1]


def engine_form(
    declared: Sequence[Declared], *, stack: str, project: str, config: Mapping[str, Any]
) -> list[EngineResource]:
    """The resources as the engine holds them: the stack, a default provider
    per package where no provider was given (its properties from that
    package's stack config), and every registered resource."""
    by_mock_urn = {d.options["urn"]: d for d in declared if d.options.get("urn")}
    engine_urns: dict[str, str] = {}

    def chain(mock_urn: str) -> list[str]:
        d = by_mock_urn.get(mock_urn)
        if d is None:
            return []
        parent = d.options.get("parent") or ""
        return [*chain(parent), d.typ] if parent in by_mock_urn else [d.typ]

    for mock_urn, d in by_mock_urn.items():
        engine_urns[mock_urn] = f"urn:pulumi:{stack}::{project}::{'$'.join(chain(mock_urn))}::{d.name}"

    stack_urn = f"urn:pulumi:{stack}::{project}::{STACK_TYPE}::{project}-{stack}"
    resources = [EngineResource(STACK_TYPE, f"{project}-{stack}", stack_urn, {}, custom=False)]
    defaults: dict[str, EngineResource] = {}

    def default_provider(package: str) -> EngineResource:
        if package not in defaults:
            typ = f"pulumi:providers:{package}"
            props = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{package}:")}
            defaults[package] = EngineResource(
                typ, "default", f"urn:pulumi:{stack}::{project}::{typ}::default", props, custom=True
            )
            resources.append(defaults[package])
        return defaults[package]

    explicit = {engine_urns[d.options["urn"]]: d for d in declared if d.typ.startswith("pulumi:providers:")}
    for d in declared:
        urn = engine_urns[d.options["urn"]]
        parent = engine_urns.get(d.options.get("parent") or "", stack_urn)
        resource = EngineResource(
            d.typ,
            d.name,
            urn,
            dict(d.inputs),
            custom=bool(d.options.get("custom")),
            parent=parent,
            dependencies=[engine_urns.get(u, u) for u in d.options.get("dependencies") or []],
            property_dependencies={
                key: [engine_urns.get(u, u) for u in urns]
                for key, urns in (d.options.get("property_dependencies") or {}).items()
            },
            protect=bool(d.options.get("protect")),
            outputs=None if d.outputs is None else dict(d.outputs),
        )
        if resource.custom and not d.typ.startswith("pulumi:providers:"):
            ref = str(d.options.get("provider") or "")
            provider_urn = engine_urns.get(ref.rsplit("::", 1)[0], "") if ref else ""
            if provider_urn in explicit:
                p = explicit[provider_urn]
                resource.provider = EngineResource(p.typ, p.name, provider_urn, dict(p.inputs), custom=True)
            elif not d.typ.startswith("pulumi-python:dynamic"):
                resource.provider = default_provider(d.typ.split(":", 1)[0])
        resources.append(resource)
    return resources


def reconcile(info: analyzer_pb2.AnalyzerInfo, config_file: Path | None) -> dict[str, analyzer_pb2.PolicyConfig]:
    """pkg/resource/analyzer/config.go, ReconcilePolicyPackConfig: each policy's
    schema defaults and level, then the file's `all` level, then its entries."""
    result: dict[str, tuple[str, dict[str, Any]]] = {}
    for policy in info.policies:
        schema = json_format.MessageToDict(policy.configSchema.properties) if policy.configSchema else {}
        defaults = {k: v["default"] for k, v in schema.items() if isinstance(v, dict) and "default" in v}
        result[policy.name] = (LEVEL_NAMES.get(policy.enforcementLevel, "advisory"), defaults)
    given = json.loads(config_file.read_text()) if config_file else {}
    parsed: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for key, value in given.items():
        if isinstance(value, str):
            parsed[key] = (value, {})
        else:
            props = dict(value)
            parsed[key] = (props.pop("enforcementLevel", None), props)
    if "all" in parsed and parsed["all"][0]:
        result = {k: (str(parsed["all"][0]), v) for k, (_, v) in result.items()}
    for key, (level, props) in parsed.items():
        old_level, old_props = result.get(key, ("", {}))
        result[key] = (level or old_level, {**old_props, **props})
    configs = {}
    for name, (level, props) in result.items():
        config = analyzer_pb2.PolicyConfig(enforcementLevel=LEVELS.get(level, analyzer_pb2.ADVISORY))
        config.properties.update(props)
        configs[name] = config
    return configs


class _Engine(engine_pb2_grpc.EngineServicer):
    """What a plugin may call back on: the engine's log."""

    def __init__(self) -> None:
        self.logs: list[str] = []

    def Log(self, request: Any, context: Any) -> empty_pb2.Empty:
        self.logs.append(str(request.message))
        return empty_pb2.Empty()

    def GetRootResource(self, request: Any, context: Any) -> Any:
        return engine_pb2.GetRootResourceResponse(urn="")

    def SetRootResource(self, request: Any, context: Any) -> Any:
        return engine_pb2.SetRootResourceResponse()


@dataclass
class Analyzer:
    stub: analyzer_pb2_grpc.AnalyzerStub
    info: analyzer_pb2.AnalyzerInfo
    engine: _Engine

    def _options(self, r: EngineResource) -> analyzer_pb2.AnalyzerResourceOptions:
        return analyzer_pb2.AnalyzerResourceOptions(protect=r.protect, parent=r.parent)

    def _provider(self, r: EngineResource) -> analyzer_pb2.AnalyzerProviderResource | None:
        if r.provider is None:
            return None
        p = r.provider
        return analyzer_pb2.AnalyzerProviderResource(
            type=p.type, properties=to_struct(p.properties), urn=p.urn, name=p.name
        )

    def analyze(self, resources: Sequence[EngineResource], *, only: Iterable[str] | None = None) -> list[Diagnostic]:
        """Analyze for every resource (or the URNs in `only`: Analyze judges one
        resource alone), then AnalyzeStack: every diagnostic."""
        found: list[Diagnostic] = []
        chosen = None if only is None else set(only)
        for r in resources:
            if r.type == STACK_TYPE or (chosen is not None and r.urn not in chosen):
                continue
            request = analyzer_pb2.AnalyzeRequest(
                type=r.type,
                properties=to_struct(r.properties),
                urn=r.urn,
                name=r.name,
                options=self._options(r),
                provider=self._provider(r),
            )
            found += self._diagnostics(self.stub.Analyze(request, timeout=60))
        stack = analyzer_pb2.AnalyzeStackRequest(
            resources=[
                analyzer_pb2.AnalyzerResource(
                    type=r.type,
                    properties=to_struct(r.state),
                    urn=r.urn,
                    name=r.name,
                    options=self._options(r),
                    provider=self._provider(r),
                    parent=r.parent,
                    dependencies=r.dependencies,
                    propertyDependencies={
                        k: analyzer_pb2.AnalyzerPropertyDependencies(urns=v) for k, v in r.property_dependencies.items()
                    },
                )
                for r in resources
            ]
        )
        return found + self._diagnostics(self.stub.AnalyzeStack(stack, timeout=120))

    @staticmethod
    def _diagnostics(response: analyzer_pb2.AnalyzeResponse) -> list[Diagnostic]:
        return [
            Diagnostic(d.policyName, d.urn, d.message, LEVEL_NAMES.get(d.enforcementLevel, "advisory"))
            for d in response.diagnostics
        ]


@contextmanager
def policy_analyzer(
    *,
    stack: str,
    project: str,
    config: Mapping[str, Any],
    dry_run: bool,
    pack: Path = PACK,
    policy_config: Path | None = None,
) -> Iterator[Analyzer]:
    """The pack started and configured as `pulumi preview|up --policy-pack
    policies --policy-pack-config policies/config/<stack>.json` would (or with
    the `policy_config` file given)."""
    engine = _Engine()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    engine_pb2_grpc.add_EngineServicer_to_server(engine, server)
    engine_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    env = {
        **os.environ,
        "PULUMI_ORGANIZATION": "organization",
        "PULUMI_PROJECT": project,
        "PULUMI_STACK": stack,
        "PULUMI_DRY_RUN": "true" if dry_run else "false",
        "PULUMI_CONFIG": json.dumps({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}),
    }
    command = [sys.executable, "-u", "-m", "pulumi.policy", f"127.0.0.1:{engine_port}", str(pack)]
    process = subprocess.Popen(command, cwd=pack, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.isdigit():
            process.kill()
            _, err = process.communicate(timeout=10)
            raise RuntimeError(f"the policy pack printed {line!r}, not a port: {err.decode()[-3000:]}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        stub.GetPluginInfo(empty_pb2.Empty(), timeout=30)
        stub.ConfigureStack(
            analyzer_pb2.AnalyzerStackConfigureRequest(
                stack=stack, project=project, organization="organization", dry_run=dry_run
            ),
            timeout=30,
        )
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
        config_file = policy_config or pack / "config" / f"{stack}.json"
        stub.Configure(
            analyzer_pb2.ConfigureAnalyzerRequest(
                policyConfig=reconcile(info, config_file if config_file.exists() else None)
            ),
            timeout=30,
        )
        try:
            yield Analyzer(stub, info, engine)
        finally:
            channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        server.stop(0)
