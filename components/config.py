"""The stack's configuration, parsed once into one typed model tree.

Everything lives under the `wondernest:` namespace of `Pulumi.<stack>.yaml`.
A bad value stops the program before any resource is declared, with one message
that names every bad key, its value and what is allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ByteSize,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from components.model.alerts import RUNBOOKS_DOC, AlertThresholds
from components.model.app import COLLECTOR_PORTS, AppConfig
from components.model.aws_sizes import CACHE_NODE_TYPES, FARGATE_MEMORY_MIB, RDS_CLASSES
from components.model.backups import BACKUP_DIR, max_backup_age_seconds, schedule_period_seconds
from components.model.backups import METRICS_PORT as BACKUP_METRICS_PORT
from components.model.config_types import ConfigModel, ImageRef, Port
from components.model.database import REQUIRED_SCHEMAS, SCHEMAS
from components.model.naming import Names, aws_name_problems
from components.model.postgres_conf import TuningError, tune
from components.model.redis_conf import EvictionPolicy

NAMESPACE = "wondernest"
"""This project's name in Pulumi.yaml, which is its config namespace: the
program asks Pulumi, the tools without it read Pulumi.yaml (`project_name`)."""
# Config a provider of this program reads, under its own namespace.
PROVIDER_NAMESPACES = frozenset({"pulumi", "aws", "docker", "random", "tls", "grafana"})

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})

DEFAULT_MAX_CONNECTIONS = 100


def _app_name(value: str) -> str:
    if re.fullmatch(r"[a-z][a-z0-9]{1,19}", value) is None:
        raise ValueError("2 to 20 lower-case letters and digits, starting with a letter")
    return value


class NetworkConfig(ConfigModel):
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
                "not a loopback address; set network.allowPublicBind: true to publish ports beyond this machine"
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


class PostgresConfig(ConfigModel):
    version: Literal[15] = 15
    host_port: Port = 5433
    max_connections: Annotated[int, Field(ge=20, le=5000)] = DEFAULT_MAX_CONNECTIONS
    memory: ByteSize = ByteSize(1024**3)
    """Memory the server may use; the container limit and the tuning derive from it."""
    slow_query_ms: Annotated[int, Field(ge=0, le=600_000)] = 500
    schemas: tuple[str, ...] = SCHEMAS
    """The schemas the roles are granted on; the API's need core and audit."""

    @field_validator("schemas")
    @classmethod
    def _schemas(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problems = [
            f"{name!r} is not a lower-case identifier of at most 63 characters"
            for name in value
            if not SCHEMA_NAME.fullmatch(name)
        ]
        reserved = [name for name in value if name in RESERVED_SCHEMAS or name.startswith("pg_")]
        problems += [f"{name!r} is Postgres' own" for name in reserved]
        problems += [f"{name!r} is listed twice" for name in sorted({n for n in value if value.count(n) > 1})]
        if problems:
            raise ValueError("; ".join(problems))
        return value

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


class RedisConfig(ConfigModel):
    host_port: Port = 6379
    max_memory: Annotated[ByteSize, Field(ge=32 * 1024**2)] = ByteSize(256 * 1024**2)
    eviction_policy: EvictionPolicy = "allkeys-lru"


class ApiConfig(ConfigModel):
    host_port: Port = 8080
    # `make bench-stack` measured the bundled API at about 50 MiB under load:
    # five times that leaves room for another app's heavier runtime.
    memory: Annotated[ByteSize, Field(ge=128 * 1024**2)] = ByteSize(256 * 1024**2)
    cpus: Annotated[float, Field(gt=0, le=64)] = 1.0
    db_pool_max: Annotated[int, Field(ge=1, le=40)] = 10
    """At most 40: the app role's 50 connections must also fit migrations and a
    second container during a replacement."""
    cors_allowed_origins: tuple[str, ...] = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """The bundled API's least severe log line; `warning` drops the per-request lines."""

    @field_validator("cors_allowed_origins")
    @classmethod
    def _explicit_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin) is None:
                raise ValueError(f"{origin!r} is not an explicit origin like https://app.example.com")
        return value


class MonitoringConfig(ConfigModel):
    prometheus_port: Port = 9090
    grafana_port: Port = 3000
    retention: Annotated[str, Field(pattern=r"^[0-9]+(h|d|w|y)$")] = "15d"
    # About 35 MiB for the dev stack's few thousand series (`make bench-stack`);
    # the head block and dashboard queries over the retention grow it, not tenfold.
    prometheus_memory: Annotated[ByteSize, Field(ge=256 * 1024**2)] = ByteSize(512 * 1024**2)
    grafana_memory: Annotated[ByteSize, Field(ge=128 * 1024**2)] = ByteSize(512 * 1024**2)


Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")]
HttpUrl = Annotated[str, Field(pattern=r"^https?://\S+$")]


