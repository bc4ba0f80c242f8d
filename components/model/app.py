"""The app contract: what the platform runs as its service, and what it hands it.

Read by both targets from the stack config's `app` section. Left unset, it
describes the bundled API in app/, so a stack that says nothing runs that.
Another app brings its image (or a build), its commands, ports, probes and
user, and names the variables under which it wants each platform value: its
secrets arrive as files (`<NAME>_FILE`) on the local engine and as secret
references on AWS, never as plain values.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, Strict, model_validator

from components.model.app_services import SERVICE_VALUE, AwsServices, ServiceName
from components.model.collector import HEALTH_PORT, TELEMETRY_PORT
from components.model.config_types import ConfigModel, ImageRef
from components.model.images import API_INPUTS, APP_DIR, IMAGE_UID

PlatformValue = Literal[
    "postgres.host",
    "postgres.port",
    "postgres.database",
    "postgres.user",
    "postgres.password",
    "postgres.sslmode",
    "postgres.caFile",
    "postgres.readHosts",
    "redis.host",
    "redis.port",
    "redis.user",
    "redis.password",
    "redis.tls",
    "redis.caFile",
    "jwt.signingKey",
    "jwt.previousSigningKey",
    "jwt.nextSigningKey",
    "app.port",
    "app.metricsPort",
    "app.cpuCount",
    "app.trustedProxies",
]
SECRET_VALUES: frozenset[str] = frozenset(
    {"postgres.password", "redis.password", "jwt.signingKey", "jwt.previousSigningKey", "jwt.nextSigningKey"}
)
"""Delivered as `<NAME>_FILE` locally and by reference on AWS, never as a value."""
EXTERNAL_SECRET_VALUE = re.compile(r"^secrets\.(?P<name>[a-z0-9-]+)$")
"""An external secret the app declares (`secrets.<name>`): a value the stack's
owner sets with `pulumi config set --secret`, delivered like the platform's own."""


def is_secret(value: str) -> bool:
    return value in SECRET_VALUES or EXTERNAL_SECRET_VALUE.match(value) is not None


DATABASE_VALUES: frozenset[str] = frozenset(
    v for v in get_args(PlatformValue) if v.startswith("postgres.") and v != "postgres.readHosts"
)
"""What the migrations job receives of the mapping: the primary, as its own role."""
MIGRATION_NEEDS = ("postgres.host", "postgres.port", "postgres.database", "postgres.user", "postgres.password")

VARIABLE = re.compile(r"[A-Z_][A-Z0-9_]*")
# A plain variable under such a name would carry a secret in the clear (docker
# inspect, the task definition): the platform's secrets come through
# platformEnvironment, by file or by reference. The policy pack's own pattern
# (SECRET_NAME in policies/wondernest_policies/secret_values.py; a test holds
# the two equal), so what the pack would refuse at preview is refused here first.
SECRET_LOOKING = re.compile(
    r"(PASSWORD|PASSWD|_PASS|SECRET|TOKEN|_KEY|APIKEY|CREDENTIALS?|DATA_SOURCE_NAME|REQUIREPASS|MASTERAUTH)$",
    re.IGNORECASE,
)
PROBE_TIMEOUT_S = 2
# An ALB path pattern holds at most 128 characters; the metrics rule adds `/*`.
MAX_PATH = 100
# The task's metrics collector listens on these: its health check, and its own
# telemetry (the OpenTelemetry Collector's default internal metrics port).
COLLECTOR_PORTS = {
    HEALTH_PORT: "the metrics collector's health check",
    TELEMETRY_PORT: "the metrics collector's own metrics",
}


def _argv(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            f'{value!r} is a string; give the command as a list of arguments, e.g. ["/app/server", "--port", "8000"]'
        )
    return value


# Unreserved characters and slashes only: the path goes into a probe command,
# an ALB path pattern (where * and ? are wildcards) and a scrape config.
_PATH = re.compile(rf"^/[A-Za-z0-9._~/-]{{0,{MAX_PATH - 1}}}$")


def _url_path(value: str) -> str:
    if not _PATH.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a URL path like /health: a / then at most {MAX_PATH - 1} letters, digits, "
            "'.', '_', '~', '-' and '/'"
        )
    return value


