"""Backups on AWS, two independent lines:

- AWS Backup: RDS snapshots daily/weekly/monthly (plus continuous backup for
  point-in-time restore) into a KMS-encrypted, locked vault, optionally copied
  to a second region.
- Logical dumps: the same backup service as the dev stack, verifying every dump
  by restoring it, pruning by the same retention, and copying it to a versioned
  SSE-KMS bucket; its metrics reach the workspace through its sidecar, so the
  same BackupTooOld/BackupFailed rules apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.buckets import abort_uploads, expire_noncurrent, private_bucket
from components.aws.iam import service_role
from components.aws.monitoring import collector, remote_write_role
from components.aws.network import Network
from components.aws.registry import ecr_image
from components.aws.secrets import Secrets
from components.aws.tasks import Container, HealthCheck, execution_role, log_group, task_definition
from components.aws_sizes import fargate_memory_mib
from components.config import BackupsConfig
from components.local.api import API_UID
from components.local.backups import BUILD_INPUTS
from components.local.containers import python_probe_command
from components.spec.backups import BACKUP_DIR, METRICS_PORT
from components.spec.naming import Names

BACKUP_POLICY = "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
RESTORE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores"
# (rule, cron in UTC, days kept): the weekly and monthly snapshots reach back a
# year; the daily rule's retention is the database's point-in-time window.
SNAPSHOT_RULES: tuple[tuple[str, str, int], ...] = (
    ("weekly", "cron(0 5 ? * SUN *)", 90),
    ("monthly", "cron(0 6 1 * ? *)", 365),
)
DAILY = "cron(0 4 * * ? *)"
# The dumps and the throwaway server that restores them share the task's storage
# (20 GiB unless asked, 200 at most): room for two copies of the database.
MAX_EPHEMERAL_GIB = 200
BACKUP_CPU = 512


@dataclass(frozen=True)
class BackupsArgs:
    names: Names
    region: str
    config: BackupsConfig
    copy_region: str | None
    pitr_days: int
    """The daily rule's continuous backup: the RDS instance's own retention, so the two never disagree."""
    vault_lock_min_days: int
    db_storage_gb: int
    log_retention_days: int
    database: str
    backup_role: str
    postgres_host: pulumi.Output[str]
    postgres_port: int
    db_instance_arn: pulumi.Output[str]
    cluster: aws.ecs.Cluster
    network: Network
    secrets: Secrets
    remote_write_url: pulumi.Output[str]
    workspace_arn: pulumi.Output[str]
    default_tags: dict[str, str]
    depends_on: tuple[pulumi.Resource, ...]


class Backups(pulumi.ComponentResource):
    vault: aws.backup.Vault
    bucket: aws.s3.Bucket

    def __init__(self, name: str, args: BackupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:Backups", name, None, opts)
        names, cfg = args.names, args.config
        child = pulumi.ResourceOptions(parent=self)
        key_arn = args.secrets.key.arn

        # --- AWS Backup --------------------------------------------------------------
        self.vault = aws.backup.Vault(
            "vault", name=names.resource("vault"), kms_key_arn=key_arn, force_destroy=False, opts=child
        )
        aws.backup.VaultLockConfiguration(
            "vault-lock",
            backup_vault_name=self.vault.name,
            min_retention_days=args.vault_lock_min_days,
            max_retention_days=max(days for _, _, days in SNAPSHOT_RULES),
            # Governance mode (no changeable_for_days): an administrator can still
            # lift the lock. changeable_for_days would make it compliance mode,
            # which nobody, AWS included, can undo once that many days pass.
            opts=pulumi.ResourceOptions(parent=self.vault),
        )
        copy_vault_arn: pulumi.Output[str] | None = None
        if args.copy_region is not None:
            copy_vault_arn = self._copy_vault(names, args.copy_region, args.default_tags)
        plan = aws.backup.Plan(
            "plan",
            name=names.resource("rds"),
            rules=[
                aws.backup.PlanRuleArgs(
                    rule_name=rule,
                    target_vault_name=self.vault.name,
                    schedule=cron,
                    schedule_expression_timezone="Etc/UTC",
                    start_window=60,
                    completion_window=360,
                    enable_continuous_backup=rule == "daily",
                    lifecycle=aws.backup.PlanRuleLifecycleArgs(delete_after=days),
                    recovery_point_tags={"backup-rule": rule},
                    copy_actions=(
                        [
                            aws.backup.PlanRuleCopyActionArgs(
                                destination_vault_arn=copy_vault_arn,
                                lifecycle=aws.backup.PlanRuleCopyActionLifecycleArgs(delete_after=days),
                            )
                        ]
                        if copy_vault_arn is not None
                        else []
                    ),
                )
                for rule, cron, days in (("daily", DAILY, args.pitr_days), *SNAPSHOT_RULES)
            ],
            opts=child,
        )
        role = service_role(
            "backup-role",
            service="backup.amazonaws.com",
            description="AWS Backup: snapshot and restore the platform's database",
            managed_policy_arns=[BACKUP_POLICY, RESTORE_POLICY],
            parent=self,
        )
        aws.backup.Selection(
            "selection",
            name=names.resource("postgres"),
            plan_id=plan.id,
            iam_role_arn=role.arn,
            resources=[args.db_instance_arn],
            opts=pulumi.ResourceOptions(parent=plan),
        )

        # --- logical dumps, verified by restore --------------------------------------
        months = max(cfg.retention_monthly, 1)
        dumps = private_bucket(
            "dumps",
            bucket_name=pulumi.Output.concat(names.resource("backups"), "-", args.secrets.account_id),
            kms_key_arn=key_arn,
            lifecycle=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="cold-then-expire",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    transitions=[
                        aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(days=30, storage_class="GLACIER_IR")
                    ],
                    # The service prunes by its retention policy; this is the
                    # backstop for copies it no longer knows of after a restart.
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=31 * months + 31),
                    noncurrent_version_expiration=expire_noncurrent(30),
                    abort_incomplete_multipart_upload=abort_uploads(),
                )
            ],
            parent=self,
        )
        self.bucket = dumps.bucket
        image = ecr_image("backup", names, target="backup", inputs=BUILD_INPUTS, kms_key_arn=key_arn, parent=self)
        password_arn = args.secrets.arns["postgres-backup"]
        env: dict[str, pulumi.Input[str]] = {
            "DB_HOST": args.postgres_host,
            "DB_PORT": str(args.postgres_port),
            "DB_NAME": args.database,
            "DB_USER": args.backup_role,
            "DB_SSLMODE": "require",
            **cfg.service_environment(),
            "S3_BUCKET": self.bucket.bucket,
            "S3_PREFIX": f"{names.app}/{names.stack}",
            "S3_REGION": args.region,
            "S3_SSE": "aws:kms",
            "S3_KMS_KEY_ID": key_arn,
        }
        service = Container(
            name="backups",
            image=image,
            user=f"{API_UID}:{API_UID}",
            environment=env,
            secrets={"DB_PASSWORD": password_arn},
            health_check=HealthCheck(
                tuple(python_probe_command(METRICS_PORT, "/metrics", request_timeout_s=4)),
                interval=30,
                timeout=5,
                start_period=120,
            ),
            # Dumps and the verification server's scratch space (TMPDIR in the
            # image): task storage, owned by the service through the image's VOLUME.
            mounts={"backups": BACKUP_DIR},
            stop_timeout=120,
        )
        sidecar = collector({"backups": f"127.0.0.1:{METRICS_PORT}"}, names, args.remote_write_url, args.region)
        task_role = remote_write_role("backups-task-role", args.workspace_arn, self)
        aws.iam.RolePolicy(
            "backups-task-role-bucket",
            role=task_role.id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": self.bucket.arn},
                        {
                            "Effect": "Allow",
                            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                            "Resource": self.bucket.arn.apply(lambda arn: f"{arn}/*"),
                        },
                        {
                            "Effect": "Allow",
                            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                            "Resource": key_arn,
                        },
                    ],
                }
            ),
            opts=pulumi.ResourceOptions(parent=task_role),
        )
        logs = log_group(
            "backups-logs", names, "backups", retention_days=args.log_retention_days, kms_key_arn=key_arn, parent=self
        )
        definition = task_definition(
            "backups-task",
            family=names.resource("backups"),
            cpu=BACKUP_CPU,
            memory_mib=fargate_memory_mib(BACKUP_CPU, int(cfg.memory) // 1024**2),
            containers=[service, sidecar],
            volumes=["backups"],
            ephemeral_storage_gib=min(max(2 * args.db_storage_gb + 10, 21), MAX_EPHEMERAL_GIB),
            log_group_name=logs.name,
            region=args.region,
            execution_role_arn=execution_role(
                "backups-execution-role", secret_arns=[password_arn], kms_key_arn=key_arn, parent=self
            ).arn,
            task_role_arn=task_role.arn,
            parent=self,
        )
        aws.ecs.Service(
            "backups-service",
            name=names.resource("backups"),
            cluster=args.cluster.arn,
            task_definition=definition.arn,
            launch_type="FARGATE",
            platform_version="1.4.0",
            desired_count=1,
            # Never two backup services at once: the old task stops before the new starts.
            deployment_minimum_healthy_percent=0,
            deployment_maximum_percent=100,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.network.subnet_ids("private"),
                security_groups=[args.network.security_groups.backup.id],
                assign_public_ip=False,
            ),
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[dumps.policy, *args.depends_on]),
        )
        self.register_outputs({"vault": self.vault.name, "bucket": self.bucket.bucket})

    def _copy_vault(self, names: Names, region: str, tags: dict[str, str]) -> pulumi.Output[str]:
        """A vault and key in the second region, reached through a provider of its own."""
        provider = aws.Provider(
            "copy-region",
            region=region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        there = pulumi.ResourceOptions(parent=self, provider=provider)
        key = aws.kms.Key(
            "copy-key",
            description=f"{names.resource('backups')}: cross-region backup copies",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=there,
        )
        vault = aws.backup.Vault(
            "copy-vault", name=names.resource("vault-copy"), kms_key_arn=key.arn, force_destroy=False, opts=there
        )
        return vault.arn
