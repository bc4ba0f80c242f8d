"""Dynamic-provider implementations for Postgres roles, schemas and grants.

Pulumi pickles each provider instance into state and calls it back from a
separate provider process, so this module holds no Pulumi resources and no
module-level side effects: importing it must be cheap and safe anywhere.
Every operation reads the catalog first and converges on the declared state,
so running it twice, or after a half-finished run, lands in the same place.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
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
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import Unknown

from components.postgres import backdoors, withheld

PROVIDER_KEY = "__provider"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# The one per-role setting a managed role may carry: acting as another role.
ROLE_SETTING = re.compile(r"^role=[a-z_][a-z0-9_]{0,62}$")
TABLE_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"})
SEQUENCE_PRIVILEGES = frozenset({"SELECT", "UPDATE", "USAGE"})
SCHEMA_PRIVILEGES = frozenset({"CREATE", "USAGE"})
# Errors worth waiting out while a freshly started server comes up.
_TRANSIENT_SQLSTATES = {None, "57P03"}


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


def connect(conn: Mapping[str, Any]) -> psycopg.Connection[Any]:
    """Open the admin connection, waiting out a server that is still starting.
    With `ca_pem`, the server's certificate must chain to it and name the host
    (`verify-full`); libpq reads the CA from a file, kept only while connecting."""
    deadline = time.monotonic() + float(conn.get("wait_seconds", 60))
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
                        password=conn["password"],
                        dbname=conn["database"],
                        sslmode=conn.get("sslmode", "prefer"),
                        connect_timeout=10,
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


class RoleProvider(PostgresProvider):
    identity_keys = ("name",)
    compared_keys = ("name", "connection_limit", "login", "member_of", "members", "settings", "rotated", "connection")
    role_list_keys = ("member_of", "members")

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        failures = list(result.failures or [])
        limit = news.get("connection_limit")
        if not _is_unknown(limit) and not _whole_number(limit, minimum=1):
            failures.append(
                CheckFailure(
                    "connection_limit", f"{limit!r}: every role must have a whole connection limit of at least 1"
                )
            )
        for setting in _known_items(news.get("settings")):
            if isinstance(setting, str) and not ROLE_SETTING.match(setting):
                failures.append(CheckFailure("settings", f"{setting!r} is not `role=<role name>`"))
        return CheckResult(news, failures)

    added_later: ClassVar[Mapping[str, Any]] = {"members": [], "settings": [], "rotated": False}
    drift_keys = ("escalations",)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = super().diff(id_, olds, news)
        # A rotated password is Secrets Manager's after creation: the generated
        # one changing is not a reason to touch the role.
        if not news.get("rotated") and olds.get("password") != news.get("password"):
            return DiffResult(changes=True, replaces=result.replaces or [], delete_before_replace=False)
        return result

    def _apply(self, props: Mapping[str, Any], _olds: Mapping[str, Any]) -> None:
        name = props["name"]
        admin = str(props["connection"]["user"])
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            exists = _oid(cur, "role", name) is not None
            declared = sorted(props.get("settings") or [])
            options = sql.SQL(
                "{login} NOSUPERUSER NOCREATEDB NOCREATEROLE {inherit} NOREPLICATION NOBYPASSRLS "
                "CONNECTION LIMIT {limit}"
            ).format(
                login=sql.SQL("LOGIN" if props.get("login", True) else "NOLOGIN"),
                # A role that acts as another through `SET role` has no rights of
                # its own: after a RESET ROLE it can create nothing, so whatever
                # it creates is owned by the role it acts as.
                inherit=sql.SQL("NOINHERIT" if declared else "INHERIT"),
                limit=sql.Literal(int(props["connection_limit"])),
            )
            verb = "ALTER" if exists else "CREATE"
            cur.execute(sql.SQL(verb + " ROLE {} WITH {}").format(sql.Identifier(name), options))
            if not (exists and props.get("rotated")):
                # libpq computes the SCRAM verifier client-side: the plaintext never
                # reaches the server.
                verifier = conn.pgconn.encrypt_password(
                    props["password"].encode(), name.encode(), b"scram-sha-256"
                ).decode()
                _set_password(cur, name, verifier)
            # No expiry, no settings or members beyond those declared.
            cur.execute(sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'").format(sql.Identifier(name)))
            settings = _role_settings(cur, name)
            if [s for _, s in settings] != declared:
                cur.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(name)))
                for database in sorted({db for db, _ in settings if db is not None}):
                    cur.execute(
                        sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(
                            sql.Identifier(name), sql.Identifier(database)
                        )
                    )
            current = set(_memberships(cur, name))
            wanted = set(props.get("member_of") or [])
            for group in sorted(wanted - current):
                cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))
            for group in sorted(current - wanted):
                cur.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(name)))
            # After the memberships: `SET role` is checked against them.
            for setting in declared:
                key, value = setting.split("=", 1)
                cur.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(name), sql.Identifier(key), sql.Literal(value)
                    )
                )
            allowed = set(props.get("members") or [])
            for member in _members(cur, name, admin=admin):
                if member not in allowed:
                    cur.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(name), sql.Identifier(member)))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        name = props["name"]
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            oid = _oid(cur, "role", name)
            if oid is None:
                return
            # Default-privilege entries are settings, not data: DROP OWNED removes them.
            cur.execute(
                "SELECT count(*) FROM pg_shdepend d JOIN pg_database db ON db.oid = d.dbid "
                "WHERE d.refobjid = %s AND d.deptype = 'o' AND db.datname = current_database() "
                "AND d.classid <> 'pg_default_acl'::regclass",
                (oid,),
            )
            owned = cur.fetchone()
            if owned is not None and owned[0] > 0:
                raise PostgresResourceError(
                    f"role {name} owns {owned[0]} object(s) in this database; refusing to drop it "
                    f"and its data. Reassign them first (REASSIGN OWNED BY {name} TO <role>) "
                    "or drop them deliberately, then run the update again."
                )
            # Owns nothing, so DROP OWNED only revokes its privileges and default privileges.
            cur.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            cur.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with connect(props["connection"]) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolconnlimit, rolinherit, "
                "rolbypassrls FROM pg_roles WHERE rolname = %s",
                (id_,),
            )
            row = cur.fetchone()
            if row is None:
                return ReadResult(id_="", outs={})
            login, superuser, createdb, createrole, replication, limit, inherit, bypassrls = row
            # An alternate user (one with a declared setting) must not inherit.
            inherit_drift = bool(inherit) == bool(props.get("settings"))
            outs = _outs(props)
            outs.update(
                name=id_,
                login=bool(login),
                connection_limit=int(limit),
                member_of=sorted(_memberships(cur, id_)),
            )
            # Any of these set behind our back is drift the next update removes.
            outs["escalations"] = sorted(
                [
                    flag
                    for flag, on in (
                        ("SUPERUSER", superuser),
                        ("CREATEDB", createdb),
                        ("CREATEROLE", createrole),
                        ("REPLICATION", replication),
                        ("BYPASSRLS", bypassrls),
                        ("INHERIT" if inherit else "NOINHERIT", inherit_drift),
                    )
                    if on
                ]
                + _attribute_drift(cur, id_, props)
                + _password_drift(cur, id_, props)
            )
            return ReadResult(id_=id_, outs=outs)


def _set_password(cur: psycopg.Cursor[Any], role: str, verifier: str) -> None:
    """Set the role's password without the verifier in any statement's text:
    pg_stat_activity shows each running statement to pg_monitor's members
    (the monitoring role among them), and logs and pg_stat_statements keep
    the text. The verifier travels as COPY data into a temporary table, and
    a DO block reads it from there."""
    cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS wn_password (verifier text) ON COMMIT DELETE ROWS")
    cur.execute("DELETE FROM pg_temp.wn_password")
    with cur.copy("COPY pg_temp.wn_password (verifier) FROM STDIN") as copy:
        copy.write_row((verifier,))
    cur.execute(
        sql.SQL(
            "DO $$BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', {}, "
            "(SELECT verifier FROM pg_temp.wn_password)); END$$"
        ).format(sql.Literal(role))
    )
    cur.execute("DELETE FROM pg_temp.wn_password")


SCRAM_VERIFIER = re.compile(r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)")


# PostgreSQL's own (scram_iterations' default): a verifier a role wrote by hand
# with fewer is its password made cheap to guess from a stolen catalog.
MIN_SCRAM_ITERATIONS = 4096


def scram_matches(verifier: str | None, password: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier is one of `password` (RFC 5802:
    StoredKey and ServerKey from the salted password), with at least
    PostgreSQL's iterations. Anything else, an md5 hash included, is not."""
    found = SCRAM_VERIFIER.fullmatch(verifier or "")
    if found is None or int(found[1]) < MIN_SCRAM_ITERATIONS:
        return False
    iterations, salt, stored, server = int(found[1]), *(base64.b64decode(found[i]) for i in (2, 3, 4))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored) and hmac.compare_digest(server_key, server)


