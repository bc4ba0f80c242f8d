"""A task role reaches only what the stack declares for that task.

An ECS task's role is what the code inside the container can do with AWS:
whatever it allows, a compromised app can do. So each action its policies
allow is one a task's code takes on data (send and receive messages, read and
write objects, send email, use a key to do so, write metrics), never one that
administers (IAM, key deletion, reading another secret); and each resource is
one declared beside the task, under the same component (the app's queues,
topics, buckets and email identity; the backups' bucket), or one of the
stack's keys and metrics workspaces. A task must run as a role of the stack,
so that all this is judged at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wondernest_policies.aws import BUCKET, KMS_KEY, SNS_TOPIC, SQS_QUEUE, TASK_DEFINITION
from wondernest_policies.model import Resource, Rule, Violation, has_unknown, unknown
from wondernest_policies.policy_documents import (
    IAM_POLICY,
    POLICY_ATTACHMENT,
    ROLE,
    ROLE_POLICY,
    _allow_statements,
    _list,
)

POLICIES_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"
AMP_WORKSPACE = "aws:amp/workspace:Workspace"
# Types whose `arn` is the resource's own identity (for some others, an
# EventTarget or a TopicPolicy, `arn` is an input naming something else).
IDENTITY_TYPES = frozenset(
    {
        SQS_QUEUE, SNS_TOPIC, BUCKET, KMS_KEY, AMP_WORKSPACE, IAM_POLICY,
        "aws:sesv2/emailIdentity:EmailIdentity", "aws:ses/domainIdentity:DomainIdentity",
        "aws:ses/emailIdentity:EmailIdentity", "aws:dynamodb/table:Table",
    }
)  # fmt: skip
# What every task may reach wherever it is declared: the keys its data is
# encrypted under, and the workspace its metrics go to.
SHARED_TYPES = frozenset({KMS_KEY, AMP_WORKSPACE})
# The data-plane actions a task's code takes; anything else (administering a
# queue, a key, a role; reading a secret, which the execution role does) is
# refused unless the rule's `allowedActions` names it.
DATA_ACTIONS = frozenset(
    action.lower()
    for action in (
        "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
        "sns:Publish",
        "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
        "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
        "ses:SendEmail", "ses:SendRawEmail",
        "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey",
        "aps:RemoteWrite",
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query",
    )
)  # fmt: skip
AWS_MANAGED = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/")
# The objects of a bucket: `<bucket-arn>/*`, or a prefix's, `<bucket-arn>/<prefix>*`.
_OBJECTS = re.compile(r"^(?P<bucket>arn:aws[a-z-]*:s3:::[^/*?]+)/[^*?]*\*?$")
_ARN_ACCOUNT = re.compile(r"^arn:[^:]*:[^:]*:[^:]*:(?P<account>[^:]*):")


def _component(resource: Resource) -> str:
    """The parent chain of a resource's URN (`A$B` of `A$B$Type`): what it is declared under."""
    parts = resource.urn.split("::")
    chain = parts[2] if len(parts) > 3 else ""
    return chain.rsplit("$", 1)[0] if "$" in chain else ""


def _names(resource: Resource, key: str, other: Resource, *fields: str) -> bool:
    """Whether `resource`'s `key` (a value, or a list of them) names `other`:
    by value once known, by the engine's recorded relation until then."""
    value = resource.get(key)
    if value is None or has_unknown(value):
        return resource.refers_to(key, other)
    known = {other.get(f) for f in fields if isinstance(other.get(f), str) and not unknown(other.get(f))}
    return any(isinstance(v, str) and v in known for v in _list(value))


