"""Secrets Manager rotation of an ElastiCache user's password, run as a Lambda
function (Python 3.12, boto3 from its runtime).

The secret is {"username", "password", "user_id"}. As AWS's own rotation
function for ElastiCache users does (aws-samples/aws-secrets-manager-rotation-
lambdas, SecretsManagerElasticacheUserRotation), setSecret gives the user two
passwords, the new one and the current one: ElastiCache accepts either, so a
task started with the old password keeps working until the next rotation
(the services are redeployed every half period). It differs from that sample
in what it is told: the user's id is in the secret, checked against the one
id this secret may name (USER_IDS, a JSON map of secret ARN to user id),
and the password comes from Secrets Manager's generator without the
characters ElastiCache refuses.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import boto3

from .rotation_steps import finish, pending_stages, put_pending_once, read_document

# ElastiCache passwords: 16 to 128 printable characters, none of `,`, `"`, `/`
# or `@` (ElastiCache's RBAC guide); spaces, quotes and backslashes left out too.
EXCLUDED_CHARACTERS = " ,\"/@'\\`"
PASSWORD_LENGTH = 64
ACTIVE_TIMEOUT_SECONDS = 600
POLL_SECONDS = 10.0
FIELDS = ("username", "password", "user_id")


def check(document: Any, allowed: set[str]) -> dict[str, str]:
    """The document's shape and its user, or ValueError (never a value);
    `allowed`: the one user id this secret may name (USER_IDS maps each
    secret's ARN to it)."""
    if not isinstance(document, dict) or any(not isinstance(document.get(f), str) for f in FIELDS):
        raise ValueError(f"the secret must be a JSON object with {', '.join(FIELDS)}")
    if document["user_id"] not in allowed:
        raise ValueError(f"this function does not rotate the user {document['user_id']!r} with this secret")
    if not 16 <= len(document["password"]) <= 128:
        raise ValueError("the password must be 16 to 128 characters")
    return {f: document[f] for f in FIELDS}


def wait_active(
    cache: Any, user_id: str, *, timeout: float = ACTIVE_TIMEOUT_SECONDS, poll: float = POLL_SECONDS
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        [user] = cache.describe_users(UserId=user_id)["Users"]
        if user["Status"] == "active":
            return
        if time.monotonic() > deadline:
            raise ValueError(f"the user {user_id} is still {user['Status']} after {timeout:.0f} s")
        time.sleep(poll)


def handler(
    event: dict[str, str], _context: Any, client: Any = None, cache: Any = None, poll: float = POLL_SECONDS
) -> None:
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    # Each secret names its own user: one secret cannot be pointed at another's.
    users = json.loads(os.environ.get("USER_IDS") or "{}")
    allowed = {str(users[arn])} if isinstance(users, dict) and arn in users else set()
    client = client or boto3.client("secretsmanager")
    cache = cache or boto3.client("elasticache")
    stages = pending_stages(client, arn, token)
    if stages is None:
        return

    def checked(document: Any) -> dict[str, str]:
        return check(document, allowed)

    def with_new_password() -> str:
        password = client.get_random_password(PasswordLength=PASSWORD_LENGTH, ExcludeCharacters=EXCLUDED_CHARACTERS)
        return json.dumps({**current, "password": password["RandomPassword"]})

    current = read_document(client, arn, checked, VersionStage="AWSCURRENT")
    if step == "createSecret":
        put_pending_once(client, arn, token, with_new_password)
    elif step == "setSecret":
        pending = read_document(client, arn, checked, VersionId=token, VersionStage="AWSPENDING")
        if pending["user_id"] != current["user_id"]:
            raise ValueError(f"version {token} of {arn} names another user")
        wait_active(cache, current["user_id"], poll=poll)
        cache.modify_user(UserId=current["user_id"], Passwords=[pending["password"], current["password"]])
    elif step == "testSecret":
        # The passwords are in force once the user is active again everywhere.
        wait_active(cache, current["user_id"], poll=poll)
    elif step == "finishSecret":
        finish(client, arn, token, stages)
    else:
        raise ValueError(f"unknown step {step!r}")
