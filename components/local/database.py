"""PostgreSQL 15 in a container, with its roles, schemas and grants."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

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
from components.local.network import Network
from components.local.secrets import Secrets
from components.local.tls import ServerCertificate
from components.model import postgres_conf
from components.model.database import DatabaseSpec
from components.model.naming import Names
from components.postgres.objects import DatabaseObjects, declare_database_objects
from components.postgres.resources import AdminConnection

# The official image's `postgres` user; a fresh named volume inherits its
# ownership of the data directory, so the server never needs root.
POSTGRES_UID = "999"
DATA_DIR = "/var/lib/postgresql/data"
LOOPBACK = IPv4Network("127.0.0.1/32")
PASSWORD_FILE = "/run/secrets/postgres-superuser-password"  # noqa: S105 (a path)


@dataclass(frozen=True)
class DatabaseArgs:
    names: Names
    spec: DatabaseSpec
    image: str
    tuning: postgres_conf.PostgresTuning
    slow_query_ms: int
    host_port: int
    bind_address: IPv4Address
    client_networks: tuple[IPv4Network, ...]
    """Subnets allowed by pg_hba.conf besides the container's own loopback (its
    healthcheck): the backend network, and the ops network that host
    connections arrive from."""
    network: Network
    secrets: Secrets
    tls: ServerCertificate
    """The server's certificate: it accepts TLS connections only."""


class Database(pulumi.ComponentResource):
    container: docker.Container
    volume: docker.Volume
    objects: DatabaseObjects
    endpoint: pulumi.Output[str]
    internal_host: str
    internal_port: int

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names, spec = args.names, args.spec

        image = remote_image("postgres-image", args.image, child)
        # The database lives here: deleting it takes a deliberate
        # `pulumi state unprotect`, never a stray `pulumi destroy`.
        volume = self.volume = labelled_volume(
            "postgres-data", names, "postgres", pulumi.ResourceOptions(parent=self, protect=True), holds_data=True
        )
        tls = postgres_conf.CONTAINER_TLS
        postgresql_conf = postgres_conf.render_postgresql_conf(args.tuning, slow_query_ms=args.slow_query_ms, tls=tls)
        pg_hba_conf = postgres_conf.render_pg_hba_conf(
            database=spec.name,
            admin_role=spec.admin_role,
            client_networks=(LOOPBACK, *args.client_networks),
            tls=True,
        )
        superuser_password = args.secrets.get("postgres-superuser")
        self.internal_host = "postgres"
        self.internal_port = postgres_conf.CONTAINER_PORT
        self.container = hardened_container(
            "postgres",
            ContainerSpec(
                name=names.resource("postgres"),
                image=image.image_id,
                user=f"{POSTGRES_UID}:{POSTGRES_UID}",
                memory_bytes=args.tuning.memory_bytes,
                networks=[
                    (args.network.backend.name, [self.internal_host]),
                    (args.network.ops.name, []),
                ],
                envs=[
                    f"POSTGRES_USER={spec.admin_role}",
                    f"POSTGRES_DB={spec.name}",
                    f"POSTGRES_PASSWORD_FILE={PASSWORD_FILE}",
                    # The image writes its own pg_hba.conf into the data directory;
                    # hba_file points elsewhere, but even that unused copy trusts nothing.
                    "POSTGRES_INITDB_ARGS=--data-checksums --auth-local=scram-sha-256 --auth-host=scram-sha-256",
                ],
                command=["postgres", "-c", f"config_file={postgres_conf.CONTAINER_CONFIG_FILE}"],
                config_files={
                    postgres_conf.CONTAINER_CONFIG_FILE: postgresql_conf,
                    postgres_conf.CONTAINER_HBA_FILE: pg_hba_conf,
                },
                secret_files=[
                    SecretFile(PASSWORD_FILE, superuser_password, POSTGRES_UID),
                    # The server reads its key only if no one else can.
                    SecretFile(tls.key_file, args.tls.key_pem, POSTGRES_UID),
                    SecretFile(tls.cert_file, args.tls.cert_pem, POSTGRES_UID),
                ],
                volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DATA_DIR)],
                publish=[Publish(postgres_conf.CONTAINER_PORT, args.host_port, args.bind_address)],
                healthcheck=healthcheck(
                    ["CMD", *postgres_conf.healthcheck_args(admin_role=spec.admin_role, database=spec.name)],
                    interval_s=10,
                    timeout_s=5,
                    retries=10,
                    start_period_s=30,
                ),
                labels=names.labels("postgres"),
                metrics_job="postgres",
                # Parallel query allocates dynamic shared memory in /dev/shm,
                # which Docker caps at 64 MB by default.
                shm_size_mb=max(args.tuning.shared_buffers_kb // 1024, 64),
                # SIGINT is Postgres' "fast" shutdown: roll back, checkpoint, exit.
                stop_signal="SIGINT",
                stop_timeout_s=60,
                wait_timeout_s=180,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[volume]),
        )
        self.endpoint = pulumi.Output.from_input(f"{args.bind_address}:{args.host_port}")
        admin = AdminConnection(
            host=_connectable(args.bind_address),
            port=args.host_port,
            user=spec.admin_role,
            password=superuser_password,
            database=spec.name,
            # The certificate names 127.0.0.1 and the published address.
            sslmode="verify-full",
            ca_pem=args.tls.ca_pem,
            superuser=True,
        )
        self.objects = declare_database_objects(
            spec,
            password_for=args.secrets.role_password,
            connection=admin,
            parent=self,
            depends_on=[self.container],
        )
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "database": spec.name,
                "roles": {role.key: role.name for role in spec.roles},
            }
        )


def _connectable(bind_address: IPv4Address) -> str:
    # A port published on every interface is still reached most directly on loopback.
    return "127.0.0.1" if bind_address.is_unspecified else str(bind_address)