def _relative_dir(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{value!r}: a directory of this project, relative to Pulumi.yaml, without '..'")
    return value


_BASE_VALUES = frozenset(get_args(PlatformValue))


def _platform_value(value: str) -> str:
    if value in _BASE_VALUES or SERVICE_VALUE.match(value) or EXTERNAL_SECRET_VALUE.match(value):
        return value
    raise ValueError(
        f"not a platform value: one of {', '.join(sorted(_BASE_VALUES))}, a declared AWS service's "
        "(queues.<name>.url, .arn or .deadLetterUrl; topics.<name>.arn; buckets.<name>.name; email.sender), "
        "or a declared external secret's (secrets.<name>)"
    )


Command = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], BeforeValidator(_argv), Field(min_length=1)]
UrlPath = Annotated[str, AfterValidator(_url_path)]


class AppBuild(ConfigModel):
    context: Annotated[str, AfterValidator(_relative_dir)]
    """The build context; every file in it is part of the image's tag."""
    dockerfile: Annotated[str, AfterValidator(_relative_dir)] = "Dockerfile"
    """Relative to the context."""
    target: str | None = None
    aws_target: str | None = None
    """The stage the aws target builds, when it differs (say, one carrying Amazon's RDS CA bundle)."""


StrictPort = Annotated[int, Strict(), Field(ge=1, le=65535)]
"""A number, never `true` (which YAML's `yes` becomes) taken as 1."""


class AppMigrations(ConfigModel):
    command: Command
    role: Literal["migrator", "app"]
    """`migrator` owns the schemas' objects; `app` only reads and writes rows."""


class AppMetrics(ConfigModel):
    port: StrictPort
    path: UrlPath = "/metrics"

    @model_validator(mode="after")
    def _not_the_site(self) -> AppMetrics:
        if self.path == "/":
            raise ValueError("path: '/' would hide the whole site behind the load balancer's 404 for metrics")
        return self


BUNDLED_ENVIRONMENT: dict[str, PlatformValue] = {
    "DB_HOST": "postgres.host",
    "DB_PORT": "postgres.port",
    "DB_NAME": "postgres.database",
    "DB_USER": "postgres.user",
    "DB_PASSWORD": "postgres.password",
    "DB_SSLMODE": "postgres.sslmode",
    "DB_SSLROOTCERT": "postgres.caFile",
    "DB_READ_HOSTS": "postgres.readHosts",
    "REDIS_HOST": "redis.host",
    "REDIS_PORT": "redis.port",
    "REDIS_USER": "redis.user",
    "REDIS_PASSWORD": "redis.password",
    "REDIS_TLS": "redis.tls",
    "REDIS_CA_FILE": "redis.caFile",
    "JWT_SECRET": "jwt.signingKey",
    "JWT_PREVIOUS_SECRET": "jwt.previousSigningKey",
    "JWT_NEXT_SECRET": "jwt.nextSigningKey",
    "PORT": "app.port",
    "METRICS_PORT": "app.metricsPort",
    "HASH_CONCURRENCY": "app.cpuCount",
    "FORWARDED_ALLOW_IPS": "app.trustedProxies",
}


