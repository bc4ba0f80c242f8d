"""Runs the Pulumi program under the mock runtime and records what it declares."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.sync_await import _sync_await

from components.config import NAMESPACE
from components.program import main
from tests.aws_mocks import AWS_CALLS, aws_mock_state

PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
CONTAINER_TYPE = "docker:index/container:Container"


def fake_secret(name: str) -> str:
    """Distinct per resource, long and unmistakable in any text it leaks into."""
    return "Sx" + hashlib.sha256(name.encode()).hexdigest()[:30]


def asset_form(value: Any) -> dict[str, Any] | None:
    """An asset or archive as the SDK serializes it (pulumi/runtime/rpc.py,
    serialize_property): a map under the special signature key, which the
    engine, a provider or the policy analyzer reads back as an Asset or
    Archive; None for anything else."""
    if isinstance(value, pulumi.Asset):
        field_name = next(f for f in ("path", "text", "uri") if hasattr(value, f))
        return {rpc._special_sig_key: rpc._special_asset_sig, field_name: getattr(value, field_name)}
    if isinstance(value, pulumi.Archive):
        if isinstance(value, pulumi.AssetArchive):
            assets = {k: asset_form(v) or v for k, v in value.assets.items()}
            return {rpc._special_sig_key: rpc._special_archive_sig, "assets": assets}
        field_name = next(f for f in ("path", "uri") if hasattr(value, f))
        return {rpc._special_sig_key: rpc._special_archive_sig, field_name: getattr(value, field_name)}
    return None


def as_json(value: Any) -> str:
    """`json.dumps` of a resource's inputs, assets in their serialized form."""

    def default(v: Any) -> Any:
        form = asset_form(v)
        if form is None:
            raise TypeError(f"{type(v).__name__} is not JSON serializable")
        return form

    return json.dumps(value, sort_keys=True, default=default)


@dataclass
class Declared:
    typ: str
    name: str
    inputs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    """Engine-side options (protect, parent, dependencies) as the monitor saw them."""
    outputs: dict[str, Any] | None = None
    """The state the provider returned: what the engine's AnalyzeStack reads."""


class RecordingMonitor(MockMonitor):
    """Sees the resource options the Mocks interface does not pass on."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.options: dict[tuple[str, str], dict[str, Any]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.options[(request.type, request.name)] = {
            "urn": self.make_urn(request.parent, request.type, request.name),
            "custom": bool(request.custom),
            "protect": bool(request.protect),
            "provider": request.provider,
            "parent": request.parent,
            "dependencies": list(request.dependencies),
            "property_dependencies": {key: list(deps.urns) for key, deps in request.propertyDependencies.items()},
            "additional_secret_outputs": list(request.additionalSecretOutputs),
            "ignore_changes": list(request.ignoreChanges),
            "retain_on_delete": bool(request.retainOnDelete),
            "replace_on_changes": list(request.replaceOnChanges),
            "delete_before_replace": bool(request.deleteBeforeReplace),
            "aliases": [json_format.MessageToDict(alias) for alias in request.aliases],
        }
        return super().RegisterResource(request)  # type: ignore[no-untyped-call]


# Pulumi's marker of a secret value in the properties a mock receives.
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def unwrap(value: Any) -> Any:
    """A value with Pulumi's secret wrappers taken off."""
    if isinstance(value, dict) and SECRET_SIG in value:
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value


def fake_pem(kind: str, name: str) -> str:
    return f"-----BEGIN {kind}-----\n{name}\n-----END {kind}-----\n"


def tls_mock_state(typ: str, name: str) -> dict[str, str]:
    """What pulumi-tls computes: a key's PEM, a request's, a certificate's."""
    return {
        "tls:index/privateKey:PrivateKey": {"private_key_pem": fake_pem("PRIVATE KEY", name)},
        "tls:index/certRequest:CertRequest": {"cert_request_pem": fake_pem("CERTIFICATE REQUEST", name)},
        "tls:index/selfSignedCert:SelfSignedCert": {"cert_pem": fake_pem("CERTIFICATE", name)},
        "tls:index/locallySignedCert:LocallySignedCert": {"cert_pem": fake_pem("CERTIFICATE", name)},
    }.get(typ, {})


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    declared: list[Declared] = field(default_factory=list)
    monitor: RecordingMonitor | None = None
    """Set by `evaluate`: the options of the resource being registered are in its `options`."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        declared = Declared(args.typ, args.name, dict(args.inputs))
        self.declared.append(declared)
        resource_id, state = self._created(args)
        declared.outputs = dict(state)
        return resource_id, state

    def _created(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == PASSWORD_TYPE:
            state["result"] = fake_secret(args.name)
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            digest = hashlib.sha256(args.inputs["name"].encode()).hexdigest()
            state["image_id"] = f"sha256:{digest}"
            state["repo_digest"] = f"{args.inputs['name']}@sha256:{digest}"
        elif args.typ == "docker:index/image:Image" and "registry" in args.inputs:
            name = str(args.inputs["imageName"])
            state["repoDigest"] = f"{name.rsplit(':', 1)[0]}@sha256:{hashlib.sha256(name.encode()).hexdigest()}"
        elif args.typ.startswith("aws:"):
            return aws_mock_state(args.typ, args.name, state)
        elif args.typ.startswith("tls:"):
            state.update(tls_mock_state(args.typ, args.name))
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return AWS_CALLS.get(args.token, {}), []


class PreviewMocks(RecordingMocks):
    """A first `pulumi preview`: nothing exists yet, so no resource has an id or
    any output beyond its inputs, and every input computed from another
    resource's output arrives unknown."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.declared.append(Declared(args.typ, args.name, dict(args.inputs), outputs=dict(args.inputs)))
        return "", dict(args.inputs)


