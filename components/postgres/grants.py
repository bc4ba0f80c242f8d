"""A role's rights on one schema, its tables and sequences, now and later,
with the columns withheld from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ReadResult,
)

from components.postgres import withheld
from components.postgres.base import (
    SCHEMA_PRIVILEGES,
    SEQUENCE_PRIVILEGES,
    TABLE_PRIVILEGES,
    PostgresProvider,
    _is_unknown,
    _known_items,
    _lock_schema_acl,
    _oid,
    _outs,
    _privs,
    connect,
)


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
            covered = withheld.tables(cur, schema, props.get("withheld") or [])
            narrowed = _read_column_wise(cur, role, schema, covered)
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
            for _, relation, columns in narrowed:
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
            covered = withheld.tables(cur, schema, columns)
            undeclared_narrow = _read_column_wise(cur, role, schema, covered)
            narrowed = covered | {oid for oid, _, _ in undeclared_narrow}
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
                for _, relation, _ in undeclared_narrow
            ]
            return ReadResult(id_=id_, outs=outs)


def _read_column_wise(
    cur: psycopg.Cursor[Any], role: str, schema: str, covered: set[int]
) -> list[tuple[int, str, list[str]]]:
    """Tables of the schema the role reads column by column though no
    declared withholding covers them (`covered`: the oids that withholding
    narrows), each with its relation as the catalog quotes it and those columns."""
    cur.execute(
        "SELECT c.oid, c.oid::regclass::text, array_agg(att.attname::text ORDER BY att.attnum) "
        "FROM pg_class c JOIN pg_attribute att ON att.attrelid = c.oid, aclexplode(att.attacl) a "
        "WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'p') AND att.attnum > 0 "
        "AND NOT att.attisdropped AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s) "
        "AND a.privilege_type = 'SELECT' AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) t "
        "WHERE t.grantee = a.grantee AND t.privilege_type = 'SELECT') GROUP BY c.oid ORDER BY 2",
        (schema, role),
    )
    return [(int(oid), str(name), list(columns)) for oid, name, columns in cur.fetchall() if int(oid) not in covered]


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
