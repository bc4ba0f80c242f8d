"""IAM policy documents wherever they appear: key policies, identity policies,
trust policies and resource policies, judged by what their statements allow.

An Allow statement may not name everyone (`*`) as its principal unless a
condition pins the caller's account, organisation, VPC, endpoint or source to
specific values with an operator that matches exactly (naming the key is not
enough: `...IfExists`, `Null`, negated and set operators and wildcard values
pin nothing); may not allow
every action (`*`), nor every action of a service (`s3:*`) except the account's
own administration of a KMS key, the standard key-policy statement; and may not
invert itself with NotAction or NotPrincipal. Attaching AWS's administrator
policies counts as allowing everything.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from wondernest_policies.model import Resource, Rule, unknown

KMS_KEY = "aws:kms/key:Key"
IAM_POLICY = "aws:iam/policy:Policy"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"
GROUP_POLICY = "aws:iam/groupPolicy:GroupPolicy"
POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
SECRET_POLICY = "aws:secretsmanager/secretPolicy:SecretPolicy"  # noqa: S105 (a type token)
ECR_POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
LAMBDA_PERMISSION = "aws:lambda/permission:Permission"

# Which properties hold a document, per type.
DOCUMENTS: dict[str, tuple[str, ...]] = {
    KMS_KEY: ("policy",),
    IAM_POLICY: ("policy",),
    ROLE: ("assumeRolePolicy",),
    ROLE_POLICY: ("policy",),
    USER_POLICY: ("policy",),
    GROUP_POLICY: ("policy",),
    BUCKET_POLICY: ("policy",),
    TOPIC_POLICY: ("policy",),
    QUEUE_POLICY: ("policy",),
    SECRET_POLICY: ("policy",),
    ECR_POLICY: ("policy",),
    KEY_POLICY: ("policy",),
    "aws:sqs/queue:Queue": ("policy",),
    "aws:sns/topic:Topic": ("policy",),
    "aws:backup/vaultPolicy:VaultPolicy": ("policy",),
    "aws:secretsmanager/secret:Secret": ("policy",),
    "aws:efs/fileSystemPolicy:FileSystemPolicy": ("policy",),
    "aws:ecr/registryPolicy:RegistryPolicy": ("policy",),
    "aws:opensearch/domainPolicy:DomainPolicy": ("accessPolicies",),
}
# Conditions that narrow "anyone" to callers of this account, organisation or
# source. Not aws:ResourceAccount: in a resource's own policy it is always the
# owner's account, whoever calls.
SCOPING_KEYS = frozenset(
    key.lower()
    for key in (
        "aws:SourceAccount",
        "aws:SourceArn",
        "aws:SourceOwner",
        "aws:SourceVpc",
        "aws:SourceVpce",
        "aws:PrincipalAccount",
        "aws:PrincipalArn",
        "aws:PrincipalOrgID",
        "kms:CallerAccount",
    )
)
# A pattern of these alone matches anything: `*`, `**`, `?*`.
WILDCARDS = frozenset("*?")
ADMIN_POLICIES = re.compile(r":policy/(AdministratorAccess|PowerUserAccess|IAMFullAccess)$")
_ACCOUNT_ROOT = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:root$")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principals(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal is None:
        return []
    if isinstance(principal, str):
        return [principal]
    if isinstance(principal, Mapping):
        return [str(p) for value in principal.values() for p in _list(value)]
    return []


# The operators that pin a key to the values given. Not the negated ones
# (StringNotEquals lets in everyone else), not `...IfExists` (a request that
# lacks the key, as a public one lacks aws:SourceVpce, passes), not `Null`
# (which only asks whether the key is there), not the set operators
# (ForAllValues passes an empty set), and a `...Like` only where the value has
# no wildcard, or is an ARN whose account is spelled out (ARN operators take
# wildcards in every field, ArnEquals included).
_EXACT_OPERATORS = frozenset({"stringequals", "stringequalsignorecase", "arnequals"})
_LIKE_OPERATORS = frozenset({"stringlike", "arnlike"})
_ARN_KEYS = frozenset({"aws:sourcearn", "aws:principalarn"})
_SPECIFIC = {
    "aws:sourceaccount": re.compile(r"^\d{12}$"),
    "aws:sourceowner": re.compile(r"^\d{12}$"),
    "aws:principalaccount": re.compile(r"^\d{12}$"),
    "kms:calleraccount": re.compile(r"^\d{12}$"),
    "aws:principalorgid": re.compile(r"^o-[a-z0-9]{10,32}$"),
    "aws:sourcevpc": re.compile(r"^vpc-[0-9a-f]{8,17}$"),
    "aws:sourcevpce": re.compile(r"^vpce-[0-9a-f]{8,17}$"),
}
_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-*]*:(?P<account>\d{12}):.+$")


def _pins(operator: str, key: str, values: Any) -> bool:
    """Whether one condition entry pins `key` to specific values."""
    op, key = operator.lower(), key.lower()
    if op not in _EXACT_OPERATORS | _LIKE_OPERATORS:
        return False
    found = [v for v in _list(values) if isinstance(v, str)]
    if not found or len(found) != len(_list(values)):
        return False
    for value in found:
        if unknown(value):
            continue  # an ARN or id not known until apply, from the stack's own resources
        if key in _ARN_KEYS:
            # ArnEquals takes wildcards as ArnLike does, field by field: the account must be spelled out.
            # StringLike's `*` runs across colons, past the account, so there it pins nothing.
            if not _ARN.match(value) or (op == "stringlike" and ("*" in value or "?" in value)):
                return False
        elif not _SPECIFIC[key].match(value):
            return False
    return True


def _scoped(statement: Mapping[str, Any]) -> bool:
    """A condition that narrows "anyone" to a specific account, organisation,
    VPC, endpoint or source: naming a scoping key is not enough."""
    return any(key in SCOPING_KEYS and _pins(operator, key, values) for operator, key, values in _conditions(statement))


def _sid(statement: Mapping[str, Any]) -> str:
    return f"statement {statement['Sid']!r}" if statement.get("Sid") else "a statement"


def _principals_of(statement: Mapping[str, Any], kind: str) -> list[str]:
    """The statement's principals of one kind (`AWS`, `Service`); a bare
    principal (`"*"`) counts as `AWS`."""
    principal = statement.get("Principal")
    by_kind = principal if isinstance(principal, Mapping) else {"AWS": principal}
    return [str(p) for p in _list(by_kind.get(kind) or [])]


def statement_problems(statement: Mapping[str, Any], key_policy: bool) -> list[str]:
    if str(statement.get("Effect")).lower() != "allow":
        return []
    sid = _sid(statement)
    problems = []
    for inverted in ("NotAction", "NotPrincipal", "NotResource"):
        if inverted in statement:
            problems.append(f"{sid} allows by {inverted}, which grants everything not listed.")
    principals = _principals(statement)
    if "*" in principals and not _scoped(statement):
        problems.append(f"{sid} allows anyone (Principal '*') with no condition on account or source.")
    actions = [str(a) for a in _list(statement.get("Action") or [])]
    for action in actions:
        service, _, verb = action.partition(":")
        # Without a colon the whole action is `service` (`*`, `?*`).
        if action and set(service) <= WILDCARDS and set(verb) <= WILDCARDS:
            problems.append(f"{sid} allows every action ({action!r}).")
        elif verb and set(verb) <= WILDCARDS:
            account_admin = key_policy and action == "kms:*" and all(_ACCOUNT_ROOT.match(p) for p in principals)
            if not account_admin:
                problems.append(f"{sid} allows every {action.split(':')[0]} action ({action!r}).")
    return problems


# What uses a key, as opposed to administering it. A key policy granting any of
# these to the account as a whole lets every identity the account's IAM
# policies allow use the key: that is AWS's default key policy.
KEY_USE = (
    "kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext", "kms:GenerateDataKeyPair", "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:CreateGrant", "kms:Sign", "kms:Verify", "kms:GenerateMac", "kms:VerifyMac", "kms:DeriveSharedSecret",
)  # fmt: skip
# `<service>.<region>.amazonaws.com`, the form kms:ViaService takes, with no wildcard.
_VIA_SERVICE = re.compile(r"^[a-z0-9-]+\.[a-z]{2}(-[a-z]+)+-\d\.amazonaws\.com$")
_ACCOUNT_ID = re.compile(r"^\d{12}$")


def _key_uses(actions: list[str]) -> list[str]:
    return [use for use in KEY_USE if any(fnmatch.fnmatchcase(use.lower(), a.lower()) for a in actions)]


def _conditions(statement: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    condition = statement.get("Condition") or {}
    if not isinstance(condition, Mapping):
        return []
    return [
        (str(operator).lower(), str(key).lower(), values)
        for operator, operands in condition.items()
        if isinstance(operands, Mapping)
        for key, values in operands.items()
    ]


def _values_pinned(statement: Mapping[str, Any], key_matches: Callable[[str], bool], form: re.Pattern[str]) -> bool:
    """A condition on a key `key_matches`, by an exact or like operator, whose
    every value has `form` (or is not known until apply)."""
    for operator, key, values in _conditions(statement):
        if key_matches(key) and operator in _EXACT_OPERATORS | _LIKE_OPERATORS:
            found = _list(values)
            if found and all(isinstance(v, str) and (unknown(v) or form.match(v)) for v in found):
                return True
    return False


def _through_services(statement: Mapping[str, Any]) -> bool:
    """kms:ViaService pinned to named services in named regions, exactly."""
    return _values_pinned(statement, lambda key: key == "kms:viaservice", _VIA_SERVICE)


def _caller_pinned(statement: Mapping[str, Any]) -> bool:
    return any(
        key in ("kms:calleraccount", "aws:principalaccount", "aws:principalorgid") and _pins(operator, key, values)
        for operator, key, values in _conditions(statement)
    )


def _context_pinned(statement: Mapping[str, Any]) -> bool:
    """An encryption context naming this account's resource by ARN (CloudWatch
    Logs encrypts with `kms:EncryptionContext:aws:logs:arn`)."""
    return _values_pinned(statement, lambda key: key.startswith("kms:encryptioncontext:"), _ARN)


def _allow_statements(text: Any) -> list[Mapping[str, Any]]:
    """The Allow statements of a known JSON policy document; none otherwise
    (an unknown or unreadable one is judged elsewhere, or at `up`)."""
    if not isinstance(text, str) or unknown(text):
        return []
    try:
        document = json.loads(text)
    except ValueError:
        return []
    statements = _list(document.get("Statement") or []) if isinstance(document, Mapping) else []
    return [s for s in statements if isinstance(s, Mapping) and str(s.get("Effect")).lower() == "allow"]


_ANY_ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")
_ACCOUNT_KEYS = ("kms:calleraccount", "aws:sourceaccount", "aws:principalaccount")


def _foreign_accounts(statements: list[Mapping[str, Any]]) -> list[str]:
    """A platform key serves its own account: every account a key policy names
    (in a principal, or pinned as the caller's or source's account) is one."""
    accounts: set[str] = set()
    for statement in statements:
        for p in _principals_of(statement, "AWS"):
            if _ACCOUNT_ID.match(p):
                accounts.add(p)
            elif match := _ANY_ARN_ACCOUNT.match(p):
                accounts.add(match.group(1))
        for _operator, key, values in _conditions(statement):
            if key in _ACCOUNT_KEYS:
                accounts.update(str(v) for v in _list(values) if isinstance(v, str) and _ACCOUNT_ID.match(v))
    if len(accounts) > 1:
        return [f"names more than one account ({', '.join(sorted(accounts))}): a key serves its own account only."]
    return []


def key_policy_problems(text: Any) -> list[str]:
    """Who may use the key: named roles; the account's identities only through
    named services (kms:ViaService), with the caller's account pinned when the
    principal is everyone; a service principal only for this account, its
    resource or its encryption context. The account's own administration of
    the key (kms:Describe*, kms:Put*, ...) is not use."""
    statements = _allow_statements(text)
    problems = _foreign_accounts(statements)
    for statement in statements:
        uses = _key_uses([str(a) for a in _list(statement.get("Action") or [])])
        if not uses:
            continue
        sid = _sid(statement)
        whole = [
            p for p in _principals_of(statement, "AWS") if p == "*" or _ACCOUNT_ROOT.match(p) or _ACCOUNT_ID.match(p)
        ]
        shown = ", ".join(uses) if len(uses) < 4 else f"{', '.join(uses[:3])} and more"
        if whole and not _through_services(statement):
            problems.append(
                f"{sid} lets every identity of the account use the key ({shown}) as far as IAM allows: "
                "AWS's default key policy. Grant use through named services (kms:ViaService) or to named roles."
            )
        elif "*" in whole and not _caller_pinned(statement):
            problems.append(f"{sid} lets anyone use the key through a service, with no kms:CallerAccount pinned.")
        services = _principals_of(statement, "Service")
        if services and not (_scoped(statement) or _context_pinned(statement)):
            problems.append(
                f"{sid} lets {', '.join(services)} use the key for any account: pin aws:SourceAccount, "
                "aws:SourceArn or the encryption context to this account's."
            )
    return problems


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key twice in one object: json.loads keeps the last, another reader
    the first, so the pack would judge a policy other than the one enforced."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def document_problems(text: Any, key_policy: bool = False) -> list[str]:
    if text is None or unknown(text):
        return []
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates) if isinstance(text, str) else text
    except _DuplicateKey as exc:
        return [f"has the key {exc} twice in one object: readers disagree on which counts."]
    except ValueError:
        return ["is not a JSON policy document."]
    if not isinstance(document, Mapping):
        return []
    problems = []
    for statement in _list(document.get("Statement") or []):
        if isinstance(statement, Mapping):
            problems += statement_problems(statement, key_policy)
    return problems


def _policies(resource: Resource, _config: Mapping[str, Any]) -> Iterable[str]:
    problems = []
    for key in DOCUMENTS.get(resource.type, ()):
        problems += document_problems(resource.get(key), key_policy=resource.type in (KMS_KEY, KEY_POLICY))
    if resource.type == ROLE:
        problems += _trust_unscoped(resource.get("assumeRolePolicy"))
        inline = resource.get("inlinePolicies") or []
        for policy in [] if unknown(inline) else inline:
            problems += document_problems((policy or {}).get("policy"))
        managed = resource.get("managedPolicyArns") or []
        problems += [p for arn in ([] if unknown(managed) else managed) for p in _admin_attached(arn)]
    if resource.type == POLICY_ATTACHMENT:
        problems += _admin_attached(resource.get("policyArn"))
    if resource.type == LAMBDA_PERMISSION and resource.get("principal") == "*":
        scoped = any(resource.get(k) for k in ("sourceAccount", "sourceArn", "principalOrgId"))
        if not scoped:
            problems.append(
                "lets anyone (principal '*') invoke the function, with no source account, ARN or organisation."
            )
    return problems


def _admin_attached(arn: Any) -> list[str]:
    if isinstance(arn, str) and ADMIN_POLICIES.search(arn):
        return [f"attaches {arn.rsplit('/', 1)[1]}, which allows every action."]
    return []


# Services that say which account and resource they act for when they assume a
# role (ECS's developer guide, "Cross-service confused deputy prevention"): a
# trust that does not ask lets that service assume the role for anyone's tasks.
SOURCE_SCOPED_SERVICES = frozenset({"ecs-tasks.amazonaws.com"})


def _trust_unscoped(text: Any) -> list[str]:
    problems = []
    for statement in _allow_statements(text):
        trusted = sorted(s for s in _principals_of(statement, "Service") if s in SOURCE_SCOPED_SERVICES)
        if trusted and not _scoped(statement):
            problems.append(
                f"trusts {', '.join(trusted)} for any account: pin aws:SourceAccount (or aws:SourceArn) to this one."
            )
    return problems


POLICY_DOCUMENT_RULES: list[Rule] = [
    Rule(
        "aws-policies-least-privilege",
        "Key, identity, trust and resource policies (of keys, roles, buckets, topics, queues, secrets, vaults, "
        "registries, file systems and search domains; a function's invoke permission too) allow no one as '*' "
        "without a condition that pins a specific "
        "account, organisation, VPC, endpoint or source with an exact operator (not IfExists, Null, a negation, "
        "a set operator or a wildcard value), no '*' or whole-service actions (but an account's own kms:* on its "
        "key), no NotAction or "
        "NotPrincipal, and no AWS administrator policy; a role ECS tasks assume trusts only this account's "
        "(aws:SourceAccount or aws:SourceArn pinned) (Checkov CKV_AWS_33, 62, 63, 109, 110, 111, 283, 289, "
        "290, 355, CKV2_AWS_40).",
        "critical",
        "Name the principal (an account, role or service with aws:SourceAccount) and list the actions the "
        "caller needs.",
        (*DOCUMENTS, POLICY_ATTACHMENT, LAMBDA_PERMISSION),
        _policies,
    ),
]
