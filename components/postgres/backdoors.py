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

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# The one method pg_hba.conf may name (render_pg_hba_conf), besides refusing.
HBA_METHODS = frozenset({"scram-sha-256", "reject"})
# RDS: an admin that is no superuser but a member of rds_superuser. A role
# merely named `rdsadmin` on another server makes nothing RDS's own.
ON_RDS = (
    "(NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AND CASE "
    "WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_superuser') "
    "THEN pg_has_role(current_user, 'rds_superuser', 'MEMBER') ELSE false END)"
)
# Built-in roles that are members of other built-in roles in a fresh PostgreSQL
# 15 cluster (catalog/system_functions.sql): pg_monitor's three.
BUILTIN_MEMBERSHIPS = frozenset(
    {("pg_read_all_settings", "pg_monitor"), ("pg_read_all_stats", "pg_monitor"), ("pg_stat_scan_tables", "pg_monitor")}
)
# The first oid a user-made object gets; below it, initdb's own (access/transam.h).
FIRST_NORMAL_OBJECT_ID = 16384
SYSTEM_SCHEMAS = ("information_schema",)
SUPERUSER_ONLY = (
    "password verifiers",
    "pg_hba.conf",
    "settings made with ALTER SYSTEM",
    "rights on catalog objects beyond the defaults",
    "objects made in system schemas",
    "built-in roles' memberships",
    "parameter grants",
)


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
        # Every right beyond initdb's, to anyone: what catalog_rights sees and more.
        found += catalog_additions(cur, function_grants) + catalog_objects(cur) + builtin_memberships(cur)
        found += parameter_grants(cur)
    else:
        found += catalog_rights(cur, declared_roles, function_grants)
    found += database_settings(cur) + database_owner(cur)
    found += event_triggers(cur, event_triggers_declared)
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
        f"AND NOT (rolname ~ '^rds' AND {ON_RDS}) "
        "ORDER BY 1",
        (list(declared),),
    )
    rows = cur.fetchall()
    database = _current_database(cur)
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


_CATALOG_ADDITIONS = """
WITH objects AS (
    SELECT 'pg_class'::regclass AS classid, c.oid AS objid, 0 AS objsubid,
           CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, c.oid::regclass::text AS name,
           coalesce(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner)) AS acl,
           acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner) AS fallback
    FROM pg_class c WHERE c.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    UNION ALL
    SELECT 'pg_class'::regclass, a.attrelid, a.attnum, 'COLUMN', a.attrelid::regclass::text || ' (' ||
           quote_ident(a.attname) || ')', a.attacl, NULL
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
      AND a.attacl IS NOT NULL AND a.attnum > 0
    UNION ALL
    SELECT 'pg_proc'::regclass, p.oid, 0, 'FUNCTION', p.oid::regprocedure::text,
           coalesce(p.proacl, acldefault('f'::"char", p.proowner)), acldefault('f'::"char", p.proowner)
    FROM pg_proc p WHERE p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    UNION ALL
    SELECT 'pg_namespace'::regclass, n.oid, 0, 'SCHEMA', quote_ident(n.nspname),
           coalesce(n.nspacl, acldefault('n'::"char", n.nspowner)), acldefault('n'::"char", n.nspowner)
    FROM pg_namespace n WHERE n.nspname IN ('pg_catalog', 'information_schema')
),
initial AS (
    SELECT o.*, coalesce(i.initprivs, o.fallback) AS init
    FROM objects o LEFT JOIN pg_init_privs i
      ON i.classoid = o.classid AND i.objoid = o.objid AND i.objsubid = o.objsubid
)
SELECT kind, name, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type
FROM initial o, aclexplode(o.acl) a
WHERE NOT EXISTS (SELECT FROM aclexplode(o.init) b
                  WHERE b.grantee = a.grantee AND b.privilege_type = a.privilege_type)
  AND a.grantee <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
ORDER BY 2, 3, 4
"""


