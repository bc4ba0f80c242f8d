"""A task role reaches only what the stack declares for that task.

An ECS task's role is what the code inside the container can do with AWS:
whatever it is allowed, a compromised app can do. So each action allowed to
it, by its own policies or by a resource's policy naming it (or letting anyone in), is one a task's
code takes on data (send and receive messages, read and write objects, send
email, use a key to do so, write metrics), never one that administers (IAM,
key deletion, reading another secret, assuming a role); and each resource is
one declared beside the task, under the same component instance (the app's
queues, topics, buckets and email identity; the backups' bucket), but never
a bucket that holds another's logs or replicas, or one of the stack's keys
and metrics workspaces. A task must run as a role of the stack, so that all
this is judged at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wondernest_policies.aws import BUCKET, KEY_POLICY, KMS_KEY, SNS_TOPIC, SQS_QUEUE, TASK_DEFINITION
from wondernest_policies.model import Resource, Rule, Violation, at, has_unknown, mappings, unknown
from wondernest_policies.policy_documents import (
    DOCUMENTS,
    IAM_POLICY,
    POLICY_ATTACHMENT,
    ROLE,
    ROLE_POLICY,
    _DuplicateKey,
    _list,
    _no_duplicates,
    _principals,
)

STACK = "pulumi:pulumi:Stack"
POLICIES_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"
AMP_WORKSPACE = "aws:amp/workspace:Workspace"
DYNAMODB_TABLE = "aws:dynamodb/table:Table"
BUCKET_LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
BUCKET_REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
# Types whose `arn` is the resource's own identity (for some others, an
# EventTarget or a TopicPolicy, `arn` is an input naming something else),
# with how an ARN ends for a given name, to tell a pending one in a preview.
IDENTITY_TYPES: dict[str, tuple[str, str]] = {
    SQS_QUEUE: ("sqs", ":{}"),
    SNS_TOPIC: ("sns", ":{}"),
    BUCKET: ("s3", ":::{}"),
    KMS_KEY: ("kms", ""),
    AMP_WORKSPACE: ("aps", ""),
    IAM_POLICY: ("iam", ":policy/{}"),
    ROLE: ("iam", ":role/{}"),
    "aws:sesv2/emailIdentity:EmailIdentity": ("ses", ":identity/{}"),
    "aws:ses/domainIdentity:DomainIdentity": ("ses", ":identity/{}"),
    "aws:ses/emailIdentity:EmailIdentity": ("ses", ":identity/{}"),
    DYNAMODB_TABLE: ("dynamodb", ":table/{}"),
}
# The input each type's name part comes from.
_NAME_INPUT = {
    BUCKET: "bucket",
    "aws:sesv2/emailIdentity:EmailIdentity": "emailIdentity",
    "aws:ses/domainIdentity:DomainIdentity": "domain",
    "aws:ses/emailIdentity:EmailIdentity": "email",
}
# What every task may reach wherever it is declared: the keys its data is
# encrypted under, and the workspace its metrics go to.
SHARED_TYPES = frozenset({KMS_KEY, AMP_WORKSPACE})
# The data-plane actions a task's code takes; anything else (administering a
# queue, a key, a role; reading a secret, which the execution role does;
# assuming a role) is refused unless the rule's `allowedActions` names it.
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
# What lies inside a resource: a bucket's objects (`<arn>/<key>`), a table's indexes.
_INSIDE = re.compile(r"^(?P<owner>arn:aws[a-z-]*:(?:s3:::[^/*?]+|dynamodb:[^/]*/?[^*?]*?table/[^/*?]+))/[^*?]*\*?$")
_ARN = re.compile(r"^arn:(?P<partition>[^:]*):(?P<service>[^:]*):[^:]*:(?P<account>[^:]*):")


def _items(value: Any) -> list[Any]:
    """A list's known items (an unknown item, or a whole list not known yet, is decided at `up`)."""
    return [] if value is None else [v for v in _list(value) if not has_unknown(v)]


def _statements(text: Any) -> tuple[list[Mapping[str, Any]], bool]:
    """(the Allow statements of a known JSON document, whether it holds a key twice)."""
    if not isinstance(text, str) or unknown(text):
        return [], False
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey:
        return [], True
    except ValueError:
        return [], False
    statements = _list(document.get("Statement") or []) if isinstance(document, Mapping) else []
    return [s for s in statements if isinstance(s, Mapping) and str(s.get("Effect")).lower() == "allow"], False


