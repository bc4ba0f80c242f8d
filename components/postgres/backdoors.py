"""What a server can carry beyond the platform's declaration that no check of
the declared objects sees: roles nobody declared, event triggers, settings
changed with ALTER SYSTEM, pg_hba.conf lines that accept anything but SCRAM, privileges on
catalog objects handed to the platform's roles, and schemas the platform does
not declare (`public` included), with who may use them and what they hold.

Each finding says what it is and, where removing it is safe, how: a right is
revoked, an ALTER SYSTEM setting reset, an empty schema dropped. What could
hold data or lock someone out (a role, a table, an edited pg_hba.conf) is
refused by name instead, for an operator to decide. The verifiers, pg_hba.conf
and ALTER SYSTEM settings are a superuser's to read: elsewhere (RDS's master)
they are not seen, and `unseen` says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# The one method pg_hba.conf may name (render_pg_hba_conf), besides refusing.
HBA_METHODS = frozenset({"scram-sha-256", "reject"})
SYSTEM_SCHEMAS = ("information_schema",)
SUPERUSER_ONLY = ("password verifiers", "pg_hba.conf", "settings made with ALTER SYSTEM")


@dataclass(frozen=True)
class Finding:
    description: str
    remedy: sql.Composed | None = None
    """None: not safe to remove here; the update refuses with the description."""
    outside_transaction: bool = False
    """ALTER SYSTEM cannot run inside a transaction block."""


def is_superuser(cur: psycopg.Cursor[Any]) -> bool:
    cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    row = cur.fetchone()
    return bool(row and row[0])


def findings(
    cur: psycopg.Cursor[Any],
    *,
    declared_roles: Sequence[str],
    schemas: Sequence[str],
    function_grants: Mapping[str, Sequence[str]],
    extension_readers: Mapping[str, Sequence[str]],
    event_triggers_declared: Sequence[str] = (),
) -> list[Finding]:
    superuser = is_superuser(cur)
    found = undeclared_roles(cur, declared_roles)
    if superuser:
        found += system_settings(cur) + hba_lines(cur)
    found += event_triggers(cur, event_triggers_declared)
    found += catalog_rights(cur, declared_roles, function_grants)
    found += undeclared_schemas(cur, declared_roles, schemas, extension_readers)
    return found


def undeclared_roles(cur: psycopg.Cursor[Any], declared: Sequence[str]) -> list[Finding]:
    """Roles nobody declared that reach this database (CONNECT, held directly
    or through a membership) or hold a cluster-wide power (SUPERUSER,
    REPLICATION, which streams every database, CREATEROLE, BYPASSRLS). The
    first lose CONNECT; the others are refused by name, since dropping a role
    drops what it owns. Roles of other databases on the same server reach
    none of this one and are theirs to judge. Left out: the admin, the bootstrap superuser (the
    cluster's owner, which cannot be dropped), the built-in `pg_*` roles and,
    on RDS, the service's own (`rdsadmin`, `rds_*`)."""
    cur.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolreplication, rolcreaterole, rolbypassrls, "
        "has_database_privilege(oid, current_database(), 'CONNECT') FROM pg_roles "
        "WHERE rolname <> ALL(%s) AND rolname <> current_user AND oid <> 10 AND rolname !~ '^pg_' "
        "AND NOT (rolname ~ '^rds' AND EXISTS (SELECT FROM pg_roles WHERE rolname = 'rdsadmin')) "
        "ORDER BY 1",
        (list(declared),),
    )
    rows = cur.fetchall()
    cur.execute("SELECT current_database()")
    (database,) = cur.fetchone() or ("",)
    found = []
    for name, login, superuser, replication, createrole, bypassrls, connects in rows:
        powers = [f for f, on in (("SUPERUSER", superuser), ("REPLICATION", replication),
                                  ("CREATEROLE", createrole), ("BYPASSRLS", bypassrls)) if on]  # fmt: skip
        flags = (["LOGIN"] if login else []) + powers + (["CONNECT"] if connects else [])
        if powers:
            found.append(
                Finding(
                    f"role {name} ({', '.join(flags)}) is not declared: drop it (DROP OWNED BY {name}; "
                    f"DROP ROLE {name}) if nobody should have it, or declare it"
                )
            )
        elif connects:
            # Its way in is taken away; a membership that carries CONNECT is the role resource's to end.
            found.append(
                Finding(
                    f"role {name} ({', '.join(flags)}) is not declared and reaches this database",
                    sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
                        sql.Identifier(database), sql.Identifier(name)
                    ),
                )
            )
    return found