def catalog_additions(cur: psycopg.Cursor[Any], function_grants: Mapping[str, Sequence[str]]) -> list[Finding]:
    """Rights on catalog objects beyond what initdb gave (pg_init_privs), to
    anyone, PUBLIC and built-in roles included: SELECT on pg_authid to PUBLIC
    or pg_monitor, CREATE on pg_catalog itself. Only a superuser can make
    them, so only a superuser's read sees them all; the migrator's declared
    lock functions are the one addition."""
    cur.execute(_CATALOG_ADDITIONS)
    found = []
    for kind, name, grantee, privilege in cur.fetchall():
        if kind == "FUNCTION" and grantee in (function_grants.get(name) or ()):
            continue
        to = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        if kind == "COLUMN":
            relation, column = name.split(" (", 1)
            remedy = sql.SQL("REVOKE " + privilege + " (" + column[:-1] + ") ON TABLE " + relation + " FROM {}")
            kind = "TABLE"
        else:
            remedy = sql.SQL("REVOKE " + privilege + " ON " + kind + " " + name + " FROM {}")
        found.append(Finding(f"{privilege} on catalog {kind.lower()} {name} to {grantee}", remedy.format(to)))
    return found


def catalog_objects(cur: psycopg.Cursor[Any]) -> list[Finding]:
    """Functions, tables and views made in pg_catalog or information_schema
    after initdb: a SECURITY DEFINER function there runs with its owner's
    rights for whoever finds it on the search path."""
    cur.execute(
        "SELECT 'function', p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) "
        "AND p.oid >= %(first)s AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass "
        "AND d.objid = p.oid AND d.deptype = 'e') "
        "UNION ALL SELECT 'relation', c.oid::regclass::text FROM pg_class c "
        "WHERE c.relnamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) "
        "AND c.oid >= %(first)s AND c.relkind IN ('r', 'v', 'm', 'f', 'p') AND NOT EXISTS (SELECT FROM pg_depend d "
        "WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 2",
        {"first": FIRST_NORMAL_OBJECT_ID},
    )
    return [
        Finding(f"{kind} {name} was made in a system schema after initdb: drop it if nobody should have it")
        for kind, name in cur.fetchall()
    ]


def builtin_memberships(cur: psycopg.Cursor[Any]) -> list[Finding]:
    """A built-in role made a member of another (pg_execute_server_program
    granted to pg_monitor runs programs as the server's OS user for every
    member of pg_monitor): none but initdb's own."""
    cur.execute(
        "SELECT g.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
        "JOIN pg_roles m ON m.oid = a.member WHERE m.oid < %s AND m.rolname ~ '^pg_' ORDER BY 1, 2",
        (FIRST_NORMAL_OBJECT_ID,),
    )
    return [
        Finding(
            f"built-in role {member} is a member of {role}",
            sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(role), sql.Identifier(member)),
        )
        for role, member in cur.fetchall()
        if (role, member) not in BUILTIN_MEMBERSHIPS
    ]


def parameter_grants(cur: psycopg.Cursor[Any]) -> list[Finding]:
    """SET or ALTER SYSTEM on a parameter granted to a role (PostgreSQL 15's
    pg_parameter_acl): `session_replication_role` lets a role skip triggers."""
    cur.execute(
        "SELECT p.parname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
        "a.privilege_type FROM pg_parameter_acl p, aclexplode(p.paracl) a "
        "WHERE a.grantee <> (SELECT oid FROM pg_roles WHERE rolname = current_user) ORDER BY 1, 2, 3"
    )
    return [
        Finding(
            f"{privilege} on parameter {name} to {grantee}",
            sql.SQL("REVOKE " + privilege + " ON PARAMETER {} FROM {}").format(
                sql.Identifier(name), sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            ),
        )
        for name, grantee, privilege in cur.fetchall()
    ]


def database_settings(cur: psycopg.Cursor[Any]) -> list[Finding]:
    """Settings made with ALTER DATABASE … SET, ALTER ROLE … IN DATABASE …
    SET or ALTER ROLE ALL SET: they outlast a restart and bind every new
    session (`session_replication_role = replica` silences every trigger)."""
    database = sql.Identifier(_current_database(cur))
    cur.execute(
        "SELECT s.setdatabase <> 0, CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, "
        "s.setconfig FROM pg_db_role_setting s "
        "WHERE (s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "OR (s.setdatabase = 0 AND s.setrole = 0)) ORDER BY 1, 2"
    )
    found = []
    for in_database, role, settings in cur.fetchall():
        if in_database and role is None:
            where, remedy = "the database", sql.SQL("ALTER DATABASE {} RESET ALL").format(database)
        elif in_database:
            where = f"role {role} in the database"
            remedy = sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(sql.Identifier(role), database)
        else:
            where, remedy = "every role", sql.Composed([sql.SQL("ALTER ROLE ALL RESET ALL")])
        found.append(Finding(f"settings made for {where}: {', '.join(settings or [])}", remedy))
    return found


