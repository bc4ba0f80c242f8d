"""Secrets Manager rotation of the API's token signing keys, run as a Lambda
function (Python 3.12, boto3 from its runtime).

The secret holds three keys: `previous`, `current` and `next`. The API signs
with `current` and accepts all three, each token naming its key by `kid`. A
rotation moves each key down one place and makes a new `next`:
{previous: current, current: next, next: <new>}. A task started before the
rotation already accepts the new signing key (it was its `next`), and a task
started after it still accepts the old one (now `previous`), so during the
rolling redeploy that follows no token signed by one task is refused by
another. Secrets Manager's four steps, as its rotation functions implement
them: createSecret writes the new version as AWSPENDING, setSecret and
testSecret have nothing outside Secrets Manager to change or test but the
document's shape, finishSecret moves AWSCURRENT to it.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import boto3

from .rotation_steps import finish, pending_stages, put_pending_once, read_document

KEY_BYTES = 48
FIELDS = ("previous", "current", "next")


def new_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def rotated(document: dict[str, str]) -> dict[str, str]:
    return {"previous": document["current"], "current": document["next"], "next": new_key()}


def check(document: Any) -> dict[str, str]:
    """The document's shape, or ValueError naming what is wrong (never a value)."""
    if not isinstance(document, dict):
        raise ValueError("the secret is not a JSON object")
    missing = [f for f in FIELDS if not isinstance(document.get(f), str) or len(document[f]) < 32]
    if missing:
        raise ValueError(f"the secret's {', '.join(missing)} key is missing or shorter than 32 characters")
    if len({document[f] for f in FIELDS}) != len(FIELDS):
        raise ValueError("the secret's keys are not all different")
    return {f: document[f] for f in FIELDS}


def handler(event: dict[str, str], _context: Any, client: Any = None) -> None:
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    client = client or boto3.client("secretsmanager")
    stages = pending_stages(client, arn, token)
    if stages is None:
        return
    if step == "finishSecret":
        finish(client, arn, token, stages)
        return
    if step not in ("createSecret", "setSecret", "testSecret"):
        raise ValueError(f"unknown step {step!r}")
    current = read_document(client, arn, check, VersionStage="AWSCURRENT")
    if step == "createSecret":
        put_pending_once(client, arn, token, lambda: json.dumps(rotated(current)))
        return
    # setSecret and testSecret: nothing outside Secrets Manager holds the keys; the document's order is checked.
    pending = read_document(client, arn, check, VersionId=token, VersionStage="AWSPENDING")
    if pending["previous"] != current["current"] or pending["current"] != current["next"]:
        raise ValueError(f"version {token} of {arn} does not follow the current keys")
