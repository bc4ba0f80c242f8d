"""Database credentials rotate, and the tasks that use them read whatever is current.

A secret holds database credentials by what it is: its version is the JSON
document Secrets Manager's database rotation reads (`engine`, `password`). A
rotation must target it, on a schedule no longer than the configured maximum.
And whatever a task reads into a database-password variable must be the current
version's field: a reference pinned to a version, or a whole plain secret, is a
password no rotation can change under the task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wondernest_policies.aws import SECRET, TASK_DEFINITION
from wondernest_policies.model import Resource, Rule, Violation, has_unknown, unknown

SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"  # noqa: S105 (a type token)
SECRET_ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"  # noqa: S105 (a type token)

# Variables that carry a database password in the images this platform runs
# (the API and backup tool, libpq, postgres_exporter, the postgres image).
DATABASE_PASSWORD = re.compile(r"^(DB|PG|POSTGRES|DATABASE|DATA_SOURCE|RDS)_?(PASS|PASSWORD)$", re.IGNORECASE)
# `<arn>:<json-key>:<version-stage>:<version-id>`; the ARN itself has six fields.
_ARN_FIELDS = 7
_RATE = re.compile(r"^rate\((\d+) (day|days|hour|hours)\)$")


def _is_credentials_document(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        document = json.loads(value)
    except ValueError:
        return False  # not JSON, or (a preview) not known yet
    return isinstance(document, dict) and "engine" in document and "password" in document


def _period_days(rules: Any) -> float | None:
    """The rotation period of `rotationRules`, or None when it cannot be told."""
    if not isinstance(rules, Mapping):
        return None
    days = rules.get("automaticallyAfterDays")
    if isinstance(days, int | float) and not isinstance(days, bool):
        return float(days)
    match = _RATE.match(str(rules.get("scheduleExpression")))
    if match is None:
        return None
    amount = int(match.group(1))
    return float(amount) if match.group(2).startswith("day") else amount / 24


def _container_references(task: Resource) -> Iterable[tuple[str, str, str]]:
    """(container, variable, valueFrom) for each secret a task's containers read.
    A valueFrom not known yet (the engine's placeholder) holds no `:secretsmanager:`,
    so `_pinned` never finds it pinned: judged at `up`."""
    for container in task.container_definitions or []:
        for entry in container.get("secrets") or []:
            value = entry.get("valueFrom")
            if isinstance(value, str):
                yield str(container.get("name")), str(entry.get("name")), value


def _pinned(value_from: str) -> bool:
    """A Secrets Manager reference naming a version id or stage, or no JSON field."""
    if ":secretsmanager:" not in value_from:
        return False
    parts = value_from.split(":")
    if len(parts) < _ARN_FIELDS + 1:
        return True  # the whole plain secret: no field to rotate
    key, stage, version = [*parts[_ARN_FIELDS:], "", ""][:3]  # the key at least: fewer fields returned above
    return not key or bool(stage) or bool(version)


def _credential_rotation(resources: Sequence[Resource], config: Mapping[str, Any]) -> Iterable[Violation]:
    max_days = float(config.get("maxRotationDays", 90))
    secrets = [r for r in resources if r.type == SECRET]
    versions = [r for r in resources if r.type == SECRET_VERSION]
    rotations = [r for r in resources if r.type == SECRET_ROTATION]
    for secret in secrets:
        holds_credentials = any(
            v.refers_to("secretId", secret) and _is_credentials_document(v.get("secretString")) for v in versions
        )
        targeting = [r for r in rotations if r.refers_to("secretId", secret)]
        if not holds_credentials and not targeting:
            continue
        if not targeting:
            yield Violation(f"{secret.name}: holds database credentials that nothing rotates.", secret.urn)
            continue
        for rotation in targeting:
            yield from _rotation_problems(secret, rotation, max_days)
    for task in (r for r in resources if r.type == TASK_DEFINITION):
        for container, variable, value_from in _container_references(task):
            if DATABASE_PASSWORD.match(variable) and _pinned(value_from):
                yield Violation(
                    f"{task.name}: {container} reads {variable} pinned to one version (or with no JSON field), "
                    "so it keeps a password rotation has retired.",
                    task.urn,
                )


# The platform's own secret that no function rotates, and why.
UNROTATED_SECRETS = {
    "verify-login": "the password of the account `make verify --auth` signs in with; its hash is in the "
    "application's database, which no rotation function of the platform writes",
}


def _rotation_problems(secret: Resource, rotation: Resource, max_days: float) -> Iterable[Violation]:
    if rotation.get("rotationEnabled") is False or not rotation.get("rotationLambdaArn"):
        yield Violation(f"{secret.name}: its rotation is switched off or has no function.", rotation.urn)
        return
    rules = rotation.get("rotationRules")
    if has_unknown(rules):
        # A period not known yet (a preview) is judged at `up`.
        return
    days = _period_days(rules)
    if days is None or days > max_days:
        shown = "no period" if days is None else f"every {days:g} days"
        yield Violation(f"{secret.name}: rotates {shown}; at most every {max_days:g} days.", rotation.urn)


def _exempt(secret: Resource, exempt: set[str]) -> bool:
    """Named in the list, by its resource name, and its Secrets Manager name, where
    given, says the same (`<app>/<stack>/<key>`): a resource merely called so,
    holding another secret, is not excused."""
    if secret.name not in exempt:
        return False
    name = secret.get("name")
    if name is None or unknown(name):
        return True  # named by the engine after the resource, or not known until apply
    return isinstance(name, str) and name.rsplit("/")[-1] == secret.name


def _secrets_rotate(resources: Sequence[Resource], config: Mapping[str, Any]) -> Iterable[Violation]:
    """Every secret that is not database credentials (those are the rule
    above's, which also judges every rotation's period): rotated, or named with
    the reason it cannot be; and a task reads a rotated secret as its current
    version's field."""
    named = config.get("unrotatedSecrets", UNROTATED_SECRETS)
    exempt = {str(k) for k, v in dict(named or {}).items() if str(v).strip()}
    versions = [r for r in resources if r.type == SECRET_VERSION]
    rotations = [r for r in resources if r.type == SECRET_ROTATION]
    rotated: list[re.Pattern[str]] = []
    for secret in (r for r in resources if r.type == SECRET):
        contents = [v.get("secretString") for v in versions if v.refers_to("secretId", secret)]
        if any(_is_credentials_document(c) or unknown(c) for c in contents):
            continue  # database credentials, or not known until apply
        if any(r.refers_to("secretId", secret) for r in rotations):
            # Its ARN where known; else its name, which the ARN holds before a random suffix.
            arn, name = secret.get("arn"), secret.get("name")
            if isinstance(arn, str) and not unknown(arn):
                rotated.append(re.compile(re.escape(arn) + r"(:|$)"))
            elif isinstance(name, str) and not unknown(name):
                rotated.append(re.compile(r"^arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:" + re.escape(name) + r"-"))
        elif not _exempt(secret, exempt):
            yield Violation(
                f"{secret.name}: nothing rotates this secret; rotate it, or name it in unrotatedSecrets "
                "with the reason it cannot be.",
                secret.urn,
            )
    for task in (r for r in resources if r.type == TASK_DEFINITION):
        for container, variable, value_from in _container_references(task):
            of_rotated = any(pattern.match(value_from) for pattern in rotated)
            if of_rotated and not DATABASE_PASSWORD.match(variable) and _pinned(value_from):
                yield Violation(
                    f"{task.name}: {container} reads {variable} pinned to one version (or with no JSON field) "
                    "of a secret that rotates, so it keeps a value rotation has retired.",
                    task.urn,
                )


CREDENTIAL_RULES: list[Rule] = [
    Rule(
        "aws-database-credentials-rotate",
        "Secrets holding database credentials (the rotation JSON document) are rotated by a Secrets Manager "
        "function, every rotation of any secret at least every `maxRotationDays` days and switched on, and a "
        "task reads a database password as the current version's field, never pinned to a version or as a "
        "whole plain secret (Checkov CKV2_AWS_57).",
        "high",
        "Declare an aws.secretsmanager.SecretRotation for the secret (components/aws/rotation.py) and "
        "reference `<arn>:password::` in the task.",
        check_stack=_credential_rotation,
        config_schema={"maxRotationDays": {"type": "integer", "default": 90}},
    ),
    Rule(
        "aws-secrets-rotate",
        "Every other Secrets Manager secret (signing keys, cache passwords, API keys) is rotated by a function "
        "(its period judged by aws-database-credentials-rotate), unless `unrotatedSecrets` names it with the "
        "reason it cannot be; "
        "a task reads a rotated secret as its current version's field, never pinned to a version "
        "(Checkov CKV2_AWS_57).",
        "high",
        "Declare an aws.secretsmanager.SecretRotation with a function for the secret "
        "(components/aws/secret_rotation.py), reference `<arn>:<field>::` in the task, or name the secret in "
        "the rule's unrotatedSecrets with the reason.",
        check_stack=_secrets_rotate,
        config_schema={
            "unrotatedSecrets": {
                "type": "object",
                "additionalProperties": {"type": "string", "minLength": 1},
                "default": UNROTATED_SECRETS,
            },
        },
    ),
]