def _names(resource: Resource, key: str, other: Resource, *fields: str) -> bool:
    """Whether `resource`'s `key` (a value, or a list of them) names `other`:
    by value once known, by the engine's recorded relation until then."""
    value = resource.get(key)
    if value is None or has_unknown(value):
        return resource.refers_to(key, other)
    # `value` is known: no placeholder of `other`'s can equal it.
    known = {v for f in fields if isinstance(v := other.get(f), str)}
    return any(isinstance(v, str) and v in known for v in _list(value))


@dataclass(frozen=True)
class _Stack:
    """What the rule knows of the stack's resources."""

    by_arn: dict[str, Resource]
    """Every resource of an identity type whose ARN is known."""
    pending: list[Resource]
    """Those whose ARN is not known yet (a preview)."""
    parents: dict[str, str]
    protected: set[str]
    """Buckets (by ARN, and by name) that hold another's logs or replicas."""
    accounts: frozenset[str]
    """The accounts the stack's known ARNs name."""

    @classmethod
    def of(cls, resources: Sequence[Resource]) -> _Stack:
        identities = [r for r in resources if r.type in IDENTITY_TYPES]
        by_arn = {
            str(r.get("arn")): r for r in identities if isinstance(r.get("arn"), str) and not unknown(r.get("arn"))
        }
        pending = [r for r in identities if r.get("arn") is None or unknown(r.get("arn"))]
        parents = {r.urn: r.parent for r in resources}
        accounts = frozenset(m["account"] for arn in by_arn if (m := _ARN.match(arn)) and m["account"])
        return cls(by_arn, pending, parents, _log_and_replica_buckets(resources), accounts)

    def beside(self, target: Resource, scope: str | None) -> bool:
        """Whether `target` is declared under the component instance `scope`."""
        urn = target.urn
        while scope is not None and urn:
            urn = self.parents.get(urn, "")
            if urn == scope:
                return True
        return False

    def allowed(self, target: Resource, scope: str | None) -> bool:
        if target.type in SHARED_TYPES:
            return True
        if target.type == BUCKET and ({target.get("arn"), target.get("bucket")} & self.protected):
            return False
        return self.beside(target, scope)

    def pending_as(self, value: str, types: Iterable[str] = IDENTITY_TYPES) -> list[Resource]:
        """The resources not created yet whose ARN a specific ARN may be: same
        service, and their name where the name is known."""
        match = _ARN.match(value)
        if match is None or (self.accounts and match["account"] not in {"", *self.accounts}):
            return []
        found = []
        for r in self.pending:
            if r.type not in types:
                continue
            service, ending = IDENTITY_TYPES[r.type]
            name = r.get(_NAME_INPUT.get(r.type, "name"))
            if match["service"] == service and (
                not ending or name is None or unknown(name) or value.endswith(ending.format(name))
            ):
                found.append(r)
        return found

    def reaches_outside(self, value: Any, scope: str | None) -> bool:
        if not isinstance(value, str):
            return True
        inside = _INSIDE.match(value)
        target = self.by_arn.get(inside["owner"] if inside is not None else value)
        if target is not None and (inside is None or target.type in (BUCKET, DYNAMODB_TABLE)):
            return not self.allowed(target, scope)
        named = inside["owner"] if inside is not None else value
        if any(c in named for c in "*?"):
            return True
        return not any(self.allowed(r, scope) for r in self.pending_as(named))


def _log_and_replica_buckets(resources: Sequence[Resource]) -> set[str]:
    """Buckets that receive other buckets' access logs, a load balancer's logs,
    or another bucket's replicas: no task may touch those."""
    found: set[Any] = set()
    for r in resources:
        if r.type in BUCKET_LOGGING:
            found.add(r.get("targetBucket"))
        elif r.type == LOAD_BALANCER:
            found.add(at(r.get("accessLogs"), "bucket"))
        elif r.type == BUCKET_REPLICATION:
            found.update(at(rule, "destination", "bucket") for rule in mappings(r.get("rules")))
    return {str(v) for v in found if isinstance(v, str) and not unknown(v)}


