"""Fargate task pieces shared by the API, the exporters and the backup job.

Container definitions are written out the way ECS returns them (every default
present, lists sorted, empty variables dropped): the provider compares the JSON
it stored with the JSON the program renders, and any field ECS fills in on its
own would otherwise read as a change and replace the task definition on every
update (pulumi-aws #1985, #4576).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.iam import service_role
from components.model.naming import Names

TASKS_SERVICE = "ecs-tasks.amazonaws.com"
EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"


@dataclass(frozen=True)
class HealthCheck:
    command: tuple[str, ...]
    interval: int = 30
    timeout: int = 5
    retries: int = 3
    start_period: int = 0


@dataclass(frozen=True)
class Container:
    name: str
    image: pulumi.Input[str]
    user: str
    essential: bool = True
    command: tuple[str, ...] = ()
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Variable name → Secrets Manager ARN (optionally `arn:json-key::`)."""
    port: int | None = None
    health_check: HealthCheck | None = None
    depends_on: Mapping[str, str] = field(default_factory=dict)
    """Container name → START, COMPLETE, SUCCESS or HEALTHY."""
    mounts: Mapping[str, str] = field(default_factory=dict)
    """Task volume name → path: the only writable places under the read-only root."""
    stop_timeout: int = 30


def container_definition(c: Container, *, log_group: pulumi.Input[str], region: str) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": c.name,
        "image": c.image,
        "cpu": 0,
        "essential": c.essential,
        "user": c.user,
        "readonlyRootFilesystem": True,
        # tini as PID 1: signals reach the process and zombies are reaped.
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        # ECS drops variables with an empty value; so does this, so the two agree.
        "environment": [{"name": k, "value": v} for k, v in sorted(c.environment.items()) if v != ""],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(c.secrets.items())],
        "environmentFiles": [],
        "mountPoints": [
            {"sourceVolume": vol, "containerPath": path, "readOnly": False} for vol, path in sorted(c.mounts.items())
        ],
        "volumesFrom": [],
        "portMappings": (
            [{"containerPort": c.port, "hostPort": c.port, "protocol": "tcp"}] if c.port is not None else []
        ),
        "dependsOn": [{"containerName": n, "condition": cond} for n, cond in sorted(c.depends_on.items())],
        "systemControls": [],
        "stopTimeout": c.stop_timeout,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": c.name,
            },
            "secretOptions": [],
        },
    }
    if c.command:
        definition["command"] = list(c.command)
    if c.health_check is not None:
        hc = c.health_check
        definition["healthCheck"] = {
            "command": list(hc.command),
            "interval": hc.interval,
            "timeout": hc.timeout,
            "retries": hc.retries,
            "startPeriod": hc.start_period,
        }
    return definition


def render_container_definitions(
    containers: Sequence[Container], *, log_group: pulumi.Input[str], region: str
) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps(
        [container_definition(c, log_group=log_group, region=region) for c in containers], sort_keys=True
    )


# The stack's log groups under its own prefix, by what an operator asks for
# (`make aws-logs SERVICE=...`): the ECS services, the managed Prometheus
# workspace's rule and alert log, the cache's logs, the VPC's flow log and the
# platform's own rotation functions.
LOG_GROUPS = {
    "api": "api",
    "backups": "backups",
    "exporters": "exporters",
    "prometheus": "prometheus",
    "redis-slow": "redis/slow-log",
    "redis-engine": "redis/engine-log",
    "vpc-flow": "vpc-flow-logs",
    "rotation-signing-keys": "rotation/signing-keys",
    "rotation-cache-users": "rotation/cache-users",
}


def log_group_name(names: Names, path: str) -> str:
    return f"/{names.app}/{names.stack}/{path}"


def log_group(
    resource_name: str,
    names: Names,
    service: str,
    *,
    retention_days: int,
    kms_key_arn: pulumi.Input[str],
    parent: pulumi.Resource,
) -> aws.cloudwatch.LogGroup:
    return aws.cloudwatch.LogGroup(
        resource_name,
        name=log_group_name(names, service),
        retention_in_days=retention_days,
        kms_key_id=kms_key_arn,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def execution_role(
    resource_name: str,
    *,
    secret_arns: Sequence[pulumi.Input[str]],
    kms_key_arn: pulumi.Input[str],
    parent: pulumi.Resource,
) -> aws.iam.Role:
    """Pulls the image, writes the logs, and reads exactly the secrets the task names."""
    statements: list[dict[str, Any]] = []
    if secret_arns:
        statements = [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": list(secret_arns)},
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": kms_key_arn},
        ]
    return service_role(
        resource_name,
        service=TASKS_SERVICE,
        description="ECS task execution: image pull, logs, secrets",
        statements=statements,
        managed_policy_arns=[EXECUTION_POLICY],
        parent=parent,
    )


def task_definition(
    resource_name: str,
    *,
    family: str,
    cpu: int,
    memory_mib: int,
    containers: Sequence[Container],
    volumes: Sequence[str],
    log_group_name: pulumi.Input[str],
    region: str,
    execution_role_arn: pulumi.Input[str],
    task_role_arn: pulumi.Input[str] | None,
    parent: pulumi.Resource,
    ephemeral_storage_gib: int | None = None,
) -> aws.ecs.TaskDefinition:
    return aws.ecs.TaskDefinition(
        resource_name,
        family=family,
        cpu=str(cpu),
        memory=str(memory_mib),
        network_mode="awsvpc",
        requires_compatibilities=["FARGATE"],
        runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
            operating_system_family="LINUX", cpu_architecture="X86_64"
        ),
        execution_role_arn=execution_role_arn,
        task_role_arn=task_role_arn,
        container_definitions=render_container_definitions(containers, log_group=log_group_name, region=region),
        volumes=[aws.ecs.TaskDefinitionVolumeArgs(name=v) for v in sorted(volumes)],
        ephemeral_storage=(
            aws.ecs.TaskDefinitionEphemeralStorageArgs(size_in_gib=ephemeral_storage_gib)
            if ephemeral_storage_gib is not None
            else None
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )
