"""Columns a reading role may not see, such as password hashes and token digests.

A table-wide SELECT covers every column, and default privileges can only
grant table-wide, so a reader of a schema would read a credential column the
moment a migration creates it. Instead, the role reads such a table column
by column, every column but the withheld ones. An event trigger keeps it so
after every CREATE or ALTER TABLE, in the migration's own transaction: a new
table or column never shows its credentials, not even until the next
`pulumi up`. The trigger runs as whoever ran the DDL (the table's owner, who
granted the table-wide SELECT through its default privileges and so may take
it back); it is no SECURITY DEFINER function, and it narrows only what the
role could already read.

Only tables are covered: a view the migrations build over a withheld column
shows it to whoever reads the view, as any view shows what it selects.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

WITHHELD_COLUMN = re.compile(r"^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$")
TRIGGER_PREFIX = "wn_withhold_"
TAGS = ("CREATE TABLE", "CREATE TABLE AS", "SELECT INTO", "ALTER TABLE")


def trigger_name(schema: str, role: str) -> str:
    """The event trigger's and its function's name: one per schema and role,
    within the 63 bytes of an identifier whatever the names' lengths."""
    return TRIGGER_PREFIX + hashlib.sha256(f"{schema}.{role}".encode()).hexdigest()[:16]


def by_table(withheld: Sequence[str]) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for item in sorted(withheld):
        table, column = item.split(".", 1)
        tables.setdefault(table, []).append(column)
    return tables


# The declared tables of the schema and every table that inherits from one or
# is a partition of one (in any schema), each with the declared table whose
# columns it withholds: a partition or child read directly shows what its
# parent withholds.
TREE = """
WITH RECURSIVE tree(oid, declared) AS (
    SELECT c.oid, c.relname::text FROM pg_class c
    WHERE c.relnamespace = {schema}::regnamespace AND c.relkind IN ('r', 'p') AND {withheld} ? c.relname::text
    UNION
    SELECT i.inhrelid, t.declared FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid
)
SELECT oid, declared FROM tree
"""

# When the DDL touched any of those tables, each of them the role may read at
# all is narrowed: a table-wide SELECT becomes SELECT on every other column
# (a column added since included). A table that lacks a declared column (one
# renamed away, or dropped) is closed to the role whole: the column it became
# is not known, so nothing is shown until the declaration names it.
_BODY = """
DECLARE
    withheld constant jsonb := %(withheld)s;
    target record;
    missing boolean;
    shown text;
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_event_trigger_ddl_commands() d JOIN (%(tree)s) t ON t.oid = d.objid
        WHERE d.classid = 'pg_class'::regclass
    ) THEN
        RETURN;
    END IF;
    FOR target IN %(tree)s
    LOOP
        CONTINUE WHEN NOT has_any_column_privilege(%(role)s, target.oid, 'SELECT');
        SELECT EXISTS (
            SELECT FROM jsonb_array_elements_text(withheld -> target.declared) w(name)
            WHERE NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = target.oid
                              AND a.attname = w.name AND a.attnum > 0 AND NOT a.attisdropped)
        ) INTO missing;
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO shown
        FROM pg_attribute a
        WHERE a.attrelid = target.oid AND a.attnum > 0 AND NOT a.attisdropped
          AND NOT (withheld -> target.declared) ? a.attname::text;
        EXECUTE format('REVOKE SELECT ON %%s FROM %%I', target.oid::regclass, %(role)s);
        IF shown IS NOT NULL AND NOT missing THEN
            EXECUTE format('GRANT SELECT (%%s) ON %%s TO %%I', shown, target.oid::regclass, %(role)s);
        END IF;
    END LOOP;
END
"""


def _tree(schema: str, withheld: Sequence[str]) -> str:
    literal = sql.Literal  # quoted by the server's rules, not by hand
    return TREE.format(
        schema=literal(schema).as_string(),
        withheld=literal(json.dumps(by_table(withheld), sort_keys=True)).as_string() + "::jsonb",
    ).strip()


def body(schema: str, role: str, withheld: Sequence[str]) -> str:
    literal = sql.Literal
    return _BODY % {
        "withheld": literal(json.dumps(by_table(withheld), sort_keys=True)).as_string() + "::jsonb",
        "tree": _tree(schema, withheld),
        "role": literal(role).as_string(),
    }


def apply(cur: psycopg.Cursor[Any], role: str, schema: str, withheld: Sequence[str]) -> None:
    """Narrow the role's reads of the tables there are now, and keep the
    trigger that narrows them later; without withheld columns, no trigger."""
    name = trigger_name(schema, role)
    function = sql.Identifier(schema, name)
    cur.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(name)))
    if not withheld:
        cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function))
        return
    declared = by_table(withheld)
    for oid, table in members(cur, schema, withheld):
        _narrow(cur, role, oid, declared[table])
    cur.execute(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog AS {}"
        ).format(function, sql.Literal(body(schema, role, withheld)))
    )
    cur.execute(sql.SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(function))
    cur.execute(
        sql.SQL("CREATE EVENT TRIGGER {} ON ddl_command_end WHEN TAG IN ({}) EXECUTE FUNCTION {}()").format(
            sql.Identifier(name), sql.SQL(", ").join(sql.Literal(t) for t in TAGS), function
        )
    )