def _scopes(resources: Sequence[Resource]) -> dict[str, str | None]:
    """Each task's scope: the component instance it is declared under, or none
    (only what is shared) when that is the stack itself or holds another
    component's tasks, which would let a task placed high reach everything."""
    tasks = [r for r in resources if r.type == TASK_DEFINITION]
    parents = {r.urn: r.parent for r in resources}
    stacks = {r.urn for r in resources if r.type == STACK} | {r.parent for r in tasks if f"::{STACK}::" in r.parent}

    def ancestors(urn: str) -> list[str]:
        chain = []
        while (urn := parents.get(urn, "")) != "":
            chain.append(urn)
        return chain

    scopes: dict[str, str | None] = {}
    for task in tasks:
        scope = task.parent or None
        others = [t for t in tasks if t.parent != task.parent]
        if scope is None or scope in stacks or any(scope in ancestors(t.urn) for t in others):
            scope = None
        scopes[task.urn] = scope
    return scopes


def _named_before_created(value: str, role: Resource) -> bool:
    """A task naming, by ARN, a role whose name is known and ARN is not yet."""
    name = role.get("name")
    return has_unknown(role.get("arn")) and isinstance(name, str) and value.endswith(f":role/{name}")


def _task_roles(
    resources: Sequence[Resource], stack: _Stack
) -> tuple[list[tuple[Resource, Resource]], list[Violation]]:
    """(task, its role) for each task whose role is the stack's, and a
    violation for each task that runs as a role the stack does not declare."""
    roles = [r for r in resources if r.type == ROLE]
    pairs: list[tuple[Resource, Resource]] = []
    strangers: list[Violation] = []
    for task in (r for r in resources if r.type == TASK_DEFINITION):
        value = task.get("taskRoleArn")
        if not value:
            continue
        own = [
            role
            for role in roles
            if _names(task, "taskRoleArn", role, "arn", "name")
            or (isinstance(value, str) and _named_before_created(value, role))
        ]
        pairs += [(task, role) for role in own]
        if own or not isinstance(value, str) or unknown(value):
            continue
        # A role not created yet whose name is not known either may be the one named.
        if any(r.type == ROLE and (r.get("name") is None or has_unknown(r.get("name"))) for r in stack.pending):
            continue
        strangers.append(
            Violation(
                f"{task.name}: runs as {value}, a role this stack does not declare, so what its code may do is "
                "judged nowhere.",
                task.urn,
            )
        )
    return pairs, strangers


def _documents(
    role: Resource, resources: Sequence[Resource], stack: _Stack
) -> tuple[list[tuple[str, Any]], list[Violation]]:
    """(label, document) for each policy the role holds, and a violation for
    each attached policy that is not the stack's own."""
    documents: list[tuple[str, Any]] = [
        (f"inline policy {p.get('name')}", p.get("policy")) for p in mappings(role.get("inlinePolicies"))
    ]
    documents += [
        (r.name, r.get("policy")) for r in resources if r.type == ROLE_POLICY and _names(r, "role", role, "name")
    ]
    attached = [
        r.get("policyArn")
        for r in resources
        if (r.type == POLICY_ATTACHMENT and _names(r, "role", role, "name"))
        or (r.type == POLICIES_ATTACHMENT and _names(r, "roles", role, "name"))
    ]
    refused: list[Violation] = []
    for arn in dict.fromkeys(str(a) for a in [*attached, *_items(role.get("managedPolicyArns"))] if not has_unknown(a)):
        own = stack.by_arn.get(arn)
        if own is not None and own.type == IAM_POLICY:
            documents.append((own.name, own.get("policy")))
        elif AWS_MANAGED.match(arn) or not stack.pending_as(arn, (IAM_POLICY,)):
            refused.append(
                Violation(
                    f"{role.name}: a task's role has {arn} attached, a policy written for no resource of this stack.",
                    role.urn,
                )
            )
    return documents, refused