@dataclass(frozen=True)
class _Stack:
    """What the rule knows of the stack's resources."""

    by_arn: dict[str, Resource]
    """Every resource of an identity type whose ARN is known."""
    pending: bool
    """Whether some such ARN is not known yet (a preview)."""
    accounts: frozenset[str]

    @classmethod
    def of(cls, resources: Sequence[Resource]) -> _Stack:
        identities = [r for r in resources if r.type in IDENTITY_TYPES]
        by_arn = {
            str(r.get("arn")): r for r in identities if isinstance(r.get("arn"), str) and not unknown(r.get("arn"))
        }
        # Roles carry the account too, and are known in a preview of a stack that exists.
        known = [*by_arn, *(str(r.get("arn")) for r in resources if r.type == ROLE and isinstance(r.get("arn"), str))]
        accounts = {m["account"] for arn in known if (m := _ARN_ACCOUNT.match(arn)) and m["account"]}
        return cls(by_arn, any(unknown(r.get("arn")) for r in identities), frozenset(accounts))

    def reaches_outside(self, value: Any, component: str) -> bool:
        """Whether a Resource value names something neither declared beside the
        task nor shared. While an ARN is pending, a specific ARN of this
        account may be that one: only wildcards and other accounts are decided."""
        if not isinstance(value, str):
            return True
        objects = _OBJECTS.match(value)
        target = self.by_arn.get(objects["bucket"] if objects is not None else value)
        if target is not None and (objects is None or target.type == BUCKET):
            return not (target.type in SHARED_TYPES or _beside(target, component))
        named = objects["bucket"] if objects is not None else value
        if any(c in named for c in "*?"):
            return True
        account = _ARN_ACCOUNT.match(named)
        foreign = account is not None and account["account"] not in {"", *self.accounts} and bool(self.accounts)
        return not self.pending or foreign


def _beside(resource: Resource, component: str) -> bool:
    own = _component(resource)
    return not component or own == component or own.startswith(f"{component}$")


def _task_roles(resources: Sequence[Resource]) -> tuple[list[tuple[Resource, Resource]], list[Violation]]:
    """(task, its role) for each task whose role is the stack's, and a
    violation for each task that runs as a role the stack does not declare."""
    roles = [r for r in resources if r.type == ROLE]
    # A role whose ARN is not known yet may be the one a task names.
    pending = any(has_unknown(r.get("arn")) or has_unknown(r.get("name")) for r in roles)
    pairs: list[tuple[Resource, Resource]] = []
    strangers: list[Violation] = []
    for task in (r for r in resources if r.type == TASK_DEFINITION):
        value = task.get("taskRoleArn")
        if not value:
            continue
        own = [role for role in roles if _names(task, "taskRoleArn", role, "arn", "name")]
        pairs += [(task, role) for role in own]
        if not own and not pending and isinstance(value, str) and not unknown(value):
            strangers.append(
                Violation(
                    f"{task.name}: runs as {value}, a role this stack does not declare, so what its code may do "
                    "is judged nowhere.",
                    task.urn,
                )
            )
    return pairs, strangers


def _attached(role: Resource, resources: Sequence[Resource]) -> list[Any]:
    """The ARNs of the managed policies attached to a role, by every route."""
    arns: list[Any] = []
    for r in resources:
        if r.type == POLICY_ATTACHMENT and _names(r, "role", role, "name", "id"):
            arns.append(r.get("policyArn"))
        if r.type == POLICIES_ATTACHMENT and _names(r, "roles", role, "name", "id"):
            arns.append(r.get("policyArn"))
    managed = role.get("managedPolicyArns")
    arns += [] if has_unknown(managed) else _list(managed or [])
    return arns


