"""What every rotation function of the platform does around its own steps,
as Secrets Manager's rotation protocol asks and AWS's own functions do: a
version is worked on only while it is AWSPENDING, and the last step moves
AWSCURRENT to it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def pending_stages(client: Any, arn: str, token: str) -> dict[str, list[str]] | None:
    """The secret's versions and their stages when `token` is the pending
    version to work on; None when it is already current (a retried step after
    the rotation ended); ValueError when it is neither."""
    metadata = client.describe_secret(SecretId=arn)
    if not metadata.get("RotationEnabled"):
        raise ValueError(f"rotation is not enabled for {arn}")
    stages: dict[str, list[str]] = metadata["VersionIdsToStages"]
    if token not in stages:
        raise ValueError(f"version {token} of {arn} has no stage")
    if "AWSCURRENT" in stages[token]:
        return None
    if "AWSPENDING" not in stages[token]:
        raise ValueError(f"version {token} of {arn} is not AWSPENDING")
    return stages


def finish(client: Any, arn: str, token: str, stages: dict[str, list[str]]) -> None:
    [old] = [version for version, labels in stages.items() if "AWSCURRENT" in labels]
    client.update_secret_version_stage(
        SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=old
    )


def read_document(client: Any, arn: str, check: Callable[[Any], dict[str, str]], **version: str) -> dict[str, str]:
    """A version's JSON document, as `check` accepts it; ValueError otherwise,
    never showing the value."""
    try:
        return check(json.loads(client.get_secret_value(SecretId=arn, **version)["SecretString"]))
    except json.JSONDecodeError:
        raise ValueError(f"the secret {arn} is not JSON") from None


def put_pending_once(client: Any, arn: str, token: str, make: Callable[[], str]) -> None:
    """createSecret: the pending version's value, made only if a retried step
    has not put one already."""
    try:
        client.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
    except client.exceptions.ResourceNotFoundException:
        client.put_secret_value(
            SecretId=arn, ClientRequestToken=token, SecretString=make(), VersionStages=["AWSPENDING"]
        )
