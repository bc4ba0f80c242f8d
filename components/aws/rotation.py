"""Role passwords rotated by Secrets Manager with the AWS-provided function for
PostgreSQL's alternating-users strategy, and tasks that never outlive their
credentials.

Each login role is a pair, `<role>` and `<role>_clone` (DatabaseSpec.with_alternating_users);
a rotation sets a new password on the user not in use and makes it current, so
the credentials a running task started with stay valid for one more rotation
period. Services are redeployed every half period, so no task is ever older than
that. The RDS-managed master secret is the function's superuser; it never leaves
Secrets Manager.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.iam import service_role
from components.aws.network import Network
from components.aws.secrets import Secrets
from components.model.database import DatabaseSpec
from components.model.naming import Names
from components.postgres.resources import Role

# The function AWS publishes for this strategy, pinned like any image.
ROTATION_APPLICATION = (
    "arn:aws:serverlessrepo:us-east-1:297356227824:applications/SecretsManagerRDSPostgreSQLRotationMultiUser"
)
ROTATION_APPLICATION_VERSION = "1.1.671"
ROTATION_CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY")
# What a password may not contain: the function's own default, kept explicit.
EXCLUDED_CHARACTERS = ":/@\"'\\"
SCHEDULER_SERVICE = "scheduler.amazonaws.com"
UPDATE_SERVICE_TARGET = "arn:aws:scheduler:::aws-sdk:ecs:updateService"


def redeploy_every_days(rotation_days: int) -> int:
    """A task's credentials stop working one full period after they stop being
    current; redeploying every half period leaves the other half as margin."""
    return max(1, rotation_days // 2)


def credentials_document(
    *,
    host: pulumi.Input[str],
    port: int,
    username: str,
    password: pulumi.Input[str],
    database: str,
    master_arn: pulumi.Input[str],
) -> pulumi.Output[str]:
    """The JSON the rotation function reads and writes (its `engine`, `host`,
    `username`, `password`, `dbname`, `port`, `masterarn`); `ssl` true so it
    never falls back to plaintext."""
    return pulumi.Output.secret(
        pulumi.Output.all(host=host, password=password, master=master_arn).apply(
            lambda v: json.dumps(
                {
                    "engine": "postgres",
                    "host": v["host"],
                    "port": port,
                    "username": username,
                    "password": v["password"],
                    "dbname": database,
                    "masterarn": v["master"],
                    "ssl": True,
                },
                sort_keys=True,
            )
        )
    )


@dataclass(frozen=True)
class RotationArgs:
    names: Names
    region: str
    spec: DatabaseSpec
    roles: Mapping[str, Role]
    host: pulumi.Input[str]
    port: int
    master_secret_arn: pulumi.Input[str]
    rotation_days: int
    network: Network
    secrets: Secrets


class CredentialRotation(pulumi.ComponentResource):
    """The rotation function, each role's credentials document and its schedule."""

    ready: list[pulumi.Resource]
    """What a task reading the credentials must wait for."""

    def __init__(self, name: str, args: RotationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:CredentialRotation", name, None, opts)
        names, secrets = args.names, args.secrets
        key_arn = secrets.key.arn
        function_name = names.resource("postgres-rotation")
        function = aws.serverlessrepository.CloudFormationStack(
            "postgres-rotation",
            name=function_name,
            application_id=ROTATION_APPLICATION,
            semantic_version=ROTATION_APPLICATION_VERSION,
            capabilities=list(ROTATION_CAPABILITIES),
            parameters={
                "functionName": function_name,
                "endpoint": f"https://secretsmanager.{args.region}.amazonaws.com",
                # Private subnets: the database, the Secrets Manager endpoint, and
                # RDS's API (the master secret's host) through NAT.
                "vpcSubnetIds": pulumi.Output.all(*args.network.subnet_ids("private")).apply(",".join),
                "vpcSecurityGroupIds": args.network.security_groups.rotation.id,
                "kmsKeyArn": key_arn,
                "masterSecretArn": args.master_secret_arn,
                "masterSecretKmsKeyArn": key_arn,
                "excludeCharacters": EXCLUDED_CHARACTERS,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        lambda_arn = function.outputs.apply(lambda outputs: str(outputs["RotationLambdaARN"]))
        self.ready = []
        for role in args.spec.roles:
            if role.acts_as is not None:
                continue
            key = f"postgres-{role.key}"
            secret = secrets.secrets[key]
            # `<key>-credentials`, not the `key` a plain generated value once
            # had: on a stack that had it, this is a new version that takes
            # AWSCURRENT, rather than an update its ignored changes would swallow.
            version = secrets.seed(
                key,
                credentials_document(
                    host=args.host,
                    port=args.port,
                    username=role.name,
                    password=secrets.value(key),
                    database=args.spec.name,
                    master_arn=args.master_secret_arn,
                ),
            )
            pair = [args.roles[r.key] for r in args.spec.roles if r.key == role.key or r.acts_as == role.name]
            rotation = aws.secretsmanager.SecretRotation(
                key,
                secret_id=secret.id,
                rotation_lambda_arn=lambda_arn,
                rotation_rules=aws.secretsmanager.SecretRotationRotationRulesArgs(
                    automatically_after_days=args.rotation_days
                ),
                # The first rotation runs at once and moves the role onto its
                # alternate, so a broken setup shows in this update, not a month later.
                rotate_immediately=True,
                opts=pulumi.ResourceOptions(
                    parent=secret,
                    depends_on=[version, function, *pair],
                ),
            )
            self.ready += [version, rotation]
        self.register_outputs({"rotationFunctionArn": lambda_arn})


def redeploy_schedules(
    services: Mapping[str, aws.ecs.Service],
    *,
    cluster: aws.ecs.Cluster,
    rotation_days: int,
    parent: pulumi.Resource,
) -> None:
    """EventBridge Scheduler forces a new deployment of each long-running
    service every half rotation period: a rolling replacement whose new tasks
    read the current credentials."""
    days = redeploy_every_days(rotation_days)
    role = service_role(
        "redeploy-role",
        service=SCHEDULER_SERVICE,
        description="EventBridge Scheduler: redeploy services onto current credentials",
        statements=[
            {
                "Effect": "Allow",
                "Action": "ecs:UpdateService",
                "Resource": [service.arn for service in services.values()],
            }
        ],
        parent=parent,
    )
    for key, service in services.items():
        aws.scheduler.Schedule(
            f"redeploy-{key}",
            name=service.name.apply(lambda n: f"{n}-redeploy"),
            description=f"Every {days} days: fresh tasks on the current database credentials",
            schedule_expression=f"rate({days} days)",
            # Within the hour after: several services do not all roll at once.
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(
                mode="FLEXIBLE", maximum_window_in_minutes=60
            ),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=UPDATE_SERVICE_TARGET,
                role_arn=role.arn,
                input=pulumi.Output.json_dumps(
                    {"Cluster": cluster.arn, "Service": service.name, "ForceNewDeployment": True}
                ),
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_event_age_in_seconds=86400, maximum_retry_attempts=10
                ),
            ),
            opts=pulumi.ResourceOptions(parent=parent),
        )
