"""Pulumi's own dynamic provider host, started and driven the way the engine does.

The engine starts `pulumi-resource-pulumi-python` (pulumi/pulumi,
sdk/python/dist/pulumi-resource-pulumi-python) in the project's directory: with
`PULUMI_RUNTIME_VIRTUALENV` set (Pulumi.yaml's `virtualenv`), that script puts
the virtualenv's bin first on PATH and runs `<venv>/bin/python -u -m
pulumi.dynamic`, which prints the port of its gRPC ResourceProvider server.
The engine then calls Configure once, and per resource Check, Diff, Create,
Read, Update and Delete with properties as protobuf Structs: every number a
double, an unknown (during a preview) the engine's unknown sentinel, and, since
the host's Configure answers `acceptSecrets: false`, secrets as plain values.

`ProviderHost` does the same, so what it returns is what the engine would get.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
PROVIDER_KEY = "__provider"
# pulumi.runtime.rpc.UNKNOWN: how the engine sends a value not known until apply.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
DYNAMIC_TYPE = "pulumi-python:dynamic/postgres"


class Unknown:
    """Marks a value as unknown in the properties handed to `ProviderHost`."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN_VALUE = Unknown()


class ProviderError(Exception):
    """The host's answer to a failed call: the provider's own traceback as text."""


def to_struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    """Properties as the engine marshals them: unknowns as the sentinel, numbers as doubles."""

    def wire(value: Any) -> Any:
        if isinstance(value, Unknown):
            return UNKNOWN
        if isinstance(value, Mapping):
            return {str(k): wire(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [wire(v) for v in value]
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return float(value)
        raise TypeError(f"{type(value).__name__} is not a value the engine sends")

    struct = struct_pb2.Struct()
    struct.update(wire(dict(props)))
    return struct


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """What the engine keeps of a response: plain JSON values, numbers as floats."""
    return dict(json_format.MessageToDict(struct))


def urn_of(stack: str, kind: str, name: str, project: str = "wondernest") -> str:
    return f"urn:pulumi:{stack}::{project}::{DYNAMIC_TYPE}:{kind}::{name}"


@dataclass
class Checked:
    inputs: dict[str, Any]
    failures: list[tuple[str, str]]


@dataclass
class Diffed:
    changes: str
    """DIFF_UNKNOWN, DIFF_NONE or DIFF_SOME, as the enum's name."""
    replaces: list[str] = field(default_factory=list)
    delete_before_replace: bool = False


@dataclass
class ProviderHost:
    stub: provider_pb2_grpc.ResourceProviderStub
    process: subprocess.Popen[bytes]

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=120)
        except grpc.RpcError as exc:
            raise ProviderError(f"{method}: {exc.details()}") from None

    def configure(self) -> Any:
        return self._call(
            "Configure",
            provider_pb2.ConfigureRequest(args=struct_pb2.Struct(), acceptSecrets=True, acceptResources=True),
        )

    def check(self, urn: str, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Checked:
        response = self._call(
            "Check", provider_pb2.CheckRequest(urn=urn, olds=to_struct(olds), news=to_struct(news), randomSeed=b"0")
        )
        return Checked(from_struct(response.inputs), [(f.property, f.reason) for f in response.failures])

    def diff(
        self, id_: str, urn: str, olds: Mapping[str, Any], news: Mapping[str, Any], old_inputs: Mapping[str, Any]
    ) -> Diffed:
        response = self._call(
            "Diff",
            provider_pb2.DiffRequest(
                id=id_, urn=urn, olds=to_struct(olds), news=to_struct(news), old_inputs=to_struct(old_inputs)
            ),
        )
        return Diffed(
            provider_pb2.DiffResponse.DiffChanges.Name(response.changes),
            list(response.replaces),
            bool(response.deleteBeforeReplace),
        )

    def create(self, urn: str, props: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        response = self._call("Create", provider_pb2.CreateRequest(urn=urn, properties=to_struct(props)))
        return str(response.id), from_struct(response.properties)

    def read(
        self, id_: str, urn: str, props: Mapping[str, Any], inputs: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        response = self._call(
            "Read", provider_pb2.ReadRequest(id=id_, urn=urn, properties=to_struct(props), inputs=to_struct(inputs))
        )
        return str(response.id), from_struct(response.properties)

    def update(
        self, id_: str, urn: str, olds: Mapping[str, Any], news: Mapping[str, Any], old_inputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        response = self._call(
            "Update",
            provider_pb2.UpdateRequest(
                id=id_, urn=urn, olds=to_struct(olds), news=to_struct(news), old_inputs=to_struct(old_inputs)
            ),
        )
        return from_struct(response.properties)

    def delete(self, id_: str, urn: str, props: Mapping[str, Any], old_inputs: Mapping[str, Any]) -> None:
        self._call(
            "Delete",
            provider_pb2.DeleteRequest(id=id_, urn=urn, properties=to_struct(props), old_inputs=to_struct(old_inputs)),
        )


def host_command(project_dir: Path = ROOT) -> tuple[list[str], dict[str, str]]:
    """pulumi-resource-pulumi-python's command and environment for a project
    whose Pulumi.yaml names a virtualenv: that venv's python, its bin first on
    PATH, PYTHONHOME unset. The tests' own interpreter is that venv's."""
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PULUMI_RUNTIME_VIRTUALENV"] = str(venv)
    return [str(venv / "bin" / "python"), "-u", "-m", "pulumi.dynamic"], env


@contextmanager
def provider_host(project_dir: Path = ROOT) -> Iterator[ProviderHost]:
    command, env = host_command(project_dir)
    process = subprocess.Popen(command, cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.isdigit():
            process.kill()
            _, err = process.communicate(timeout=10)
            raise RuntimeError(f"the provider host printed {line!r}, not a port: {err.decode()[-2000:]}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        host = ProviderHost(provider_pb2_grpc.ResourceProviderStub(channel), process)
        host.configure()
        try:
            yield host
        finally:
            channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
