"""IAM documents as data: each statement written out, so a diff shows exactly what changed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws


def assume_role_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


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
    """A role one AWS service assumes, with its inline policy and managed attachments."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(
        resource_name,
        assume_role_policy=assume_role_policy(service),
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
