"""Rotation of the secrets no AWS-provided function rotates: the API's token
signing keys and the ElastiCache users' passwords, each by a function of the
platform's own (components/aws/functions/) on the same schedule as the
database credentials. Both keep the old value working for one more period
(the signing keys by accepting the previous key, the cache users by holding
two passwords), and the services are redeployed every half period, so no task
outlives what it started with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.iam import policy_document, service_role
from components.aws.network import Network
from components.aws.secrets import SIGNING_KEYS, Secrets
from components.aws.tasks import LOG_GROUPS, log_group
from components.model.naming import Names

FUNCTIONS_DIR = Path(__file__).parent / "functions"
# The functions' modules ship as a package of this name, their shared steps beside them.
PACKAGE = "functions"
SHARED_MODULES = ("__init__", "rotation_steps")
RUNTIME = "python3.12"
SECRETS_MANAGER = "secretsmanager.amazonaws.com"


def function_archive(module: str) -> pulumi.AssetArchive:
    """The function's module and what it imports, as the package it imports them from."""
    files = [*SHARED_MODULES, module]
    return pulumi.AssetArchive(
        {f"{PACKAGE}/{name}.py": pulumi.FileAsset(str(FUNCTIONS_DIR / f"{name}.py")) for name in files}
    )


@dataclass(frozen=True)
class SecretRotationArgs:
    names: Names
    region: str
    network: Network
    secrets: Secrets
    rotation_days: int
    cache_user_ids: Mapping[str, pulumi.Input[str]]
    """The rotated cache users' ids, by secret key."""
    cache_ready: Sequence[pulumi.Resource]
    """The cache's user group and replication group: a user is rotated once it serves."""
    log_retention_days: int


class SecretRotation(pulumi.ComponentResource):
    ready: list[pulumi.Resource]
    """What a task reading the rotated secrets must wait for."""
    function_names: dict[str, pulumi.Output[str]]
    """Each rotation function's name, by what it rotates: what its alarm watches."""

    def __init__(self, name: str, args: SecretRotationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:SecretRotation", name, None, opts)
        account = args.secrets.account_id
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        cache_arns = [
            pulumi.Output.concat("arn:", partition, ":elasticache:", args.region, ":", account, ":user:", user_id)
            for user_id in args.cache_user_ids.values()
        ]
        # Which user each secret may name: the function refuses any other pairing.
        user_of_secret = pulumi.Output.json_dumps(
            {args.secrets.arns[key]: user_id for key, user_id in args.cache_user_ids.items()}
        )
        self.ready = []
        self.function_names = {}
        self._rotate(
            "signing-keys",
            args,
            module="rotate_signing_keys",
            description="Rotates the API's token signing keys: previous, current, next",
            keys=list(SIGNING_KEYS),
            timeout=60,
            extra_statements=[],
            environment=None,
            waits_for=[],
        )
        self._rotate(
            "cache-users",
            args,
            module="rotate_cache_users",
            description="Rotates the ElastiCache users' passwords, keeping the old one for a period",
            keys=list(args.cache_user_ids),
            # Two waits for the user to settle, ten minutes each at most.
            timeout=900,
            extra_statements=[
                {"Effect": "Allow", "Action": "secretsmanager:GetRandomPassword", "Resource": "*"},
                {
                    "Effect": "Allow",
                    "Action": ["elasticache:DescribeUsers", "elasticache:ModifyUser"],
                    "Resource": cache_arns,
                },
            ],
            environment={"USER_IDS": user_of_secret},
            waits_for=args.cache_ready,
        )
        self.register_outputs({})

    def _rotate(
        self,
        name: str,
        args: SecretRotationArgs,
        *,
        module: str,
        description: str,
        keys: Sequence[str],
        timeout: int,
        extra_statements: Sequence[dict[str, Any]],
        environment: Mapping[str, pulumi.Input[str]] | None,
        waits_for: Sequence[pulumi.Resource],
    ) -> None:
        secrets, names = args.secrets, args.names
        child = pulumi.ResourceOptions(parent=self)
        function_name = names.resource(f"{name}-rotation")
        logs = log_group(
            f"{name}-rotation-logs",
            names,
            LOG_GROUPS[f"rotation-{name}"],
            retention_days=args.log_retention_days,
            kms_key_arn=secrets.key.arn,
            parent=self,
        )
        arns = [secrets.arns[key] for key in keys]
        role = service_role(
            f"{name}-rotation-role",
            service="lambda.amazonaws.com",
            description=f"{function_name}: the rotation steps on its own secrets only",
            parent=self,
        )
        # Its own resource, so the function and the first rotation can wait for
        # it: a role's inline policy takes effect apart from the role.
        policy = aws.iam.RolePolicy(
            f"{name}-rotation-role",
            role=role.id,
            policy=policy_document(
                [
                    {
                        "Effect": "Allow",
                        "Action": [
                            "secretsmanager:DescribeSecret",
                            "secretsmanager:GetSecretValue",
                            "secretsmanager:PutSecretValue",
                            "secretsmanager:UpdateSecretVersionStage",
                        ],
                        "Resource": arns,
                    },
                    {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": secrets.key.arn},
                    {
                        "Effect": "Allow",
                        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                        "Resource": logs.arn.apply(lambda arn: f"{arn}:*"),
                    },
                    # Its network interfaces in the private subnets (AWSLambdaVPCAccessExecutionRole's actions).
                    {
                        "Effect": "Allow",
                        "Action": [
                            "ec2:CreateNetworkInterface",
                            "ec2:DescribeNetworkInterfaces",
                            "ec2:DescribeSubnets",
                            "ec2:DeleteNetworkInterface",
                            "ec2:AssignPrivateIpAddresses",
                            "ec2:UnassignPrivateIpAddresses",
                        ],
                        "Resource": "*",
                    },
                    *extra_statements,
                ]
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        function = aws.lambda_.Function(
            f"{name}-rotation",
            name=function_name,
            description=description,
            runtime=RUNTIME,
            handler=f"{PACKAGE}.{module}.handler",
            code=function_archive(module),
            role=role.arn,
            timeout=timeout,
            memory_size=128,
            kms_key_arn=secrets.key.arn if environment else None,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(environment)) if environment else None,
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=args.network.subnet_ids("private"),
                security_group_ids=[args.network.security_groups.secret_rotation.id],
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=logs.name),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="PassThrough"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, policy]),
        )
        self.function_names[name] = function.name
        permission = aws.lambda_.Permission(
            f"{name}-rotation-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal=SECRETS_MANAGER,
            source_account=secrets.account_id,
            opts=child,
        )
        for key in keys:
            rotation = aws.secretsmanager.SecretRotation(
                key,
                secret_id=secrets.secrets[key].id,
                rotation_lambda_arn=function.arn,
                rotation_rules=aws.secretsmanager.SecretRotationRotationRulesArgs(
                    automatically_after_days=args.rotation_days
                ),
                # The first rotation runs at once: a broken setup shows in this update.
                rotate_immediately=True,
                opts=pulumi.ResourceOptions(
                    parent=secrets.secrets[key],
                    depends_on=[secrets.versions[key], permission, policy, *waits_for],
                ),
            )
            self.ready += [secrets.versions[key], rotation]
