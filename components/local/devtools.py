"""pgAdmin for the dev stack, with the platform's database already registered."""

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
    healthcheck,
    labelled_volume,
    remote_image,
)
from components.local.network import Network
from components.local.secrets import Secrets
from components.model import pgadmin
from components.model.naming import Names

LOGIN_PASSWORD_FILE = "/run/secrets/pgadmin-login-password"  # noqa: S105 (a path)
MEMORY_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class DevToolsArgs:
    names: Names
    image: str
    host_port: int
    bind_address: IPv4Address
    login_email: str
    database: str
    admin_role: str
    postgres_host: str
    postgres_port: int
    network: Network
    secrets: Secrets
    ca_pem: pulumi.Output[str]
    """The stack's CA: pgAdmin verifies Postgres against it."""


class DevTools(pulumi.ComponentResource):
    container: docker.Container
    url: pulumi.Output[str]

    def __init__(self, name: str, args: DevToolsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:DevTools", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names = args.names
        image = remote_image("pgadmin-image", args.image, child)
        volume = labelled_volume("pgadmin-data", names, "pgadmin", child)
        servers = pgadmin.render_servers_json(
            name=f"{names.app} ({names.stack})",
            group=names.app,
            host=args.postgres_host,
            port=args.postgres_port,
            database=args.database,
            username=args.admin_role,
        )
        pgpass = args.secrets.get("postgres-superuser").apply(
            lambda password: pgadmin.render_pgpass(
                host=args.postgres_host,
                port=args.postgres_port,
                database="*",
                username=args.admin_role,
                password=password,
            )
        )
        self.container = hardened_container(
            "pgadmin",
            ContainerSpec(
                name=names.resource("pgadmin"),
                image=image.image_id,
                user=f"{pgadmin.CONTAINER_UID}:0",
                memory_bytes=MEMORY_BYTES,
                networks=[
                    (args.network.frontend.name, []),
                    (args.network.backend.name, []),
                ],
                envs=[
                    f"PGADMIN_DEFAULT_EMAIL={args.login_email}",
                    f"PGADMIN_DEFAULT_PASSWORD_FILE={LOGIN_PASSWORD_FILE}",
                    f"PGADMIN_SERVER_JSON_FILE={pgadmin.CONTAINER_SERVERS_FILE}",
                    "PGADMIN_CONFIG_SERVER_MODE=True",
                    "PGADMIN_CONFIG_MASTER_PASSWORD_REQUIRED=False",
                    "PGADMIN_CONFIG_ENHANCED_COOKIE_PROTECTION=True",
                    # The image starts postfix through sudo for password-reset mail,
                    # which no-new-privileges forbids and a dev stack does not need.
                    "PGADMIN_DISABLE_POSTFIX=1",
                    f"PGPASS_FILE={pgadmin.PGPASS_FILE}",
                    f"PGSSLROOTCERT={pgadmin.CA_FILE}",
                ],
                config_files={pgadmin.CONTAINER_SERVERS_FILE: servers},
                secret_files=[
                    SecretFile(LOGIN_PASSWORD_FILE, args.secrets.get("pgadmin-login"), pgadmin.CONTAINER_UID),
                    SecretFile(pgadmin.PGPASS_FILE, pgpass, pgadmin.CONTAINER_UID),
                    SecretFile(pgadmin.CA_FILE, args.ca_pem, pgadmin.CONTAINER_UID),
                ],
                volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path="/var/lib/pgadmin")],
                publish=[Publish(pgadmin.CONTAINER_PORT, args.host_port, args.bind_address)],
                # gunicorn binds port 80 as the unprivileged pgadmin user.
                capabilities_add=["NET_BIND_SERVICE"],
                healthcheck=healthcheck(
                    ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:80/misc/ping || exit 1"],
                    interval_s=15,
                    timeout_s=5,
                    retries=5,
                    start_period_s=60,
                ),
                labels=names.labels("pgadmin"),
                wait_timeout_s=240,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[volume]),
        )
        self.url = pulumi.Output.from_input(f"http://{args.bind_address}:{args.host_port}")
        self.register_outputs({"url": self.url})