def _granted_by_others(role: Resource, resources: Sequence[Resource]) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, statement) for each statement of another resource's policy (a
    bucket's, a queue's, a secret's, a key's, a role's trust) whose principal
    is the role, one of its sessions, or anyone: in one account, that alone
    lets the role in."""
    arn = role.get("arn")
    if not isinstance(arn, str) or unknown(arn):
        return []
    # The role's sessions, `arn:<partition>:sts::<account>:assumed-role/<name>/<session>`:
    # a principal may name one instead of the role (a role's ARN may hold a path; its session's does not).
    match = _ARN.match(arn)
    session = (
        f"arn:{match['partition']}:sts::{match['account']}:assumed-role/{arn.rsplit('/', 1)[-1]}/" if match else None
    )
    found = []
    for r in resources:
        for key in DOCUMENTS.get(r.type, ()):
            statements, _ = _statements(r.get(key))
            for statement in statements:
                principals = _principals(statement)
                # `*` lets in every identity, the role among them, whatever condition
                # pins it to the account.
                by_session = session is not None and any(p.startswith(session) for p in principals)
                if arn in principals or "*" in principals or by_session:
                    if r.type in (KMS_KEY, KEY_POLICY):
                        # A key policy's Resource is the key itself, whatever it says:
                        # its actions are judged, the key is one every task may use.
                        statement = {k: v for k, v in statement.items() if k != "Resource"}
                    found.append((f"{r.name}'s policy", statement))
    return found


def _problems(
    statement: Mapping[str, Any], label: str, scope: str | None, stack: _Stack, allowed: frozenset[str], *, own: bool
) -> list[str]:
    """What is wrong with a statement allowing the role something; `own` when
    it is one of the role's policies (a resource's policy may leave its
    Resource out: it is the resource itself, judged beside the task there)."""
    what = statement.get("Sid") or ", ".join(str(a) for a in _list(statement.get("Action") or []))
    problems = []
    if "NotAction" in statement:
        problems.append(f"{label} allows every action but those named.")
    extra = [str(a) for a in _items(statement.get("Action")) if not isinstance(a, str) or a.lower() not in allowed]
    if extra:
        problems.append(
            f"{label} allows {', '.join(extra)}, which no task's code takes on its data; name it in the rule's "
            "allowedActions if the app must."
        )
    if not own and "Resource" not in statement:
        return problems
    if "NotResource" in statement or "Resource" not in statement:
        problems.append(f"{label} allows {what} on every resource but those named (or names none).")
        return problems
    outside = [str(v) for v in _items(statement.get("Resource")) if stack.reaches_outside(v, scope)]
    if outside:
        problems.append(
            f"{label} allows {what} on {', '.join(outside)}, which is neither declared beside the task nor a key "
            "or metrics workspace of this stack."
        )
    return problems


def _task_roles_scoped(resources: Sequence[Resource], config: Mapping[str, Any]) -> Iterable[Violation]:
    stack = _Stack.of(resources)
    allowed = DATA_ACTIONS | {str(a).lower() for a in config.get("allowedActions") or []}
    scopes = _scopes(resources)
    pairs, strangers = _task_roles(resources, stack)
    yield from strangers
    roles: list[Resource] = []
    for _, role in pairs:
        if all(role is not seen for seen in roles):
            roles.append(role)
    for role in roles:
        documents, refused = _documents(role, resources, stack)
        yield from refused
        statements = [(label, s, False) for label, s in _granted_by_others(role, resources)]
        for label, text in documents:
            found, twice = _statements(text)
            if twice:
                yield Violation(f"{role.name}: {label} has a key twice in one object: readers disagree.", role.urn)
            statements += [(label, s, True) for s in found]
        # A role several tasks share is held to each one's scope.
        for scope in dict.fromkeys(scopes[task.urn] for task, r in pairs if r is role):
            for label, statement, own in statements:
                for problem in _problems(statement, label, scope, stack, allowed, own=own):
                    yield Violation(f"{role.name}: {problem}", role.urn)


TASK_ROLE_RULES: list[Rule] = [
    Rule(
        "aws-task-role-scoped",
        "An ECS task runs as a role of this stack, and whatever allows that role anything (its own policies, or "
        "a bucket's, queue's, secret's or role's policy naming it, one of its sessions, or anyone) allows only "
        "the data-plane actions a task's "
        "code takes (send, receive and delete messages, publish, read and write objects, send email, use a key "
        "for them, remote-write metrics; more only as the rule's `allowedActions` names), only on resources "
        "declared beside the task (under the same component instance: the app's queues, topics, buckets and "
        "email identity), never a bucket holding another's logs or replicas, or on the stack's keys and metrics "
        "workspaces: never '*', another account's or another stack's resource, never NotAction or NotResource, "
        "and no policy written for no resource of the stack (an AWS-managed one). What a compromised app can "
        "reach is what the stack declares for it.",
        "high",
        "Declare what the app uses in app.awsServices (components/aws/app_services.py grants exactly those), "
        "name each resource's ARN and each action in the statement, and run the task as the stack's role.",
        check_stack=_task_roles_scoped,
        config_schema={"allowedActions": {"type": "array", "items": {"type": "string"}, "default": []}},
    ),
]
