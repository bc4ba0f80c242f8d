"""The whole platform on the local Docker engine."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.config import PlatformConfig, alert_thresholds, bundled_settings
from components.credentials import external_secrets
from components.local.api import Api, ApiArgs, EmulatedAws
from components.local.backups import Backups, BackupsArgs, DevBucket
from components.local.cache import Cache, CacheArgs
from components.local.database import Database, DatabaseArgs
from components.local.devs3 import REGION, DevS3, DevS3Args
from components.local.devtools import DevTools, DevToolsArgs
from components.local.monitoring import Monitoring, MonitoringArgs
from components.local.network import Network, NetworkArgs
from components.local.secrets import Secrets
from components.local.tls import StackCa, StackCaArgs
from components.model.app_services import emulated_resources, emulated_values
from components.model.database import DatabaseSpec, database_spec
from components.model.naming import Names
from components.model.postgres_conf import tune
from components.target import LocalOutputs, PlatformArgs

# The services were declared at the stack's root before this component held
# them. The alias claims each one's former URN (its children inherit it), so a
# stack made then sees no replacement, only this component created; its state
# then holds the new URNs, under this component.
MOVED_FROM_ROOT = pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)


@dataclass(frozen=True)
class _Shared:
    """What every service is declared with."""

    cfg: PlatformConfig
    names: Names
    spec: DatabaseSpec
    network: Network
    secrets: Secrets
    ca: StackCa
    opts: pulumi.ResourceOptions


class LocalPlatform(pulumi.ComponentResource):
    outputs: LocalOutputs

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Platform", name, None, opts)
        cfg, names = args.config, args.names
        child = pulumi.ResourceOptions(parent=self, aliases=[MOVED_FROM_ROOT])
        net_cfg = cfg.network
        network = Network(
            "network",
            NetworkArgs(
                names=names,
                frontend_subnet=net_cfg.frontend_subnet,
                backend_subnet=net_cfg.backend_subnet,
                ops_subnet=net_cfg.ops_subnet,
            ),
            opts=child,
        )
        secrets = Secrets("secrets", opts=child)
        # Postgres and Redis speak TLS only; every client verifies them against this CA.
        ca = StackCa("ca", StackCaArgs(names=names), opts=child)
        shared = _Shared(cfg, names, database_spec(names, cfg.postgres.schemas), network, secrets, ca, child)
        database = _database(shared)
        cache = _cache(shared)
        emulator = _aws_emulator(shared)
        api = _api(shared, database, cache, emulator)
        backups = _backups(shared, database, emulator)
        monitoring = _monitoring(shared, database, cache, api, backups)
        spec = shared.spec
        self.outputs = LocalOutputs(
            api_url=api.url,
            grafana_url=monitoring.grafana_url,
            prometheus_url=monitoring.prometheus_url,
            alertmanager_url=monitoring.alertmanager_url,
            postgres_endpoint=database.endpoint,
            postgres_database=spec.name,
            redis_endpoint=cache.endpoint,
            redis_user=cache.app_user,
            roles={role.key: role.name for role in spec.roles},
            ca_certificate=ca.ca_pem,
            secrets=pulumi.Output.secret({key.replace("-", "_"): value for key, value in secrets.all.items()}),
            pgadmin_url=_devtools(shared, database) if cfg.dev_tools.enabled else None,
        )
        self.register_outputs(self.outputs.exports())


def _database(shared: _Shared) -> Database:
    cfg, net_cfg = shared.cfg, shared.cfg.network
    return Database(
        "database",
        DatabaseArgs(
            names=shared.names,
            spec=shared.spec,
            image=cfg.images.postgres,
            tuning=tune(int(cfg.postgres.memory), cfg.postgres.max_connections),
            slow_query_ms=cfg.postgres.slow_query_ms,
            host_port=cfg.postgres.host_port,
            bind_address=net_cfg.bind_address,
            client_networks=(net_cfg.backend_subnet, net_cfg.ops_subnet),
            network=shared.network,
            secrets=shared.secrets,
            tls=shared.ca.server("postgres", host="postgres", bind_address=net_cfg.bind_address),
        ),
        opts=shared.opts,
    )


def _cache(shared: _Shared) -> Cache:
    cfg, bind_address = shared.cfg, shared.cfg.network.bind_address
    return Cache(
        "cache",
        CacheArgs(
            names=shared.names,
            image=cfg.images.redis,
            maxmemory_bytes=int(cfg.redis.max_memory),
            eviction_policy=cfg.redis.eviction_policy,
            host_port=cfg.redis.host_port,
            bind_address=bind_address,
            network=shared.network,
            secrets=shared.secrets,
            tls=shared.ca.server("redis", host="redis", bind_address=bind_address),
        ),
        opts=shared.opts,
    )


def _aws_emulator(shared: _Shared) -> DevS3 | None:
    """S3 for the backups' copy (devTools.s3), and whatever AWS services the app declares."""
    cfg, services = shared.cfg, shared.cfg.app.aws_services
    if not (cfg.dev_tools.s3 or services.declared):
        return None
    resources = emulated_resources(services, shared.names, region=REGION)
    args = DevS3Args(names=shared.names, network=shared.network, resources=resources)
    return DevS3("dev-s3", args, opts=shared.opts)


