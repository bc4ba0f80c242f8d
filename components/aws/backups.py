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

from components.aws.buckets import (
    PrivateBucket,
    abort_uploads,
    access_log_statement,
    expire_logs,
    expire_noncurrent,
    private_bucket,
)
from components.aws.iam import policy_document, service_role
from components.aws.monitoring import collector, remote_write_role
from components.aws.network import Network
from components.aws.registry import ecr_image
from components.aws.secrets import COPY_KEY_SERVICES, Secrets, account_administers, used_through_services
from components.aws.tasks import TASKS_SERVICE, Container, HealthCheck, execution_role, log_group, task_definition
from components.aws.tls import VERIFIED
from components.config import BackupsConfig
from components.model.app import probe_command
from components.model.aws_sizes import fargate_memory_mib
from components.model.backups import BACKUP_DIR, METRICS_PORT
from components.model.images import BACKUP_INPUTS, IMAGE_UID
from components.model.naming import Names

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
    postgres_host: pulumi.Output[str]
    postgres_port: int
    db_instance_arn: pulumi.Output[str]
    master_secret_arn: pulumi.Output[str]
    """RDS's own secret of the master user: the one login that may create a database to restore into."""
    cluster: aws.ecs.Cluster
    network: Network
    secrets: Secrets
    remote_write_url: pulumi.Output[str]
    workspace_arn: pulumi.Output[str]
    default_tags: dict[str, str]
    access_log_bucket: aws.s3.Bucket
    """Where the dumps bucket's server access logs go (same region, SSE-S3)."""
    depends_on: tuple[pulumi.Resource, ...]