def database_owner(cur: psycopg.Cursor[Any]) -> list[Finding]:
    """The database belongs to the admin: its owner may create schemas, set
    its defaults and grant what it likes."""
    cur.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database() "
        "AND datdba <> (SELECT oid FROM pg_roles WHERE rolname = current_user)"
    )
    row = cur.fetchone()
    if row is None:
        return []
    return [
        Finding(
            f"the database is owned by {row[0]}, not the admin",
            sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(_current_database(cur))),
        )
    ]


def _current_database(cur: psycopg.Cursor[Any]) -> str:
    cur.execute("SELECT current_database()")
    row = cur.fetchone()
    return str(row[0]) if row else ""


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


_AUTO_CONF = "'/postgresql\\.auto\\.conf$'"


def system_settings(cur: psycopg.Cursor[Any]) -> list[Finding]:
    """Settings made with ALTER SYSTEM (postgresql.auto.conf): the platform
    renders postgresql.conf and sets none this way. Each once: as the file
    holds it, or as still in effect after the file was reset without a reload."""
    cur.execute(
        f"SELECT name, setting, true FROM pg_file_settings WHERE sourcefile ~ {_AUTO_CONF} "
        f"UNION ALL SELECT name, setting, false FROM pg_settings WHERE sourcefile ~ {_AUTO_CONF} "
        "AND name NOT IN (SELECT name FROM pg_file_settings WHERE sourcefile ~ " + _AUTO_CONF + ") "
        "ORDER BY 3 DESC, 1"
    )
    return [
        Finding(
            f"setting {name} = {setting!r} " + ("made with ALTER SYSTEM" if in_file else "in effect from ALTER SYSTEM"),
            sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)),
            outside_transaction=True,
        )
        for name, setting, in_file in cur.fetchall()
    ]


def hba_lines(cur: psycopg.Cursor[Any]) -> list[Finding]:
    """pg_hba.conf lines that let a client in on anything but SCRAM, or that
    the server cannot read: the file is rendered and uploaded with the
    container, so such a line was written into the container by hand;
    replacing the container puts the file back."""
    cur.execute(
        "SELECT line_number, type, array_to_string(database, ','), array_to_string(user_name, ','), "
        "address, netmask, auth_method, error FROM pg_hba_file_rules ORDER BY line_number"
    )
    found = []
    for line, kind, database, user, address, netmask, method, error in cur.fetchall():
        if method in HBA_METHODS and not error:
            continue
        # A line the server cannot parse has no fields, only the reason.
        fields = [kind, database, user, _hba_address(address, netmask), method]
        what = " ".join(field for field in fields if field)
        said = f"{what} ({error})" if what and error else what or error
        # A line the server cannot use may still be a rendered one (a `hostssl`
        # line once `ssl` is turned off): only the operator can tell.
        why = (
            "the server cannot use it; if the rendered file has no such line,"
            if error
            else "only scram-sha-256 is the platform's;"
        )
        found.append(
            Finding(
                f"pg_hba.conf line {line}: {said}: {why} replace the Postgres container "
                "(pulumi up --replace <its URN>) to put the rendered file back"
            )
        )
    return found


def _hba_address(address: str | None, netmask: str | None) -> str | None:
    """The address with its prefix length: pg_hba_file_rules splits
    `10.0.0.0/8` into the address and a netmask, and `10.0.0.0` alone would
    name one host. A mask that is no prefix (PostgreSQL takes any) is shown
    beside the address, as such a line writes it."""
    if not netmask:
        return address  # a host name, `all`, `samehost`, `samenet`, or none for a `local` line
    try:
        parsed = ipaddress.ip_address(netmask)
    except ValueError:
        return f"{address} {netmask}"  # `???`: the server could not print the mask
    mask, ones = int(parsed), bin(int(parsed)).count("1")
    full = (1 << parsed.max_prefixlen) - 1
    return f"{address}/{ones}" if mask == full ^ (full >> ones) else f"{address} {netmask}"


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
  AND NOT EXISTS (SELECT FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
                    AND x.extnamespace = n.oid)
UNION ALL
SELECT 'function', format('%%I.%%I(%%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s
  AND NOT EXISTS (SELECT FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                    AND x.extnamespace = n.oid)
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
    is dropped; what one holds, outside an extension installed in that very
    schema (an object added by hand to plpgsql, say, counts), is refused by
    name."""
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
