"""The whole platform on AWS, from the same model as the local target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.api import Api, ApiArgs
from components.aws.backups import Backups, BackupsArgs
from components.aws.bastion import Bastion, BastionArgs
from components.aws.cache import Cache, CacheArgs
from components.aws.database import Database, DatabaseArgs
from components.aws.monitoring import Alarm, Monitoring, MonitoringArgs
from components.aws.network import Network, NetworkArgs
from components.aws.rotation import redeploy_schedules
from components.aws.secret_rotation import SecretRotation, SecretRotationArgs
from components.aws.secrets import Secrets, SecretsArgs
from components.aws.tasks import LOG_GROUPS, log_group_name
from components.aws.waf import Waf, WafArgs, waf_log_group_name
from components.config import AwsConfig, PlatformConfig, alert_thresholds, bundled_settings
from components.credentials import external_secrets
from components.model.aws_sizes import RDS_CLASSES
from components.model.database import DatabaseSpec, database_spec
from components.model.naming import Names
from components.model.postgres_conf import tune
from components.target import AwsOutputs, OneOffTask, PlatformArgs


def default_tags(cfg: PlatformConfig, names: Names) -> dict[str, str]:
    return {
        "app": names.app,
        "environment": names.stack,
        "owner": cfg.aws.owner,
        "cost-center": cfg.aws.cost_center,
        "managed-by": "pulumi",
    }


@dataclass(frozen=True)
class _Shared:
    """What every part of the platform is declared with."""

    cfg: PlatformConfig
    names: Names
    spec: DatabaseSpec
    secrets: Secrets
    network: Network
    opts: pulumi.ResourceOptions

    @property
    def aws(self) -> AwsConfig:
        return self.cfg.aws


class AwsPlatform(pulumi.ComponentResource):
    """Every AWS resource is a child of this one, through one explicit provider
    that carries the region and the tags every taggable resource gets."""

    outputs: AwsOutputs

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        cfg, names = args.config, args.names
        aws_cfg = cfg.aws
        provider = aws.Provider(
            "aws",
            region=aws_cfg.region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=default_tags(cfg, names)),
            opts=opts,
        )
        super().__init__(
            "wondernest:aws:Platform",
            name,
            None,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers={"aws": provider})),
        )
        child = pulumi.ResourceOptions(parent=self)
        secrets = Secrets(
            "secrets",
            SecretsArgs(
                names=names,
                region=aws_cfg.region,
                app_services=cfg.app.aws_services,
                external=external_secrets(cfg),
            ),
            opts=child,
        )
        network = _network(cfg, names, secrets, child)
        # Every login role with its alternate user, for rotation by alternating users.
        spec = database_spec(names, cfg.postgres.schemas).with_alternating_users()
        shared = _Shared(cfg, names, spec, secrets, network, child)
        database = _database(shared)
        bastion = None
        if aws_cfg.admin_bastion:
            bastion = Bastion(
                "bastion", BastionArgs(names=names, network=network, kms_key_arn=secrets.key.arn), opts=child
            )
        cache = _cache(shared)
        rotation = _secret_rotation(shared, cache)
        observability = _monitoring(shared)
        cluster = aws.ecs.Cluster(
            "cluster",
            name=names.resource("cluster"),
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value="enabled")],
            opts=child,
        )
        elb_account = aws.elb.get_service_account_output(opts=pulumi.InvokeOutputOptions(parent=self))
        data_ready = (*database.ready, cache.group, *rotation.ready)
        api = _api(shared, database, cache, observability, cluster, elb_account.arn, data_ready)
        _waf(shared, api)
        exporters = observability.exporters(
            cluster=cluster,
            network=network,
            postgres_host=database.instance.address,
            postgres_port=database.port,
            database=spec.name,
            redis_host=cache.host,
            redis_port=cache.port,
            redis_user=cache.monitoring_user,
            postgres_exporter_image=cfg.images.postgres_exporter,
            redis_exporter_image=cfg.images.redis_exporter,
            depends_on=data_ready,
        )
        backups = _backups(shared, database, observability, cluster, api)
        redeploy_schedules(
            {"api": api.service, "exporters": exporters, "backups": backups.service},
            cluster=cluster,
            rotation_days=aws_cfg.secret_rotation_days,
            parent=self,
        )
        _alarms(observability, database, cache, api, rotation, cache_nodes=1 + aws_cfg.cache_replicas)
        self.outputs = _outputs(shared, database, cache, observability, api, backups, cluster, bastion)
        self.register_outputs(self.outputs.exports())


def _network(cfg: PlatformConfig, names: Names, secrets: Secrets, opts: pulumi.ResourceOptions) -> Network:
    aws_cfg = cfg.aws
    return Network(
        "network",
        NetworkArgs(
            names=names,
            region=aws_cfg.region,
            cidr=aws_cfg.vpc_cidr,
            az_count=aws_cfg.az_count,
            single_nat_gateway=aws_cfg.single_nat_gateway,
            interface_endpoints=aws_cfg.interface_endpoints,
            log_retention_days=aws_cfg.log_retention_days,
            kms_key_arn=secrets.key.arn,
            app_port=cfg.app.port,
        ),
        opts=opts,
    )


def _database(shared: _Shared) -> Database:
    cfg, aws_cfg = shared.cfg, shared.aws
    return Database(
        "database",
        DatabaseArgs(
            names=shared.names,
            spec=shared.spec,
            tuning=tune(RDS_CLASSES[aws_cfg.db_instance_class], cfg.postgres.max_connections),
            slow_query_ms=cfg.postgres.slow_query_ms,
            instance_class=aws_cfg.db_instance_class,
            read_replicas=aws_cfg.db_read_replicas,
            replica_class=aws_cfg.replica_class,
            replica_tuning=tune(RDS_CLASSES[aws_cfg.replica_class], cfg.postgres.max_connections),
            allocated_storage_gb=aws_cfg.db_allocated_storage_gb,
            max_allocated_storage_gb=aws_cfg.db_max_allocated_storage_gb,
            multi_az=aws_cfg.db_multi_az,
            backup_retention_days=aws_cfg.db_backup_retention_days,
            admin_host=aws_cfg.db_admin_host,
            admin_port=aws_cfg.db_admin_port,
            rotation_days=aws_cfg.secret_rotation_days,
            region=aws_cfg.region,
            network=shared.network,
            secrets=shared.secrets,
        ),
        opts=shared.opts,
    )


def _cache(shared: _Shared) -> Cache:
    aws_cfg = shared.aws
    return Cache(
        "cache",
        CacheArgs(
            names=shared.names,
            node_type=aws_cfg.cache_node_type,
            replicas=aws_cfg.cache_replicas,
            eviction_policy=shared.cfg.redis.eviction_policy,
            snapshot_retention_days=aws_cfg.cache_snapshot_retention_days,
            log_retention_days=aws_cfg.log_retention_days,
            network=shared.network,
            secrets=shared.secrets,
        ),
        opts=shared.opts,
    )


def _secret_rotation(shared: _Shared, cache: Cache) -> SecretRotation:
    aws_cfg = shared.aws
    return SecretRotation(
        "secret-rotation",
        SecretRotationArgs(
            names=shared.names,
            region=aws_cfg.region,
            network=shared.network,
            secrets=shared.secrets,
            rotation_days=aws_cfg.secret_rotation_days,
            cache_user_ids=cache.user_ids,
            cache_ready=[cache.group],
            log_retention_days=aws_cfg.log_retention_days,
        ),
        opts=shared.opts,
    )


def _monitoring(shared: _Shared) -> Monitoring:
    cfg = shared.cfg
    return Monitoring(
        "monitoring",
        MonitoringArgs(
            names=shared.names,
            region=cfg.aws.region,
            thresholds=alert_thresholds(cfg, shared.spec.name),
            slo_objective=cfg.alerting.slo_objective,
            page=cfg.alerting.page,
            ticket=cfg.alerting.ticket,
            log_retention_days=cfg.aws.log_retention_days,
            secrets=shared.secrets,
        ),
        opts=shared.opts,
    )


def _api(
    shared: _Shared,
    database: Database,
    cache: Cache,
    observability: Monitoring,
    cluster: aws.ecs.Cluster,
    elb_account_arn: pulumi.Output[str],
    data_ready: Sequence[pulumi.Resource],
) -> Api:
    cfg, aws_cfg = shared.cfg, shared.aws
    return Api(
        "api",
        ApiArgs(
            names=shared.names,
            app=cfg.app,
            settings=bundled_settings(cfg),
            region=aws_cfg.region,
            cpu=aws_cfg.api_cpu,
            memory_mib=aws_cfg.api_memory_mib,
            desired_count=aws_cfg.api_desired_count,
            min_count=aws_cfg.api_min_count,
            max_count=aws_cfg.api_max_count,
            cpu_target_percent=aws_cfg.api_cpu_target_percent,
            requests_per_target=aws_cfg.api_requests_per_target,
            certificate_arn=aws_cfg.certificate_arn,
            domain_name=aws_cfg.domain_name,
            hosted_zone_id=aws_cfg.hosted_zone_id,
            log_retention_days=aws_cfg.log_retention_days,
            database=shared.spec.name,
            postgres_host=database.instance.address,
            postgres_port=database.port,
            postgres_reader_hosts=database.reader_hosts,
            redis_host=cache.host,
            redis_port=cache.port,
            redis_user=cache.app_user,
            cluster=cluster,
            network=shared.network,
            secrets=shared.secrets,
            remote_write_url=observability.remote_write_url,
            workspace_arn=observability.workspace.arn,
            elb_account_arn=elb_account_arn,
            depends_on=tuple(data_ready),
            email_zone_id=aws_cfg.email_hosted_zone_id,
        ),
        opts=shared.opts,
    )


def _waf(shared: _Shared, api: Api) -> Waf:
    aws_cfg = shared.aws
    return Waf(
        "waf",
        WafArgs(
            names=shared.names,
            load_balancer_arn=api.alb.arn,
            rate_limit=aws_cfg.waf_rate_limit,
            auth_rate_limit=aws_cfg.waf_auth_rate_limit,
            log_retention_days=aws_cfg.log_retention_days,
            kms_key_arn=shared.secrets.key.arn,
        ),
        opts=shared.opts,
    )


def _backups(
    shared: _Shared, database: Database, observability: Monitoring, cluster: aws.ecs.Cluster, api: Api
) -> Backups:
    cfg, aws_cfg = shared.cfg, shared.aws
    return Backups(
        "backups",
        BackupsArgs(
            names=shared.names,
            region=aws_cfg.region,
            config=cfg.backups,
            copy_region=aws_cfg.copy_region,
            pitr_days=aws_cfg.db_backup_retention_days,
            db_storage_gb=aws_cfg.db_allocated_storage_gb,
            vault_lock_min_days=aws_cfg.backup_vault_lock_min_days,
            log_retention_days=aws_cfg.log_retention_days,
            database=shared.spec.name,
            postgres_host=database.instance.address,
            postgres_port=database.port,
            db_instance_arn=database.instance.arn,
            master_secret_arn=database.master_secret_arn,
            cluster=cluster,
            network=shared.network,
            secrets=shared.secrets,
            remote_write_url=observability.remote_write_url,
            workspace_arn=observability.workspace.arn,
            default_tags=default_tags(cfg, shared.names),
            access_log_bucket=api.logs_bucket,
            depends_on=tuple(database.ready),
        ),
        opts=shared.opts,
    )


def _outputs(
    shared: _Shared,
    database: Database,
    cache: Cache,
    observability: Monitoring,
    api: Api,
    backups: Backups,
    cluster: aws.ecs.Cluster,
    bastion: Bastion | None,
) -> AwsOutputs:
    names, region, spec, secrets = shared.names, shared.aws.region, shared.spec, shared.secrets

    def one_off(task_definition: pulumi.Output[str]) -> OneOffTask:
        return OneOffTask(
            cluster=cluster.name,
            subnets=shared.network.subnet_ids("private"),
            security_group=shared.network.security_groups.backup.id,
            prefix=f"{names.app}/{names.stack}",
            region=region,
            task_definition=task_definition,
        )

    return AwsOutputs(
        api_url=api.url,
        grafana_url=observability.grafana_url,
        # The workspace's query and Alertmanager APIs (SigV4-signed requests only).
        prometheus_url=observability.workspace.prometheus_endpoint,
        alertmanager_url=observability.workspace.prometheus_endpoint.apply(lambda e: f"{e}alertmanager/api/v2/alerts"),
        page_topic_arn=observability.topics["page"].arn,
        ticket_topic_arn=observability.topics["ticket"].arn,
        postgres_endpoint=database.endpoint,
        postgres_database=spec.name,
        postgres_master_secret_arn=database.master_secret_arn,
        postgres_reader_endpoint=database.reader_hosts,
        redis_endpoint=cache.endpoint,
        redis_user=cache.app_user,
        # The roles; their alternate users are rotation's business.
        roles={role.key: role.name for role in spec.roles if role.acts_as is None},
        secret_arns=secrets.arns,
        backup_vault=backups.vault.name,
        backup_bucket=backups.bucket.bucket,
        restore_task=one_off(backups.restore_task.family),
        backup_task=one_off(backups.task.family),
        kms_key_arn=secrets.key.arn,
        region=region,
        log_groups={
            **{service: log_group_name(names, path) for service, path in LOG_GROUPS.items()},
            "waf": waf_log_group_name(names),
        },
        admin_bastion_id=bastion.instance.id if bastion is not None else None,
        email_dkim_records=None if api.services is None else api.services.dkim_records,
    )


def _alarms(
    observability: Monitoring, database: Database, cache: Cache, api: Api, rotation: SecretRotation, cache_nodes: int
) -> None:
    """What only CloudWatch sees: the database host, the cache engine, the ALB's
    own errors, and (prometheus_alarms) the alert pipeline itself. Pages for
    what users feel now or soon (storage running out, the ALB failing
    requests); tickets for the rest."""
    db = {"DBInstanceIdentifier": database.instance.identifier}
    alb = {"LoadBalancer": api.alb.arn_suffix}
    targets = {**alb, "TargetGroup": api.target_group.arn_suffix}
    alarms = [
        Alarm("rds-free-storage", "RDS free storage under 10 GiB: autoscaling is at its ceiling or cannot keep up",
              "AWS/RDS", "FreeStorageSpace", db, "Minimum", "LessThanThreshold", 10 * 1024**3, page=True),
        Alarm("rds-cpu", "RDS CPU above 80% for 15 minutes",
              "AWS/RDS", "CPUUtilization", db, "Average", "GreaterThanThreshold", 80),
        Alarm("rds-freeable-memory", "RDS freeable memory under 256 MiB: the instance is swapping or about to",
              "AWS/RDS", "FreeableMemory", db, "Minimum", "LessThanThreshold", 256 * 1024**2),
        Alarm("alb-5xx", "The load balancer itself answered 5xx (no healthy target, or targets unreachable)",
              "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", alb, "Sum", "GreaterThanThreshold", 10,
              period=60, periods=5, missing="notBreaching", page=True),
        Alarm("alb-unhealthy-targets", "Targets failing the load balancer's health check",
              "AWS/ApplicationELB", "UnHealthyHostCount", targets, "Maximum", "GreaterThanThreshold", 0,
              period=60, periods=5),
    ]  # fmt: skip
    for n, replica in enumerate(database.replicas, start=1):
        alarms.append(
            Alarm(
                f"rds-replica-{n}-lag",
                "A read replica is more than 60 s behind the primary: the API's replica reads are stale",
                "AWS/RDS",
                "ReplicaLag",
                {"DBInstanceIdentifier": replica.identifier},
                "Maximum",
                "GreaterThanThreshold",
                60,
                runbook="rds-replica-lag",
            )
        )
    # ElastiCache reports per node; members are <group>-001, -002, ... and any
    # of them may be the primary after a failover, so every node has each alarm
    # (only replicas report ReplicationLag: missing data is not breaching).
    for n in range(1, cache_nodes + 1):
        node = {"CacheClusterId": pulumi.Output.format("{0}-{1:03d}", cache.group.replication_group_id, n)}
        alarms += [
            Alarm(f"redis-engine-cpu-{n:03d}", "Redis engine CPU above 80%: its single thread is saturated",
                  "AWS/ElastiCache", "EngineCPUUtilization", node, "Average", "GreaterThanThreshold", 80,
                  runbook="redis-engine-cpu"),
            Alarm(f"redis-memory-{n:03d}",
                  "Redis memory above 90% of maxmemory: eviction is imminent or under way",
                  "AWS/ElastiCache", "DatabaseMemoryUsagePercentage", node, "Maximum", "GreaterThanThreshold", 90,
                  runbook="redis-memory"),
        ]  # fmt: skip
        if cache_nodes > 1:
            alarms.append(
                Alarm(f"redis-replication-lag-{n:03d}",
                      "A Redis replica is more than 30 s behind its primary: a failover would lose those writes",
                      "AWS/ElastiCache", "ReplicationLag", node, "Maximum", "GreaterThanThreshold", 30,
                      missing="notBreaching", runbook="redis-replication-lag")
            )  # fmt: skip
    # A failed rotation leaves the old value current and retries only at the
    # next schedule: a ticket, before the tasks' values come near retirement.
    for kind, function_name in rotation.function_names.items():
        alarms.append(
            Alarm(f"rotation-{kind}", f"The {kind} rotation function failed: the secret was not rotated",
                  "AWS/Lambda", "Errors", {"FunctionName": function_name}, "Sum", "GreaterThanThreshold", 0,
                  period=3600, periods=1, missing="notBreaching", runbook="rotation-failed")
        )  # fmt: skip
    for alarm in alarms:
        observability.alarm(alarm)
    observability.prometheus_alarms()