def _password_drift(cur: psycopg.Cursor[Any], role: str, props: Mapping[str, Any]) -> list[str]:
    """A password that is not the declared one: a role may change its own (to
    an md5 hash, or to one character). Only a superuser reads the verifiers
    (pg_authid); elsewhere (RDS) this is not seen. A rotated role's password
    is Secrets Manager's."""
    if props.get("rotated") or not isinstance(props.get("password"), str):
        return []
    if not _fetch_one(cur, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user", ()):
        return []
    stored = _fetch_one(cur, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
    return [] if scram_matches(stored, props["password"]) else ["PASSWORD not the declared one"]


def _attribute_drift(cur: psycopg.Cursor[Any], role: str, props: Mapping[str, Any]) -> list[str]:
    """What else changes what a role may do: an expiry (a managed role's password
    never expires, or logins would stop on a date), per-role settings (say,
    `default_transaction_read_only = off` for a read-only role), and other roles
    made members of it, which then act with its privileges. Only the settings
    and members the role declares are not drift."""
    found = []
    valid_until = _fetch_one(cur, "SELECT rolvaliduntil::text FROM pg_roles WHERE rolname = %s", (role,))
    if valid_until is not None and valid_until != "infinity":
        found.append(f"VALID UNTIL {valid_until}")
    declared = set(props.get("settings") or [])
    settings = _role_settings(cur, role)
    found += [
        f"SET {setting} IN {database or '*'}"
        for database, setting in settings
        if database is not None or setting not in declared
    ]
    found += [f"MISSING SET {setting}" for setting in sorted(declared - {s for db, s in settings if db is None})]
    allowed = set(props.get("members") or [])
    admin = str(props["connection"]["user"])
    found += [f"MEMBER {member}" for member in _members(cur, role, admin=admin) if member not in allowed]
    return found


def _role_settings(cur: psycopg.Cursor[Any], role: str) -> list[tuple[str | None, str]]:
    """(database, name=value) for each per-role setting; None for every database."""
    cur.execute(
        "SELECT d.datname, unnest(s.setconfig) FROM pg_db_role_setting s "
        "LEFT JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY 1 NULLS FIRST, 2",
        (role,),
    )
    return [(row[0], str(row[1])) for row in cur.fetchall()]


def _members(cur: psycopg.Cursor[Any], role: str, *, admin: str) -> list[str]:
    """The roles acting with `role`'s rights through membership, the admin aside."""
    cur.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
        "WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = %s) AND r.rolname <> %s ORDER BY 1",
        (role, admin),
    )
    return [str(row[0]) for row in cur.fetchall()]


def _memberships(cur: psycopg.Cursor[Any], role: str) -> list[str]:
    cur.execute(
        "SELECT g.rolname FROM pg_auth_members m "
        "JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member "
        "WHERE r.rolname = %s ORDER BY 1",
        (role,),
    )
    return [row[0] for row in cur.fetchall()]


class SchemaProvider(PostgresProvider):
    """A schema the admin owns, closed to PUBLIC, whose objects belong to the
    admin or to `object_owner`: anything another role owns there is handed to
    `object_owner`, and is drift until then. Only `grantees` (the roles with a
    SchemaGrant here, which keeps their exact rights) hold rights in it: any
    right held by another role or PUBLIC, a column privilege, a grant option, a
    routine privilege or a default privilege for anyone else is drift too."""

    identity_keys = ("name", "owner", "object_owner")
    compared_keys = ("name", "owner", "object_owner", "grantees", "withheld", "connection")
    added_later: ClassVar[Mapping[str, Any]] = {"withheld": {}}
    role_list_keys = ("grantees",)
    # A new owner is an ALTER, not a new schema: only the name replaces.
    replace_keys = ("name",)
    delete_before_replace = True
    drift_keys = ("strays", "undeclared")

    def _apply(self, props: Mapping[str, Any], _olds: Mapping[str, Any]) -> None:
        schema, owner = sql.Identifier(props["name"]), sql.Identifier(props["owner"])
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            _lock_schema_acl(cur, props["name"])
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema, owner))
            cur.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema, owner))
            cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
            if props.get("object_owner"):
                _hand_over(cur, props["name"], props["owner"], props["object_owner"])
            if "grantees" in props:
                rights = _undeclared_rights(
                    cur, props["name"], props["owner"], props["grantees"] or [], props.get("withheld") or {}
                )
                for right in rights:
                    cur.execute(right.revoke)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        name = props["name"]
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s ORDER BY 1",
                (name,),
            )
            relations = [row[0] for row in cur.fetchall()]
            if relations:
                shown = ", ".join(relations[:5]) + (" ..." if len(relations) > 5 else "")
                raise PostgresResourceError(
                    f"schema {name} still holds {len(relations)} relation(s) ({shown}); refusing "
                    "to drop it and its data. Move or drop them deliberately first, or keep the "
                    "schema in the stack."
                )
            # RESTRICT: anything else left inside (functions, types) fails the drop too.
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} RESTRICT").format(sql.Identifier(name)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with connect(props["connection"]) as conn, conn.cursor() as cur:
            owner = _fetch_one(
                cur,
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                (id_,),
            )
            if owner is None:
                return ReadResult(id_="", outs={})
            outs = _outs(props)
            outs.update(name=id_, owner=owner)
            if props.get("object_owner"):
                allowed = (props["owner"], props["object_owner"])
                outs["strays"] = sorted(
                    f"{stray.kind} {stray.name} owned by {stray.owner}" for stray in _strays(cur, id_, allowed)
                )
            if "grantees" in props:
                rights = _undeclared_rights(
                    cur, id_, props["owner"], props["grantees"] or [], props.get("withheld") or {}
                )
                outs["undeclared"] = sorted({right.description for right in rights})
            return ReadResult(id_=id_, outs=outs)


