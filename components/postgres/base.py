"""What every Postgres provider shares: the admin connection, quieted, and
the base class that compares, diffs and reads drift the same way for each
kind of object.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
from psycopg import errors, sql
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import Unknown

PROVIDER_KEY = "__provider"


IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# The one per-role setting a managed role may carry: acting as another role.
ROLE_SETTING = re.compile(r"^role=[a-z_][a-z0-9_]{0,62}$")
# The session settings a role may declare: timeouts, in PostgreSQL's units.
SESSION_SETTING = re.compile(
    r"^(statement_timeout|idle_in_transaction_session_timeout|lock_timeout|idle_session_timeout)=[0-9]+(ms|s|min|h)?$"
)


TABLE_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"})


SEQUENCE_PRIVILEGES = frozenset({"SELECT", "UPDATE", "USAGE"})


SCHEMA_PRIVILEGES = frozenset({"CREATE", "USAGE"})


# Errors worth waiting out while a freshly started server comes up.
_TRANSIENT_SQLSTATES = {None, "57P03"}
# How long one attempt waits for a server that accepted the connection to
# answer (psycopg's own default is 130 s).
CONNECT_TIMEOUT_SECONDS = 10


class PostgresResourceError(Exception):
    """A refusal the operator must act on; the message says what to do."""


# The provider's statements carry password verifiers: this session neither
# logs them (slow or failed) nor counts them in pg_stat_statements. Superuser-
# only settings: a server that refuses one (RDS's master is not a superuser)
# still has track_utility off and parameters unlogged in its own configuration.
QUIET_SESSION = (
    ("log_min_duration_statement", "-1"),
    ("log_min_error_statement", "panic"),
    ("log_statement", "none"),
    ("pg_stat_statements.track", "none"),
)


def _quiet(connection: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    for name, value in QUIET_SESSION:
        try:
            connection.execute("SELECT set_config(%s, %s, false)", (name, value))
        except (errors.InsufficientPrivilege, errors.UndefinedObject, errors.CantChangeRuntimeParam):
            continue
    return connection


def _password(conn: Mapping[str, Any]) -> str:
    """The admin's password: given, or read from the secret the connection names
    (its JSON's `password`, the form RDS keeps its master user's in), with the
    credentials `pulumi up` runs with."""
    if "password_secret" not in conn:
        return str(conn["password"])
    import boto3  # only an AWS stack names a secret; the local stack never loads it

    reference = conn["password_secret"]
    client = boto3.client("secretsmanager", region_name=str(reference["region"]))
    value = client.get_secret_value(SecretId=str(reference["arn"]))["SecretString"]
    return str(json.loads(value)["password"])


def connect(conn: Mapping[str, Any]) -> psycopg.Connection[Any]:
    """Open the admin connection, waiting out a server that is still starting.
    With `ca_pem`, the server's certificate must chain to it and name the host
    (`verify-full`); libpq reads the CA from a file, kept only while connecting."""
    deadline = time.monotonic() + float(conn.get("wait_seconds", 60))
    # Read once: a server still starting is waited out, the secret is not read again each second.
    password = _password(conn)
    while True:
        with contextlib.ExitStack() as stack:
            verified: dict[str, Any] = {}
            if conn.get("ca_pem"):
                ca = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".pem", prefix="wn-ca-"))
                ca.write(str(conn["ca_pem"]))
                ca.flush()
                verified["sslrootcert"] = ca.name
            if conn.get("hostaddr"):
                # Reached through a tunnel: the certificate still names `host`.
                verified["hostaddr"] = conn["hostaddr"]
            try:
                return _quiet(
                    psycopg.connect(
                        host=conn["host"],
                        port=int(conn["port"]),
                        user=conn["user"],
                        password=password,
                        dbname=conn["database"],
                        sslmode=conn.get("sslmode", "prefer"),
                        connect_timeout=CONNECT_TIMEOUT_SECONDS,
                        application_name="pulumi-postgres-provider",
                        autocommit=True,
                        **verified,
                    )
                )
            except psycopg.OperationalError as exc:
                if exc.sqlstate not in _TRANSIENT_SQLSTATES or time.monotonic() >= deadline:
                    raise
        time.sleep(1)


def _fetch_one(cur: psycopg.Cursor[Any], query: str, params: Sequence[Any]) -> Any:
    cur.execute(query, params)
    row = cur.fetchone()
    return None if row is None else row[0]


def _oid(cur: psycopg.Cursor[Any], catalog: str, name: str) -> int | None:
    query = (
        "SELECT oid FROM pg_roles WHERE rolname = %s"
        if catalog == "role"
        else "SELECT oid FROM pg_namespace WHERE nspname = %s"
    )
    oid = _fetch_one(cur, query, (name,))
    return None if oid is None else int(oid)


def _privs(values: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(v) for v in sorted(values))


class PostgresProvider(ResourceProvider):
    """Shared create/update/diff/validation: subclasses converge the server in
    `_apply` and name the keys that force a replace."""

    identity_keys: tuple[str, ...] = ()
    compared_keys: tuple[str, ...] = ()
    role_list_keys: tuple[str, ...] = ()
    """Inputs that list role names."""
    replace_keys: tuple[str, ...] | None = None
    """The changed keys that replace the resource; the identity keys by default."""
    delete_before_replace = False
    drift_keys: tuple[str, ...] = ()
    """Outputs `read` fills with what it found undeclared: any of them non-empty is a change."""
    added_later: ClassVar[Mapping[str, Any]] = {}
    """Inputs a resource created before they existed has no value for: absent is this default."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [
            CheckFailure(key, f"{value!r} is not a plain lower-case Postgres identifier")
            for key, value in self._identifiers(news)
            if isinstance(value, str) and not _is_unknown(value) and not IDENTIFIER.match(value)
        ]
        failures += [
            CheckFailure(key, f"{role!r} is not a role name")
            for key in self.role_list_keys
            for role in _known_items(news.get(key))
            if isinstance(role, str) and not IDENTIFIER.match(role)
        ]
        return CheckResult(news, failures)

    def _identifiers(self, props: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return [(key, props.get(key)) for key in self.identity_keys]

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._apply(props, {})
        return CreateResult(id_=self._id(props), outs=_outs(props))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._apply(news, olds)
        return UpdateResult(outs=_outs(news))

    def _id(self, props: Mapping[str, Any]) -> str:
        return str(props["name"])

    def _apply(self, props: Mapping[str, Any], olds: Mapping[str, Any]) -> None:
        """Converge the server on `props`; `olds` are the previous outputs ({} on create)."""
        raise NotImplementedError

    def _changed(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        olds = {**self.added_later, **olds}
        return [key for key in self.compared_keys if _norm(olds.get(key)) != _norm(news.get(key))]

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = self._changed(olds, news)
        replacing = self.identity_keys if self.replace_keys is None else self.replace_keys
        replaces = [key for key in changed if key in replacing]
        drifted = any(olds.get(key) for key in self.drift_keys)
        return DiffResult(
            changes=bool(changed) or drifted, replaces=replaces, delete_before_replace=self.delete_before_replace
        )

    def drift(self, props: dict[str, Any]) -> list[str] | None:
        """What `pulumi refresh` followed by `up` would change on the server, in
        words: each differing input with the value found, and each undeclared
        thing `read` lists. None when the object does not exist."""
        found = self.read(self._id(props), props)
        if not found.id:
            return None
        outs = found.outs or {}
        differences = [
            f"{key} is {_norm(outs.get(key))!r}, declared {_norm(props.get(key))!r}"
            for key in self._changed(outs, props)
            if key != "connection"
        ]
        return differences + [f"{key}: {item}" for key in self.drift_keys for item in outs.get(key) or []]


@dataclass(frozen=True)
class _Right:
    description: str
    revoke: sql.Composed


# Who: PUBLIC for grantee 0, else the role's name.
_DEFAULT_OBJECTS = {"r": "TABLES", "S": "SEQUENCES", "f": "ROUTINES", "T": "TYPES"}
_GRANTEE = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END"


def _to(grantee: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)


def _lock_schema_acl(cur: psycopg.Cursor[Any], schema: str) -> None:
    """Hold, until the transaction ends, the one lock every change to a
    schema's rights takes. `pulumi up` applies the grants on one schema in
    parallel, and two transactions rewriting the same catalog row (the
    schema's ACL, a default-privilege entry) make the later one fail with
    "tuple concurrently updated" instead of waiting."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('wondernest:schema-acl'), hashtext(%s))", (schema,))


def _outs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in props.items() if key != PROVIDER_KEY}


def _norm(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(_norm(v) for v in value) if all(isinstance(v, str) for v in value) else [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in sorted(value.items())}
    return value


# The engine's placeholder for a value not known until apply, as the mock
# runtime and the SDK's own serializer write it.
UNKNOWN_SENTINEL = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _is_unknown(value: Any) -> bool:
    """During a preview the provider host hands over `pulumi.output.Unknown`
    objects (pulumi.runtime.rpc.deserialize_property with keep_unknowns), for a
    leaf or for a whole list or object."""
    return isinstance(value, Unknown) or value == UNKNOWN_SENTINEL


def _known_items(value: Any) -> list[Any]:
    """The known items of a list input: none when the list itself is unknown
    (an unknown is never a list) or absent."""
    if not isinstance(value, (list, tuple)):
        return []
    return [item for item in value if not _is_unknown(item)]


def _whole_number(value: Any, *, minimum: int) -> bool:
    """Numbers cross the wire as doubles: 3.0 is the whole number 3."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return float(value).is_integer() and value >= minimum
