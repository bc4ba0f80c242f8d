"""The database as a whole: who may connect, PUBLIC's rights, catalog
functions, routines, and what the server carries that nothing declares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from pulumi.dynamic import (
    ReadResult,
)

from components.postgres import backdoors
from components.postgres.base import (
    _DEFAULT_OBJECTS,
    _GRANTEE,
    PostgresProvider,
    PostgresResourceError,
    _fetch_one,
    _oid,
    _outs,
    _Right,
    _to,
    connect,
)


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
                "by itself: " + "; ".join(refused) + ". What was safe to remove is gone; docs/runbooks.md "
                '("pulumi up refuses") says how to decide on the rest.'
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