@dataclass(frozen=True)
class _Right:
    description: str
    revoke: sql.Composed


_DEFAULT_OBJECTS = {"r": "TABLES", "S": "SEQUENCES", "f": "ROUTINES", "T": "TYPES"}
# Who: PUBLIC for grantee 0, else the role's name.
_GRANTEE = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END"


def _to(grantee: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)


def _undeclared_rights(
    cur: psycopg.Cursor[Any],
    schema: str,
    admin: str,
    grantees: Sequence[str],
    withheld_from: Mapping[str, Sequence[str]] | None = None,
) -> list[_Right]:
    """Every right in the schema that no SchemaGrant accounts for, each with
    the statement that removes exactly it (a declared grantee's own table and
    schema privileges are its SchemaGrant's to keep)."""
    schema_oid = _oid(cur, "schema", schema)
    if schema_oid is None:
        return []
    declared = set(grantees)
    found: list[_Right] = []
    s = sql.Identifier(schema)

    def add(description: str, statement: str, *identifiers: sql.Composable) -> None:
        # `statement` holds names as the catalog quotes them (regclass, regprocedure) and {} for the rest.
        found.append(_Right(description, sql.SQL(statement).format(*identifiers)))

    cur.execute(
        f"SELECT {_GRANTEE}, a.privilege_type, a.is_grantable FROM pg_namespace n, "
        "aclexplode(n.nspacl) a WHERE n.oid = %s AND a.grantee <> n.nspowner",
        (schema_oid,),
    )
    for grantee, privilege, grantable in cur.fetchall():
        if grantee == admin:
            continue
        if grantee not in declared:
            add(f"{privilege} on schema {schema} to {grantee}", "REVOKE ALL ON SCHEMA {} FROM {}", s, _to(grantee))
        elif grantable:
            add(
                f"grant option: {privilege} on schema {schema} to {grantee}",
                "REVOKE GRANT OPTION FOR ALL ON SCHEMA {} FROM {}",
                s,
                _to(grantee),
            )

    cur.execute(
        f"SELECT c.oid::regclass::text, c.relkind = 'S', {_GRANTEE}, a.privilege_type, a.is_grantable "
        "FROM pg_class c, aclexplode(c.relacl) a WHERE c.relnamespace = %s "
        "AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantee <> c.relowner",
        (schema_oid,),
    )
    for relation, is_sequence, grantee, privilege, grantable in cur.fetchall():
        if grantee == admin:
            continue
        on = f"{'SEQUENCE' if is_sequence else 'TABLE'} {relation}"
        if grantee not in declared:
            add(f"{privilege} on {relation} to {grantee}", f"REVOKE ALL ON {on} FROM {{}}", _to(grantee))
        elif grantable:
            add(
                f"grant option: {privilege} on {relation} to {grantee}",
                f"REVOKE GRANT OPTION FOR ALL ON {on} FROM {{}}",
                _to(grantee),
            )

    # The one column privilege declared: SELECT, column by column, of a table
    # with columns withheld from that reader, on every other column.
    # A table read column by column that no declaration names (one with
    # withheld columns, renamed or moved here) is its grant's to report; taking
    # its columns away here would let that grant's next update widen it whole.
    cur.execute(
        f"SELECT c.oid::regclass::text, c.relname, att.attname, {_GRANTEE}, a.privilege_type, a.is_grantable, "
        "NOT EXISTS (SELECT FROM aclexplode(c.relacl) t WHERE t.grantee = a.grantee AND t.privilege_type = 'SELECT') "
        "FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid, aclexplode(att.attacl) a "
        "WHERE c.relnamespace = %s AND att.attnum > 0 AND NOT att.attisdropped AND a.grantee <> c.relowner",
        (schema_oid,),
    )
    narrowed = {role: withheld.by_table(columns) for role, columns in (withheld_from or {}).items()}
    for relation, table, column, grantee, privilege, grantable, column_wise in cur.fetchall():
        if grantee == admin:
            continue
        hidden = narrowed.get(grantee, {}).get(table)
        if privilege == "SELECT" and grantee in declared and column_wise and hidden is None:
            hidden = []
        if privilege == "SELECT" and hidden is not None and column not in hidden:
            if grantable:
                add(
                    f"grant option: SELECT ({column}) on {relation} to {grantee}",
                    f"REVOKE GRANT OPTION FOR SELECT ({{}}) ON TABLE {relation} FROM {{}}",
                    sql.Identifier(column),
                    _to(grantee),
                )
            continue
        # Exactly this privilege: a column's SELECT may be declared beside it.
        add(
            f"{privilege} ({column}) on {relation} to {grantee}",
            f"REVOKE {privilege} ({{}}) ON TABLE {relation} FROM {{}}",
            sql.Identifier(column),
            _to(grantee),
        )

    # PUBLIC's EXECUTE is DatabaseAccess's to revoke; no routine privilege is declared.
    cur.execute(
        f"SELECT p.oid::regprocedure::text, {_GRANTEE}, a.privilege_type FROM pg_proc p, aclexplode(p.proacl) a "
        "WHERE p.pronamespace = %s AND a.grantee <> p.proowner AND a.grantee <> 0",
        (schema_oid,),
    )
    for routine, grantee, privilege in cur.fetchall():
        if grantee != admin:
            add(f"{privilege} on {routine} to {grantee}", f"REVOKE ALL ON ROUTINE {routine} FROM {{}}", _to(grantee))

    cur.execute(
        f"SELECT pg_get_userbyid(d.defaclrole), d.defaclobjtype, {_GRANTEE}, a.privilege_type, a.is_grantable "
        "FROM pg_default_acl d, aclexplode(d.defaclacl) a WHERE d.defaclnamespace = %s AND a.grantee <> d.defaclrole",
        (schema_oid,),
    )
    for owner, objtype, grantee, privilege, grantable in cur.fetchall():
        objects = _DEFAULT_OBJECTS.get(str(objtype))
        if objects is None or grantee == admin or (grantee in declared and not grantable):
            continue
        future = f"{privilege} on future {objects.lower()} of {owner} in {schema} to {grantee}"
        revoke = "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} REVOKE "
        if grantee in declared:
            option = f"GRANT OPTION FOR ALL ON {objects} FROM {{}}"
            add(f"grant option: {future}", revoke + option, sql.Identifier(owner), s, _to(grantee))
        else:
            add(future, revoke + f"ALL ON {objects} FROM {{}}", sql.Identifier(owner), s, _to(grantee))
    return found