def _api(shared: _Shared, database: Database, cache: Cache, emulator: DevS3 | None) -> Api:
    cfg, spec = shared.cfg, shared.spec
    services = cfg.app.aws_services
    aws = None
    if emulator is not None and services.declared:
        values = emulated_values(services, shared.names, endpoint=emulator.endpoint, region=REGION)
        aws = EmulatedAws(emulator.endpoint, REGION, values, emulator.container)
    return Api(
        "api",
        ApiArgs(
            names=shared.names,
            app=cfg.app,
            settings=bundled_settings(cfg),
            host_port=cfg.api.host_port,
            bind_address=cfg.network.bind_address,
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
            network=shared.network,
            secrets=shared.secrets,
            ca_pem=shared.ca.ca_pem,
            depends_on=(*database.objects.all, cache.container),
            aws=aws,
            external_secrets=external_secrets(cfg),
        ),
        opts=shared.opts,
    )


def _backups(shared: _Shared, database: Database, emulator: DevS3 | None) -> Backups:
    cfg, spec = shared.cfg, shared.spec
    dev_bucket = DevBucket(emulator.endpoint) if emulator is not None and cfg.dev_tools.s3 else None
    return Backups(
        "backups",
        BackupsArgs(
            names=shared.names,
            config=cfg.backups,
            dev_bucket=dev_bucket,
            database=spec.name,
            backup_role=spec.role("backup").name,
            postgres_host=database.internal_host,
            postgres_port=database.internal_port,
            network=shared.network,
            secrets=shared.secrets,
            ca_pem=shared.ca.ca_pem,
            depends_on=tuple(database.objects.all),
        ),
        opts=shared.opts,
    )


def _monitoring(shared: _Shared, database: Database, cache: Cache, api: Api, backups: Backups) -> Monitoring:
    cfg, spec = shared.cfg, shared.spec
    return Monitoring(
        "monitoring",
        MonitoringArgs(
            names=shared.names,
            thresholds=alert_thresholds(cfg, spec.name),
            config=cfg.monitoring,
            alerting=cfg.alerting,
            images=cfg.images,
            bind_address=cfg.network.bind_address,
            database=spec.name,
            monitoring_role=spec.role("monitoring").name,
            postgres_host=database.internal_host,
            postgres_port=database.internal_port,
            redis_host=cache.internal_host,
            redis_port=cache.internal_port,
            api_target=api.internal_target,
            api_metrics_path=cfg.app.metrics.path if cfg.app.metrics else "/metrics",
            network=shared.network,
            secrets=shared.secrets,
            ca_pem=shared.ca.ca_pem,
            watched_volumes={
                "postgres": database.volume.name,
                "redis": cache.volume.name,
                "backups": backups.volume.name,
            },
            depends_on=(*database.objects.all, cache.container),
        ),
        opts=shared.opts,
    )


def _devtools(shared: _Shared, database: Database) -> pulumi.Output[str]:
    """pgAdmin, with the stack's database registered; its URL."""
    cfg = shared.cfg
    devtools = DevTools(
        "devtools",
        DevToolsArgs(
            names=shared.names,
            image=cfg.images.pgadmin,
            host_port=cfg.dev_tools.pgadmin_port,
            bind_address=cfg.network.bind_address,
            login_email=cfg.dev_tools.pgadmin_email,
            database=shared.spec.name,
            admin_role=shared.spec.admin_role,
            postgres_host=database.internal_host,
            postgres_port=database.internal_port,
            network=shared.network,
            secrets=shared.secrets,
            ca_pem=shared.ca.ca_pem,
        ),
        opts=pulumi.ResourceOptions.merge(shared.opts, pulumi.ResourceOptions(depends_on=[database])),
    )
    return devtools.url
