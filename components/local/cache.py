"""Redis 7 in a container: ACL users only, AOF + RDB persistence, bounded memory."""

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
from components.local.tls import ServerCertificate
from components.model import redis_conf
from components.model.naming import Names

# The official image's `redis` user, owner of /data in the image.
REDIS_UID = "999"
HEALTHCHECK_PASSWORD_FILE = "/run/secrets/redis-healthcheck-password"  # noqa: S105 (a path)


@dataclass(frozen=True)
class CacheArgs:
    names: Names
    image: str
    maxmemory_bytes: int
    eviction_policy: redis_conf.EvictionPolicy
    host_port: int
    bind_address: IPv4Address
    network: Network
    secrets: Secrets
    tls: ServerCertificate
    """The server's certificate: its port speaks TLS only."""


class Cache(pulumi.ComponentResource):
    container: docker.Container
    volume: docker.Volume
    endpoint: pulumi.Output[str]
    internal_host: str
    internal_port: int
    app_user: str

    def __init__(self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Cache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names = args.names
        self.app_user = names.redis_app_user
        self.internal_host = "redis"
        self.internal_port = redis_conf.CONTAINER_PORT

        image = remote_image("redis-image", args.image, child)
        volume = self.volume = labelled_volume("redis-data", names, "redis", child)
        app_password = args.secrets.get("redis-app")
        health_password = args.secrets.get("redis-healthcheck")
        monitoring_password = args.secrets.get("redis-monitoring")
        acl: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(app_password, health_password, monitoring_password).apply(
                lambda pw: redis_conf.render_platform_acl(names, app=pw[0], healthcheck=pw[1], monitoring=pw[2])
            )
        )
        tls = redis_conf.CONTAINER_TLS
        conf = redis_conf.render_redis_conf(
            maxmemory_bytes=args.maxmemory_bytes, eviction_policy=args.eviction_policy, tls=tls
        )
        self.container = hardened_container(
            "redis",
            ContainerSpec(
                name=names.resource("redis"),
                image=image.image_id,
                user=f"{REDIS_UID}:{REDIS_UID}",
                memory_bytes=redis_conf.container_memory_limit(args.maxmemory_bytes),
                networks=[
                    (args.network.backend.name, [self.internal_host]),
                    (args.network.ops.name, []),
                ],
                command=["redis-server", redis_conf.CONTAINER_CONFIG_FILE],
                config_files={redis_conf.CONTAINER_CONFIG_FILE: conf},
                secret_files=[
                    # Holds only SHA-256 hashes, yet stays unreadable to all but redis.
                    SecretFile(redis_conf.CONTAINER_ACL_FILE, acl, REDIS_UID),
                    SecretFile(HEALTHCHECK_PASSWORD_FILE, health_password, REDIS_UID),
                    SecretFile(tls.key_file, args.tls.key_pem, REDIS_UID),
                    SecretFile(tls.cert_file, args.tls.cert_pem, REDIS_UID),
                    SecretFile(tls.ca_file, args.tls.ca_pem, REDIS_UID),
                ],
                volumes=[
                    docker.ContainerVolumeArgs(volume_name=volume.name, container_path=redis_conf.CONTAINER_DATA_DIR)
                ],
                publish=[Publish(redis_conf.CONTAINER_PORT, args.host_port, args.bind_address)],
                healthcheck=healthcheck(
                    [
                        "CMD-SHELL",
                        redis_conf.healthcheck_command(
                            user=names.redis_healthcheck_user,
                            password_file=HEALTHCHECK_PASSWORD_FILE,
                            ca_file=tls.ca_file,
                        ),
                    ],
                    interval_s=10,
                    timeout_s=5,
                    retries=5,
                    start_period_s=10,
                ),
                labels=names.labels("redis"),
                metrics_job="redis",
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[volume]),
        )
        self.endpoint = pulumi.Output.from_input(f"{args.bind_address}:{args.host_port}")
        self.register_outputs({"endpoint": self.endpoint, "appUser": self.app_user})
