"""Roles: attributes, connection limits, memberships, per-role settings and
passwords set as SCRAM verifiers that never reach a statement's text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    DiffResult,
    ReadResult,
)

from components.postgres.base import (
    ROLE_SETTING,
    SESSION_SETTING,
    PostgresProvider,
    PostgresResourceError,
    _fetch_one,
    _is_unknown,
    _known_items,
    _oid,
    _outs,
    _whole_number,
    connect,
)


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
            if isinstance(setting, str) and not (ROLE_SETTING.match(setting) or SESSION_SETTING.match(setting)):
                failures.append(
                    CheckFailure("settings", f"{setting!r} is neither `role=<role name>` nor a timeout (`<name>=30s`)")
                )
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
                inherit=sql.SQL("NOINHERIT" if _acts_as(declared) else "INHERIT"),
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
            # An alternate user (one that acts as its role) must not inherit.
            inherit_drift = bool(inherit) == _acts_as(props.get("settings") or [])
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


def _acts_as(settings: Sequence[str]) -> bool:
    """A role that takes on another at login (an alternate user)."""
    return any(str(s).startswith("role=") for s in settings)


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
