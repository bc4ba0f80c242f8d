"""The app the platform runs, as its contract describes it (the bundled API by
default): run with its secrets as files, its migrations as a job first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pulumi
import pulumi_docker as docker

from components.local.containers import (
    ContainerSpec,
    Publish,
    SecretFile,
    hardened_container,
    healthcheck,
    labelled_volume,
    remote_image,
)
from components.local.images import built_image
from components.local.network import Network
from components.local.secrets import Secrets
from components.model.api import hash_concurrency
from components.model.app import AppConfig, delivery, image_build, migration_mapping, probe_command
from components.model.naming import Names

# Docker refuses to copy files into a read-only root filesystem, but not into a
# volume mounted on it: the secrets live on a volume of their own.
SECRETS_DIR = "/run/secrets"
CA_FILE = f"{SECRETS_DIR}/ca.crt"
# Each platform secret's file, whichever variable names it.
SECRET_FILES = {
    "postgres.password": f"{SECRETS_DIR}/db-password",
    "redis.password": f"{SECRETS_DIR}/redis-password",
    "jwt.signingKey": f"{SECRETS_DIR}/jwt-secret",
    "jwt.previousSigningKey": f"{SECRETS_DIR}/jwt-previous-secret",
    "jwt.nextSigningKey": f"{SECRETS_DIR}/jwt-next-secret",
}


AWS_CREDENTIALS_FILE = f"{SECRETS_DIR}/aws-credentials"
# The emulator accepts any key; the SDKs sign every request with one. A file
# (the SDKs' shared credentials file) keeps even this pair out of the environment.
EMULATOR_CREDENTIALS = "[default]\naws_access_key_id = emulator\naws_secret_access_key = emulator\n"


@dataclass(frozen=True)
class EmulatedAws:
    """The dev stack's AWS emulation, as the app reaches it."""

    endpoint: str
    region: str
    values: Mapping[str, str]
    """The declared services' platform values (queues.<name>.url, ...)."""
    container: docker.Container


@dataclass(frozen=True)
class ApiArgs:
    names: Names
    app: AppConfig
    settings: Mapping[str, str]
    """The bundled API's own settings from the `api` section; empty for another app."""
    host_port: int
    bind_address: IPv4Address
    memory_bytes: int
    cpus: float
    database: str
    db_user: str
    migrator_user: str
    """The role that owns the schema objects; `db_user` only reads and writes rows."""
    postgres_host: str
    postgres_port: int
    redis_user: str
    redis_host: str
    redis_port: int
    network: Network
    secrets: Secrets
    ca_pem: pulumi.Output[str]
    """The stack's CA: Postgres and Redis are verified against it."""
    depends_on: tuple[pulumi.Resource, ...]
    """The roles, grants and cache the migrations and the API need before they start."""
    aws: EmulatedAws | None = None
    """Set when the app declares AWS services."""
    external_secrets: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    """The app's external secrets by name (`secrets.<name>`), from the stack config."""


