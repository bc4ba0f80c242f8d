"""The stack's configuration, parsed once into one typed model tree.

Everything lives under the `wondernest:` namespace of `Pulumi.<stack>.yaml`.
A bad value stops the program before any resource is declared, with one message
that names every bad key, its value and what is allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from components.spec.postgres_conf import TuningError, tune
from components.spec.redis_conf import EvictionPolicy

NAMESPACE = "wondernest"

Port = Annotated[int, Field(ge=1, le=65535)]
DEFAULT_MAX_CONNECTIONS = 100

_IMAGE_RE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _pinned_image(value: str) -> str:
    match = _IMAGE_RE.match(value)
    if match is None:
        raise ValueError("not an image reference like 'registry/name:tag' or 'name@sha256:<digest>'")
    if match["tag"] is None and match["digest"] is None:
        raise ValueError("image must be pinned with a version tag or a sha256 digest")
    if match["tag"] == "latest" and match["digest"] is None:
        raise ValueError("'latest' is not a pinned version; use a version tag or a digest")
    return value


ImageRef = Annotated[str, AfterValidator(_pinned_image)]


def _app_name(value: str) -> str:
    if re.fullmatch(r"[a-z][a-z0-9]{1,19}", value) is None:
        raise ValueError("2 to 20 lower-case letters and digits, starting with a letter")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=False,
        frozen=True,
    )


class NetworkConfig(_Model):
    allow_public_bind: bool = False
    """Must be true for bindAddress to leave the loopback range."""
    bind_address: IPv4Address = IPv4Address("127.0.0.1")
    """Host address every published port binds to."""
    frontend_subnet: IPv4Network = IPv4Network("172.30.0.0/24")
    backend_subnet: IPv4Network = IPv4Network("172.30.1.0/24")
    ops_subnet: IPv4Network = IPv4Network("172.30.2.0/24")

    @field_validator("bind_address")
    @classmethod
    def _loopback_unless_allowed(cls, value: IPv4Address, info: ValidationInfo) -> IPv4Address:
        if not value.is_loopback and not info.data.get("allow_public_bind", False):
            raise ValueError(
                "not a loopback address; set network.allowPublicBind: true "
                "to publish ports beyond this machine"
            )
        return value

    @model_validator(mode="after")
    def _check_subnets(self) -> NetworkConfig:
        subnets = [
            ("frontendSubnet", self.frontend_subnet),
            ("backendSubnet", self.backend_subnet),
            ("opsSubnet", self.ops_subnet),
        ]
        for i, (name_a, net_a) in enumerate(subnets):
            for name_b, net_b in subnets[i + 1 :]:
                if net_a.overlaps(net_b):
                    raise ValueError(f"{name_b}: overlaps {name_a} {net_a}")
        return self


class PostgresConfig(_Model):
    version: Literal[15] = 15
    host_port: Port = 5433
    max_connections: Annotated[int, Field(ge=20, le=5000)] = DEFAULT_MAX_CONNECTIONS
    memory: ByteSize = ByteSize(1024**3)
    """Memory the server may use; the container limit and the tuning derive from it."""
    slow_query_ms: Annotated[int, Field(ge=0, le=600_000)] = 500

    @field_validator("memory")
    @classmethod
    def _holds_tuning(cls, value: ByteSize, info: ValidationInfo) -> ByteSize:
        # Judged against the default connection count when maxConnections is
        # itself invalid, so a bad memory size is reported either way.
        max_connections = info.data.get("max_connections", DEFAULT_MAX_CONNECTIONS)
        try:
            tune(int(value), max_connections)
        except TuningError as exc:
            raise ValueError(str(exc)) from None
        return value


class RedisConfig(_Model):
    host_port: Port = 6379
    max_memory: Annotated[ByteSize, Field(ge=32 * 1024**2)] = ByteSize(256 * 1024**2)
    eviction_policy: EvictionPolicy = "allkeys-lru"


class ApiConfig(_Model):
    host_port: Port = 8080
    memory: Annotated[ByteSize, Field(ge=128 * 1024**2)] = ByteSize(512 * 1024**2)
    cpus: Annotated[float, Field(gt=0, le=64)] = 1.0
    db_pool_max: Annotated[int, Field(ge=1, le=40)] = 10
    """At most 40: the app role's 50 connections must also fit migrations and a
    second container during a replacement."""
    cors_allowed_origins: tuple[str, ...] = ()

    @field_validator("cors_allowed_origins")
    @classmethod
    def _explicit_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin) is None:
                raise ValueError(f"{origin!r} is not an explicit origin like https://app.example.com")
        return value


class ImagesConfig(_Model):
    """Pinned image references; point them at a private registry mirror per stack."""

    postgres: ImageRef = "postgres:15.10-bookworm"
    redis: ImageRef = "redis:7.4.1-bookworm"
    pgadmin: ImageRef = "dpage/pgadmin4:8.14"


class DevToolsConfig(_Model):
    enabled: bool = False
    pgadmin_port: Port = 5050
    pgadmin_email: Annotated[str, Field(pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")] = (
        "admin@example.com"
    )


class PlatformConfig(_Model):
    app_name: Annotated[str, AfterValidator(_app_name)] = "wondernest"
    """Lower-case letters and digits: it prefixes Docker names and Postgres roles alike."""
    target: Literal["docker", "aws"]
    network: NetworkConfig = NetworkConfig()
    postgres: PostgresConfig = PostgresConfig()
    redis: RedisConfig = RedisConfig()
    api: ApiConfig = ApiConfig()
    images: ImagesConfig = ImagesConfig()
    dev_tools: DevToolsConfig = DevToolsConfig()

    @model_validator(mode="after")
    def _check_ports(self) -> PlatformConfig:
        published = {
            "api.hostPort": self.api.host_port,
            "postgres.hostPort": self.postgres.host_port,
            "redis.hostPort": self.redis.host_port,
        }
        if self.dev_tools.enabled:
            published["devTools.pgadminPort"] = self.dev_tools.pgadmin_port
        seen: dict[int, str] = {}
        for key, port in published.items():
            if port in seen:
                raise ValueError(f"{key}: port already published by {seen[port]}")
            seen[port] = key
        return self


class ConfigError(Exception):
    """Every problem in a stack's config, in one message."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"invalid stack configuration ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}):\n{lines}"
        )