def event_triggers(cur: psycopg.Cursor[Any], declared: Sequence[str]) -> list[Finding]:
    """Event triggers run their function inside every matching DDL statement,
    as whoever runs it (the migrator, the admin): the platform declares only
    those that withhold columns. Dropping one is safe, since it holds no data."""
    cur.execute(
        "SELECT evtname, evtfoid::regprocedure::text FROM pg_event_trigger WHERE evtname <> ALL(%s) ORDER BY 1",
        (list(declared),),
    )
    return [
        Finding(
            f"event trigger {name} (runs {function}) is not declared",
            sql.SQL("DROP EVENT TRIGGER {}").format(sql.Identifier(name)),
        )
        for name, function in cur.fetchall()
    ]


def system_settings(cur: psycopg.Cursor[Any]) -> list[Finding]:
    """Settings in postgresql.auto.conf: the platform renders postgresql.conf and sets none this way."""
    cur.execute(
        "SELECT name, setting FROM pg_file_settings WHERE sourcefile ~ '/postgresql\\.auto\\.conf$' ORDER BY seqno"
    )
    return [
        Finding(
            f"setting {name} = {setting!r} made with ALTER SYSTEM",
            sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)),
            outside_transaction=True,
        )
        for name, setting in cur.fetchall()
    ]


def hba_lines(cur: psycopg.Cursor[Any]) -> list[Finding]:
    """pg_hba.conf lines that let a client in on anything but SCRAM: the file
    is rendered and uploaded with the container, so such a line was written
    into the container by hand; replacing the container puts the file back."""
    cur.execute(
        "SELECT line_number, type, array_to_string(database, ','), array_to_string(user_name, ','), "
        "coalesce(address, ''), auth_method, error FROM pg_hba_file_rules ORDER BY line_number"
    )
    return [
        Finding(
            f"pg_hba.conf line {line}: {kind} {database} {user} {address} {method}".replace("  ", " ")
            + (f" ({error})" if error else "")
            + ": only scram-sha-256 is the platform's; replace the Postgres container "
            "(pulumi up --replace <its URN>) to put the rendered file back"
        )
        for line, kind, database, user, address, method, error in cur.fetchall()
        if method not in HBA_METHODS or error
    ]


# Rights of the given roles on catalog objects: functions, relations and their
# columns in pg_catalog and information_schema.
_CATALOG_RIGHTS = """
SELECT 'FUNCTION', p.oid::regprocedure::text, NULL, r.rolname, a.privilege_type
FROM pg_proc p, aclexplode(p.proacl) a JOIN pg_roles r ON r.oid = a.grantee
WHERE p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) AND r.rolname = ANY(%(roles)s)
UNION ALL
SELECT 'TABLE', c.oid::regclass::text, NULL, r.rolname, a.privilege_type
FROM pg_class c, aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
WHERE c.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) AND r.rolname = ANY(%(roles)s)
UNION ALL
SELECT 'TABLE', c.oid::regclass::text, quote_ident(t.attname), r.rolname, a.privilege_type
FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid, aclexplode(t.attacl) a JOIN pg_roles r ON r.oid = a.grantee
WHERE c.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) AND r.rolname = ANY(%(roles)s)
ORDER BY 1, 2, 3, 4
"""