class Destination(ConfigModel):
    """Where one kind of notification goes: pages (critical alerts, someone is
    woken) or tickets (warnings, looked at in working hours)."""

    email: Email | None = None
    webhook_url: HttpUrl | None = None
    webhook_token: SecretStr | None = None
    slack_channel: Annotated[str, Field(pattern=r"^[#@]?[a-z0-9._-]+$")] | None = None
    slack_webhook_url: SecretStr | None = None

    @property
    def configured(self) -> bool:
        return any(v is not None for v in (self.email, self.webhook_url, self.slack_channel))

    @model_validator(mode="after")
    def _complete(self) -> Destination:
        problems = []
        if self.webhook_token is not None and self.webhook_url is None:
            problems.append("webhookToken: set webhookUrl too")
        if (self.slack_channel is None) != (self.slack_webhook_url is None):
            problems.append("slackChannel: slackChannel and slackWebhookUrl go together")
        if problems:
            raise ValueError("\n".join(problems))
        return self


# Receiver keys that once sat directly under `alerting`, for pages and tickets alike.
MOVED_RECEIVER_KEYS = {
    "webhookUrl": "webhookUrl",
    "webhookToken": "webhookToken",
    "slackChannel": "slackChannel",
    "slackWebhookUrl": "slackWebhookUrl",
    "emailTo": "email",
}


class AlertingConfig(ConfigModel):
    """Objectives and destinations. Pages and tickets go to separate places;
    with neither set, alerts stay visible in Alertmanager and go nowhere else.
    Secrets are set with `pulumi config set --secret --path` and reach
    Alertmanager as files."""

    slo_objective: Annotated[float, Field(ge=0.9, le=0.99999)] = 0.999
    latency_p99_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    """Fewest user requests in a ratio alert's short window (5 minutes for the
    fastest) for its error ratio to count."""
    page: Destination = Destination()
    ticket: Destination = Destination()
    email_from: Email | None = None
    smtp_smarthost: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")] | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    watchdog_url: HttpUrl | None = None
    paging_off_reason: Annotated[str, Field(min_length=10, max_length=200)] | None = None
    """Why a stack on aws pages no one (a staging stack, say): without it, the
    aws target requires a page destination."""
    runbook_url: Annotated[str, Field(pattern=r"^(https?://\S+|docs/runbooks\.md)$")] = RUNBOOKS_DOC
    """Where whoever is paged reads docs/runbooks.md, e.g. its page in the
    repository's web view; each alert links its section there."""

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            moved = [
                f"{old}: pages and tickets go to separate places now; set page.{new} and/or ticket.{new} instead"
                for old, new in MOVED_RECEIVER_KEYS.items()
                if old in data
            ]
            if moved:
                raise ValueError("\n".join(moved))
        return data

    @property
    def notifies(self) -> bool:
        """Whether any notification leaves Alertmanager for a person."""
        return self.page.configured or self.ticket.configured

    @model_validator(mode="after")
    def _complete(self) -> AlertingConfig:
        problems = []
        if (self.email_from is None) != (self.smtp_smarthost is None):
            problems.append("emailFrom: emailFrom and smtpSmarthost go together")
        if self.smtp_username is not None and self.smtp_smarthost is None:
            problems.append("smtpUsername: set smtpSmarthost too")
        if (self.smtp_username is None) != (self.smtp_password is None):
            problems.append("smtpUsername: smtpUsername and smtpPassword go together")
        if self.page.configured and self.paging_off_reason is not None:
            problems.append("pagingOffReason: this stack pages alerting.page; remove the reason")
        if self.notifies and not self.runbook_url.startswith(("https://", "http://")):
            problems.append(
                "runbookUrl: notifications leave this machine, so their runbook links must too: set it to "
                "where docs/runbooks.md is published (its page in the repository's web view)"
            )
        if problems:
            # One line per key: the error message names each of them.
            raise ValueError("\n".join(problems))
        return self