@dataclass
class Evaluation:
    declared: list[Declared]
    outputs: dict[str, Any]
    secret_outputs: set[str]

    def of_type(self, typ: str) -> list[Declared]:
        return [d for d in self.declared if d.typ == typ]

    def named(self, typ: str, name: str) -> Declared:
        matches = [d for d in self.of_type(typ) if d.name == name]
        assert len(matches) == 1, f"{typ} {name}: {len(matches)} declared"
        return matches[0]

    @property
    def generated_secrets(self) -> list[str]:
        return [fake_secret(d.name) for d in self.of_type(PASSWORD_TYPE)]


def stack_config(overrides: Mapping[str, Any] | None = None, *, stack: str = "dev") -> dict[str, Any]:
    """A stack's own file, with overrides applied on top."""
    import yaml

    with open(f"Pulumi.{stack}.yaml", encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)["config"]
    config = {key.split(":", 1)[1]: value for key, value in raw.items()}
    config.update(overrides or {})
    return config


def evaluate(
    config: Mapping[str, Any],
    *,
    stack: str = "dev",
    secret_keys: list[str] | None = None,
    program: Callable[[], dict[str, Any]] = main,
    project: str = NAMESPACE,
    other_keys: Mapping[str, str] | None = None,
    mocks: RecordingMocks | None = None,
    preview: bool = False,
) -> Evaluation:
    """Run the program once, as `pulumi up` would, against recording mocks (or
    the given ones): `config` under the project's namespace, `other_keys` fully
    qualified. With `preview`, as a first `pulumi preview` would (PreviewMocks)."""
    pulumi.runtime.set_all_config(
        {
            **{
                f"{project}:{key}": value if isinstance(value, str) else json.dumps(value)
                for key, value in config.items()
            },
            **(other_keys or {}),
        },
        [f"{project}:{key}" for key in secret_keys or []],
    )
    mocks = mocks or (PreviewMocks() if preview else RecordingMocks())
    _ensure_event_loop()
    monitor = RecordingMonitor(mocks)
    mocks.monitor = monitor
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    captured: dict[str, Any] = {}
    secret: set[str] = set()

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        outputs = program()
        for key, value in outputs.items():
            out = pulumi.Output.from_input(value)
            if _sync_await(out.is_secret()):
                secret.add(key)
        return pulumi.Output.all(**outputs).apply(captured.update)

    run()
    for declared in mocks.declared:
        declared.options = monitor.options.get((declared.typ, declared.name), {})
    return Evaluation(mocks.declared, captured, secret)


def _ensure_event_loop() -> None:
    """Pulumi's runtime runs on the thread's current loop; a test that used
    asyncio.run before this one leaves the thread without one."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


_MEMO: dict[str, Evaluation] = {}


def evaluate_once(config: Mapping[str, Any], *, stack: str = "dev", preview: bool = False) -> Evaluation:
    """`evaluate`, once per config in a process: for tests that judge a graph
    the program declares rather than the program itself (the policy pack's),
    and for mutation runs, whose workers fork after the first evaluation."""
    key = json.dumps([config, stack, preview], sort_keys=True, default=str)
    if key not in _MEMO:
        _MEMO[key] = evaluate(config, stack=stack, preview=preview)
    return copy.deepcopy(_MEMO[key])


def declared_by(
    config: Mapping[str, Any],
    *,
    stack: str = "dev",
    project: str = NAMESPACE,
    other_keys: Mapping[str, str] | None = None,
) -> list[Declared]:
    """Resources a run of the program declares, even when the run then fails."""
    recorded: list[Declared] = []
    original = RecordingMocks.new_resource

    def spy(self: RecordingMocks, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        result = original(self, args)
        recorded.extend(self.declared[-1:])
        return result

    RecordingMocks.new_resource = spy  # type: ignore[method-assign]
    try:
        evaluate(config, stack=stack, project=project, other_keys=other_keys)
    except Exception:  # noqa: S110 (the failure is the caller's to assert; we report what was declared)
        pass
    finally:
        RecordingMocks.new_resource = original  # type: ignore[method-assign]
    return recorded
