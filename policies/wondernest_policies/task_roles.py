"""A task role reaches only what the stack declares.

An ECS task's role is what the code inside the container can do with AWS:
whatever it allows, a compromised app can do. So every resource its policies
allow must be one this stack creates (its ARN, or the objects of one of its
buckets), never a wildcard and never a managed policy written for no
resource in particular. What the platform grants follows the app contract's
`awsServices`; this rule holds any other grant to the same standard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wondernest_policies.aws import BUCKET, TASK_DEFINITION
from wondernest_policies.model import Resource, Rule, Violation, has_unknown, unknown
from wondernest_policies.policy_documents import (
    IAM_POLICY,
    POLICY_ATTACHMENT,
    ROLE,
    ROLE_POLICY,
    _allow_statements,
    _list,
)

# The objects of a bucket: `<bucket-arn>/*`, or a prefix's, `<bucket-arn>/<prefix>*`.
AWS_MANAGED = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/")
_OBJECTS = re.compile(r"^(?P<bucket>arn:aws[a-z-]*:s3:::[^/*?]+)/[^*?]*\*?$")


def _same(resource: Resource, key: str, other: Resource, *fields: str) -> bool:
    """Whether `resource`'s `key` names `other`: by the engine's recorded
    relation, or by one of `other`'s identifying fields."""
    if resource.refers_to(key, other):
        return True
    value = resource.get(key)
    return isinstance(value, str) and any(value == other.get(f) for f in fields if isinstance(other.get(f), str))


def _task_roles(resources: Sequence[Resource]) -> list[Resource]:
    tasks = [r for r in resources if r.type == TASK_DEFINITION]
    return [
        role
        for role in resources
        if role.type == ROLE and any(_same(task, "taskRoleArn", role, "arn") for task in tasks)
    ]


def _documents(
    role: Resource, resources: Sequence[Resource], pending: bool
) -> tuple[list[tuple[str, Any]], list[Violation]]:
    """(label, document) for each policy the role holds, and the managed
    attachments, which are refused unless the policy is the stack's own (while
    some ARN is not known, only AWS's own are decided)."""
    documents: list[tuple[str, Any]] = []
    inline = role.get("inlinePolicies")
    for policy in [] if unknown(inline) else _list(inline or []):
        if isinstance(policy, Mapping):
            documents.append((f"inline policy {policy.get('name')}", policy.get("policy")))
    attached: list[Violation] = []
    for resource in resources:
        if resource.type == ROLE_POLICY and _same(resource, "role", role, "id", "name"):
            documents.append((resource.name, resource.get("policy")))
        if resource.type == POLICY_ATTACHMENT and _same(resource, "role", role, "id", "name"):
            own = [p for p in resources if p.type == IAM_POLICY and _same(resource, "policyArn", p, "arn")]
            if own:
                documents += [(p.name, p.get("policy")) for p in own]
            elif not has_unknown(resource.get("policyArn")) and (
                not pending or AWS_MANAGED.match(str(resource.get("policyArn"))) is not None
            ):
                attached.append(
                    Violation(
                        f"{role.name}: a task's role has {resource.get('policyArn')} attached, a policy written "
                        "for no resource of this stack.",
                        role.urn,
                    )
                )
    return documents, attached


def _stack_arns(resources: Sequence[Resource]) -> tuple[set[str], set[str], bool]:
    """(every known ARN of the stack, the ARNs of its buckets, whether some ARN is not known yet)."""
    arns = {str(r.get("arn")) for r in resources if isinstance(r.get("arn"), str) and not unknown(r.get("arn"))}
    buckets = {str(r.get("arn")) for r in resources if r.type == BUCKET and r.get("arn") in arns}
    pending = any(unknown(r.get("arn")) for r in resources)
    return arns, buckets, pending


def _outside(value: Any, arns: set[str], buckets: set[str], pending: bool) -> bool:
    """Whether a Resource names something the stack does not declare. While
    some ARN is not known, a specific ARN may be that one: only wildcards are
    decided then."""
    if not isinstance(value, str):
        return True
    if value in arns:
        return False
    objects = _OBJECTS.match(value)
    if objects is not None and objects["bucket"] in buckets:
        return False
    named = objects["bucket"] if objects is not None else value
    return not pending or any(c in named for c in "*?")


def _task_roles_scoped(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterable[Violation]:
    arns, buckets, pending = _stack_arns(resources)
    for role in _task_roles(resources):
        documents, attached = _documents(role, resources, pending)
        yield from attached
        for label, text in documents:
            for statement in _allow_statements(text):
                what = statement.get("Sid") or ", ".join(str(a) for a in _list(statement.get("Action")))
                if "NotResource" in statement or "Resource" not in statement:
                    yield Violation(
                        f"{role.name}: {label} allows {what} on every resource but those named (or names none).",
                        role.urn,
                    )
                    continue
                values = _list(statement.get("Resource"))
                if any(has_unknown(v) for v in values):
                    continue  # decided at `up`, when every ARN is known
                outside = [str(v) for v in values if _outside(v, arns, buckets, pending)]
                if outside:
                    yield Violation(
                        f"{role.name}: {label} allows {what} on {', '.join(outside)}, which this stack does not "
                        "declare.",
                        role.urn,
                    )


TASK_ROLE_RULES: list[Rule] = [
    Rule(
        "aws-task-role-scoped",
        "An ECS task's role allows actions only on resources this stack declares: each Resource of its inline, "
        "role and own managed policies is the ARN of one of the stack's resources (or the objects of one of its "
        "buckets), never '*', another account's or another stack's, never NotResource; no policy written for no "
        "resource of the stack (an AWS-managed one) is attached. What a compromised app can reach is what the "
        "stack declares for it.",
        "high",
        "Declare what the app uses in app.awsServices (components/aws/app_services.py grants exactly those), "
        "and name each resource's ARN in the statement.",
        check_stack=_task_roles_scoped,
    ),
]