class Backups(pulumi.ComponentResource):
    vault: aws.backup.Vault
    bucket: aws.s3.Bucket
    task: aws.ecs.TaskDefinition
    restore_task: aws.ecs.TaskDefinition
    """Run once by an operator (`make aws-restore`), never by a service."""

    def __init__(self, name: str, args: BackupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:Backups", name, None, opts)
        names, key_arn = args.names, args.secrets.key.arn

        self.vault = self._locked_vault(args, key_arn)
        copy = self._locked_copy_region(args)
        self._snapshot_plan(args, copy)

        dumps = self._dumps_bucket(args, key_arn)
        self.bucket = dumps.bucket
        if copy is not None:
            self._replicate(names, dumps, copy, args.config.retention_monthly, key_arn, args.region, args.secrets)
        image = ecr_image("backup", names, target="backup-aws", inputs=BACKUP_INPUTS, kms_key_arn=key_arn, parent=self)
        env = self._environment(args, key_arn)
        task_role = self._task_role(args, key_arn)
        logs = log_group(
            "backups-logs", names, "backups", retention_days=args.log_retention_days, kms_key_arn=key_arn, parent=self
        )
        self.task = self._backup_task(args, image, env, task_role, logs.name)
        self.service = self._service(args, self.task, dumps)
        self.restore_task = self._restore_task(args, image, env, logs.name)
        self.register_outputs({"vault": self.vault.name, "bucket": self.bucket.bucket})

    def _locked_vault(self, args: BackupsArgs, key_arn: pulumi.Output[str]) -> aws.backup.Vault:
        vault = aws.backup.Vault(
            "vault",
            name=args.names.resource("vault"),
            kms_key_arn=key_arn,
            force_destroy=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        _lock("vault-lock", vault, args.vault_lock_min_days, pulumi.ResourceOptions(parent=vault))
        return vault

    def _locked_copy_region(self, args: BackupsArgs) -> _CopyRegion | None:
        """The copy region's vault and what it needs; None without a copy region."""
        if args.copy_region is None:
            return None
        copy = self._copy_region(args.names, args.copy_region, args.default_tags, args.secrets, args.log_retention_days)
        # The copies are the backups that outlive the region: locked alike.
        _lock(
            "copy-vault-lock",
            copy.vault,
            args.vault_lock_min_days,
            pulumi.ResourceOptions(parent=copy.vault, provider=copy.provider),
        )
        return copy

    def _snapshot_plan(self, args: BackupsArgs, copy: _CopyRegion | None) -> None:
        """The RDS instance's snapshots by AWS Backup, copied to the copy region's vault if there is one."""
        copy_vault_arn = copy.vault.arn if copy is not None else None
        plan = aws.backup.Plan(
            "plan",
            name=args.names.resource("rds"),
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
            opts=pulumi.ResourceOptions(parent=self),
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
            name=args.names.resource("postgres"),
            plan_id=plan.id,
            iam_role_arn=role.arn,
            resources=[args.db_instance_arn],
            opts=pulumi.ResourceOptions(parent=plan),
        )

    def _dumps_bucket(self, args: BackupsArgs, key_arn: pulumi.Output[str]) -> PrivateBucket:
        return private_bucket(
            "dumps",
            bucket_name=pulumi.Output.concat(args.names.resource("backups"), "-", args.secrets.account_id),
            kms_key_arn=key_arn,
            lifecycle=_dump_lifecycle(args.config.retention_monthly),
            access_log_bucket=args.access_log_bucket,
            parent=self,
        )

    def _environment(self, args: BackupsArgs, key_arn: pulumi.Output[str]) -> dict[str, pulumi.Input[str]]:
        """The backup image's settings: the database it dumps and the bucket it writes to."""
        names = args.names
        return {
            "DB_HOST": args.postgres_host,
            "DB_PORT": str(args.postgres_port),
            "DB_NAME": args.database,
            **VERIFIED,
            **args.config.service_environment(),
            "S3_BUCKET": self.bucket.bucket,
            "S3_PREFIX": f"{names.app}/{names.stack}",
            "S3_REGION": args.region,
            "S3_SSE": "aws:kms",
            "S3_KMS_KEY_ID": key_arn,
        }

    def _task_role(self, args: BackupsArgs, key_arn: pulumi.Output[str]) -> aws.iam.Role:
        """The collector's remote write, and the dumps bucket under its key."""
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
        return task_role

    def _backup_task(
        self,
        args: BackupsArgs,
        image: pulumi.Input[str],
        env: dict[str, pulumi.Input[str]],
        task_role: aws.iam.Role,
        log_group_name: pulumi.Input[str],
    ) -> aws.ecs.TaskDefinition:
        """The backup service and its metrics sidecar."""
        names, key_arn = args.names, args.secrets.key.arn
        service = Container(
            name="backups",
            image=image,
            user=f"{IMAGE_UID}:{IMAGE_UID}",
            environment=env,
            # Rotation alternates between the backup role and its alternate user.
            secrets={
                "DB_USER": args.secrets.value_from("postgres-backup", "username"),
                "DB_PASSWORD": args.secrets.value_from("postgres-backup"),
            },
            health_check=HealthCheck(
                tuple(probe_command("python", METRICS_PORT, "/metrics", request_timeout_s=4)),
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
        return task_definition(
            "backups-task",
            family=names.resource("backups"),
            cpu=BACKUP_CPU,
            memory_mib=fargate_memory_mib(BACKUP_CPU, int(args.config.memory) // 1024**2),
            containers=[service, sidecar],
            volumes=["backups"],
            ephemeral_storage_gib=min(max(2 * args.db_storage_gb + 10, 21), MAX_EPHEMERAL_GIB),
            log_group_name=log_group_name,
            region=args.region,
            execution_role_arn=execution_role(
                "backups-execution-role",
                secret_arns=[args.secrets.arns["postgres-backup"]],
                kms_key_arn=key_arn,
                parent=self,
            ).arn,
            task_role_arn=task_role.arn,
            parent=self,
        )

    def _service(self, args: BackupsArgs, definition: aws.ecs.TaskDefinition, dumps: PrivateBucket) -> aws.ecs.Service:
        return aws.ecs.Service(
            "backups-service",
            name=args.names.resource("backups"),
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

    def _restore_task(
        self,
        args: BackupsArgs,
        image: pulumi.Input[str],
        env: dict[str, pulumi.Input[str]],
        log_group_name: pulumi.Input[str],
    ) -> aws.ecs.TaskDefinition:
        """A dump from the bucket restored into RDS: the backup image, run once
        with the restore command an operator gives (`make aws-restore`), as the
        RDS master user, the one login that may create a database. It reads the
        bucket and writes nothing there; no service runs it."""
        names, key_arn = args.names, args.secrets.key.arn
        master = args.master_secret_arn
        restore = Container(
            name="restore",
            image=image,
            user=f"{IMAGE_UID}:{IMAGE_UID}",
            # What the task does unless the operator says otherwise: nothing but read.
            command=("python", "-m", "wondernest_backup", "list"),
            environment=env,
            secrets={
                "DB_USER": args.secrets.value_from("postgres-backup", "username"),
                "DB_PASSWORD": args.secrets.value_from("postgres-backup"),
                # The managed secret's current version, read when the task starts: RDS rotates it.
                "RESTORE_DB_USER": pulumi.Output.concat(master, ":username::"),
                "RESTORE_DB_PASSWORD": pulumi.Output.concat(master, ":password::"),
            },
            mounts={"backups": BACKUP_DIR},
        )
        task_role = service_role(
            "restore-task-role",
            service=TASKS_SERVICE,
            description="Task role: read the dumps bucket to restore from it",
            statements=[
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": self.bucket.arn},
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": self.bucket.arn.apply(lambda a: f"{a}/*")},
                {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn},
            ],
            parent=self,
        )
        return task_definition(
            "restore-task",
            family=names.resource("restore"),
            cpu=BACKUP_CPU,
            memory_mib=fargate_memory_mib(BACKUP_CPU, int(args.config.memory) // 1024**2),
            containers=[restore],
            volumes=["backups"],
            ephemeral_storage_gib=min(max(2 * args.db_storage_gb + 10, 21), MAX_EPHEMERAL_GIB),
            log_group_name=log_group_name,
            region=args.region,
            execution_role_arn=execution_role(
                "restore-execution-role",
                secret_arns=[args.secrets.arns["postgres-backup"], master],
                kms_key_arn=key_arn,
                parent=self,
            ).arn,
            task_role_arn=task_role.arn,
            parent=self,
        )

    def _copy_region(
        self, names: Names, region: str, tags: dict[str, str], secrets: Secrets, log_retention_days: int
    ) -> _CopyRegion:
        """A key, a vault, a log bucket and a provider in the second region."""
        provider = aws.Provider(
            "copy-region",
            region=region,
            default_tags=aws.ProviderDefaultTagsArgs(tags=tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        there = pulumi.ResourceOptions(parent=self, provider=provider)
        # AWS Backup's copies and S3 replication use the key through those
        # services, for the roles the IAM policies name.
        key = aws.kms.Key(
            "copy-key",
            description=f"{names.resource('backups')}: cross-region backup copies",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=policy_document(
                [
                    account_administers(secrets.account_root),
                    used_through_services(secrets.account_root, secrets.account_id, region, COPY_KEY_SERVICES),
                ]
            ),
            opts=there,
        )
        vault = aws.backup.Vault(
            "copy-vault", name=names.resource("vault-copy"), kms_key_arn=key.arn, force_destroy=False, opts=there
        )
        # Server access logs must land in the bucket's own region.
        log_name = pulumi.Output.concat(names.resource("copy-logs"), "-", secrets.account_id)
        logs = private_bucket(
            "copy-access-logs",
            bucket_name=log_name,
            kms_key_arn=None,
            lifecycle=expire_logs(log_retention_days),
            extra_statements=[access_log_statement(log_name, secrets.account_id)],
            provider=provider,
            parent=self,
        )
        return _CopyRegion(region, provider, key, vault, logs.bucket)

    def _replicate(
        self,
        names: Names,
        dumps: PrivateBucket,
        copy: _CopyRegion,
        retention_monthly: int,
        key_arn: pulumi.Output[str],
        region: str,
        secrets: Secrets,
    ) -> None:
        """Every dump, once written, also to a bucket in the copy region under its key."""
        replica = private_bucket(
            "dumps-copy",
            bucket_name=pulumi.Output.concat(names.resource("backups-copy"), "-", secrets.account_id),
            kms_key_arn=copy.key.arn,
            lifecycle=_dump_lifecycle(retention_monthly),
            access_log_bucket=copy.log_bucket,
            provider=copy.provider,
            parent=self,
        )
        objects = dumps.bucket.arn.apply(lambda arn: f"{arn}/*")
        role = service_role(
            "replication-role",
            service="s3.amazonaws.com",
            description="S3: replicate the backup dumps to the copy region",
            statements=[
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
                    "Resource": dumps.bucket.arn,
                },
                {
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObjectVersionForReplication",
                        "s3:GetObjectVersionAcl",
                        "s3:GetObjectVersionTagging",
                    ],
                    "Resource": objects,
                },
                {
                    "Effect": "Allow",
                    "Action": ["s3:ReplicateObject", "s3:ReplicateTags"],
                    "Resource": replica.bucket.arn.apply(lambda arn: f"{arn}/*"),
                },
                {
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": key_arn,
                    "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
                },
                {
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                    "Resource": copy.key.arn,
                    "Condition": {"StringEquals": {"kms:ViaService": f"s3.{copy.region}.amazonaws.com"}},
                },
            ],
            parent=self,
        )
        aws.s3.BucketReplicationConfig(
            "dumps-replication",
            bucket=dumps.bucket.id,
            role=role.arn,
            rules=[
                aws.s3.BucketReplicationConfigRuleArgs(
                    id="copy-region",
                    status="Enabled",
                    filter=aws.s3.BucketReplicationConfigRuleFilterArgs(prefix=""),
                    # Deletions stay in this region: pruning here, or someone with
                    # this region's credentials, cannot empty the copy; its own
                    # lifecycle expires what the retention no longer keeps.
                    delete_marker_replication=aws.s3.BucketReplicationConfigRuleDeleteMarkerReplicationArgs(
                        status="Disabled"
                    ),
                    source_selection_criteria=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaArgs(
                        sse_kms_encrypted_objects=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaSseKmsEncryptedObjectsArgs(
                            status="Enabled"
                        )
                    ),
                    destination=aws.s3.BucketReplicationConfigRuleDestinationArgs(
                        bucket=replica.bucket.arn,
                        encryption_configuration=aws.s3.BucketReplicationConfigRuleDestinationEncryptionConfigurationArgs(
                            replica_kms_key_id=copy.key.arn
                        ),
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=dumps.bucket, depends_on=[dumps.versioning, replica.versioning]),
        )


@dataclass(frozen=True)
class _CopyRegion:
    region: str
    provider: aws.Provider
    key: aws.kms.Key
    vault: aws.backup.Vault
    log_bucket: aws.s3.Bucket


def _lock(name: str, vault: aws.backup.Vault, min_days: int, opts: pulumi.ResourceOptions) -> None:
    aws.backup.VaultLockConfiguration(
        name,
        backup_vault_name=vault.name,
        min_retention_days=min_days,
        max_retention_days=max(days for _, _, days in SNAPSHOT_RULES),
        # Governance mode (no changeable_for_days): an administrator can still
        # lift the lock. changeable_for_days would make it compliance mode,
        # which nobody, AWS included, can undo once that many days pass.
        opts=opts,
    )


def _dump_lifecycle(retention_monthly: int) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    months = max(retention_monthly, 1)
    return [
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="cold-then-expire",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            transitions=[aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(days=30, storage_class="GLACIER_IR")],
            # The service prunes by its retention policy; this is the
            # backstop for copies it no longer knows of after a restart.
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=31 * months + 31),
            noncurrent_version_expiration=expire_noncurrent(30),
            abort_incomplete_multipart_upload=abort_uploads(),
        )
    ]
