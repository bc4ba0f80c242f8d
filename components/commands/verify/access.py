"""How verify reaches a stack: addresses from its outputs, credentials from the
outputs (local) or Secrets Manager (AWS), and what it expects from its config."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

from components.commands.stack_outputs import reachable, role_login
from components.commands.verify.results import CheckFailed, Skipped
from components.model.app import AppConfig
from components.model.database import DatabaseSpec

Credentials = Callable[[str], tuple[str, str]]
"""A credential's key (`postgres-app`, `postgres-admin`, `redis-app`) → user and password."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    """The name the server's certificate carries, which `verify-full` checks."""
    port: int
    hostaddr: str | None = None
    """Where to connect instead, when the server is reached through a tunnel."""


@dataclass(frozen=True)
class Access:
    target: Literal["docker", "aws"]
    outputs: Mapping[str, Any]
    spec: DatabaseSpec
    admin_is_superuser: bool
    backup_max_age_seconds: int
    timeout: float
    credentials: Credentials
    ca_file: str | None
    """What the servers' certificates chain to; None where it is not known here."""
    postgres: Endpoint | None
    """None: the database is not reachable from here (AWS without a tunnel)."""
    redis: Endpoint | None
    http_auth: requests.auth.AuthBase | None = None
    """How Prometheus and Alertmanager requests are signed (SigV4 on AWS)."""
    auth_round_trip: bool = False
    app: AppConfig = field(default_factory=AppConfig)
    """The contract of the app the stack runs: which paths answer, whether it is the bundled API."""


def endpoint(address: str, via: str | None = None) -> Endpoint:
    """`host:port` from an output; `via`, the tunnel it is reached through."""
    host, port = reachable(address)
    if via is None:
        return Endpoint(host, port)
    via_host, via_port = via.rsplit(":", 1)
    return Endpoint(host, int(via_port), hostaddr=via_host)


def local_credentials(outputs: Mapping[str, Any]) -> Credentials:
    def credentials(key: str) -> tuple[str, str]:
        if key in ("redis-app", "verify-login"):
            secret = key.replace("-", "_")
            user = str(outputs.get("redisUser", "")) if key == "redis-app" else ""
            password = str((outputs.get("secrets") or {}).get(secret, ""))
        elif key.startswith("postgres-"):
            role = key.removeprefix("postgres-")
            user, secret, password = role_login(outputs, "superuser" if role == "admin" else role)
        else:
            raise KeyError(key)
        if not password:
            raise Skipped(f"the outputs hold no {secret} (were they read with --show-secrets?)")
        return user, password

    return credentials


def aws_credentials(outputs: Mapping[str, Any], timeout: float) -> Credentials:
    """Secrets Manager's current values: a rotated role's secret names the user
    in use (the role or its alternate), so the check logs in as a task would."""
    import boto3
    from botocore.config import Config

    arns: Mapping[str, str] = outputs.get("secretArns") or {}
    client = boto3.client(
        "secretsmanager",
        region_name=_region(next(iter(arns.values()), "")),
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2}),
    )

    def credentials(key: str) -> tuple[str, str]:
        if key == "postgres-admin":
            arn = str(outputs.get("postgresMasterSecretArn", ""))
        elif key in arns:
            arn = arns[key]
        else:
            raise KeyError(key)
        value = str(client.get_secret_value(SecretId=arn)["SecretString"])
        if key == "verify-login":
            return "", value
        document = json.loads(value)
        return str(document["username"]), str(document["password"])

    return credentials


def _region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


class SigV4(requests.auth.AuthBase):
    """Signs a request for Amazon Managed Service for Prometheus (service `aps`)
    with the credentials boto's chain finds, as its query APIs require."""

    def __init__(self, region: str) -> None:
        self.region = region

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        import botocore.session
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            raise Skipped("no AWS credentials found (environment, profile or role) to sign the query")
        request = AWSRequest(method=r.method, url=r.url, data=r.body or b"")
        SigV4Auth(credentials, "aps", self.region).add_auth(request)
        r.headers.update(dict(request.headers.items()))
        return r


def workspace_region(url: str) -> str:
    found = re.match(r"https://aps-workspaces\.([a-z0-9-]+)\.amazonaws\.com/", url)
    if found is None:
        raise CheckFailed(f"{url} is not an Amazon Managed Prometheus workspace URL")
    return found.group(1)