def parse_config(raw: Mapping[str, Any], secret_keys: Iterable[str] = ()) -> PlatformConfig:
    """Validate the `wondernest:` keys (namespace already stripped) into the model."""
    secrets = set(secret_keys)
    try:
        return PlatformConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError([_describe(err, secrets) for err in exc.errors()]) from None


def parse_raw_value(value: Any) -> Any:
    """Pulumi hands structured config to the program as JSON text, scalars as text."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _describe(err: ErrorDetails, secret_keys: set[str]) -> str:
    loc = [str(part) for part in err["loc"]]
    path = f"{NAMESPACE}:{'.'.join(loc)}" if loc else f"{NAMESPACE}"
    top = loc[0] if loc else ""
    secret = f"{NAMESPACE}:{top}" in secret_keys
    shown = "[secret]" if secret else _show(err.get("input"))
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1]))
        return f"{path} = {shown}: unknown key; allowed here: {allowed}"
    if err["type"] == "missing":
        return f"{path}: required and not set"
    # pydantic prefixes messages raised inside validators; the rest of the
    # message already says what is wrong and what is allowed.
    message = err["msg"].removeprefix("Value error, ")
    keyed = _KEYED.match(message)
    if keyed is not None and isinstance(err.get("input"), dict):
        # A check across several fields names the key it blames; report that key.
        key = keyed["key"]
        path = f"{path}.{key}" if loc else f"{NAMESPACE}:{key}"
        value = _lookup(err["input"], key.split("."))
        shown = "[secret]" if secret else value
        return f"{path} = {shown}: {keyed['msg']}"
    return f"{path} = {shown}: {message}"


_KEYED = re.compile(r"^(?P<key>[a-zA-Z][a-zA-Z0-9.]*): (?P<msg>.+)$", re.DOTALL)


def _lookup(data: Mapping[str, Any], keys: list[str]) -> str:
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return "(default)"
        value = value[key]
    return _show(value)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{...}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(parent: list[str]) -> list[str]:
    model: type[BaseModel] = PlatformConfig
    for part in parent:
        for name, field in model.model_fields.items():
            if (field.alias or name) == part:
                annotation = field.annotation
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    model = annotation
                break
    return [field.alias or name for name, field in model.model_fields.items()]
