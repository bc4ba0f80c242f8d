"""The whole platform on the local Docker engine."""

from __future__ import annotations

from typing import Any

import pulumi

from components.config import PlatformConfig, alert_thresholds, bundled_settings
from components.local.api import Api, ApiArgs
from components.local.backups import Backups, BackupsArgs, DevBucket
from components.local.cache import Cache, CacheArgs
from components.local.database import Database, DatabaseArgs
from components.local.devs3 import DevS3
from components.local.devtools import DevTools, DevToolsArgs
from components.local.monitoring import Monitoring, MonitoringArgs
from components.local.network import Network
from components.local.secrets import Secrets
from components.local.tls import StackCa
from components.model.database import database_spec
from components.model.naming import Names
from components.model.postgres_conf import tune


def build_local_platform(cfg: PlatformConfig, names: Names) -> dict[str, Any]:
    """Declare every component; return the stack outputs."""
    net_cfg = cfg.network
    network = Network(
        "network",
        names=names,
        frontend_subnet=net_cfg.frontend_subnet,
        backend_subnet=net_cfg.backend_subnet,
        ops_subnet=net_cfg.ops_subnet,
    )
    secrets = Secrets("secrets")
    # Postgres and Redis speak TLS only; every client verifies them against this CA.
    ca = StackCa("ca", names=names)
    spec = database_spec(names, cfg.postgres.schemas)
    database = Database(
        "database",
        DatabaseArgs(
            names=names,
            spec=spec,
            image=cfg.images.postgres,
            tuning=tune(int(cfg.postgres.memory), cfg.postgres.max_connections),
            slow_query_ms=cfg.postgres.slow_query_ms,
            host_port=cfg.postgres.host_port,
            bind_address=net_cfg.bind_address,
            client_networks=(net_cfg.backend_subnet, net_cfg.ops_subnet),
            network=network,
            secrets=secrets,
            tls=ca.server("postgres", host="postgres", bind_address=net_cfg.bind_address),
        ),
    )
    cache = Cache(
        "cache",
        CacheArgs(
            names=names,
            image=cfg.images.redis,
            maxmemory_bytes=int(cfg.redis.max_memory),
            eviction_policy=cfg.redis.eviction_policy,
            host_port=cfg.redis.host_port,
            bind_address=net_cfg.bind_address,
            network=network,
            secrets=secrets,
            tls=ca.server("redis", host="redis", bind_address=net_cfg.bind_address),
        ),
    )
    api = Api(
        "api",
        ApiArgs(
            names=names,
            app=cfg.app,
            settings=bundled_settings(cfg),
            host_port=cfg.api.host_port,
            bind_address=net_cfg.bind_address,
            memory_bytes=int(cfg.api.memory),
            cpus=cfg.api.cpus,
            database=spec.name,
            db_user=spec.role("app").name,
            migrator_user=spec.role("migrator").name,
            postgres_host=database.internal_host,
            postgres_port=database.internal_port,
            redis_user=cache.app_user,
            redis_host=cache.internal_host,
            redis_port=cache.internal_port,
            network=network,
            secrets=secrets,
            ca_pem=ca.ca_pem,
            depends_on=(*database.objects.all, cache.container),
        ),
    )
    dev_bucket = None
    if cfg.dev_tools.s3:
        dev_bucket = DevBucket(DevS3("dev-s3", names=names, network=network).endpoint)
    backups = Backups(
        "backups",
        BackupsArgs(
            names=names,
            config=cfg.backups,
            dev_bucket=dev_bucket,
            database=spec.name,
            backup_role=spec.role("backup").name,
            postgres_host=database.internal_host,
            postgres_port=database.internal_port,
            network=network,
            secrets=secrets,
            ca_pem=ca.ca_pem,
            depends_on=tuple(database.objects.all),
        ),
    )
    observability = Monitoring(
        "monitoring",
        MonitoringArgs(
            names=names,
            thresholds=alert_thresholds(cfg, spec.name),
            config=cfg.monitoring,
            alerting=cfg.alerting,
            images=cfg.images,
            bind_address=net_cfg.bind_address,
            database=spec.name,
            monitoring_role=spec.role("monitoring").name,
            postgres_host=database.internal_host,
            postgres_port=database.internal_port,
            redis_host=cache.internal_host,
            redis_port=cache.internal_port,
            api_target=api.internal_target,
            api_metrics_path=cfg.app.metrics.path if cfg.app.metrics else "/metrics",
            network=network,
            secrets=secrets,
            ca_pem=ca.ca_pem,
            watched_volumes={
                "postgres": database.volume.name,
                "redis": cache.volume.name,
                "backups": backups.volume.name,
            },
            depends_on=(*database.objects.all, cache.container),
        ),
    )
    outputs: dict[str, Any] = {
        "apiUrl": api.url,
        "grafanaUrl": observability.grafana_url,
        "prometheusUrl": observability.prometheus_url,
        "alertmanagerUrl": observability.alertmanager_url,
        "postgresEndpoint": database.endpoint,
        "postgresDatabase": spec.name,
        "redisEndpoint": cache.endpoint,
        "redisUser": cache.app_user,
        "roles": {role.key: role.name for role in spec.roles},
        # Not a secret: what clients on the host verify Postgres and Redis against.
        "caCertificate": ca.ca_pem,
        "secrets": pulumi.Output.secret({key.replace("-", "_"): value for key, value in secrets.all.items()}),
    }
    if cfg.dev_tools.enabled:
        devtools = DevTools(
            "devtools",
            DevToolsArgs(
                names=names,
                image=cfg.images.pgadmin,
                host_port=cfg.dev_tools.pgadmin_port,
                bind_address=net_cfg.bind_address,
                login_email=cfg.dev_tools.pgadmin_email,
                database=spec.name,
                admin_role=spec.admin_role,
                postgres_host=database.internal_host,
                postgres_port=database.internal_port,
                network=network,
                secrets=secrets,
                ca_pem=ca.ca_pem,
            ),
            opts=pulumi.ResourceOptions(depends_on=[database]),
        )
        outputs["pgadminUrl"] = devtools.url
    return outputs