@dataclass(frozen=True)
class _Stray:
    kind: str
    """The ALTER statement's object type: TABLE, VIEW, SEQUENCE, FUNCTION, TYPE, ..."""
    name: str
    """As Postgres quotes it (with the argument types, for a routine)."""
    owner: str


# Sequences behind identity and serial columns, indexes and the array and
# multirange types Postgres makes for a type follow their parent's owner.
_STRAYS = """
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
       WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass::text, pg_get_userbyid(c.relowner)
FROM pg_class c
WHERE c.relnamespace = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND pg_get_userbyid(c.relowner) <> ALL(%(allowed)s)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
       p.oid::regprocedure::text, pg_get_userbyid(p.proowner)
FROM pg_proc p
WHERE p.pronamespace = %(schema)s AND pg_get_userbyid(p.proowner) <> ALL(%(allowed)s)
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text, pg_get_userbyid(t.typowner)
FROM pg_type t
WHERE t.typnamespace = %(schema)s AND t.typtype IN ('d', 'e', 'r', 'c')
  AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
  AND pg_get_userbyid(t.typowner) <> ALL(%(allowed)s)
ORDER BY 2
"""


def _strays(cur: psycopg.Cursor[Any], schema: str, allowed: Sequence[str]) -> list[_Stray]:
    """Objects in the schema owned by anyone but the `allowed` roles."""
    schema_oid = _oid(cur, "schema", schema)
    if schema_oid is None:
        return []
    cur.execute(_STRAYS, {"schema": schema_oid, "allowed": list(allowed)})
    return [_Stray(str(kind), str(name), str(owner)) for kind, name, owner in cur.fetchall()]


def _hand_over(cur: psycopg.Cursor[Any], schema: str, admin: str, object_owner: str) -> None:
    """Give `object_owner` whatever another role owns in the schema."""
    strays = _strays(cur, schema, (admin, object_owner))
    if not strays:
        return
    # ALTER ... OWNER needs the rights of the old and the new owner; an admin
    # that is not a superuser (RDS's master) borrows them for this transaction.
    borrowed = [
        role
        for role in sorted({object_owner, *(s.owner for s in strays)})
        if not _fetch_one(cur, "SELECT pg_has_role(current_user, %s, 'USAGE')", (role,))
    ]
    for role in borrowed:
        cur.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
    for stray in strays:
        # ALTER ROUTINE covers functions, procedures and aggregates alike.
        kind = "ROUTINE" if stray.kind in ("FUNCTION", "PROCEDURE", "AGGREGATE") else stray.kind
        # `name` is the catalog's own rendering (regclass, regprocedure, regtype): already quoted.
        cur.execute(sql.SQL("ALTER " + kind + " " + stray.name + " OWNER TO {}").format(sql.Identifier(object_owner)))
    for role in borrowed:
        cur.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(sql.Identifier(role)))