def _documents(
    role: Resource, resources: Sequence[Resource], stack: _Stack
) -> tuple[list[tuple[str, Any]], list[Violation]]:
    """(label, document) for each policy the role holds, and a violation for
    each attached policy that is not the stack's own (while some ARN is not
    known, only AWS's own are decided)."""
    documents: list[tuple[str, Any]] = []
    inline = role.get("inlinePolicies")
    for policy in [] if has_unknown(inline) else _list(inline or []):
        if isinstance(policy, Mapping):
            documents.append((f"inline policy {policy.get('name')}", policy.get("policy")))
    documents += [
        (r.name, r.get("policy")) for r in resources if r.type == ROLE_POLICY and _names(r, "role", role, "name", "id")
    ]
    refused: list[Violation] = []
    for arn in dict.fromkeys(str(a) for a in _attached(role, resources) if not has_unknown(a)):
        own = stack.by_arn.get(arn)
        if own is not None and own.type == IAM_POLICY:
            documents.append((own.name, own.get("policy")))
        elif not stack.pending or AWS_MANAGED.match(arn):
            refused.append(
                Violation(
                    f"{role.name}: a task's role has {arn} attached, a policy written for no resource of this stack.",
                    role.urn,
                )
            )
    return documents, refused


def _statement_problems(
    statement: Mapping[str, Any], label: str, component: str, stack: _Stack, allowed: frozenset[str]
) -> list[str]:
    what = statement.get("Sid") or ", ".join(str(a) for a in _list(statement.get("Action")))
    problems = []
    if "NotAction" in statement:
        problems.append(f"{label} allows every action but those named.")
    actions = [a for a in _list(statement.get("Action") or []) if not has_unknown(a)]
    extra = [str(a) for a in actions if not isinstance(a, str) or a.lower() not in allowed]
    if extra:
        problems.append(
            f"{label} allows {', '.join(extra)}, which no task's code takes on its data; name it in the rule's "
            "allowedActions if the app must."
        )
    if "NotResource" in statement or "Resource" not in statement:
        problems.append(f"{label} allows {what} on every resource but those named (or names none).")
        return problems
    values = [v for v in _list(statement.get("Resource")) if not has_unknown(v)]
    outside = [str(v) for v in values if stack.reaches_outside(v, component)]
    if outside:
        problems.append(
            f"{label} allows {what} on {', '.join(outside)}, which is neither declared beside the task nor a key "
            "or metrics workspace of this stack."
        )
    return problems


def _task_roles_scoped(resources: Sequence[Resource], config: Mapping[str, Any]) -> Iterable[Violation]:
    stack = _Stack.of(resources)
    allowed = DATA_ACTIONS | {str(a).lower() for a in config.get("allowedActions") or []}
    pairs, strangers = _task_roles(resources)
    yield from strangers
    roles: list[Resource] = []
    for _, role in pairs:
        if all(role is not seen for seen in roles):
            roles.append(role)
    for role in roles:
        documents, refused = _documents(role, resources, stack)
        yield from refused
        components = {_component(task) for task, r in pairs if r is role}
        for label, text in documents:
            for statement in _allow_statements(text):
                # A role two tasks share reaches what is beside either.
                found = min((_statement_problems(statement, label, c, stack, allowed) for c in components), key=len)
                yield from (Violation(f"{role.name}: {problem}", role.urn) for problem in found)


TASK_ROLE_RULES: list[Rule] = [
    Rule(
        "aws-task-role-scoped",
        "An ECS task runs as a role of this stack, and that role allows only the data-plane actions a task's code "
        "takes (send, receive and delete messages, publish, read and write objects, send email, use a key for "
        "them, remote-write metrics; more only as the rule's `allowedActions` names), only on resources declared "
        "beside the task (under the same component: the app's queues, topics, buckets and email identity) or on "
        "the stack's keys and metrics workspaces: never '*', another account's or another stack's resource, "
        "never NotAction or NotResource, and no policy written for no resource of the stack (an AWS-managed one). "
        "What a compromised app can reach is what the stack declares for it.",
        "high",
        "Declare what the app uses in app.awsServices (components/aws/app_services.py grants exactly those), "
        "name each resource's ARN and each action in the statement, and run the task as the stack's role.",
        check_stack=_task_roles_scoped,
        config_schema={"allowedActions": {"type": "array", "items": {"type": "string"}, "default": []}},
    ),
]
