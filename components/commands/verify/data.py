"""The data stores: each Postgres role logs in, every role, schema, grant and
extension is exactly as declared, and the Redis app user has its ACL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import redis

from components.commands.verify.access import Access
from components.commands.verify.results import CheckFailed, Skipped
from components.postgres import backdoors
from components.postgres.resources import declared_objects

OBJECT_KINDS = {
    # kind: (logical-name prefix, one, many)
    "roles": ("role-", "role", "roles"),
    "schemas": ("schema-", "schema", "schemas"),
    "grants": ("grant-", "grant", "grants"),
    "database": ("database-access", "set of database-wide rights", "sets of database-wide rights"),
    "extensions": ("extension-", "extension", "extensions"),
}


def _postgres(access: Access) -> dict[str, Any]:
    """How to reach the database, `verify-full` only: never send a password to an unverified server."""
    ep = access.postgres
    if ep is None:
        raise Skipped("the database is reachable only inside the VPC: run `make tunnel` and pass --postgres-via")
    if access.ca_file is None:
        raise Skipped("pass --ca-file with the CA the database's certificate chains to (on AWS, the RDS bundle)")
    return {
        "host": ep.host,
        "port": ep.port,
        **({"hostaddr": ep.hostaddr} if ep.hostaddr else {}),
        "database": str(access.outputs["postgresDatabase"]),
        "sslmode": "verify-full",
    }


def role_logs_in(access: Access, key: str) -> str:
    where = _postgres(access)
    user, password = access.credentials(f"postgres-{key}")
    with psycopg.connect(
        host=where["host"],
        hostaddr=where.get("hostaddr"),
        port=where["port"],
        dbname=where["database"],
        user=user,
        password=password,
        sslmode="verify-full",
        sslrootcert=access.ca_file,
        connect_timeout=max(int(access.timeout), 2),
        application_name="verify",
    ) as conn:
        row = conn.execute(
            "SELECT current_user, rolconnlimit, (SELECT count(*) FROM pg_stat_activity WHERE usename = current_user) "
            "FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row is not None
    name, limit, sessions = row
    return f"{name} logged in over verified TLS ({sessions} of {limit} connections in use)"


def objects_as_declared(access: Access, kind: str) -> str:
    """The provider's own `read`, as `pulumi refresh` runs it: anything it would
    change on the next `pulumi up` is named."""
    where = _postgres(access)
    user, password = access.credentials("postgres-admin")
    assert access.ca_file is not None
    connection = {
        **where,
        "user": user,
        "password": password,
        "ca_pem": Path(access.ca_file).read_text(),
        "wait_seconds": 0,
    }
    prefix, one, many = OBJECT_KINDS[kind]
    checked = 0
    problems: list[str] = []
    for name, provider, inputs in declared_objects(access.spec, superuser=access.admin_is_superuser):
        if not name.startswith(prefix):
            continue
        checked += 1
        drift = provider.drift({**inputs, "connection": connection})
        if drift is None:
            problems.append(f"{name} is missing")
        problems += [f"{name}: {difference}" for difference in drift or []]
    refused = [p for p in problems if ": refused: " in p]
    removable = [p for p in problems if p not in refused]
    if problems:
        said = []
        if removable:
            said.append(
                f"{len(removable)} difference(s), which `pulumi up` after a refresh removes: {'; '.join(removable)}"
            )
        if refused:
            said.append(
                f"{len(refused)} thing(s) `pulumi up` refuses to go on with until an operator removes or "
                f"declares them: {'; '.join(refused)}"
            )
        raise CheckFailed(". ".join(said) + _unseen(access, kind))
    return f"{checked} {one if checked == 1 else many} exactly as declared{_unseen(access, kind)}"


def _unseen(access: Access, kind: str) -> str:
    """An admin that is no superuser (RDS's master) cannot read some of the server."""
    if access.admin_is_superuser or kind not in ("roles", "database"):
        return ""
    return f" (not seen without a superuser: {', '.join(backdoors.SUPERUSER_ONLY)})"


def redis_app_user(access: Access) -> str:
    ep = access.redis
    if ep is None:
        raise Skipped("the cache is reachable only inside the VPC; the API's readiness check reaches it from there")
    if access.ca_file is None:
        raise Skipped("pass --ca-file with the CA the cache's certificate chains to")
    user, password = access.credentials("redis-app")
    client = redis.Redis(
        host=ep.host,
        port=ep.port,
        username=user,
        password=password,
        ssl=True,
        ssl_ca_certs=access.ca_file,
        ssl_cert_reqs="required",
        socket_timeout=access.timeout,
        socket_connect_timeout=access.timeout,
    )
    try:
        client.ping()
        whoami = client.acl_whoami()
        try:
            client.config_get("maxmemory")
        except redis.exceptions.NoPermissionError:
            pass
        else:
            raise CheckFailed(f"{whoami} may run CONFIG: its ACL is wider than the platform declares")
    finally:
        client.close()
    return f"{whoami} authenticated over verified TLS; CONFIG refused to it"