class AppConfig(ConfigModel):
    """With neither `image` nor `build`, the bundled API, and every default below is its own."""

    image: ImageRef | None = None
    """A prebuilt image, pinned by tag or digest."""
    build: AppBuild | None = None
    command: Command = ("python", "-m", "wondernest_api", "serve")
    migrations: AppMigrations | None = AppMigrations(
        command=("python", "-m", "wondernest_api", "migrate"), role="migrator"
    )
    """A job run to its end before the service starts, on every new image; null for none."""
    port: StrictPort = 8080
    liveness_path: UrlPath = "/health"
    """Answers 200 while the process can serve: the container healthcheck and the load balancer's.
    ECS replaces a task that fails either, so it must not depend on Postgres or Redis: an
    outage of theirs would otherwise cycle every task."""
    readiness_path: UrlPath | None = "/health/ready"
    """Answers 200 when its dependencies answer: what `make verify` and an operator check."""
    probe: Literal["python", "wget", "curl"] = "python"
    """What the image carries to run the container healthcheck with."""
    metrics: AppMetrics | None = AppMetrics(port=9102)
    """Prometheus exposition on a port of its own, never behind the load balancer; null for none."""
    user: Annotated[int, Strict(), Field(ge=1, le=2**31 - 1)] = IMAGE_UID
    """The numeric uid it runs as (and gid); never root. Secret files are owned by it."""
    environment: dict[str, str] = Field(default_factory=dict)
    """Plain settings, no secrets."""
    platform_environment: dict[str, Annotated[str, AfterValidator(_platform_value)]] = Field(
        default_factory=lambda: dict[str, str](BUNDLED_ENVIRONMENT)
    )
    """Variable name → the platform value it carries."""
    aws_services: AwsServices = Field(default_factory=AwsServices)
    """Buckets, queues, topics and an email sender the app uses through the AWS SDK."""
    external_secrets: tuple[ServiceName, ...] = ()
    """Secrets issued outside the platform (a mail provider's API key): their
    values are the stack config's `appSecrets`, set with --secret."""

    @property
    def bundled(self) -> bool:
        return self.image is None and self.build is None

    @model_validator(mode="after")
    def _consistent(self) -> AppConfig:
        problems: list[str] = []
        if self.image is not None and self.build is not None:
            problems.append("build: set with image; give a prebuilt image or a build, not both")
        # What an app states is judged once it states it all.
        problems += self._own_app_problems() or self._mapping_problems()
        if self.metrics is not None and self.metrics.port == self.port:
            problems.append(
                f"metrics.port: {self.port} is the serving port; metrics listen on a port of their own, "
                "which the load balancer never reaches"
            )
        names = {
            **{n: "environment" for n in self.environment},
            **{n: "platformEnvironment" for n in self.platform_environment},
        }
        for key, name in [("environment", n) for n in self.environment] + [
            ("platformEnvironment", n) for n in self.platform_environment
        ]:
            if VARIABLE.fullmatch(name) is None:
                problems.append(f"{key}.{name}: not a variable name (upper-case letters, digits and _)")
        for name in sorted(set(self.environment) & set(self.platform_environment)):
            problems.append(f"environment.{name}: also set by platformEnvironment.{name}; one source per variable")
        for name, value in sorted(self.environment.items()):
            if SECRET_LOOKING.search(name) and not name.upper().endswith("_FILE"):
                problems.append(
                    f"environment.{name}: looks like a secret, which a plain setting shows to anyone who can read "
                    "the container or task definition; map a platform secret in platformEnvironment"
                )
            if value == "":
                problems.append(f"environment.{name}: empty; leave the variable out (ECS drops empty values)")
        problems += self._external_secret_problems()
        seen: dict[str, str] = {}
        for name, value in self.platform_environment.items():
            undeclared = self.aws_services.undeclared(value)
            if undeclared is not None:
                problems.append(f"platformEnvironment.{name}: {undeclared}")
            if is_secret(value):
                if value in seen:
                    problems.append(
                        f"platformEnvironment.{name}: {value} is already delivered as {seen[value]}; "
                        "a secret goes to one variable"
                    )
                seen.setdefault(value, name)
                if name.upper().endswith("_FILE"):
                    problems.append(
                        f"platformEnvironment.{name}: a secret's name must not end in _FILE: locally it arrives as "
                        f"{name}_FILE, a path, and on AWS {name} holds the secret itself"
                    )
                file_name = f"{name}_FILE"
                if file_name in names:
                    problems.append(
                        f"platformEnvironment.{name}: delivered locally as {file_name}, which "
                        f"{names[file_name]}.{file_name} also sets"
                    )
            explicit = "platform_environment" in self.model_fields_set
            if value == "app.metricsPort" and self.metrics is None and explicit:
                problems.append(f"platformEnvironment.{name}: app.metricsPort with no metrics section")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _own_app_problems(self) -> list[str]:
        """Another app states what it runs and what it receives: the defaults are
        the bundled API's, its commands and its secrets, and nothing of them is
        handed to an image unasked. The bundled API reads fixed names."""
        if self.bundled:
            problems = []
            if "platform_environment" in self.model_fields_set:
                problems.append(
                    "platformEnvironment: the bundled API reads fixed names; set it with app.image or app.build"
                )
            if self.aws_services.declared:
                problems.append("awsServices: the bundled API uses none; declare them for an app.image or app.build")
            if self.external_secrets:
                problems.append(
                    "externalSecrets: the bundled API reads none; declare them for an app.image or app.build"
                )
            return problems
        return [
            f"{key}: required with app.image or app.build (the default is the bundled API's){hint}"
            for field, key, hint in (
                ("command", "command", ""),
                ("migrations", "migrations", "; null for none"),
                ("platform_environment", "platformEnvironment", "; {} for nothing"),
            )
            if field not in self.model_fields_set
        ]

    def _external_secret_problems(self) -> list[str]:
        """Each declared secret is delivered, and each delivered one declared."""
        problems = []
        if len(set(self.external_secrets)) != len(self.external_secrets):
            problems.append("externalSecrets: a secret is named twice")
        mapped = set()
        for name, value in self.platform_environment.items():
            match = EXTERNAL_SECRET_VALUE.match(value)
            if match is None:
                continue
            mapped.add(match["name"])
            if match["name"] not in self.external_secrets:
                problems.append(f"platformEnvironment.{name}: {value} names no secret of externalSecrets")
        problems += [
            f"externalSecrets: {secret!r} is delivered by no platformEnvironment variable (map secrets.{secret})"
            for secret in self.external_secrets
            if secret not in mapped
        ]
        return problems

    def _mapping_problems(self) -> list[str]:
        """Values that are only usable together."""
        mapped = set(self.platform_environment.values())
        problems = [
            f"platformEnvironment: {secret} is mapped without {user}: on AWS rotation alternates the user "
            "with the password, so the app must read both"
            for secret, user in (("postgres.password", "postgres.user"), ("redis.password", "redis.user"))
            if secret in mapped and user not in mapped
        ]
        keys = ("jwt.signingKey", "jwt.previousSigningKey", "jwt.nextSigningKey")
        if any(k in mapped for k in keys) and not all(k in mapped for k in keys):
            problems.append(
                "platformEnvironment: the signing keys are mapped only in part: on AWS they rotate, and an app "
                f"that signs with jwt.signingKey must also accept {keys[1]} and {keys[2]} (map all three), or "
                "tasks on either side of a rotation refuse each other's tokens"
            )
        if self.migrations is not None:
            needed = [v for v in MIGRATION_NEEDS if v not in mapped]
            if needed:
                problems.append(
                    f"migrations: the job reaches the database only through platformEnvironment, which lacks "
                    f"{', '.join(needed)}"
                )
        return problems


