"""Extensions and who may read them: nobody else, PUBLIC included."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql
from pulumi.dynamic import (
    ReadResult,
)

from components.postgres.base import (
    _GRANTEE,
    PostgresProvider,
    _fetch_one,
    _oid,
    _outs,
    _Right,
    _to,
    connect,
)


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
