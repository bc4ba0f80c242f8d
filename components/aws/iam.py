"""IAM documents as data: each statement written out, so a diff shows exactly what changed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

# Services that say which account and resource they act for when they assume
# a role (ECS's developer guide, "Cross-service confused deputy prevention"):
# their roles' trust is limited to this account's own. Others (Lambda, AWS
# Backup, RDS's monitoring) do not set the keys, and a condition on them would
# lock the service out.
SOURCE_SCOPED = {"ecs-tasks.amazonaws.com": "ecs"}


def assume_role_policy(
    service: str, scope: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None
) -> pulumi.Output[str]:
    """The service may assume the role; with `scope` (account id, region), only
    on behalf of this account's resources of that service."""
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if scope is not None and service in SOURCE_SCOPED:
        account, region = scope
        statement["Condition"] = {
            "StringEquals": {"aws:SourceAccount": account},
            "ArnLike": {
                "aws:SourceArn": pulumi.Output.concat(f"arn:aws:{SOURCE_SCOPED[service]}:", region, ":", account, ":*")
            },
        }
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": [statement]})


def policy_document(statements: Sequence[dict[str, Any]]) -> pulumi.Output[str]:
    """Statements may hold Outputs (ARNs); the document resolves once they do."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def service_role(
    resource_name: str,
    *,
    service: str,
    description: str,
    statements: Sequence[dict[str, Any]] = (),
    managed_policy_arns: Sequence[str] = (),
    parent: pulumi.Resource,
) -> aws.iam.Role:
    """A role one AWS service assumes, with its inline policy and managed
    attachments; a service that names its caller is held to this account's."""
    child = pulumi.ResourceOptions(parent=parent)
    scope = None
    if service in SOURCE_SCOPED:
        lookup = pulumi.InvokeOutputOptions(parent=parent)
        scope = (
            aws.get_caller_identity_output(opts=lookup).account_id,
            # The provider's region: the tasks run where the platform does.
            aws.get_region_output(opts=lookup).region,
        )
    role = aws.iam.Role(
        resource_name,
        assume_role_policy=assume_role_policy(service, scope),
        description=description,
        opts=child,
    )
    if statements:
        aws.iam.RolePolicy(
            resource_name,
            role=role.id,
            policy=policy_document(statements),
            opts=pulumi.ResourceOptions(parent=role),
        )
    for i, arn in enumerate(managed_policy_arns):
        aws.iam.RolePolicyAttachment(
            f"{resource_name}-{i}",
            role=role.name,
            policy_arn=arn,
            opts=pulumi.ResourceOptions(parent=role),
        )
    return role
