"""Schemas: who owns them and what they hold, and every right in them that
no grant declares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from pulumi.dynamic import (
    ReadResult,
)

from components.postgres import withheld
from components.postgres.base import (
    _DEFAULT_OBJECTS,
    _GRANTEE,
    PostgresProvider,
    PostgresResourceError,
    _fetch_one,
    _lock_schema_acl,
    _oid,
    _outs,
    _Right,
    _to,
    connect,
)


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