def catalog_rights(
    cur: psycopg.Cursor[Any], declared: Sequence[str], function_grants: Mapping[str, Sequence[str]]
) -> list[Finding]:
    """A catalog function or table granted to one of the platform's roles
    (pg_read_file, pg_authid's password column): none is declared but the
    migrator's lock functions."""
    cur.execute(_CATALOG_RIGHTS, {"roles": list(declared)})
    found = []
    for kind, target, column, role, privilege in cur.fetchall():
        if kind == "FUNCTION" and role in (function_grants.get(target) or ()):
            continue
        on = f"{target} ({column})" if column else target
        columns = sql.SQL(" ({})").format(sql.SQL(column)) if column else sql.SQL("")
        found.append(
            Finding(
                f"{privilege} on catalog {kind.lower()} {on} to {role}",
                sql.SQL("REVOKE ALL{} ON " + kind + " " + target + " FROM {}").format(columns, sql.Identifier(role)),
            )
        )
    return found


_SCHEMA_CONTENTS = """
SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                      WHEN 'f' THEN 'foreign table' ELSE 'table' END,
       format('%%I.%%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT EXISTS (SELECT FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
UNION ALL
SELECT 'function', format('%%I.%%I(%%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s
  AND NOT EXISTS (SELECT FROM pg_depend d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
ORDER BY 2
"""


def undeclared_schemas(
    cur: psycopg.Cursor[Any],
    declared_roles: Sequence[str],
    schemas: Sequence[str],
    extension_readers: Mapping[str, Sequence[str]],
) -> list[Finding]:
    """Schemas the platform does not declare, `public` included: what the
    platform's roles (or PUBLIC) may do there is revoked, but the USAGE an
    extension's readers hold on its schema; an empty one other than `public`
    is dropped; what one holds, outside an extension, is refused by name."""
    cur.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) AND nspname !~ '^pg_' "
        "AND nspname <> ALL(%s) ORDER BY 1",
        (list(schemas), list(SYSTEM_SCHEMAS)),
    )
    found = []
    for (schema,) in cur.fetchall():
        name = sql.Identifier(schema)
        readers = set(extension_readers.get(schema) or ())
        cur.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE r.rolname END, a.privilege_type "
            "FROM pg_namespace n, aclexplode(n.nspacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE n.nspname = %s AND a.grantee <> n.nspowner ORDER BY 1, 2",
            (schema,),
        )
        for grantee, privilege in cur.fetchall():
            if grantee != "PUBLIC" and grantee not in declared_roles:
                continue
            if privilege == "USAGE" and grantee in readers:
                continue
            to = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            found.append(
                Finding(
                    f"{privilege} on undeclared schema {schema} to {grantee}",
                    sql.SQL("REVOKE " + privilege + " ON SCHEMA {} FROM {}").format(name, to),
                )
            )
        cur.execute(_SCHEMA_CONTENTS, {"schema": schema})
        contents = cur.fetchall()
        for kind, target in contents:
            found.append(
                Finding(
                    f"{kind} {target} in undeclared schema {schema}: move it into a declared schema, "
                    "or drop it if nothing needs it"
                )
            )
        if not contents and schema != "public" and not _holds_anything(cur, schema):
            found.append(Finding(f"empty undeclared schema {schema}", sql.SQL("DROP SCHEMA {}").format(name)))
    return found


def _holds_anything(cur: psycopg.Cursor[Any], schema: str) -> bool:
    """Types, domains, operators, extensions: whatever else DROP SCHEMA (RESTRICT) would stop on."""
    cur.execute(
        "SELECT EXISTS (SELECT FROM pg_depend d WHERE d.refclassid = 'pg_namespace'::regclass "
        "AND d.refobjid = (SELECT oid FROM pg_namespace WHERE nspname = %s) AND d.deptype = 'n')",
        (schema,),
    )
    row = cur.fetchone()
    return bool(row and row[0])