class Api(pulumi.ComponentResource):
    image: docker.Image | docker.RemoteImage
    migrations: docker.Container | None
    container: docker.Container
    url: pulumi.Output[str]
    internal_target: str | None
    """How Prometheus reaches its metrics on the backend network; None without metrics."""

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Api", name, None, opts)
        app = args.app
        self.image = self._image(args)
        image_ref = self.image.image_name if isinstance(self.image, docker.Image) else self.image.image_id
        self.migrations = None if app.migrations is None else self._migrations(args, image_ref)
        secrets_volume = labelled_volume("api-secrets", args.names, "api", pulumi.ResourceOptions(parent=self))
        env, secret_files = self._environment(args, app.platform_environment, role="app")
        if args.aws is not None:
            env.update(_aws_sdk_environment(args.aws))
            secret_files.append(SecretFile(AWS_CREDENTIALS_FILE, EMULATOR_CREDENTIALS, str(app.user)))
        env.update({**args.settings, **app.environment})
        self.container = hardened_container(
            "api",
            ContainerSpec(
                name=args.names.resource("api"),
                image=image_ref,
                user=f"{app.user}:{app.user}",
                memory_bytes=args.memory_bytes,
                cpus=args.cpus,
                networks=[
                    (args.network.frontend.name, []),
                    (args.network.backend.name, ["api"]),
                ],
                command=list(app.command),
                envs=[f"{key}={value}" for key, value in sorted(env.items())],
                secret_files=secret_files,
                volumes=[docker.ContainerVolumeArgs(volume_name=secrets_volume.name, container_path=SECRETS_DIR)],
                publish=[Publish(app.port, args.host_port, args.bind_address)],
                # Writable: its secret files are uploaded (see ContainerSpec.read_only).
                read_only=False,
                tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=64m"},  # noqa: S108
                # Liveness: Docker restarts nothing on it, and `pulumi up` waits for it.
                healthcheck=healthcheck(
                    probe_command(app.probe, app.port, app.liveness_path),
                    interval_s=10,
                    timeout_s=3,
                    retries=3,
                    start_period_s=20,
                ),
                labels=args.names.labels("api"),
                metrics_job="api" if app.metrics is not None else None,
                # The bundled server drains in-flight requests for up to 20 s on SIGTERM.
                stop_timeout_s=30,
            ),
            # A migrations job that fails leaves the database behind the code:
            # the bundled API refuses to serve such a database.
            pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    secrets_volume,
                    *([self.migrations] if self.migrations else []),
                    *args.depends_on,
                    *([args.aws.container] if args.aws else []),
                ],
            ),
        )
        self.url = pulumi.Output.from_input(f"http://{args.bind_address}:{args.host_port}")
        self.internal_target = None if app.metrics is None else f"api:{app.metrics.port}"
        self.register_outputs({"url": self.url, "image": image_ref})

    def _image(self, args: ApiArgs) -> docker.Image | docker.RemoteImage:
        build = image_build(args.app, aws=False)
        if build is None:
            assert args.app.image is not None
            return remote_image("api-image", args.app.image, pulumi.ResourceOptions(parent=self))
        return built_image("api-image", f"{args.names.app}-api", build, parent=self)

    def _environment(
        self, args: ApiArgs, mapping: Mapping[str, str], *, role: str
    ) -> tuple[dict[str, str], list[SecretFile]]:
        """The mapped platform values as variables, each secret as a file named by `<NAME>_FILE`."""
        uid = str(args.app.user)
        values = {
            "postgres.host": args.postgres_host,
            "postgres.port": str(args.postgres_port),
            "postgres.database": args.database,
            "postgres.user": args.db_user if role == "app" else args.migrator_user,
            "postgres.sslmode": "verify-full",
            "postgres.caFile": CA_FILE,
            "redis.host": args.redis_host,
            "redis.port": str(args.redis_port),
            "redis.user": args.redis_user,
            "redis.tls": "true",
            "redis.caFile": CA_FILE,
            "app.port": str(args.app.port),
            "app.cpuCount": str(hash_concurrency(args.cpus)),
            **({} if args.app.metrics is None else {"app.metricsPort": str(args.app.metrics.port)}),
            **({} if args.aws is None or role != "app" else args.aws.values),
        }
        contents: dict[str, pulumi.Input[str]] = {
            "postgres.password": args.secrets.role_password(role),
            "redis.password": args.secrets.get("redis-app"),
            "jwt.signingKey": args.secrets.get("jwt-signing-key"),
            "jwt.previousSigningKey": args.secrets.get("jwt-signing-key-previous"),
            "jwt.nextSigningKey": args.secrets.get("jwt-signing-key-next"),
            **{f"secrets.{name}": value for name, value in args.external_secrets.items()},
        }
        paths = {
            **SECRET_FILES,
            **{f"secrets.{name}": f"{SECRETS_DIR}/external-{name}" for name in args.external_secrets},
        }
        plain, secret = delivery(mapping, {*values, *contents})
        env = {name: values[value] for name, value in plain.items()}
        env.update({f"{name}_FILE": paths[value] for name, value in secret.items()})
        files = [SecretFile(path, contents[value], uid) for value, path in paths.items() if value in secret.values()]
        if CA_FILE in env.values():
            files.append(SecretFile(CA_FILE, args.ca_pem, uid))
        return env, files

    def _migrations(self, args: ApiArgs, image_ref: pulumi.Input[str]) -> docker.Container:
        """The migrations as a job of their own, run as the contract's role (the
        one that owns the schema objects, for the bundled API): the app's
        container never holds that role's password. A new image (new
        migrations) replaces the job, so it runs again first."""
        app = args.app
        assert app.migrations is not None
        names = args.names
        volume = labelled_volume("migrations-secrets", names, "api", pulumi.ResourceOptions(parent=self))
        env, secret_files = self._environment(args, migration_mapping(app), role=app.migrations.role)
        return hardened_container(
            "migrations",
            ContainerSpec(
                name=names.resource("migrations"),
                image=image_ref,
                user=f"{app.user}:{app.user}",
                memory_bytes=args.memory_bytes,
                cpus=args.cpus,
                networks=[(args.network.backend.name, [])],
                command=list(app.migrations.command),
                envs=[f"{key}={value}" for key, value in sorted(env.items())],
                secret_files=secret_files,
                volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=SECRETS_DIR)],
                # Writable: its secret files are uploaded (see ContainerSpec.read_only).
                read_only=False,
                tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=16m"},  # noqa: S108
                healthcheck=None,
                labels=names.labels("migrations"),
                one_shot=True,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[volume, *args.depends_on]),
        )


def _aws_sdk_environment(aws: EmulatedAws) -> dict[str, str]:
    """The names every AWS SDK reads: endpoint, region, a credentials file, and no instance metadata."""
    return {
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_REGION": aws.region,
        "AWS_DEFAULT_REGION": aws.region,
        "AWS_SHARED_CREDENTIALS_FILE": AWS_CREDENTIALS_FILE,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