class SchemaGrantProvider(PostgresProvider):
    """Privileges of one role on one schema, its tables and sequences, now and later."""

    identity_keys = ("role", "schema")
    compared_keys = (
        "role",
        "schema",
        "schema_privileges",
        "table_privileges",
        "sequence_privileges",
        "default_owners",
        "withheld",
        "connection",
    )
    # A grant declared before columns could be withheld withheld none.
    added_later: ClassVar[Mapping[str, Any]] = {"withheld": []}
    drift_keys = ("withholding",)

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        failures = list(result.failures or [])
        for key, allowed in (
            ("schema_privileges", SCHEMA_PRIVILEGES),
            ("table_privileges", TABLE_PRIVILEGES),
            ("sequence_privileges", SEQUENCE_PRIVILEGES),
        ):
            bad = [p for p in _known_items(news.get(key)) if not isinstance(p, str) or p not in allowed]
            if bad:
                failures.append(CheckFailure(key, f"{bad} not among {sorted(allowed)}"))
        bad = [
            c
            for c in _known_items(news.get("withheld"))
            if not isinstance(c, str) or not withheld.WITHHELD_COLUMN.match(c)
        ]
        if bad:
            failures.append(CheckFailure("withheld", f"{bad}: each is `table.column`, lower-case identifiers"))
        privileges = news.get("table_privileges")
        if _known_items(news.get("withheld")) and not _is_unknown(privileges) and list(privileges or []) != ["SELECT"]:
            failures.append(
                CheckFailure("withheld", f"columns are withheld only from a grant of SELECT alone, not {privileges}")
            )
        return CheckResult(news, failures)

    def _id(self, props: Mapping[str, Any]) -> str:
        return f"{props['schema']}.{props['role']}"

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            role, schema = props["role"], props["schema"]
            _lock_schema_acl(cur, schema)
            if _oid(cur, "role", role) is None or _oid(cur, "schema", schema) is None:
                return
            _revoke_all(cur, role, schema, props.get("default_owners") or ())
            withheld.drop(cur, role, schema)

    def _apply(self, props: Mapping[str, Any], olds: Mapping[str, Any]) -> None:
        previous_owners: Iterable[str] = olds.get("default_owners") or ()
        role, schema = props["role"], props["schema"]
        owners = list(props.get("default_owners") or [])
        table_privs = props.get("table_privileges") or []
        seq_privs = props.get("sequence_privileges") or []
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            _lock_schema_acl(cur, schema)
            narrowed = _read_column_wise(cur, role, schema, props.get("withheld") or [])
            # Revoke-then-grant in one transaction: the result is exactly the
            # declared set, whatever was there before, and nobody sees the gap.
            _revoke_all(cur, role, schema, sorted(set(owners) | set(previous_owners)))
            r, s = sql.Identifier(role), sql.Identifier(schema)
            if props.get("schema_privileges"):
                cur.execute(sql.SQL("GRANT {} ON SCHEMA {} TO {}").format(_privs(props["schema_privileges"]), s, r))
            for relation, kind in _foreign_relations(cur, role, schema):
                privs = seq_privs if kind == "S" else table_privs
                if privs:
                    what = "SEQUENCE" if kind == "S" else "TABLE"
                    cur.execute(
                        sql.SQL("GRANT {} ON " + what + " {} TO {}").format(
                            _privs(privs), sql.Identifier(schema, relation), r
                        )
                    )
            for owner in owners:
                o = sql.Identifier(owner)
                if table_privs:
                    cur.execute(
                        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON TABLES TO {}").format(
                            o, s, _privs(table_privs), r
                        )
                    )
                if seq_privs:
                    cur.execute(
                        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON SEQUENCES TO {}").format(
                            o, s, _privs(seq_privs), r
                        )
                    )
            withheld.apply(cur, role, schema, props.get("withheld") or [])
            # Never widened: a table the role read column by column keeps those columns.
            for relation, columns in narrowed.items():
                cur.execute(sql.SQL("REVOKE SELECT ON " + relation + " FROM {}").format(sql.Identifier(role)))
                cur.execute(
                    sql.SQL("GRANT SELECT ({}) ON " + relation + " TO {}").format(
                        sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(role)
                    )
                )

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        role, schema = props["role"], props["schema"]
        with connect(props["connection"]) as conn, conn.cursor() as cur:
            role_oid, schema_oid = _oid(cur, "role", role), _oid(cur, "schema", schema)
            if role_oid is None or schema_oid is None:
                return ReadResult(id_="", outs={})
            cur.execute(
                "SELECT a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a "
                "WHERE n.oid = %s AND a.grantee = %s ORDER BY 1",
                (schema_oid, role_oid),
            )
            schema_privs = [row[0] for row in cur.fetchall()]
            columns = props.get("withheld") or []
            # Tables read column by column are judged by what is withheld there.
            undeclared_narrow = _read_column_wise(cur, role, schema, columns)
            narrowed = withheld.tables(cur, schema, columns) | {oid for (oid,) in _oids(cur, list(undeclared_narrow))}
            observed = {
                "T": _observed_relation_privileges(cur, role_oid, schema_oid, tables=True, skip=narrowed),
                "S": _observed_relation_privileges(cur, role_oid, schema_oid, tables=False, skip=narrowed),
            }
            outs = _outs(props)
            outs["schema_privileges"] = schema_privs
            if observed["T"] is not None:
                outs["table_privileges"] = observed["T"]
            if observed["S"] is not None:
                outs["sequence_privileges"] = observed["S"]
            outs["default_owners"] = [
                owner
                for owner in props.get("default_owners") or []
                if _default_privileges(cur, owner, schema_oid, role_oid, "r")
                == sorted(props.get("table_privileges") or [])
                and _default_privileges(cur, owner, schema_oid, role_oid, "S")
                == sorted(props.get("sequence_privileges") or [])
            ]
            outs["withholding"] = (withheld.problems(cur, role, schema, columns) if columns else []) + [
                f"{relation} is read column by column by {role}, which no declaration says (a table with "
                "withheld columns, renamed or moved here?): declare its withheld columns, or grant it whole by hand"
                for relation in undeclared_narrow
            ]
            return ReadResult(id_=id_, outs=outs)


def _read_column_wise(
    cur: psycopg.Cursor[Any], role: str, schema: str, withheld_columns: Sequence[str]
) -> dict[str, list[str]]:
    """Tables of the schema the role reads column by column though no
    declared withholding covers them, with those columns (relation as the
    catalog quotes it)."""
    covered = withheld.tables(cur, schema, withheld_columns)
    cur.execute(
        "SELECT c.oid, c.oid::regclass::text, array_agg(att.attname::text ORDER BY att.attnum) "
        "FROM pg_class c JOIN pg_attribute att ON att.attrelid = c.oid, aclexplode(att.attacl) a "
        "WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'p') AND att.attnum > 0 "
        "AND NOT att.attisdropped AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s) "
        "AND a.privilege_type = 'SELECT' AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) t "
        "WHERE t.grantee = a.grantee AND t.privilege_type = 'SELECT') GROUP BY c.oid ORDER BY 2",
        (schema, role),
    )
    return {str(name): list(columns) for oid, name, columns in cur.fetchall() if int(oid) not in covered}


def _oids(cur: psycopg.Cursor[Any], relations: Sequence[str]) -> list[tuple[int]]:
    if not relations:
        return []
    cur.execute("SELECT r::regclass::oid FROM unnest(%s::text[]) r", (list(relations),))
    return [(int(row[0]),) for row in cur.fetchall()]


def _foreign_relations(cur: psycopg.Cursor[Any], role: str, schema: str) -> list[tuple[str, str]]:
    """Tables, views and sequences in the schema that the role does not own
    (an owner's own rights are not ours to revoke)."""
    cur.execute(
        "SELECT c.relname, CASE WHEN c.relkind = 'S' THEN 'S' ELSE 'T' END "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
        "AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY 1",
        (schema, role),
    )
    return [(row[0], row[1]) for row in cur.fetchall()]


