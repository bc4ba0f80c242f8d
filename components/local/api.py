"""The bundled API: built from app/, run read-only with its secrets as files."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_docker as docker

from components.local.containers import (
    ContainerSpec,
    Publish,
    SecretFile,
    hardened_container,
    labelled_volume,
    python_probe,
)
from components.local.images import app_image
from components.local.network import Network
from components.local.secrets import Secrets
from components.spec.api import hash_concurrency
from components.spec.naming import Names

# What app/Dockerfile copies, plus the Dockerfile: the image's whole input.
BUILD_INPUTS = ("Dockerfile", "requirements.txt", "wondernest_api")
API_UID = "1001"
CONTAINER_PORT = 8080
# /metrics listens here, never published and never behind the load balancer.
METRICS_PORT = 9102
# Docker refuses to copy files into a read-only root filesystem, but not into a
# volume mounted on it: the secrets live on a volume of their own.
SECRETS_DIR = "/run/secrets"
CA_FILE = f"{SECRETS_DIR}/ca.crt"


@dataclass(frozen=True)
class ApiArgs:
    names: Names
    host_port: int
    bind_address: IPv4Address
    memory_bytes: int
    cpus: float
    db_pool_max: int
    cors_allowed_origins: tuple[str, ...]
    database: str
    db_user: str
    migrator_user: str
    """The role the migrations run as: it owns the schema objects; `db_user` only reads and writes rows."""
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


class Api(pulumi.ComponentResource):
    image: docker.Image
    migrations: docker.Container
    container: docker.Container
    url: pulumi.Output[str]
    internal_target: str

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Api", name, None, opts)
        names = args.names
        self.image = app_image("api-image", names, target="runtime", inputs=BUILD_INPUTS, parent=self)
        database_env = {
            "DB_HOST": args.postgres_host,
            "DB_PORT": str(args.postgres_port),
            "DB_NAME": args.database,
            "DB_PASSWORD_FILE": f"{SECRETS_DIR}/db-password",
            "DB_SSLMODE": "verify-full",
            "DB_SSLROOTCERT": CA_FILE,
        }
        self.migrations = self._migrations(args, database_env)
        secrets_volume = labelled_volume("api-secrets", names, "api", pulumi.ResourceOptions(parent=self))
        env = {
            **database_env,
            "DB_USER": args.db_user,
            "DB_POOL_MAX": str(args.db_pool_max),
            "HASH_CONCURRENCY": str(hash_concurrency(args.cpus)),
            "REDIS_HOST": args.redis_host,
            "REDIS_PORT": str(args.redis_port),
            "REDIS_USER": args.redis_user,
            "REDIS_PASSWORD_FILE": f"{SECRETS_DIR}/redis-password",
            "REDIS_TLS": "true",
            "REDIS_CA_FILE": CA_FILE,
            "JWT_SECRET_FILE": f"{SECRETS_DIR}/jwt-secret",
            "CORS_ALLOWED_ORIGINS": ",".join(args.cors_allowed_origins),
            "PORT": str(CONTAINER_PORT),
            "METRICS_PORT": str(METRICS_PORT),
        }
        self.container = hardened_container(
            "api",
            ContainerSpec(
                name=names.resource("api"),
                image=self.image.image_name,
                user=f"{API_UID}:{API_UID}",
                memory_bytes=args.memory_bytes,
                cpus=args.cpus,
                networks=[
                    (args.network.frontend.name, []),
                    (args.network.backend.name, ["api"]),
                ],
                command=["python", "-m", "wondernest_api", "serve"],
                envs=[f"{key}={value}" for key, value in sorted(env.items())],
                secret_files=[
                    SecretFile(f"{SECRETS_DIR}/db-password", args.secrets.role_password("app"), API_UID),
                    SecretFile(f"{SECRETS_DIR}/redis-password", args.secrets.get("redis-app"), API_UID),
                    SecretFile(f"{SECRETS_DIR}/jwt-secret", args.secrets.get("jwt-signing-key"), API_UID),
                    SecretFile(CA_FILE, args.ca_pem, API_UID),
                ],
                volumes=[docker.ContainerVolumeArgs(volume_name=secrets_volume.name, container_path=SECRETS_DIR)],
                publish=[Publish(CONTAINER_PORT, args.host_port, args.bind_address)],
                # Writable: its secret files are uploaded (see ContainerSpec.read_only).
                read_only=False,
                tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=64m"},  # noqa: S108
                healthcheck=python_probe(
                    CONTAINER_PORT,
                    "/health",
                    request_timeout_s=2,
                    interval_s=10,
                    timeout_s=3,
                    retries=3,
                    start_period_s=20,
                ),
                labels=names.labels("api"),
                metrics_job="api",
                # The server drains in-flight requests for up to 20 s on SIGTERM.
                stop_timeout_s=30,
            ),
            # `serve` refuses a database that lacks a migration, so a failed job stops the API here.
            pulumi.ResourceOptions(parent=self, depends_on=[secrets_volume, self.migrations, *args.depends_on]),
        )
        self.url = pulumi.Output.from_input(f"http://{args.bind_address}:{args.host_port}")
        # How Prometheus reaches it on the backend network.
        self.internal_target = f"api:{METRICS_PORT}"
        self.register_outputs({"url": self.url, "image": self.image.image_name})

    def _migrations(self, args: ApiArgs, database_env: dict[str, str]) -> docker.Container:
        """The migrations as a job of their own, run as the role that owns the
        schema objects: the API's container never holds that role's password.
        A new image (new migrations) replaces the job, so it runs again first."""
        names = args.names
        volume = labelled_volume("migrations-secrets", names, "api", pulumi.ResourceOptions(parent=self))
        env = {**database_env, "DB_USER": args.migrator_user}
        return hardened_container(
            "migrations",
            ContainerSpec(
                name=names.resource("migrations"),
                image=self.image.image_name,
                user=f"{API_UID}:{API_UID}",
                memory_bytes=args.memory_bytes,
                cpus=args.cpus,
                networks=[(args.network.backend.name, [])],
                command=["python", "-m", "wondernest_api", "migrate"],
                envs=[f"{key}={value}" for key, value in sorted(env.items())],
                secret_files=[
                    SecretFile(f"{SECRETS_DIR}/db-password", args.secrets.role_password("migrator"), API_UID),
                    SecretFile(CA_FILE, args.ca_pem, API_UID),
                ],
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