# --- What the targets derive from the contract.


def probe_command(kind: str, port: int, path: str, *, request_timeout_s: int = PROBE_TIMEOUT_S) -> list[str]:
    """`CMD ...` exiting 0 when GET 127.0.0.1:<port><path> answers 200 (wget's
    and curl's: any 2xx), with the tool the image carries: the images built
    from app/ have python and no wget or curl; busybox and alpine images have wget."""
    url = f"http://127.0.0.1:{port}{path}"
    if kind == "python":
        script = (
            "import sys, urllib.request; "
            f"sys.exit(urllib.request.urlopen({url!r}, timeout={request_timeout_s}).status != 200)"
        )
        return ["CMD", "python", "-c", script]
    if kind == "wget":
        return ["CMD", "wget", "-q", "-T", str(request_timeout_s), "-O", "/dev/null", url]
    if kind == "curl":
        return ["CMD", "curl", "-fsS", "-o", "/dev/null", "--max-time", str(request_timeout_s), url]
    raise ValueError(f"{kind!r}: no such probe")


@dataclass(frozen=True)
class ImageBuild:
    """What a target builds the app's image from."""

    context: str
    dockerfile: str
    target: str | None
    inputs: tuple[str, ...] | None
    """The files whose content makes the tag; None for every file of the context."""


def image_build(app: AppConfig, *, aws: bool) -> ImageBuild | None:
    """None when the app comes as a prebuilt image."""
    if app.bundled:
        return ImageBuild(str(APP_DIR), str(APP_DIR / "Dockerfile"), "runtime-aws" if aws else "runtime", API_INPUTS)
    if app.build is None:
        return None
    build = app.build
    target = (build.aws_target or build.target) if aws else build.target
    return ImageBuild(build.context, str(PurePosixPath(build.context) / build.dockerfile), target, None)


def delivery(mapping: Mapping[str, str], available: Collection[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(plain, secret): the variables of `mapping` (name → platform value) the
    target has a value for, split by how they are delivered. A value the target
    does not have is left out: no read replicas locally, no proxy in front."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in sorted(mapping.items()):
        if value in available:
            (secret if is_secret(value) else plain)[name] = value
    return plain, secret


def migration_mapping(app: AppConfig) -> dict[str, str]:
    """The database variables the migrations job receives, by name."""
    return {name: value for name, value in app.platform_environment.items() if value in DATABASE_VALUES}