def _lock_schema_acl(cur: psycopg.Cursor[Any], schema: str) -> None:
    """Hold, until the transaction ends, the one lock every change to a
    schema's rights takes. `pulumi up` applies the grants on one schema in
    parallel, and two transactions rewriting the same catalog row (the
    schema's ACL, a default-privilege entry) make the later one fail with
    "tuple concurrently updated" instead of waiting."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('wondernest:schema-acl'), hashtext(%s))", (schema,))


def _revoke_all(cur: psycopg.Cursor[Any], role: str, schema: str, owners: Iterable[str]) -> None:
    r, s = sql.Identifier(role), sql.Identifier(schema)
    cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(s, r))
    for relation, kind in _foreign_relations(cur, role, schema):
        what = "SEQUENCE" if kind == "S" else "TABLE"
        cur.execute(sql.SQL("REVOKE ALL ON " + what + " {} FROM {}").format(sql.Identifier(schema, relation), r))
    for owner in owners:
        if _oid(cur, "role", owner) is None:
            continue
        for objects in ("TABLES", "SEQUENCES"):
            cur.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} REVOKE ALL ON " + objects + " FROM {}"
                ).format(sql.Identifier(owner), s, r)
            )


def _observed_relation_privileges(
    cur: psycopg.Cursor[Any], role_oid: int, schema_oid: int, *, tables: bool, skip: Iterable[int] = ()
) -> list[str] | None:
    """The privileges the role holds on every relation of the kind, or None when
    the schema has none to look at. Rights held on only some relations show up as
    a `PARTIAL:` entry so the next update puts them right."""
    kind_filter = "c.relkind <> 'S'" if tables else "c.relkind = 'S'"
    cur.execute(
        "SELECT c.oid, coalesce(array_agg(a.privilege_type) FILTER (WHERE a.grantee = %s), '{}'::text[]) "
        "FROM pg_class c LEFT JOIN LATERAL aclexplode(c.relacl) a ON true "
        "WHERE c.relnamespace = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
        f"AND {kind_filter} AND c.relowner <> %s AND c.oid <> ALL(%s) GROUP BY c.oid",
        (role_oid, schema_oid, role_oid, list(skip)),
    )
    sets = [frozenset(row[1]) for row in cur.fetchall()]
    if not sets:
        return None
    common = frozenset.intersection(*sets)
    every = frozenset.union(*sets)
    observed = sorted(common)
    if every != common:
        observed.append("PARTIAL:" + ",".join(sorted(every - common)))
    return observed


def _default_privileges(
    cur: psycopg.Cursor[Any], owner: str, schema_oid: int, role_oid: int, objtype: str
) -> list[str]:
    cur.execute(
        "SELECT a.privilege_type FROM pg_default_acl d, aclexplode(d.defaclacl) a "
        "WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = %s) "
        "AND d.defaclnamespace = %s AND d.defaclobjtype = %s AND a.grantee = %s ORDER BY 1",
        (owner, schema_oid, objtype, role_oid),
    )
    return [row[0] for row in cur.fetchall()]


class DatabaseAccessProvider(PostgresProvider):
    """Who may connect: PUBLIC loses its default rights on the database and on the
    `public` schema; each named role gets CONNECT and nothing more. PUBLIC also
    loses EXECUTE on the schemas' functions and procedures, present and future:
    by default every role may run every function, so a read-only role could
    write through any SECURITY DEFINER one."""

    identity_keys = ("database",)
    compared_keys = (
        "database", "connect_roles", "public_revoked", "routine_owners", "schemas", "routines_public_revoked",
        "restricted_functions", "function_grants", "extension_readers", "event_triggers", "connection",
    )  # fmt: skip
    # A database access created before these inputs existed restricted no catalog function.
    added_later: ClassVar[Mapping[str, Any]] = {"restricted_functions": [], "function_grants": {},
                                                "extension_readers": {}, "event_triggers": []}  # fmt: skip
    drift_keys = ("undeclared", "refused")

    def _id(self, props: Mapping[str, Any]) -> str:
        return str(props["database"])

    def _apply(self, props: Mapping[str, Any], olds: Mapping[str, Any]) -> None:
        previous: Iterable[str] = olds.get("connect_roles") or ()
        db = sql.Identifier(props["database"])
        wanted = set(props.get("connect_roles") or [])
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
            cur.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            for right in _undeclared_database_rights(cur, props["database"], str(props["connection"]["user"])):
                cur.execute(right.revoke)
            for role in sorted(set(previous) - wanted):
                if _oid(cur, "role", role) is not None:
                    cur.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(db, sql.Identifier(role)))
            for role in sorted(wanted):
                cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, sql.Identifier(role)))
            for owner in props.get("routine_owners") or []:
                cur.execute(
                    sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE EXECUTE ON ROUTINES FROM PUBLIC").format(
                        sql.Identifier(owner)
                    )
                )
            for schema in props.get("schemas") or []:
                if _oid(cur, "schema", schema) is not None:
                    cur.execute(
                        sql.SQL("REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA {} FROM PUBLIC").format(
                            sql.Identifier(schema)
                        )
                    )
            _restrict_functions(cur, props.get("restricted_functions") or [], props.get("function_grants") or {})
            found = _backdoors(cur, props)
            for finding in found:
                if finding.remedy is not None and not finding.outside_transaction:
                    cur.execute(finding.remedy)
        with connect(props["connection"]) as conn:
            for finding in found:
                if finding.remedy is not None and finding.outside_transaction:
                    conn.execute(finding.remedy)
            if backdoors.is_superuser(conn.cursor()):
                # What is in effect is then what the files say: a line put in
                # pg_hba.conf, loaded and taken out again, is no longer in force.
                conn.execute("SELECT pg_reload_conf()")
        refused = [f.description for f in found if f.remedy is None]
        if refused:
            raise PostgresResourceError(
                f"{len(refused)} thing(s) on the server that the platform does not declare and will not remove "
                "by itself: " + "; ".join(refused)
            )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # PUBLIC's rights stay revoked: removing this resource must not open the
        # database to every role on the server.
        db = sql.Identifier(props["database"])
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            for role in props.get("connect_roles") or []:
                if _oid(cur, "role", role) is not None:
                    cur.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(db, sql.Identifier(role)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with connect(props["connection"]) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT coalesce(datacl, acldefault('d', datdba)) FROM pg_database WHERE datname = %s",
                (id_,),
            )
            if cur.fetchone() is None:
                return ReadResult(id_="", outs={})
            cur.execute(
                "SELECT a.grantee, r.rolname, a.privilege_type FROM pg_database d, "
                "aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
                "LEFT JOIN pg_roles r ON r.oid = a.grantee "
                "WHERE d.datname = %s AND a.grantee <> d.datdba",
                (id_,),
            )
            rows = cur.fetchall()
            database_public = any(grantee == 0 for grantee, _, _ in rows)
            connect_roles = sorted({name for grantee, name, priv in rows if grantee != 0 and priv == "CONNECT"})
            schema_public = bool(
                _fetch_one(
                    cur,
                    "SELECT count(*) FROM pg_namespace n, "
                    "aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a "
                    "WHERE n.nspname = 'public' AND a.grantee = 0",
                    (),
                )
            )
            outs = _outs(props)
            outs.update(
                database=id_,
                connect_roles=connect_roles,
                public_revoked=not (database_public or schema_public),
                routines_public_revoked=_routines_public_revoked(
                    cur, props.get("routine_owners") or [], props.get("schemas") or []
                ),
            )
            outs.update(_observed_function_rights(cur, props))
            admin = str(props["connection"]["user"])
            found = _backdoors(cur, props)
            outs["undeclared"] = sorted(
                {r.description for r in _undeclared_database_rights(cur, id_, admin)}
                | {f.description for f in found if f.remedy is not None}
            )
            outs["refused"] = [f.description for f in found if f.remedy is None]
            return ReadResult(id_=id_, outs=outs)


def _backdoors(cur: psycopg.Cursor[Any], props: Mapping[str, Any]) -> list[backdoors.Finding]:
    return backdoors.findings(
        cur,
        declared_roles=list(props.get("connect_roles") or []),
        schemas=list(props.get("schemas") or []),
        function_grants=props.get("function_grants") or {},
        extension_readers=props.get("extension_readers") or {},
        event_triggers_declared=props.get("event_triggers") or [],
    )


def _undeclared_database_rights(cur: psycopg.Cursor[Any], database: str, admin: str) -> list[_Right]:
    """What a role holds on the database beyond CONNECT (CREATE makes schemas,
    TEMPORARY makes tables), grant options, and database-wide default
    privileges granting anyone rights on future objects: none is ever declared.
    Revoking ALL also takes CONNECT; the declared roles get it back right after."""
    found: list[_Right] = []
    db = sql.Identifier(database)
    cur.execute(
        f"SELECT {_GRANTEE}, a.privilege_type, a.is_grantable FROM pg_database d, aclexplode(d.datacl) a "
        "WHERE d.datname = %s AND a.grantee NOT IN (0, d.datdba)",
        (database,),
    )
    for grantee, privilege, grantable in cur.fetchall():
        if grantee == admin or (privilege == "CONNECT" and not grantable):
            continue
        label = f"{privilege} on database {database} to {grantee}"
        revoke = sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, _to(grantee))
        found.append(_Right(f"grant option: {label}" if privilege == "CONNECT" else label, revoke))
    # PUBLIC's EXECUTE on future routines is `routines_public_revoked`'s.
    cur.execute(
        f"SELECT pg_get_userbyid(d.defaclrole), d.defaclobjtype, {_GRANTEE}, a.privilege_type "
        "FROM pg_default_acl d, aclexplode(d.defaclacl) a WHERE d.defaclnamespace = 0 "
        "AND a.grantee <> d.defaclrole AND NOT (d.defaclobjtype = 'f' AND a.grantee = 0)",
    )
    for owner, objtype, grantee, privilege in cur.fetchall():
        objects = _DEFAULT_OBJECTS.get(str(objtype), "SCHEMAS" if objtype == "n" else None)
        if objects is None or grantee == admin:
            continue
        found.append(
            _Right(
                f"{privilege} on future {objects.lower()} of {owner}, database-wide, to {grantee}",
                sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE ALL ON " + objects + " FROM {}").format(
                    sql.Identifier(owner), _to(grantee)
                ),
            )
        )
    return found


def _catalog_functions(cur: psycopg.Cursor[Any], names: Sequence[str]) -> dict[str, set[str]]:
    """Every overload of the named pg_catalog functions (signature as the catalog
    prints it) → who may run it besides its owner; PUBLIC as `PUBLIC`."""
    cur.execute(
        f"SELECT p.oid::regprocedure::text, coalesce(array_agg({_GRANTEE}) "
        "FILTER (WHERE a.grantee <> p.proowner), '{}') "
        "FROM pg_proc p LEFT JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a ON true "
        "WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY(%s) GROUP BY 1",
        (list(names),),
    )
    return {str(signature): set(grantees) for signature, grantees in cur.fetchall()}


def _restrict_functions(cur: psycopg.Cursor[Any], names: Sequence[str], grants: Mapping[str, Sequence[str]]) -> None:
    """Only the declared roles run the named catalog functions: PUBLIC and anyone
    else lose EXECUTE on every overload. Changing a pg_catalog function's
    privileges takes a superuser."""
    for signature, grantees in sorted(_catalog_functions(cur, names).items()):
        allowed = set(grants.get(signature) or [])
        for grantee in sorted((grantees | {"PUBLIC"}) - allowed):
            cur.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION " + signature + " FROM {}").format(_to(grantee)))
    for signature, roles in sorted(grants.items()):
        for role in sorted(roles):
            cur.execute(sql.SQL("GRANT EXECUTE ON FUNCTION " + signature + " TO {}").format(sql.Identifier(role)))


def _observed_function_rights(cur: psycopg.Cursor[Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """The restricted names no one undeclared may run, and the declared grants that hold."""
    names = list(props.get("restricted_functions") or [])
    grants: Mapping[str, Sequence[str]] = props.get("function_grants") or {}
    found = _catalog_functions(cur, names)
    open_names = {
        signature.split("(", 1)[0]
        for signature, grantees in found.items()
        if grantees - set(grants.get(signature) or [])
    }
    return {
        "restricted_functions": [name for name in names if name not in open_names],
        "function_grants": {
            signature: sorted(role for role in roles if role in found.get(signature, set()))
            for signature, roles in grants.items()
        },
    }


def _routines_public_revoked(cur: psycopg.Cursor[Any], owners: Sequence[str], schemas: Sequence[str]) -> bool:
    """No routine in the schemas runs for PUBLIC, and no owner's future routine will."""
    runnable = _fetch_one(
        cur,
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, "
        "aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a "
        "WHERE n.nspname = ANY(%s) AND a.grantee = 0",
        (list(schemas),),
    )
    if runnable:
        return False
    for owner in owners:
        # Without a database-wide default ACL entry for the owner, PUBLIC's EXECUTE is the built-in default.
        entry = _fetch_one(
            cur,
            "SELECT count(*) FILTER (WHERE a.grantee = 0) FROM pg_default_acl d "
            "LEFT JOIN LATERAL aclexplode(d.defaclacl) a ON true "
            "WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = %s) "
            "AND d.defaclnamespace = 0 AND d.defaclobjtype = 'f' "
            "HAVING count(*) > 0",
            (owner,),
        )
        if entry is None or entry > 0:
            return False
    return True


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
    """The known items of a list input: none when the list itself is unknown."""
    if value is None or _is_unknown(value) or not isinstance(value, (list, tuple)):
        return []
    return [item for item in value if not _is_unknown(item)]