def drop(cur: psycopg.Cursor[Any], role: str, schema: str) -> None:
    name = trigger_name(schema, role)
    cur.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(name)))
    cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(sql.Identifier(schema, name)))


def members(cur: psycopg.Cursor[Any], schema: str, withheld: Sequence[str]) -> list[tuple[int, str]]:
    """Each table there is now that withholds columns (a declared one, or a
    child or partition of one) with the declared table it follows."""
    cur.execute(_tree(schema, withheld))
    return [(int(oid), str(table)) for oid, table in cur.fetchall()]


def _narrow(cur: psycopg.Cursor[Any], role: str, oid: int, columns: Sequence[str]) -> None:
    """As the trigger does: every other column, or nothing when a declared one is missing."""
    cur.execute("SELECT has_any_column_privilege(%s, %s, 'SELECT')", (role, oid))
    row = cur.fetchone()
    if not (row and row[0]):
        return
    shown = _columns(cur, oid, exclude=columns)
    relation = sql.SQL(_regclass(cur, oid))
    cur.execute(sql.SQL("REVOKE SELECT ON {} FROM {}").format(relation, sql.Identifier(role)))
    if shown and not _missing(cur, oid, columns):
        cur.execute(
            sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in shown), relation, sql.Identifier(role)
            )
        )


def _missing(cur: psycopg.Cursor[Any], oid: int, columns: Sequence[str]) -> list[str]:
    cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", (oid,))
    present = {str(row[0]) for row in cur.fetchall()}
    return [c for c in columns if c not in present]


def _columns(cur: psycopg.Cursor[Any], oid: int, *, exclude: Sequence[str]) -> list[str]:
    cur.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
        "AND attname <> ALL(%s) ORDER BY attnum",
        (oid, list(exclude)),
    )
    return [str(row[0]) for row in cur.fetchall()]


def _regclass(cur: psycopg.Cursor[Any], oid: int) -> str:
    cur.execute("SELECT %s::regclass::text", (oid,))
    row = cur.fetchone()
    assert row is not None
    return str(row[0])


def tables(cur: psycopg.Cursor[Any], schema: str, withheld: Sequence[str]) -> set[int]:
    """The oids of the tables there are now that withhold columns."""
    return {oid for oid, _ in members(cur, schema, withheld)} if withheld else set()


# How the trigger's function must be: the declared body, run as its caller
# with the catalog alone on its search path, owned by the admin.
_FUNCTION = (
    "SELECT t.evtenabled, t.evtevent, t.evttags, p.prosrc, p.pronamespace::regnamespace::text, p.prosecdef, "
    "p.proconfig, pg_get_userbyid(p.proowner) = current_user "
    "FROM pg_event_trigger t JOIN pg_proc p ON p.oid = t.evtfoid WHERE t.evtname = %s"
)


def problems(cur: psycopg.Cursor[Any], role: str, schema: str, withheld: Sequence[str]) -> list[str]:
    """What differs from the declaration: a withheld column the role reads,
    another column of such a table it cannot read (the grant is of SELECT on
    every table), a declared column the table no longer has, a privilege on
    the whole table, and a trigger that is missing, disabled or not the
    declared one."""
    found: list[str] = []
    declared = by_table(withheld)
    for oid, table in members(cur, schema, withheld):
        columns = declared[table]
        relation = _regclass(cur, oid)
        cur.execute(
            "SELECT attname, has_column_privilege(%s, attrelid, attnum, 'SELECT') FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (role, oid),
        )
        readable = dict(cur.fetchall())
        missing = [c for c in columns if c not in readable]
        seen = sorted(c for c in columns if readable.get(c))
        if seen:
            found.append(f"{relation} ({', '.join(seen)}) readable by {role}, declared withheld")
        if missing:
            found.append(
                f"{relation} has no column {', '.join(missing)}, declared withheld: closed to {role} whole "
                "until the declaration names the column it became"
            )
            if any(readable.values()):
                found.append(f"{relation} readable by {role} though a withheld column is gone")
        else:
            hidden = [c for c, can in readable.items() if not can and c not in columns]
            if hidden:
                found.append(f"{relation} ({', '.join(hidden)}) not readable by {role}")
        cur.execute(
            "SELECT a.privilege_type FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE c.oid = %s AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY 1",
            (oid, role),
        )
        whole = [row[0] for row in cur.fetchall()]
        if whole:
            found.append(f"{', '.join(whole)} on the whole of {relation} to {role}, declared column by column")
    name = trigger_name(schema, role)
    cur.execute(_FUNCTION, (name,))
    row = cur.fetchone()
    if row is None:
        found.append(f"event trigger {name}, which withholds {schema}'s columns from {role}, is missing")
    elif (row[0], row[1], sorted(row[2] or []), row[3], row[4], row[5], row[6], row[7]) != (
        "O",
        "ddl_command_end",
        sorted(TAGS),
        body(schema, role, withheld),
        schema,
        False,
        ["search_path=pg_catalog"],
        True,
    ):
        found.append(f"event trigger {name}, which withholds {schema}'s columns from {role}, is not as declared")
    return found
