"""RDS PostgreSQL 15 in the isolated subnets, tuned by the same function as the
container, with the roles, schemas and grants the local target applies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.iam import service_role
from components.aws.network import POSTGRES_PORT, Network
from components.aws.rotation import CredentialRotation, RotationArgs
from components.aws.secrets import Secrets
from components.model import postgres_conf
from components.model.database import DatabaseSpec
from components.model.naming import Names
from components.postgres.objects import DatabaseObjects, declare_database_objects
from components.postgres.resources import AdminConnection

ENGINE_VERSION = "15"
PARAMETER_FAMILY = "postgres15"
BACKUP_WINDOW = "02:00-02:30"
MAINTENANCE_WINDOW = "sun:03:30-sun:04:30"


@dataclass(frozen=True)
class DatabaseArgs:
    names: Names
    spec: DatabaseSpec
    tuning: postgres_conf.PostgresTuning
    slow_query_ms: int
    instance_class: str
    read_replicas: int
    replica_class: str
    replica_tuning: postgres_conf.PostgresTuning
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    multi_az: bool
    backup_retention_days: int
    admin_host: str | None
    admin_port: int
    rotation_days: int
    region: str
    network: Network
    secrets: Secrets


class Database(pulumi.ComponentResource):
    instance: aws.rds.Instance
    replicas: list[aws.rds.Instance]
    reader_hosts: pulumi.Output[str] | None
    """The replicas as libpq's multi-host list (`host:port,host:port`), or None without replicas."""
    objects: DatabaseObjects
    master_secret_arn: pulumi.Output[str]
    ready: list[pulumi.Resource]
    """Roles, schemas, grants and the roles' credentials: what a task needs first."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:Database", name, None, opts)
        names, spec = args.names, args.spec
        child = pulumi.ResourceOptions(parent=self)
        subnets = aws.rds.SubnetGroup(
            "subnets",
            name=names.resource("postgres"),
            description="Isolated subnets: no route out of the VPC",
            subnet_ids=args.network.subnet_ids("isolated"),
            opts=child,
        )
        parameters = self._parameter_group(
            "parameters", "postgres15", "Rendered from the platform's PostgreSQL tuning", args.tuning, args
        )
        monitoring_role = service_role(
            "enhanced-monitoring",
            service="monitoring.rds.amazonaws.com",
            description="RDS enhanced monitoring",
            managed_policy_arns=["arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"],
            parent=self,
        )
        key_arn = args.secrets.key.arn
        self.instance = aws.rds.Instance(
            "postgres",
            identifier=names.resource("postgres"),
            engine="postgres",
            engine_version=ENGINE_VERSION,
            instance_class=args.instance_class,
            db_name=spec.name,
            username=spec.admin_role,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=key_arn,
            db_subnet_group_name=subnets.name,
            parameter_group_name=parameters.name,
            multi_az=args.multi_az,
            allocated_storage=args.allocated_storage_gb,
            backup_retention_period=args.backup_retention_days,
            backup_window=BACKUP_WINDOW,
            delete_automated_backups=False,
            deletion_protection=True,
            skip_final_snapshot=False,
            final_snapshot_identifier=names.resource("postgres-final"),
            allow_major_version_upgrade=False,
            **self._hardened(args, monitoring_role.arn),
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.replicas = self._replicas(args, parameters, monitoring_role.arn)
        self.reader_hosts = (
            pulumi.Output.all(*(replica.address for replica in self.replicas)).apply(
                lambda hosts: ",".join(f"{host}:{POSTGRES_PORT}" for host in hosts)
            )
            if self.replicas
            else None
        )
        self.master_secret_arn = self.instance.master_user_secrets.apply(lambda s: str(s[0].secret_arn))
        admin = AdminConnection(
            host=args.admin_host if args.admin_host is not None else self.instance.address,
            port=args.admin_port,
            user=spec.admin_role,
            # The managed secret by its ARN, read when the provider connects:
            # the weekly rotation of the master password changes no input.
            password=None,
            password_secret=(self.master_secret_arn, args.region),
            database=spec.name,
            # rds.force_ssl refuses anything else; the tunnel's 127.0.0.1 does
            # not match the certificate's name, so the chain is not pinned here.
            sslmode="require",
        )
        self.objects = declare_database_objects(
            spec,
            password_for=args.secrets.role_password,
            connection=admin,
            parent=self,
            depends_on=[self.instance],
        )
        rotation = CredentialRotation(
            "rotation",
            RotationArgs(
                names=names,
                region=args.region,
                spec=spec,
                roles=self.objects.roles,
                host=self.instance.address,
                port=POSTGRES_PORT,
                master_secret_arn=self.master_secret_arn,
                rotation_days=args.rotation_days,
                network=args.network,
                secrets=args.secrets,
            ),
            opts=child,
        )
        self.ready = [*self.objects.all, *rotation.ready]
        self.port = POSTGRES_PORT
        self.endpoint = pulumi.Output.concat(self.instance.address, ":", str(POSTGRES_PORT))
        self.register_outputs(
            {"endpoint": self.endpoint, "masterSecretArn": self.master_secret_arn, "readerHosts": self.reader_hosts}
        )

    @staticmethod
    def _hardened(args: DatabaseArgs, monitoring_role_arn: pulumi.Input[str]) -> dict[str, Any]:
        """What the primary and its replicas share: private, encrypted under the
        stack's key, TLS to a current CA, IAM auth, logs, insights and monitoring."""
        key_arn = args.secrets.key.arn
        return {
            "port": POSTGRES_PORT,
            "vpc_security_group_ids": [args.network.security_groups.postgres.id],
            "publicly_accessible": False,
            "storage_type": "gp3",
            "max_allocated_storage": args.max_allocated_storage_gb,
            "storage_encrypted": True,
            "kms_key_id": key_arn,
            "ca_cert_identifier": "rds-ca-rsa2048-g1",
            "iam_database_authentication_enabled": True,
            "maintenance_window": MAINTENANCE_WINDOW,
            "copy_tags_to_snapshot": True,
            "performance_insights_enabled": True,
            "performance_insights_kms_key_id": key_arn,
            "performance_insights_retention_period": 7,
            "monitoring_interval": 30,
            "monitoring_role_arn": monitoring_role_arn,
            "enabled_cloudwatch_logs_exports": ["postgresql", "upgrade"],
            "auto_minor_version_upgrade": True,
            # Parameter and class changes wait for the maintenance window, so a
            # reviewed `pulumi up` never restarts the database mid-day.
            "apply_immediately": False,
        }

    def _parameter_group(
        self, resource_name: str, name: str, description: str, tuning: postgres_conf.PostgresTuning, args: DatabaseArgs
    ) -> aws.rds.ParameterGroup:
        return aws.rds.ParameterGroup(
            resource_name,
            name=args.names.resource(name),
            family=PARAMETER_FAMILY,
            description=description,
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name=p.name, value=p.value, apply_method=p.apply_method)
                for p in postgres_conf.rds_parameters(tuning, slow_query_ms=args.slow_query_ms)
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _replicas(
        self, args: DatabaseArgs, parameters: aws.rds.ParameterGroup, monitoring_role_arn: pulumi.Output[str]
    ) -> list[aws.rds.Instance]:
        """Streaming replicas of the primary. Their roles, grants and passwords
        are the primary's (replayed), so rotation and the provider need nothing
        more. They hold no data of their own: no backups, no final snapshot and
        no deletion protection, so lowering the count removes one."""
        if not args.read_replicas:
            return []
        names = args.names
        if args.replica_tuning != args.tuning:
            # Tuned for the replicas' own memory, with the primary's
            # max_connections, which a hot standby needs at least.
            parameters = self._parameter_group(
                "replica-parameters",
                "postgres15-replica",
                "Rendered from the platform's PostgreSQL tuning for the replicas' class",
                args.replica_tuning,
                args,
            )
        return [
            aws.rds.Instance(
                f"postgres-replica-{n}",
                identifier=names.resource(f"postgres-replica-{n}"),
                # Same region: the engine, version, storage size and subnet
                # group are the source's, and RDS refuses a subnet group here.
                replicate_source_db=self.instance.identifier,
                instance_class=args.replica_class,
                parameter_group_name=parameters.name,
                backup_retention_period=0,
                deletion_protection=False,
                skip_final_snapshot=True,
                **self._hardened(args, monitoring_role_arn),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for n in range(1, args.read_replicas + 1)
        ]