def _whole_number(value: Any, *, minimum: int) -> bool:
    """Numbers cross the wire as doubles: 3.0 is the whole number 3."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return float(value).is_integer() and value >= minimum


class ExtensionProvider(PostgresProvider):
    """An extension in a schema, whose views and functions only `readers` may
    use: PUBLIC loses what the extension's own script grants it, and any other
    right on its objects is drift."""

    identity_keys = ("name", "schema")
    compared_keys = ("name", "schema", "readers", "views", "functions", "connection")
    role_list_keys = ("readers",)
    # Another schema is ALTER EXTENSION ... SET SCHEMA: only the name replaces.
    replace_keys = ("name",)
    delete_before_replace = True
    drift_keys = ("undeclared",)

    def _apply(self, props: Mapping[str, Any], _olds: Mapping[str, Any]) -> None:
        name, schema = sql.Identifier(props["name"]), sql.Identifier(props["schema"])
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            current = _extension_schema(cur, props["name"])
            if current is None:
                cur.execute(sql.SQL("CREATE EXTENSION {} WITH SCHEMA {}").format(name, schema))
            elif current != props["schema"]:
                cur.execute(sql.SQL("ALTER EXTENSION {} SET SCHEMA {}").format(name, schema))
            for right in _extension_rights(cur, props)[1]:
                cur.execute(right.revoke)
            for reader in sorted(props.get("readers") or []):
                r = sql.Identifier(reader)
                cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, r))
                for view in props.get("views") or []:
                    cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(props["schema"], view), r))
                for function in props.get("functions") or []:
                    # The signature as the catalog prints it, after a quoted schema.
                    cur.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}." + function + " TO {}").format(schema, r))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        # Statistics, not data: dropping them loses nothing a restart would not.
        with connect(props["connection"]) as conn, conn.transaction(), conn.cursor() as cur:
            for reader in props.get("readers") or []:
                if _oid(cur, "role", reader) is not None:
                    cur.execute(
                        sql.SQL("REVOKE USAGE ON SCHEMA {} FROM {}").format(
                            sql.Identifier(props["schema"]), sql.Identifier(reader)
                        )
                    )
            cur.execute(sql.SQL("DROP EXTENSION IF EXISTS {}").format(sql.Identifier(props["name"])))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with connect(props["connection"]) as conn, conn.cursor() as cur:
            schema = _extension_schema(cur, id_)
            if schema is None:
                return ReadResult(id_="", outs={})
            outs = _outs(props)
            readers, undeclared = _extension_rights(cur, {**props, "schema": schema})
            outs.update(
                name=id_,
                schema=schema,
                readers=readers,
                undeclared=sorted({right.description for right in undeclared}),
            )
            return ReadResult(id_=id_, outs=outs)


def _extension_schema(cur: psycopg.Cursor[Any], name: str) -> str | None:
    found = _fetch_one(
        cur,
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = %s",
        (name,),
    )
    return None if found is None else str(found)


# The extension's views and functions, schema-qualified, with every right on
# them that is not their owner's.
_EXTENSION_RIGHTS = f"""
SELECT 'TABLE', format('%%I.%%I', n.nspname, c.relname), {_GRANTEE}, a.privilege_type, a.is_grantable
FROM pg_depend d JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = %(extension)s AND a.grantee <> c.relowner
UNION ALL
SELECT 'FUNCTION', format('%%I.%%I(%%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes)), {_GRANTEE},
       a.privilege_type, a.is_grantable
FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid JOIN pg_namespace n ON n.oid = p.pronamespace,
     aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = %(extension)s AND a.grantee <> p.proowner
"""


def _extension_rights(cur: psycopg.Cursor[Any], props: Mapping[str, Any]) -> tuple[list[str], list[_Right]]:
    """The readers holding every right declared for them, and each right no one declared."""
    schema = str(props["schema"])
    readers = list(props.get("readers") or [])
    wanted = {
        *((f"{schema}.{view}", "SELECT") for view in props.get("views") or []),
        *((f"{schema}.{function}", "EXECUTE") for function in props.get("functions") or []),
    }
    extension = _fetch_one(cur, "SELECT oid FROM pg_extension WHERE extname = %s", (props["name"],))
    cur.execute(_EXTENSION_RIGHTS, {"extension": extension})
    held: dict[str, set[tuple[str, str]]] = {}
    undeclared: list[_Right] = []
    for kind, target, grantee, privilege, grantable in cur.fetchall():
        if grantee in readers and (target, privilege) in wanted and not grantable:
            held.setdefault(grantee, set()).add((target, privilege))
            continue
        undeclared.append(
            _Right(
                f"{'grant option: ' if grantable else ''}{privilege} on {target} to {grantee}",
                sql.SQL("REVOKE ALL ON " + kind + " " + target + " FROM {}").format(_to(grantee)),
            )
        )
    usage = {
        str(row[0])
        for row in cur.execute(
            f"SELECT {_GRANTEE} FROM pg_namespace n, aclexplode(n.nspacl) a "
            "WHERE n.nspname = %s AND a.privilege_type = 'USAGE'",
            (schema,),
        ).fetchall()
    }
    complete = [reader for reader in readers if held.get(reader) == wanted and reader in usage]
    return complete, undeclared