class BackupsConfig(ConfigModel):
    """Scheduled, restore-verified backups; an S3-compatible copy when a bucket is set."""

    schedule: str = "0 3 * * *"
    retention_last: Annotated[int, Field(ge=1, le=1000)] = 7
    retention_daily: Annotated[int, Field(ge=0, le=1000)] = 14
    retention_weekly: Annotated[int, Field(ge=0, le=1000)] = 8
    retention_monthly: Annotated[int, Field(ge=0, le=1000)] = 12
    memory: Annotated[ByteSize, Field(ge=256 * 1024**2)] = ByteSize(1024**3)
    s3_bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")] | None = None
    s3_prefix: str | None = None
    """Defaults to `<app>/<stack>`."""
    s3_endpoint_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    def service_environment(self) -> dict[str, str]:
        """What the backup service reads of this config, whichever target runs it."""
        return {
            "BACKUP_DIR": BACKUP_DIR,
            "BACKUP_SCHEDULE": self.schedule,
            "RETENTION_LAST": str(self.retention_last),
            "RETENTION_DAILY": str(self.retention_daily),
            "RETENTION_WEEKLY": str(self.retention_weekly),
            "RETENTION_MONTHLY": str(self.retention_monthly),
            "METRICS_PORT": str(BACKUP_METRICS_PORT),
        }

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            schedule_period_seconds(value)
        except ValueError as exc:
            raise ValueError(f"not a usable cron expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _credentials(self) -> BackupsConfig:
        problems = []
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            problems.append("s3AccessKeyId: s3AccessKeyId and s3SecretAccessKey go together")
        if self.s3_access_key_id is not None and self.s3_bucket is None:
            problems.append("s3Bucket: credentials are set but no bucket")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class ImagesConfig(ConfigModel):
    """Pinned image references; point them at a private registry mirror per stack.
    The monitoring images match the versions the test suite runs (Debian's
    prometheus 2.42, alertmanager 0.25, postgres_exporter 0.11, redis_exporter 1.45,
    node_exporter 1.5)."""

    postgres: ImageRef = "postgres:15.10-bookworm"
    redis: ImageRef = "redis:7.4.1-bookworm"
    pgadmin: ImageRef = "dpage/pgadmin4:8.14"
    prometheus: ImageRef = "prom/prometheus:v2.42.0"
    alertmanager: ImageRef = "prom/alertmanager:v0.25.0"
    grafana: ImageRef = "grafana/grafana:11.6.0"
    postgres_exporter: ImageRef = "quay.io/prometheuscommunity/postgres-exporter:v0.11.1"
    redis_exporter: ImageRef = "oliver006/redis_exporter:v1.45.0-alpine"
    node_exporter: ImageRef = "prom/node-exporter:v1.5.0"


class DevToolsConfig(ConfigModel):
    enabled: bool = False
    """pgAdmin."""
    s3: bool = False
    """An S3-compatible bucket service the backups copy to, when no backups.s3Bucket is set."""
    pgadmin_port: Port = 5050
    pgadmin_email: Annotated[str, Field(pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")] = (
        "admin@example.com"
    )


# The retention values CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
Region = Annotated[str, Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")]
# Where backups are copied when a stack names no region: the nearest region in
# the same jurisdiction, so data kept in the EU stays in the EU.
COPY_PARTNERS: dict[str, str] = {
    "eu-west-1": "eu-central-1",
    "eu-west-2": "eu-west-1",
    "eu-west-3": "eu-central-1",
    "eu-central-1": "eu-west-1",
    "eu-north-1": "eu-central-1",
    "eu-south-1": "eu-central-1",
    "us-east-1": "us-west-2",
    "us-east-2": "us-west-2",
    "us-west-1": "us-west-2",
    "us-west-2": "us-east-1",
    "ca-central-1": "ca-west-1",
    "ap-southeast-1": "ap-southeast-2",
    "ap-southeast-2": "ap-southeast-1",
    "ap-northeast-1": "ap-northeast-3",
    "ap-northeast-3": "ap-northeast-1",
    "ap-south-1": "ap-south-2",
}
_TAG_VALUE = r"^[A-Za-z0-9 _.:/=+@-]{1,256}$"


def _one_of(known: Collection[str]) -> Any:
    def check(value: str) -> str:
        if value not in known:
            raise ValueError(f"not a known size; one of: {', '.join(known)}")
        return value

    return AfterValidator(check)


class AwsConfig(ConfigModel):
    """The `aws` target: sizes, counts and retention; everything else is fixed by the platform."""

    region: Region = "eu-west-1"
    az_count: Annotated[int, Field(ge=2, le=6)] = 3
    vpc_cidr: IPv4Network = IPv4Network("10.40.0.0/16")
    single_nat_gateway: bool = False
    """One NAT gateway for every AZ: cheaper, and one AZ's outage cuts the others' egress."""
    interface_endpoints: bool = True
    """Private endpoints for ECR, CloudWatch Logs, Secrets Manager, AMP and STS; without
    them that traffic leaves through NAT (the S3 gateway endpoint is free and always there)."""
    owner: Annotated[str, Field(pattern=_TAG_VALUE)] = "platform-team"
    cost_center: Annotated[str, Field(pattern=_TAG_VALUE)] = "wondernest"
    db_instance_class: Annotated[str, _one_of(RDS_CLASSES)] = "db.m6g.large"
    db_allocated_storage_gb: Annotated[int, Field(ge=20, le=65536)] = 100
    db_max_allocated_storage_gb: Annotated[int, Field(ge=20, le=65536)] = 500
    db_multi_az: bool = True
    db_backup_retention_days: Annotated[int, Field(ge=14, le=35)] = 14
    db_read_replicas: Annotated[int, Field(ge=0, le=5)] = 0
    """Read replicas of the database, each in the next AZ; the API reads from
    them through its read pool (DB_READ_HOSTS)."""
    db_replica_instance_class: Annotated[str, _one_of(RDS_CLASSES)] | None = None
    """The replicas' class; unset, the primary's."""
    db_admin_host: str | None = None
    """Where `pulumi up` reaches the database as its admin: unset means the RDS
    endpoint itself (a runner inside the VPC); `127.0.0.1` with an SSM port-forward."""
    db_admin_port: Port = 5432
    admin_bastion: bool = False
    """An SSM-only host the admin connection can be tunnelled through (docs/aws.md, "Reaching the database")."""
    cache_node_type: Annotated[str, _one_of(CACHE_NODE_TYPES)] = "cache.m6g.large"
    cache_replicas: Annotated[int, Field(ge=1, le=5)] = 1
    cache_snapshot_retention_days: Annotated[int, Field(ge=7, le=35)] = 7
    """At least a week: a cache lost to a bad deploy on a Friday is still in a snapshot on Monday."""
    api_cpu: Literal[256, 512, 1024, 2048, 4096] = 512
    api_memory_mib: int = 1024
    api_desired_count: Annotated[int, Field(ge=2, le=100)] = 2
    api_min_count: Annotated[int, Field(ge=2, le=100)] = 2
    api_max_count: Annotated[int, Field(ge=2, le=100)] = 10
    api_cpu_target_percent: Annotated[int, Field(ge=20, le=90)] = 60
    api_requests_per_target: Annotated[int, Field(ge=10, le=100_000)] = 1000
    domain_name: Annotated[str, Field(pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$")] | None = None
    certificate_arn: (
        Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]{36}$")] | None
    ) = None
    hosted_zone_id: Annotated[str, Field(pattern=r"^Z[A-Z0-9]{1,31}$")] | None = None
    """A Route 53 public hosted zone holding domainName: the stack then makes
    the DNS-validated certificate and the alias record itself (no certificateArn)."""
    email_hosted_zone_id: Annotated[str, Field(pattern=r"^Z[A-Z0-9]{1,31}$")] | None = None
    """A Route 53 public hosted zone holding the domain of app.awsServices.email.sender:
    the stack writes its DKIM records there; unset, they are the output emailDkimRecords."""
    log_retention_days: int = 90
    backup_copy_region: Region | None = None
    """A second region AWS Backup copies every recovery point to, and the
    dumps bucket replicates to; unset, the region's partner in
    COPY_PARTNERS (same jurisdiction)."""
    backup_copy_off_reason: Annotated[str, Field(min_length=10, max_length=200)] | None = None
    """Why this stack keeps its backups in one region: the only way to have no copy."""
    backup_vault_lock_min_days: Annotated[int, Field(ge=7, le=36500)] = 7
    """No recovery point leaves the vault younger than this, whoever asks: a lock of a day protects nothing."""
    waf_rate_limit: Annotated[int, Field(ge=100, le=2_000_000_000)] = 2000
    """Requests one client address may send in five minutes before the web ACL blocks it."""
    waf_auth_rate_limit: Annotated[int, Field(ge=100, le=2_000_000_000)] = 300
    """The same for /auth/, where every request costs a password hash."""
    secret_rotation_days: Annotated[int, Field(ge=2, le=365)] = 30
    """Days between rotations of each Postgres role's password; services are
    redeployed every half period so no task holds credentials that expire."""

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "alertEmail" in data:
            raise ValueError(
                "alertEmail: pages and tickets go to separate topics now; "
                "set alerting.page.email and/or alerting.ticket.email instead"
            )
        return data

    @property
    def copy_region(self) -> str | None:
        """Where the off-region copies go: the one set, else the region's partner; None only with a reason."""
        if self.backup_copy_off_reason is not None:
            return None
        return self.backup_copy_region or COPY_PARTNERS.get(self.region)

    @property
    def replica_class(self) -> str:
        return self.db_replica_instance_class or self.db_instance_class

    @field_validator("log_retention_days")
    @classmethod
    def _log_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs accepts one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_size(cls, value: IPv4Network) -> IPv4Network:
        if not 16 <= value.prefixlen <= 20 or not value.is_private:
            raise ValueError("a private range from /16 to /20")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AwsConfig:
        problems = []
        if self.api_memory_mib not in FARGATE_MEMORY_MIB[self.api_cpu]:
            allowed = FARGATE_MEMORY_MIB[self.api_cpu]
            problems.append(
                f"apiMemoryMib: Fargate with apiCpu {self.api_cpu} takes {allowed[0]} to {allowed[-1]} MiB "
                f"in steps of {allowed[1] - allowed[0]}"
            )
        if not self.api_min_count <= self.api_desired_count <= self.api_max_count:
            problems.append("apiDesiredCount: must lie between apiMinCount and apiMaxCount")
        if self.db_max_allocated_storage_gb < self.db_allocated_storage_gb:
            problems.append("dbMaxAllocatedStorageGb: must be at least dbAllocatedStorageGb")
        if self.hosted_zone_id is not None and self.certificate_arn is not None:
            problems.append(
                "hostedZoneId: the stack makes the certificate in the hosted zone; remove certificateArn, or the zone"
            )
        elif self.hosted_zone_id is not None and self.domain_name is None:
            problems.append("hostedZoneId: needs domainName, the name the certificate and the alias record are for")
        elif self.hosted_zone_id is None and (self.domain_name is None) != (self.certificate_arn is None):
            problems.append(
                "domainName: domainName goes with certificateArn, or with hostedZoneId "
                "for a certificate the stack makes"
            )
        if self.backup_copy_region == self.region:
            problems.append("backupCopyRegion: must differ from region")
        if self.backup_copy_region is not None and self.backup_copy_off_reason is not None:
            problems.append("backupCopyOffReason: this stack copies to backupCopyRegion; remove one of the two")
        if self.backup_copy_region is None and self.backup_copy_off_reason is None and self.region not in COPY_PARTNERS:
            problems.append(
                f"backupCopyRegion: backups are copied to a second region, and {self.region} has no default "
                "partner; set one, or say why this stack keeps one region in backupCopyOffReason"
            )
        if self.db_replica_instance_class is not None and not self.db_read_replicas:
            problems.append("dbReplicaInstanceClass: set dbReadReplicas too")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class PlatformConfig(ConfigModel):
    app_name: Annotated[str, AfterValidator(_app_name)] = "wondernest"
    """Lower-case letters and digits: it prefixes Docker names and Postgres roles alike."""
    target: Literal["docker", "aws"]
    network: NetworkConfig = NetworkConfig()
    postgres: PostgresConfig = PostgresConfig()
    redis: RedisConfig = RedisConfig()
    api: ApiConfig = ApiConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    alerting: AlertingConfig = AlertingConfig()
    backups: BackupsConfig = BackupsConfig()
    images: ImagesConfig = ImagesConfig()
    dev_tools: DevToolsConfig = DevToolsConfig()
    aws: AwsConfig = AwsConfig()
    app: AppConfig = AppConfig()
    app_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    """The values of the app's `externalSecrets`, each set with
    `pulumi config set --secret --path 'appSecrets.<name>' <value>`."""

    @model_validator(mode="after")
    def _app_contract(self) -> PlatformConfig:
        problems = self._app_secret_problems()
        if self.app.bundled:
            missing = [name for name in REQUIRED_SCHEMAS if name not in self.postgres.schemas]
            if missing:
                problems.append(f"postgres.schemas: the bundled API's migrations need {' and '.join(missing)}")
            for name in sorted(set(self.app.environment) & set(bundled_settings(self))):
                problems.append(
                    f"app.environment.{name}: the bundled API's setting, made from the api section "
                    f"({BUNDLED_SETTING_KEYS[name]}) and checked there; set it there"
                )
        else:
            for key in _set_keys(self, BUNDLED_API_ONLY):
                problems.append(
                    f"{key}: a setting of the bundled API, which this stack does not run; "
                    "give your app its settings in app.environment"
                )
        if self.target == "aws":
            if self.app.readiness_path is None:
                problems.append(
                    "app.readinessPath: what make verify and an operator check on AWS, where the database is "
                    "out of reach from outside; give the path that answers 200 when the app's dependencies do"
                )
            taken = {port: f"{what}, in the same task" for port, what in COLLECTOR_PORTS.items()}
            ports = {"app.port": self.app.port}
            if self.app.metrics is not None:
                ports["app.metrics.port"] = self.app.metrics.port
            for key, port in ports.items():
                if port in taken:
                    problems.append(f"{key}: {port} is {taken[port]}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _app_secret_problems(self) -> list[str]:
        declared = self.app.external_secrets
        problems = [
            f"appSecrets.{name}: not set; pulumi config set --secret --path 'appSecrets.{name}' <value>"
            for name in declared
            if name not in self.app_secrets
        ]
        for name, value in sorted(self.app_secrets.items()):
            if name not in declared:
                problems.append(f"appSecrets.{name}: no secret of app.externalSecrets; remove it or declare it there")
            elif not value.get_secret_value().strip():
                problems.append(f"appSecrets.{name}: empty")
            elif value.get_secret_value() != value.get_secret_value().strip():
                problems.append(
                    f"appSecrets.{name}: begins or ends with white space (a newline pasted with it?); "
                    "set it again without"
                )
        return problems

    @model_validator(mode="after")
    def _target_sections(self) -> PlatformConfig:
        problems = []
        if self.target == "docker" and "aws" in self.model_fields_set:
            problems.append("aws: only read by target 'aws'; remove it or set target: aws")
        emails = self.alerting.page.email is not None or self.alerting.ticket.email is not None
        if self.target == "docker" and emails and self.alerting.smtp_smarthost is None:
            problems.append(
                "alerting.smtpSmarthost: Alertmanager sends page.email and ticket.email through it; "
                "set it and alerting.emailFrom"
            )
        if self.target == "aws":
            if self.dev_tools.enabled or self.dev_tools.s3:
                problems.append("devTools: local tools only; not available with target 'aws'")
            for key in _set_keys(self, LOCAL_ONLY):
                problems.append(f"{key}: has no effect with target 'aws'; remove it (docs/aws.md)")
            if self.backups.s3_bucket is not None:
                problems.append("backups.s3Bucket: the aws target creates and owns its backup bucket")
            if self.aws.email_hosted_zone_id is not None and self.app.aws_services.email is None:
                problems.append(
                    "aws.emailHostedZoneId: holds the DKIM records of app.awsServices.email, which is unset"
                )
            for key in _set_keys(self, AMP_UNSUPPORTED_RECEIVERS):
                problems.append(
                    f"{key}: Managed Prometheus notifies only through SNS; on aws a destination is "
                    "an email or an HTTPS webhook SNS delivers to (page.email, page.webhookUrl, ...)"
                )
            for kind in ("page", "ticket"):
                url = getattr(self.alerting, kind).webhook_url
                if url is not None and not url.startswith("https://"):
                    problems.append(f"alerting.{kind}.webhookUrl: SNS delivers only to https:// endpoints")
            if not self.alerting.page.configured and self.alerting.paging_off_reason is None:
                problems.append(
                    "alerting.page: a production stack must page someone: set alerting.page.email "
                    "(or alerting.page.webhookUrl, an HTTPS endpoint such as an incident tool's SNS integration), "
                    "or say why this stack pages no one in alerting.pagingOffReason"
                )
            classes = {"dbInstanceClass": self.aws.db_instance_class}
            if self.aws.db_read_replicas:
                classes["dbReplicaInstanceClass"] = self.aws.replica_class
            for key, instance_class in classes.items():
                if instance_class not in RDS_CLASSES:
                    continue
                try:
                    # A replica needs at least the primary's max_connections to replay its WAL.
                    tune(RDS_CLASSES[instance_class], self.postgres.max_connections)
                except TuningError as exc:
                    problems.append(f"postgres.maxConnections: with aws.{key} {instance_class}: {exc}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def published_ports(self) -> dict[str, int]:
        """The host ports the docker target publishes, by config key."""
        published = {
            "api.hostPort": self.api.host_port,
            "monitoring.prometheusPort": self.monitoring.prometheus_port,
            "monitoring.grafanaPort": self.monitoring.grafana_port,
            "postgres.hostPort": self.postgres.host_port,
            "redis.hostPort": self.redis.host_port,
        }
        if self.dev_tools.enabled:
            published["devTools.pgadminPort"] = self.dev_tools.pgadmin_port
        return published

    @model_validator(mode="after")
    def _check_ports(self) -> PlatformConfig:
        seen: dict[int, str] = {}
        for key, port in self.published_ports().items():
            if port in seen:
                raise ValueError(f"{key}: port already published by {seen[port]}")
            seen[port] = key
        return self


# The bundled API's own settings: another app gets its settings from app.environment.
# Variable → the config key it comes from (bundled_settings makes the values).
BUNDLED_SETTING_KEYS = {
    "DB_POOL_MAX": "api.dbPoolMax",
    "CORS_ALLOWED_ORIGINS": "api.corsAllowedOrigins",
    "LOG_LEVEL": "api.logLevel",
}
BUNDLED_API_ONLY = tuple(BUNDLED_SETTING_KEYS.values())
# Keys only the docker target reads: on aws, sizes come from instance classes and
# Fargate task sizes, and nothing is published on a host port.
LOCAL_ONLY = (
    "network",
    "postgres.hostPort",
    "postgres.memory",
    "redis.hostPort",
    "redis.maxMemory",
    "api.hostPort",
    "api.memory",
    "api.cpus",
    "monitoring",
    "images.postgres",
    "images.redis",
    "images.pgadmin",
    "images.prometheus",
    "images.alertmanager",
    "images.grafana",
    "images.nodeExporter",
    # The aws target's bucket is its own (backups.s3Bucket is refused with its own message).
    "backups.s3Prefix",
    "backups.s3EndpointUrl",
    "backups.s3Region",
    "backups.s3AccessKeyId",
    "backups.s3SecretAccessKey",
)
AMP_UNSUPPORTED_RECEIVERS = tuple(
    f"alerting.{key}"
    for key in (
        "page.webhookToken", "page.slackChannel", "page.slackWebhookUrl",
        "ticket.webhookToken", "ticket.slackChannel", "ticket.slackWebhookUrl",
        "emailFrom", "smtpSmarthost", "smtpUsername", "smtpPassword", "watchdogUrl",
    )
)  # fmt: skip


def _set_keys(model: BaseModel, dotted: Iterable[str]) -> list[str]:
    """Those of the keys (camelCase paths) that the stack config set explicitly."""
    found = []
    for key in dotted:
        node: Any = model
        parts = key.split(".")
        for i, part in enumerate(parts):
            name = next((n for n, f in type(node).model_fields.items() if (f.alias or n) == part), None)
            if name is None or name not in node.model_fields_set:
                break
            if i == len(parts) - 1:
                found.append(key)
            node = getattr(node, name)
    return found


def bundled_settings(cfg: PlatformConfig) -> dict[str, str]:
    """The bundled API's own settings from the `api` section; another app has
    only its `app.environment`."""
    if not cfg.app.bundled:
        return {}
    # The keys are BUNDLED_SETTING_KEYS'.
    return {
        "DB_POOL_MAX": str(cfg.api.db_pool_max),
        "CORS_ALLOWED_ORIGINS": ",".join(cfg.api.cors_allowed_origins),
        "LOG_LEVEL": cfg.api.log_level,
    }


def alert_thresholds(cfg: PlatformConfig, database: str) -> AlertThresholds:
    """The alert rules' parameters, the same for every target."""
    return AlertThresholds(
        slo_objective=cfg.alerting.slo_objective,
        latency_p99_seconds=cfg.alerting.latency_p99_seconds,
        runbook_url=cfg.alerting.runbook_url,
        min_requests=cfg.alerting.min_requests,
        database=database,
        app_metrics=cfg.app.metrics is not None,
        backup_max_age_seconds=max_backup_age_seconds(cfg.backups.schedule),
    )


class ConfigError(Exception):
    """Every problem in a stack's config, in one message."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"invalid stack configuration ({len(problems)} problem{'s' if len(problems) != 1 else ''}):\n{lines}"
        )


def parse_config(
    raw: Mapping[str, Any],
    secret_keys: Iterable[str] = (),
    namespace: str = NAMESPACE,
    strays: Iterable[str] = (),
    *,
    stack: str | None = None,
    root: Path | None = None,
) -> PlatformConfig:
    """Validate the project's keys (namespace already stripped) into the model;
    `strays` are problems already found (keys in a namespace nobody reads). With
    the `stack` name, an AWS stack's physical names are held to AWS's limits."""
    secrets = set(secret_keys)
    problems = list(strays)
    if f"{namespace}:app" in secrets:
        problems.append(
            f"{namespace}:app: holds a value set with --secret, which the app would receive in plain text "
            "(an environment variable, a task definition); the app's secrets come from the platform through "
            "app.platformEnvironment"
        )
    if raw.get("appSecrets") and f"{namespace}:appSecrets" not in secrets:
        problems.append(
            f"{namespace}:appSecrets: set without --secret, so the stack file holds it in plain text; set each "
            "value again with pulumi config set --secret --path 'appSecrets.<name>' <value>"
        )
    try:
        cfg = PlatformConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems += [p for err in exc.errors() for p in _describe(err, secrets, namespace)]
    else:
        if root is not None:
            problems += [f"{namespace}:{p}" for p in build_problems(cfg.app, root)]
        if stack is not None and cfg.target == "aws":
            problems += [
                f"{namespace}:appName = {cfg.app_name!r} with the stack name {stack!r}: {problem}"
                for problem in aws_name_problems(Names(cfg.app_name, stack))
            ]
    if problems:
        raise ConfigError(problems)
    return cfg


def build_problems(app: AppConfig, root: Path) -> list[str]:
    """An app's build read from the project on disk: its context a directory of
    the project (not the project itself, whose .git, venv and stack files would
    go to Docker), its Dockerfile a file inside that context."""
    if app.build is None:
        return []
    project = root.resolve()
    context = (root / app.build.context).resolve()
    given = f"app.build.context = {app.build.context!r}"
    if context == project:
        return [f"{given}: the whole project would be hashed and sent to Docker; give the app's own directory"]
    if not context.is_relative_to(project):
        return [f"{given}: resolves to {context}, outside the project"]
    if not context.is_dir():
        return [f"{given}: no such directory in the project"]
    dockerfile = (context / app.build.dockerfile).resolve()
    if not dockerfile.is_relative_to(context) or not dockerfile.is_file():
        return [f"app.build.dockerfile = {app.build.dockerfile!r}: no such file in {app.build.context}"]
    return []


def project_keys(config: Mapping[str, Any], namespace: str) -> tuple[dict[str, Any], list[str]]:
    """The project's keys with the namespace stripped, and a problem for each key
    in a namespace that neither this project nor one of its providers reads (a
    stack file copied from a project of another name, or a typo)."""
    mine: dict[str, Any] = {}
    strays: list[str] = []
    for key, value in config.items():
        space, _, name = str(key).partition(":")
        if space == namespace:
            mine[name] = value
        elif space not in PROVIDER_NAMESPACES:
            strays.append(
                f"{key}: '{space}' is neither this project's namespace nor a provider's; "
                f"the project is '{namespace}' (Pulumi.yaml), so the key is {namespace}:{name}"
            )
    return mine, strays


def project_name(root: Path) -> str:
    """The `name:` of the project file in `root`, without the Pulumi CLI."""
    path = root / "Pulumi.yaml"
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: cannot read the project's name ({exc})"]) from None
    name = document.get("name") if isinstance(document, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigError([f"{path}: no project `name:`"])
    return name


def parse_raw_value(value: Any) -> Any:
    """Pulumi hands structured config to the program as JSON text, scalars as text."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _describe(err: ErrorDetails, secret_keys: set[str], namespace: str) -> list[str]:
    loc = [str(part) for part in err["loc"]]
    path = f"{namespace}:{'.'.join(loc)}" if loc else namespace
    secret = bool(loc) and (f"{namespace}:{loc[0]}" in secret_keys or _is_secret_field(loc))
    shown = "[secret]" if secret else _show(err.get("input"))
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(
            _field_model(loc[:-1]).model_fields[n].alias or n for n in _field_model(loc[:-1]).model_fields
        )
        return [f"{path} = {shown}: unknown key; allowed here: {allowed}"]
    if err["type"] == "missing":
        return [f"{path}: required and not set"]
    # pydantic prefixes messages raised inside validators; the rest of the
    # message already says what is wrong and what is allowed.
    message = err["msg"].removeprefix("Value error, ")
    data = err.get("input")
    keyed = [_KEYED.match(line) for line in message.split("\n")]
    if isinstance(data, dict) and keyed and all(keyed):
        # A check across several fields names each key it blames; report those keys.
        problems = []
        for match in keyed:
            assert match is not None
            key_path = [*loc, *match["key"].split(".")]
            blamed = f"{namespace}:{'.'.join(key_path)}"
            top_secret = bool(key_path) and f"{namespace}:{key_path[0]}" in secret_keys
            value = "[secret]" if top_secret or _is_secret_field(key_path) else _lookup(data, match["key"].split("."))
            problems.append(f"{blamed} = {value}: {match['msg']}")
        return problems
    return [f"{path} = {shown}: {message}"]


_KEYED = re.compile(r"^(?P<key>[a-zA-Z][a-zA-Z0-9._-]*): (?P<msg>.+)$")


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


def _field_model(path: list[str]) -> type[BaseModel]:
    """The model that holds the keys under `path` (aliases, as in the YAML)."""
    model: type[BaseModel] = PlatformConfig
    for part in path:
        for name, field in model.model_fields.items():
            if (field.alias or name) == part:
                annotation = field.annotation
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    model = annotation
                break
    return model


def _is_secret_field(path: list[str]) -> bool:
    """A SecretStr field's value is never echoed, even when set without --secret."""
    if not path:
        return False
    # An app's plain settings are never echoed: a secret put there by mistake
    # is refused, and its refusal must not print it.
    if path[:2] == ["app", "environment"] or path[0] == "appSecrets":
        return True
    model = _field_model(path[:-1])
    for name, field in model.model_fields.items():
        if (field.alias or name) == path[-1]:
            return "SecretStr" in str(field.annotation)
    return False
