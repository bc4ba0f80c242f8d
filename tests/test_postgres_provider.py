"""The dynamic provider against a real PostgreSQL 15: CRUD, drift, refusals, and
the privilege matrix the spec promises, checked by connecting as each role."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dill
import psycopg
import pytest
from psycopg import errors
from pulumi.dynamic.dynamic import serialize_provider

from components.model.database import ANALYTICS_CONNECTION_LIMIT, database_spec
from components.model.naming import Names
from components.postgres import provider as provider_module
from components.postgres.provider import (
    DatabaseAccessProvider,
    ExtensionProvider,
    PostgresProvider,
    PostgresResourceError,
    RoleProvider,
    SchemaGrantProvider,
    SchemaProvider,
    scram_matches,
)
from tests.platform_db import PASSWORDS, Applied, apply_spec, connect_as, destroy, platform_with_users
from tests.servers import PostgresServer

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def applied(pg: PostgresServer) -> Applied:
    return platform_with_users(pg, "('a@example.com', '-')")


# --- the privilege matrix ---------------------------------------------------


def test_the_migrator_creates_and_the_app_writes_in_every_schema(pg: PostgresServer, applied: Applied) -> None:
    with connect_as(pg, applied.spec, "migrator") as conn:
        for schema in applied.spec.schemas:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {schema}.probe (id int PRIMARY KEY, v text)")
    with connect_as(pg, applied.spec, "app") as conn:
        for schema in applied.spec.schemas:
            conn.execute(f"INSERT INTO {schema}.probe VALUES (1, 'x') ON CONFLICT DO NOTHING")
            assert conn.execute(f"SELECT v FROM {schema}.probe").fetchall() == [("x",)]
            if schema == "audit":
                # Append-only: evidence is never rewritten or removed by the running app.
                for statement in (f"UPDATE {schema}.probe SET v = 'y'", f"DELETE FROM {schema}.probe"):
                    with pytest.raises(errors.InsufficientPrivilege):
                        conn.execute(statement)
                continue
            conn.execute(f"UPDATE {schema}.probe SET v = 'y' WHERE id = 1")
            assert conn.execute(f"SELECT v FROM {schema}.probe").fetchall() == [("y",)]
            conn.execute(f"DELETE FROM {schema}.probe")
    with pg.admin(applied.spec.name) as conn:
        for schema in applied.spec.schemas:
            conn.execute(f"DROP TABLE {schema}.probe")


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE core.planted (id int)",
        "CREATE VIEW core.planted AS SELECT 1",
        "CREATE FUNCTION core.planted() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        "ALTER TABLE core.users ADD COLUMN planted text",
        "DROP TABLE core.users",
        "TRUNCATE core.users",
        "CREATE TRIGGER planted BEFORE UPDATE ON core.users FOR EACH ROW "
        "EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    ],
)
def test_the_app_cannot_change_the_schema(pg: PostgresServer, applied: Applied, statement: str) -> None:
    with connect_as(pg, applied.spec, "app") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_app_may_write_tables_the_admin_creates_later(pg: PostgresServer, applied: Applied) -> None:
    with pg.admin(applied.spec.name) as admin:
        admin.execute("CREATE TABLE content.admin_made (id serial PRIMARY KEY, v text)")
    with connect_as(pg, applied.spec, "app") as conn:
        conn.execute("INSERT INTO content.admin_made (v) VALUES ('ok')")
        assert conn.execute("SELECT count(*) FROM content.admin_made").fetchone() == (1,)


def test_analytics_reads_tables_created_after_the_grant(pg: PostgresServer, applied: Applied) -> None:
    with connect_as(pg, applied.spec, "migrator") as conn:
        conn.execute("CREATE TABLE analytics.events (id bigserial PRIMARY KEY, kind text)")
        conn.execute("INSERT INTO analytics.events (kind) VALUES ('signup')")
    with connect_as(pg, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT kind FROM analytics.events").fetchall() == [("signup",)]
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (1,)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO core.users (email) VALUES ('x@example.com')",
        "UPDATE core.users SET email = 'y'",
        "DELETE FROM core.users",
        "TRUNCATE core.users",
        "CREATE TABLE core.sneaky (id int)",
        "SELECT nextval('core.users_id_seq')",
    ],
)
def test_analytics_cannot_write(pg: PostgresServer, applied: Applied, statement: str) -> None:
    with connect_as(pg, applied.spec, "analytics") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_backup_reads_the_platforms_data_and_writes_nothing(pg: PostgresServer, applied: Applied) -> None:
    with connect_as(pg, applied.spec, "migrator") as conn:
        conn.execute("CREATE TABLE audit.later (id bigserial PRIMARY KEY)")  # as a migration would, later
        conn.execute("INSERT INTO audit.later DEFAULT VALUES")
    with connect_as(pg, applied.spec, "backup") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (1,)
        assert conn.execute("SELECT last_value FROM core.users_id_seq").fetchone() is not None
        assert conn.execute("SELECT count(*) FROM audit.later").fetchone() == (1,)
        assert conn.execute("SELECT last_value FROM audit.later_id_seq").fetchone() is not None
        # Nothing beyond the platform's schemas: no password verifiers, no server files.
        for statement in ("SELECT rolpassword FROM pg_authid", "SELECT pg_read_file('postgresql.conf')"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
        for statement in (
            "INSERT INTO core.users (email) VALUES ('b@example.com')",
            "DELETE FROM core.users",
            "CREATE TABLE core.b (id int)",
            "TRUNCATE core.users",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)


@pytest.mark.parametrize("key", ["migrator", "app", "analytics", "monitoring", "backup"])
@pytest.mark.parametrize("statement", ["CREATE ROLE intruder", "CREATE DATABASE intruder"])
def test_no_role_can_create_roles_or_databases(pg: PostgresServer, applied: Applied, key: str, statement: str) -> None:
    with connect_as(pg, applied.spec, key) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_role_attributes_match_the_spec(pg: PostgresServer, applied: Applied) -> None:
    with pg.admin() as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolconnlimit, "
            "pg_has_role(rolname, 'pg_monitor', 'member'), rolpassword LIKE 'SCRAM-SHA-256$%' "
            "FROM pg_authid WHERE rolname LIKE 'wondernest\\_%' ORDER BY 1"
        ).fetchall()
    assert rows == [
        ("wondernest_analytics", False, False, False, False, 10, False, True),
        ("wondernest_app", False, False, False, False, 50, False, True),
        ("wondernest_backup", False, False, False, False, 3, False, True),
        ("wondernest_migrator", False, False, False, False, 3, False, True),
        ("wondernest_monitoring", False, False, False, False, 6, True, True),
    ]


def test_monitoring_sees_every_session_but_no_data(pg: PostgresServer, applied: Applied) -> None:
    with connect_as(pg, applied.spec, "monitoring") as conn:
        visible = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query IS NOT NULL AND usename IS NOT NULL"
        ).fetchone()
        assert visible is not None and visible[0] >= 1
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM core.users")


def test_public_has_no_way_in(pg: PostgresServer, applied: Applied) -> None:
    with pg.admin() as conn:
        conn.execute("CREATE ROLE outsider LOGIN PASSWORD 'outsider-pass'")
    try:
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(pg.dsn(user="outsider", password="outsider-pass", dbname=applied.spec.name))
        with pg.admin(applied.spec.name) as conn:
            row = conn.execute(
                "SELECT has_schema_privilege('outsider', 'public', 'USAGE'), "
                "has_schema_privilege('outsider', 'public', 'CREATE'), "
                "has_database_privilege('outsider', current_database(), 'TEMP')"
            ).fetchone()
        assert row == (False, False, False)
    finally:
        with pg.admin() as conn:
            conn.execute("DROP ROLE outsider")


def test_the_eleventh_analytics_connection_is_refused(pg: PostgresServer, applied: Applied) -> None:
    held = [connect_as(pg, applied.spec, "analytics") for _ in range(ANALYTICS_CONNECTION_LIMIT)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            connect_as(pg, applied.spec, "analytics")
    finally:
        for conn in held:
            conn.close()


# --- lifecycle: update, read/drift, refusals, idempotence --------------------


def test_drift_says_in_words_what_an_update_would_change(pg: PostgresServer, applied: Applied) -> None:
    """What `make verify` reports: each input the server differs in, with the
    value found; nothing for a role as declared; None for one that is gone."""
    props = applied.props["role-analytics"]
    assert RoleProvider().drift(props) == []
    with pg.admin() as conn:
        conn.execute(f"ALTER ROLE {props['name']} CONNECTION LIMIT 99")
    try:
        assert RoleProvider().drift(props) == [
            f"connection_limit is 99, declared {props['connection_limit']!r}",
        ]
    finally:
        RoleProvider().update(props["name"], props, props)
    assert RoleProvider().drift(props) == []
    assert RoleProvider().drift({**props, "name": "nobody_declared_this"}) is None


def test_a_changed_password_works_and_the_old_one_fails(pg: PostgresServer, applied: Applied) -> None:
    old = applied.props["role-analytics"]
    new = {**old, "password": "rotated-pass-4444"}
    assert RoleProvider().diff(old["name"], old, new).changes
    RoleProvider().update(old["name"], old, new)
    try:
        with connect_as(pg, applied.spec, "analytics", "rotated-pass-4444") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect_as(pg, applied.spec, "analytics")
    finally:
        RoleProvider().update(old["name"], new, old)


def test_the_password_never_reaches_the_server_in_plaintext(pg: PostgresServer, applied: Applied) -> None:
    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
        # Every statement the provider's sessions run goes to the server log.
        conn.execute("ALTER ROLE postgres SET log_statement = 'all'")
    props = applied.props["role-app"]
    try:
        RoleProvider().update(props["name"], props, props)
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("ALTER ROLE postgres RESET log_statement")
    with pg.admin(applied.spec.name) as conn:
        texts = [str(r[0]) for r in conn.execute("SELECT query FROM pg_stat_statements").fetchall()]
    # Not even the verifier: the statement is neither counted nor logged, though
    # the role asks for every statement to be logged.
    assert not any("ROLE" in t.upper() and "PASSWORD" in t.upper() for t in texts), texts
    log = pg.log()
    assert PASSWORDS["app"] not in log and "SCRAM-SHA-256$" not in log


def test_read_reports_the_state_in_the_catalog(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["role-monitoring"]
    result = RoleProvider().read(props["name"], props)
    assert result.id == props["name"]
    outs = result.outs or {}
    assert outs["member_of"] == ["pg_monitor"]
    assert outs["connection_limit"] == 6
    assert outs["escalations"] == []
    assert not RoleProvider().diff(props["name"], outs, props).changes


def test_a_role_made_nologin_or_taken_out_of_its_group_by_hand_is_drift(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["role-monitoring"]
    name = props["name"]
    with pg.admin() as conn:
        conn.execute(f"ALTER ROLE {name} NOLOGIN; REVOKE pg_monitor FROM {name}")
    refreshed = RoleProvider().read(name, props).outs or {}
    assert (refreshed["login"], refreshed["member_of"], refreshed["escalations"]) == (False, [], [])
    assert RoleProvider().diff(name, refreshed, props).changes
    RoleProvider().update(name, refreshed, props)
    again = RoleProvider().read(name, props).outs or {}
    assert (again["login"], again["member_of"]) == (True, ["pg_monitor"])


def test_the_admin_made_a_member_of_a_role_is_not_drift(pg: PostgresServer, applied: Applied) -> None:
    """PostgreSQL 16 makes the role that creates another its member (with
    ADMIN), and RDS's master creates them all: that membership is the admin's."""
    props = applied.props["role-backup"]
    admin = props["connection"]["user"]
    with pg.admin() as conn:
        conn.execute(f"GRANT {props['name']} TO {admin}")
    try:
        assert (RoleProvider().read(props["name"], props).outs or {})["escalations"] == []
        # And an update leaves it: the admin manages the role through it.
        RoleProvider().update(props["name"], props, props)
        with pg.admin() as conn:
            member = conn.execute(
                "SELECT count(*) FROM pg_auth_members WHERE roleid = %s::regrole AND member = %s::regrole",
                (props["name"], admin),
            ).fetchone()
        assert member == (1,)
    finally:
        with pg.admin() as conn:
            conn.execute(f"REVOKE {props['name']} FROM {admin}")


def test_a_membership_granted_by_hand_is_drift_and_update_revokes_it(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["role-app"]
    name = props["name"]
    with pg.admin() as conn:
        conn.execute(f"GRANT pg_read_all_data TO {name}")
    try:
        refreshed = RoleProvider().read(name, props).outs or {}
        assert "pg_read_all_data" in refreshed["member_of"]
        assert RoleProvider().diff(name, refreshed, props).changes
        RoleProvider().update(name, refreshed, props)
        with pg.admin() as conn:
            held = conn.execute("SELECT pg_has_role(%s, 'pg_read_all_data', 'member')", (name,)).fetchone()
        assert held == (False,)
    finally:
        with pg.admin() as conn:
            conn.execute(f"REVOKE pg_read_all_data FROM {name}")


def test_a_role_declared_without_login_is_made_and_kept_so(pg: PostgresServer, applied: Applied) -> None:
    props = {**applied.props["role-backup"], "name": "wondernest_nologin", "login": False, "member_of": []}
    RoleProvider().create(props)
    try:
        with pg.admin() as conn:
            assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'wondernest_nologin'").fetchone() == (
                False,
            )
            conn.execute("ALTER ROLE wondernest_nologin LOGIN")
        refreshed = RoleProvider().read(props["name"], props).outs or {}
        assert refreshed["login"] is True and RoleProvider().diff(props["name"], refreshed, props).changes
        RoleProvider().update(props["name"], refreshed, props)
        assert (RoleProvider().read(props["name"], props).outs or {})["login"] is False
    finally:
        RoleProvider().delete(props["name"], props)


def test_a_password_is_stored_as_scram_whatever_the_servers_default(pg: PostgresServer, applied: Applied) -> None:
    """A server left at `password_encryption = md5` (older setups): the
    provider asks for SCRAM-SHA-256 itself."""
    props = applied.props["role-backup"]
    admin = props["connection"]["user"]
    with pg.admin() as conn:
        conn.execute(f"ALTER ROLE {admin} SET password_encryption = 'md5'")
    try:
        RoleProvider().update(props["name"], props, {**props, "password": "another-one"})
        with pg.admin() as conn:
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (props["name"],)).fetchone()
        assert stored is not None and scram_matches(stored[0], "another-one")
    finally:
        with pg.admin() as conn:
            conn.execute(f"ALTER ROLE {admin} RESET password_encryption")
        RoleProvider().update(props["name"], props, props)


@pytest.mark.parametrize(
    ("provider", "declared", "gone", "id_"),
    [
        (RoleProvider(), "role-backup", {"name": "wondernest_dropped_by_hand"}, "wondernest_dropped_by_hand"),
        (SchemaProvider(), "schema-core", {"name": "dropped_by_hand"}, "dropped_by_hand"),
        # Either end of a grant gone is the grant gone.
        (SchemaGrantProvider(), "grant-core-analytics", {"schema": "dropped_by_hand"}, "dropped_by_hand.x"),
        (SchemaGrantProvider(), "grant-core-analytics", {"role": "wondernest_dropped"}, "core.wondernest_dropped"),
        (DatabaseAccessProvider(), "database-access", {"database": "dropped_by_hand"}, "dropped_by_hand"),
        (ExtensionProvider(), "extension-pg_stat_statements", {"name": "pg_trgm"}, "pg_trgm"),
    ],
)
def test_an_object_gone_from_the_server_reads_as_gone(
    applied: Applied, provider: PostgresProvider, declared: str, gone: dict[str, str], id_: str
) -> None:
    """A refresh after the object was dropped by hand. Pulumi's Read handler
    (pulumi/dynamic/__main__.py) adds the provider to the outputs it is given
    and sends the id: an empty id, with outputs it can add to, is what the
    engine takes as deleted (tests/test_provider_host.py drives that handler)."""
    props = {**applied.props[declared], **gone}
    result = provider.read(id_, props)
    assert (result.id, result.outs) == ("", {})
    assert provider.drift(props) is None


def test_escalated_role_is_drift_and_update_removes_it(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["role-app"]
    with pg.admin() as conn:
        conn.execute(f"ALTER ROLE {props['name']} CREATEDB CONNECTION LIMIT 500")
    refreshed = RoleProvider().read(props["name"], props).outs or {}
    assert refreshed["escalations"] == ["CREATEDB"]
    assert refreshed["connection_limit"] == 500
    assert RoleProvider().diff(props["name"], refreshed, props).changes
    RoleProvider().update(props["name"], refreshed, props)
    again = RoleProvider().read(props["name"], props).outs or {}
    assert again["escalations"] == [] and again["connection_limit"] == 50


@pytest.mark.parametrize(
    ("attribute", "reported", "column"),
    [
        ("SUPERUSER", "SUPERUSER", "rolsuper"),
        ("CREATEDB", "CREATEDB", "rolcreatedb"),
        ("CREATEROLE", "CREATEROLE", "rolcreaterole"),
        ("REPLICATION", "REPLICATION", "rolreplication"),
        ("NOINHERIT", "NOINHERIT", "NOT rolinherit"),
    ],
)
def test_each_escalated_attribute_alone_is_drift_and_update_removes_it(
    pg: PostgresServer, applied: Applied, attribute: str, reported: str, column: str
) -> None:
    props = applied.props["role-analytics"]
    with pg.admin() as conn:
        conn.execute(f"ALTER ROLE {props['name']} {attribute}")
    refreshed = RoleProvider().read(props["name"], props).outs or {}
    assert refreshed["escalations"] == [reported]
    assert RoleProvider().diff(props["name"], refreshed, props).changes
    RoleProvider().update(props["name"], refreshed, props)
    with pg.admin() as conn:
        row = conn.execute(f"SELECT {column} FROM pg_roles WHERE rolname = %s", (props["name"],)).fetchone()
    assert row == (False,), attribute


def test_revoked_table_grant_is_drift_and_update_restores_it(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["grant-core-analytics"]
    provider = SchemaGrantProvider()
    clean = provider.read("core.wondernest_analytics", props).outs or {}
    assert not provider.diff("x", clean, props).changes, clean
    with pg.admin(applied.spec.name) as conn:
        conn.execute("REVOKE SELECT ON core.users FROM wondernest_analytics")
    drifted = provider.read("core.wondernest_analytics", props).outs or {}
    assert provider.diff("x", drifted, props).changes
    provider.update("x", drifted, props)
    with connect_as(pg, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (1,)


def test_an_extra_privilege_on_one_table_is_drift(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["grant-core-analytics"]
    provider = SchemaGrantProvider()
    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE TABLE core.second (id int)")
        conn.execute("GRANT INSERT ON core.users TO wondernest_analytics")
    drifted = provider.read("x", props).outs or {}
    # core.users is read column by column: a privilege on the whole of it is drift of its own kind.
    assert drifted["withholding"] == [
        "INSERT on the whole of core.users to wondernest_analytics, declared column by column"
    ]
    assert provider.diff("x", drifted, props).changes
    provider.update("x", drifted, props)
    with connect_as(pg, applied.spec, "analytics") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("INSERT INTO core.users (email) VALUES ('no')")
    with pg.admin(applied.spec.name) as conn:
        conn.execute("GRANT INSERT ON core.second TO wondernest_analytics")
    drifted = provider.read("x", props).outs or {}
    assert drifted["table_privileges"] == ["INSERT", "SELECT"]
    provider.update("x", drifted, props)
    with connect_as(pg, applied.spec, "analytics") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("INSERT INTO core.second VALUES (1)")
    with pg.admin(applied.spec.name) as conn:
        conn.execute("DROP TABLE core.second")


def test_rights_on_only_some_relations_read_as_partial_and_update_evens_them(
    pg: PostgresServer, applied: Applied
) -> None:
    """What every table (or sequence) of the schema grants the role is its
    privileges; what only some do is named after `PARTIAL:`, so the diff shows it
    and the update gives each relation exactly the declared set."""
    props = applied.props["grant-core-app"]
    provider = SchemaGrantProvider()
    role = props["role"]
    try:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("CREATE TABLE core.second (id int GENERATED ALWAYS AS IDENTITY)")
            conn.execute(f"REVOKE DELETE ON core.second FROM {role}")
            conn.execute(f"REVOKE USAGE ON SEQUENCE core.second_id_seq FROM {role}")
            conn.execute(f"GRANT TRUNCATE ON core.users TO {role}")
        drifted = provider.read("x", props).outs or {}
        assert drifted["table_privileges"] == ["INSERT", "SELECT", "UPDATE", "PARTIAL:DELETE,TRUNCATE"]
        assert drifted["sequence_privileges"] == ["SELECT", "UPDATE", "PARTIAL:USAGE"]
        assert provider.diff("x", drifted, props).changes
        provider.update("x", drifted, props)
        read = provider.read("x", props).outs or {}
        assert (read["table_privileges"], read["sequence_privileges"]) == (
            ["DELETE", "INSERT", "SELECT", "UPDATE"],
            ["SELECT", "UPDATE", "USAGE"],
        )
        with connect_as(pg, applied.spec, "app") as conn:
            conn.execute("DELETE FROM core.second")
            conn.execute("SELECT nextval('core.second_id_seq')")
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("TRUNCATE core.users")
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("DROP TABLE IF EXISTS core.second")


def test_schema_rights_and_future_rights_taken_by_hand_are_drift_and_update_restores_them(
    pg: PostgresServer, applied: Applied
) -> None:
    """The schema's own privileges and each owner's default privileges are read
    from the catalog: an owner whose future sequences no longer reach the role
    is missing from `default_owners` even while its future tables still do."""
    props = applied.props["grant-core-app"]
    provider = SchemaGrantProvider()
    role, migrator = props["role"], applied.spec.role("migrator").name
    assert (provider.read("x", props).outs or {})["default_owners"] == ["postgres", migrator]
    with pg.admin(applied.spec.name) as conn:
        conn.execute(f"REVOKE USAGE ON SCHEMA core FROM {role}")
        conn.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA core REVOKE USAGE ON SEQUENCES FROM {role}"
        )
    result = provider.read("core.anything", props)
    drifted = result.outs or {}
    assert result.id == "core.anything"
    assert (drifted["schema_privileges"], drifted["default_owners"]) == ([], ["postgres"])
    assert provider.diff("x", drifted, props).changes
    provider.update("x", drifted, props)
    read = provider.read("x", props).outs or {}
    assert (read["schema_privileges"], read["default_owners"]) == (["USAGE"], ["postgres", migrator])


def test_a_column_grant_beside_the_whole_table_is_not_read_as_column_by_column(
    pg: PostgresServer, applied: Applied
) -> None:
    """A role that reads the whole table reads it whole, whatever column
    grants lie beside (the schema reports those): no finding, and the update
    does not narrow the table to them."""
    props = applied.props["grant-core-app"]
    provider = SchemaGrantProvider()
    role = props["role"]
    with pg.admin(applied.spec.name) as conn:
        conn.execute(f"GRANT SELECT (email) ON core.users TO {role}")
    try:
        read = provider.read("x", props).outs or {}
        assert (read["withholding"], read["table_privileges"]) == ([], props["table_privileges"])
        provider.update("x", read, props)
        with connect_as(pg, applied.spec, "app") as conn:
            assert conn.execute("SELECT count(id) FROM core.users").fetchone() == (1,)
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute(f"REVOKE SELECT (email) ON core.users FROM {role}")


def test_an_owner_no_longer_declared_loses_its_future_rights_for_the_role(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["grant-core-backup"]
    provider = SchemaGrantProvider()
    role, migrator = props["role"], applied.spec.role("migrator").name
    fewer = {**props, "default_owners": ["postgres"]}
    provider.update("x", props, fewer)
    try:
        assert _future_rights(pg, applied, role) == {("postgres", "S"), ("postgres", "r")}
        assert (provider.read("x", fewer).outs or {})["default_owners"] == ["postgres"]
    finally:
        provider.update("x", fewer, props)
    assert _future_rights(pg, applied, role) == {(o, k) for o in ("postgres", migrator) for k in ("S", "r")}


def test_a_deleted_grant_leaves_no_right_behind_and_one_whose_role_or_schema_is_gone_deletes_quietly(
    pg: PostgresServer, applied: Applied
) -> None:
    props = applied.props["grant-core-backup"]
    provider = SchemaGrantProvider()
    role = props["role"]
    # An owner dropped since the grant was made is passed over, and the rest are still revoked.
    provider.delete("x", {**props, "default_owners": ["dropped_since", *props["default_owners"]]})
    try:
        assert _future_rights(pg, applied, role) == set()
        with pg.admin(applied.spec.name) as conn:
            held = conn.execute(
                "SELECT has_schema_privilege(%s, 'core', 'USAGE'), has_table_privilege(%s, 'core.users', 'SELECT')",
                (role, role),
            ).fetchone()
        assert held == (False, False)
    finally:
        provider.create(props)
    provider.delete("x", {**props, "role": "nobody_here"})
    provider.delete("x", {**props, "schema": "nowhere"})
    assert _future_rights(pg, applied, role) != set()


def _future_rights(pg: PostgresServer, applied: Applied, role: str) -> set[tuple[str, str]]:
    """(owner, object type) of each default-privilege entry in `core` naming the role."""
    with pg.admin(applied.spec.name) as conn:
        rows = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(d.defaclrole), d.defaclobjtype::text FROM pg_default_acl d, "
            "aclexplode(d.defaclacl) a WHERE d.defaclnamespace = 'core'::regnamespace AND a.grantee = %s::regrole",
            (role,),
        ).fetchall()
    return {(str(owner), str(kind)) for owner, kind in rows}


def test_the_grants_on_one_schema_are_deleted_in_parallel(pg: PostgresServer, applied: Applied) -> None:
    """`pulumi destroy` deletes them at once too: each delete takes the schema's lock."""
    grants = [props for name, props in applied.props.items() if name.startswith("grant-core-")]
    try:
        for _round in range(5):
            with ThreadPoolExecutor(max_workers=len(grants)) as pool:
                for deleted in [pool.submit(SchemaGrantProvider().delete, "x", dict(props)) for props in grants]:
                    deleted.result()
            with ThreadPoolExecutor(max_workers=len(grants)) as pool:
                for created in [pool.submit(SchemaGrantProvider().create, dict(props)) for props in grants]:
                    created.result()
    finally:
        for props in grants:
            SchemaGrantProvider().create(dict(props))
    with connect_as(pg, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (1,)


def test_deleting_the_access_takes_each_roles_connect_and_leaves_public_shut(
    pg: PostgresServer, applied: Applied
) -> None:
    props = applied.props["database-access"]
    provider = DatabaseAccessProvider()
    database, roles = props["database"], props["connect_roles"]
    assert roles
    # A role dropped since is passed over; the rest still lose CONNECT.
    provider.delete(database, {**props, "connect_roles": ["dropped_since", *roles]})
    try:
        with pg.admin(applied.spec.name) as conn:
            held = conn.execute(
                "SELECT r.rolname FROM pg_roles r WHERE r.rolname = ANY(%s) "
                "AND has_database_privilege(r.oid, %s, 'CONNECT')",
                (roles, database),
            ).fetchall()
        assert held == []
        assert (provider.read(database, props).outs or {})["public_revoked"] is True
    finally:
        provider.create(props)
    assert (provider.read(database, props).outs or {})["connect_roles"] == sorted(roles)


def test_the_admins_own_rights_on_the_database_are_not_undeclared(pg: PostgresServer, applied: Applied) -> None:
    """The role the provider connects as may hold rights on the database and on
    another owner's future objects (RDS's master is granted, not the owner):
    its own, never drift. The same rights held by any other role are."""
    props = applied.props["database-access"]
    database, migrator = props["database"], applied.spec.role("migrator").name
    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE ROLE second_admin LOGIN SUPERUSER PASSWORD 'second-admin-pass'")
        conn.execute(f"GRANT ALL ON DATABASE {database} TO second_admin WITH GRANT OPTION")
        conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} GRANT SELECT ON TABLES TO second_admin")
    try:
        connection = {**props["connection"], "user": "second_admin", "password": "second-admin-pass"}
        own = DatabaseAccessProvider().read(database, {**props, "connection": connection}).outs or {}
        # The one finding: that it is not the owner, which the provider would put right.
        assert own["undeclared"] == [f"the database is owned by {pg.superuser}, not the admin"]
        other = DatabaseAccessProvider().read(database, props).outs or {}
        assert other["undeclared"] == [
            f"CREATE on database {database} to second_admin",
            f"SELECT on future tables of {migrator}, database-wide, to second_admin",
            f"TEMPORARY on database {database} to second_admin",
            f"grant option: CONNECT on database {database} to second_admin",
        ]
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("DROP OWNED BY second_admin")
            conn.execute("DROP ROLE second_admin")


def test_a_public_schema_made_again_by_hand_is_read_by_its_default_rights(pg: PostgresServer) -> None:
    """`CREATE SCHEMA public` leaves its ACL unset: the built-in default,
    the owner's alone, which gives PUBLIC nothing."""
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE public_made_again")
    try:
        with pg.admin("public_made_again") as conn:
            conn.execute("DROP SCHEMA public")
            conn.execute("CREATE SCHEMA public")
            conn.execute("REVOKE ALL ON DATABASE public_made_again FROM PUBLIC")
            assert conn.execute("SELECT nspacl FROM pg_namespace WHERE nspname = 'public'").fetchone() == (None,)
        props = {
            "database": "public_made_again",
            "connection": pg.admin_connection("public_made_again"),
            "restricted_functions": ["lo_import", "pg_advisory_lock"],
        }
        result = DatabaseAccessProvider().read("public_made_again", props)
        assert (result.id, (result.outs or {})["public_revoked"]) == ("public_made_again", True)
        # Nothing restricted them here: initdb's catalog. PUBLIC runs the advisory lock (no ACL of its
        # own: the built-in default); initdb itself keeps the server-side lo_import from PUBLIC.
        assert (result.outs or {})["restricted_functions"] == ["lo_import"]
    finally:
        with pg.admin() as conn:
            conn.execute("DROP DATABASE public_made_again")


def test_a_role_no_longer_declared_loses_connect_even_when_the_update_refuses_it(
    pg: PostgresServer, applied: Applied
) -> None:
    """Roles dropped from `connect_roles` that hold a cluster-wide power are
    refused by name (dropping one is an operator's call), but their way in is
    taken first."""
    props = applied.props["database-access"]
    database = props["database"]
    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE ROLE former_reader LOGIN CREATEROLE")
        conn.execute("CREATE ROLE former_streamer REPLICATION")
        conn.execute(f"GRANT CONNECT ON DATABASE {database} TO former_reader, former_streamer")
    try:
        olds = {**props, "connect_roles": [*props["connect_roles"], "former_reader", "former_streamer"]}
        with pytest.raises(PostgresResourceError) as refused:
            DatabaseAccessProvider().update(database, olds, props)
        assert str(refused.value) == (
            "2 thing(s) on the server that the platform does not declare and will not remove by itself: "
            "role former_reader (LOGIN, CREATEROLE) is not declared: drop it (DROP OWNED BY former_reader; "
            "DROP ROLE former_reader) if nobody should have it, or declare it; "
            "role former_streamer (REPLICATION) is not declared: drop it (DROP OWNED BY former_streamer; "
            "DROP ROLE former_streamer) if nobody should have it, or declare it. What was safe to remove is gone; "
            'docs/runbooks.md ("pulumi up refuses") says how to decide on the rest.'
        )
        with pg.admin(applied.spec.name) as conn:
            held = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'former_%%' "
                "AND has_database_privilege(oid, %s, 'CONNECT')",
                (database,),
            )
            assert held.fetchall() == []
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("DROP OWNED BY former_reader, former_streamer")
            conn.execute("DROP ROLE former_reader, former_streamer")


def test_an_update_keeps_the_admins_own_future_rights(pg: PostgresServer, applied: Applied) -> None:
    """What the provider revokes as undeclared passes over the role it runs as."""
    props = applied.props["database-access"]
    database = props["database"]
    analytics = applied.spec.role("analytics").name
    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE ROLE granted_admin LOGIN SUPERUSER PASSWORD 'granted-admin-pass'")
        conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {pg.superuser} GRANT SELECT ON TABLES TO granted_admin")
        # Read after the admin's own: still revoked.
        conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {pg.superuser} GRANT SELECT ON SEQUENCES TO {analytics}")
    try:
        connection = {**props["connection"], "user": "granted_admin", "password": "granted-admin-pass"}
        DatabaseAccessProvider().update(database, props, {**props, "connection": connection})
        with pg.admin(applied.spec.name) as conn:
            kept = conn.execute(
                "SELECT pg_get_userbyid(a.grantee), d.defaclobjtype::text, a.privilege_type "
                "FROM pg_default_acl d, aclexplode(d.defaclacl) a "
                "WHERE a.grantee IN ('granted_admin'::regrole, %s::regrole) AND d.defaclnamespace = 0",
                (analytics,),
            ).fetchall()
        assert kept == [("granted_admin", "r", "SELECT")]
    finally:
        with pg.admin(applied.spec.name) as conn:
            # The update made the admin it ran as the database's owner.
            conn.execute(f"ALTER DATABASE {database} OWNER TO {pg.superuser}")
            conn.execute("DROP OWNED BY granted_admin")
            conn.execute("DROP ROLE granted_admin")
    assert (DatabaseAccessProvider().read(database, props).outs or {})["undeclared"] == []


def test_public_access_drift_is_detected(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["database-access"]
    provider = DatabaseAccessProvider()
    assert (provider.read(props["database"], props).outs or {})["public_revoked"] is True
    with pg.admin(applied.spec.name) as conn:
        conn.execute(f"GRANT CONNECT ON DATABASE {props['database']} TO PUBLIC")
    drifted = provider.read(props["database"], props).outs or {}
    assert drifted["public_revoked"] is False
    provider.update(props["database"], drifted, props)
    assert (provider.read(props["database"], props).outs or {})["public_revoked"] is True
    # A declared role's CONNECT taken by hand.
    analytics = applied.spec.role("analytics").name
    with pg.admin(applied.spec.name) as conn:
        conn.execute(f"REVOKE CONNECT ON DATABASE {props['database']} FROM {analytics}")
    drifted = provider.read(props["database"], props).outs or {}
    assert drifted["connect_roles"] == sorted(set(props["connect_roles"]) - {analytics})
    provider.update(props["database"], drifted, props)
    assert (provider.read(props["database"], props).outs or {})["connect_roles"] == sorted(props["connect_roles"])
    # The `public` schema opened to everyone, the database left shut, is drift on its own.
    with pg.admin(applied.spec.name) as conn:
        conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
    assert (provider.read(props["database"], props).outs or {})["public_revoked"] is False
    provider.update(props["database"], props, props)
    assert (provider.read(props["database"], props).outs or {})["public_revoked"] is True


def test_create_is_idempotent(pg: PostgresServer, applied: Applied) -> None:
    # A second create of everything (a retried, half-finished `up`) converges.
    apply_spec(pg, applied.spec)
    test_role_attributes_match_the_spec(pg, applied)
    with connect_as(pg, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (1,)


def test_the_grants_on_one_schema_apply_in_parallel(pg: PostgresServer, applied: Applied) -> None:
    # `pulumi up` runs every grant at once; each rewrites the schema's ACL and
    # the owner's default privileges, which without a lock fails the later
    # transaction with "tuple concurrently updated".
    grants = [(name, props) for name, props in applied.props.items() if name.startswith("grant-core-")]
    assert len(grants) >= 4
    for _round in range(5):
        with ThreadPoolExecutor(max_workers=len(grants)) as pool:
            done = [pool.submit(SchemaGrantProvider().create, dict(props)) for _name, props in grants]
            for future in done:
                future.result()
    with connect_as(pg, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (1,)


def test_a_schema_and_its_grants_apply_in_parallel(pg: PostgresServer, applied: Applied) -> None:
    """The schema rewrites its own ACL as each grant does, under the same lock."""
    schema = applied.props["schema-core"]
    grants = [props for name, props in applied.props.items() if name.startswith("grant-core-")]
    for _round in range(5):
        with ThreadPoolExecutor(max_workers=len(grants) + 1) as pool:
            updated = pool.submit(SchemaProvider().update, "core", dict(schema), dict(schema))
            created = [pool.submit(SchemaGrantProvider().create, dict(props)) for props in grants]
            updated.result()
            for future in created:
                future.result()
    with connect_as(pg, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (1,)


def test_a_schema_holding_a_table_is_never_dropped(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["schema-core"]
    with pytest.raises(PostgresResourceError, match=r"schema core still holds .*users"):
        SchemaProvider().delete("core", props)
    with connect_as(pg, applied.spec, "app") as conn:
        assert conn.execute("SELECT email FROM core.users").fetchall() == [("a@example.com",)]


def test_a_role_owning_data_is_never_dropped(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["role-migrator"]
    with pytest.raises(PostgresResourceError, match=r"owns \d+ object"):
        RoleProvider().delete(props["name"], props)
    with connect_as(pg, applied.spec, "app") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (1,)


def test_a_role_owning_a_single_object_is_never_dropped(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["role-analytics"]
    name = props["name"]
    with pg.admin(applied.spec.name) as conn:
        conn.execute(f"CREATE TABLE public.lone_report (id int); ALTER TABLE public.lone_report OWNER TO {name}")
    refusal = (
        f"role {name} owns 1 object(s) in this database; refusing to drop it and its data. Reassign them first "
        f"(REASSIGN OWNED BY {name} TO <role>) or drop them deliberately, then run the update again."
    )
    try:
        with pytest.raises(PostgresResourceError, match=f"^{re.escape(refusal)}$"):
            RoleProvider().delete(name, props)
        with pg.admin(applied.spec.name) as conn:
            assert conn.execute("SELECT to_regclass('public.lone_report')").fetchone() == ("lone_report",)
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("DROP TABLE IF EXISTS public.lone_report")


def test_renaming_a_role_replaces_it_and_other_changes_update_in_place(applied: Applied) -> None:
    props = applied.props["role-analytics"]
    renamed = RoleProvider().diff("x", props, {**props, "name": "wondernest_bi"})
    assert renamed.replaces == ["name"]
    # With a new password too: still a replacement, the new role made before the old one goes.
    both = RoleProvider().diff("x", props, {**props, "name": "wondernest_bi", "password": "another"})
    assert (both.changes, both.replaces, both.delete_before_replace) == (True, ["name"], False)
    limited = RoleProvider().diff("x", props, {**props, "connection_limit": 20})
    assert limited.changes and not limited.replaces
    same = RoleProvider().diff("x", props, {**props, "member_of": list(reversed(props["member_of"]))})
    assert not same.changes


def test_a_role_created_before_alternates_existed_shows_no_change(applied: Applied) -> None:
    # A role as it was declared before members and settings existed: without them.
    props = {**applied.props["role-backup"], "settings": []}
    older = {k: v for k, v in props.items() if k not in ("members", "settings", "rotated")}
    assert not RoleProvider().diff(props["name"], older, props).changes
    assert RoleProvider().diff(props["name"], older, {**props, "members": ["wondernest_backup_clone"]}).changes
    # A role that now declares timeouts is updated to carry them.
    app = applied.props["role-app"]
    app_older = {k: v for k, v in app.items() if k not in ("members", "settings", "rotated")}
    assert RoleProvider().diff(app["name"], app_older, app).changes


def test_check_rejects_bad_identifiers_and_unlimited_roles(applied: Applied) -> None:
    props = applied.props["role-analytics"]
    result = RoleProvider().check({}, {**props, "name": "Robert'); DROP", "connection_limit": -1})
    assert {(f.property, f.reason) for f in result.failures or []} == {
        ("name", '"Robert\'); DROP" is not a plain lower-case Postgres identifier'),
        ("connection_limit", "-1: every role must have a whole connection limit of at least 1"),
    }
    settings = RoleProvider().check({}, {**props, "settings": ["search_path=evil"]})
    assert [(f.property, f.reason) for f in settings.failures or []] == [
        ("settings", "'search_path=evil' is neither `role=<role name>` nor a timeout (`<name>=30s`)")
    ]
    # What passes is passed on as it came.
    accepted = RoleProvider().check(props, props)
    assert (accepted.inputs, accepted.failures) == (props, [])
    bad = "x; DROP ROLE postgres"
    cases = [
        (RoleProvider(), {**props, "member_of": [bad], "members": ["ok", bad]}, {"member_of", "members"}),
        (SchemaProvider(), {**applied.props["schema-core"], "grantees": [bad]}, {"grantees"}),
        (ExtensionProvider(), {**applied.props["extension-pg_stat_statements"], "readers": [bad]}, {"readers"}),
    ]
    for provider, news, keys in cases:
        failures = provider.check({}, news).failures or []
        assert {f.property for f in failures} == keys
        assert all(f.reason == f"{bad!r} is not a role name" for f in failures)


def test_full_lifecycle_from_empty_to_empty(pg: PostgresServer) -> None:
    spec = database_spec(Names(app="lifecycle", stack="test"))
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE lifecycle")
    applied = apply_spec(pg, spec)
    destroy(applied)
    with pg.admin("lifecycle") as conn:
        roles = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'lifecycle\\_%'").fetchone()
        schemas = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)", (list(spec.schemas),)
        ).fetchone()
    assert roles == (0,) and schemas == (0,)


def test_the_serialized_provider_runs_in_a_fresh_process(pg: PostgresServer, applied: Applied) -> None:
    """The engine runs a dynamic provider by unpickling it from state in a new
    process started in the project directory; do exactly that."""
    blob = serialize_provider(RoleProvider())
    props = applied.props["role-monitoring"]
    script = (
        "import base64, json, sys, dill\n"
        "provider = dill.loads(base64.b64decode(sys.argv[1]))\n"
        "result = provider.read(sys.argv[2], json.loads(sys.argv[3]))\n"
        "print(json.dumps(result.outs['member_of']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, blob, props["name"], json.dumps(props)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == ["pg_monitor"]
    assert base64.b64decode(blob)  # a real payload, not an empty placeholder


def test_providers_recorded_before_the_split_by_object_kind_still_load() -> None:
    """State written before the providers moved into a module per kind names
    `components.postgres.provider.<Class>`: the engine must still unpickle it,
    in a fresh process started in the project directory, and get the class
    the program now declares."""
    recorded = json.loads((Path(__file__).parent / "data" / "providers_recorded_before_split.json").read_text())
    assert set(recorded) == {
        "RoleProvider", "SchemaProvider", "SchemaGrantProvider", "DatabaseAccessProvider", "ExtensionProvider"
    }  # fmt: skip
    for name, blob in recorded.items():
        assert b"components.postgres.provider" in base64.b64decode(blob), name
    script = (
        "import base64, json, sys, dill\n"
        "blobs = json.loads(sys.stdin.read())\n"
        "found = {}\n"
        "for name, blob in blobs.items():\n"
        "    provider = dill.loads(base64.b64decode(blob))\n"
        "    found[name] = [type(provider).__module__, type(provider).__name__,\n"
        "                   [f.property for f in provider.check({}, {'connection_limit': 0}).failures or []]]\n"
        "print(json.dumps(found))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(recorded),
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(out.stdout)
    modules = {
        "RoleProvider": "roles", "SchemaProvider": "schemas", "SchemaGrantProvider": "grants",
        "DatabaseAccessProvider": "access", "ExtensionProvider": "extensions",
    }  # fmt: skip
    for name, (module, class_name, _failures) in loaded.items():
        assert (module, class_name) == (f"components.postgres.{modules[name]}", name)
    # The unpickled role provider is the one that checks: a connection limit of 0 is refused.
    assert "connection_limit" in loaded["RoleProvider"][2]
    for name, blob in recorded.items():
        assert type(dill.loads(base64.b64decode(blob))) is getattr(provider_module, name)  # noqa: S301 (our own record)


def test_password_verifiers_reach_neither_statistics_nor_logs(pg: PostgresServer, applied: Applied) -> None:
    """The provider's CREATE/ALTER ROLE ... PASSWORD statements carry SCRAM verifiers."""
    from components.postgres.provider import QUIET_SESSION, connect

    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        recorded = conn.execute(
            "SELECT count(*) FROM pg_stat_statements WHERE query ~* '^(CREATE|ALTER) ROLE'"
        ).fetchone()
        assert conn.execute("SHOW pg_stat_statements.track_utility").fetchone() == ("off",)
        assert conn.execute("SHOW log_parameter_max_length").fetchone() == ("0",)
    assert recorded == (0,)
    # A failing statement's text would be logged: not from the provider's session.
    with connect(
        {"host": "127.0.0.1", "port": pg.port, "user": pg.superuser, "password": pg.superuser_password,
         "database": applied.spec.name, "sslmode": "disable"}
    ) as provider:  # fmt: skip
        for name, value in QUIET_SESSION:
            assert provider.execute(f"SHOW {name}").fetchone() == (value,)
        with pytest.raises(errors.SyntaxError):
            provider.execute("ALTER ROLE wondernest_app PASSWORD 'SCRAM-SHA-256$4096:secret-verifier' BROKEN")
    assert "secret-verifier" not in pg.log()
    assert "SCRAM-SHA-256$" not in pg.log()


def test_an_admin_that_may_set_only_some_quiet_settings_sets_those(pg: PostgresServer, applied: Applied) -> None:
    """An admin that is no superuser (RDS's master) is refused most of them;
    one it was granted (`GRANT SET ON PARAMETER`) is still set after a refusal."""
    from components.postgres.provider import connect

    with pg.admin() as conn:
        conn.execute("CREATE ROLE partial_admin LOGIN PASSWORD 'partial-pass-1'")
        conn.execute("ALTER ROLE partial_admin SET log_statement = 'all'")
        conn.execute("GRANT SET ON PARAMETER log_statement TO partial_admin")
        conn.execute(f"GRANT CONNECT ON DATABASE {applied.spec.name} TO partial_admin")
    try:
        with connect(
            {"host": "127.0.0.1", "port": pg.port, "user": "partial_admin", "password": "partial-pass-1",
             "database": applied.spec.name, "sslmode": "disable", "wait_seconds": 0}
        ) as provider:  # fmt: skip
            # Refused before it: log_min_duration_statement and log_min_error_statement.
            assert provider.execute("SHOW log_min_duration_statement").fetchone() != ("-1",)
            assert provider.execute("SHOW log_statement").fetchone() == ("none",)
            # How an operator tells the provider's sessions from others in pg_stat_activity.
            assert provider.execute("SHOW application_name").fetchone() == ("pulumi-postgres-provider",)
    finally:
        with pg.admin() as conn:
            conn.execute(f"REVOKE CONNECT ON DATABASE {applied.spec.name} FROM partial_admin")
            conn.execute("REVOKE SET ON PARAMETER log_statement FROM partial_admin; DROP ROLE partial_admin")


def test_a_read_only_role_cannot_write_through_a_function(pg: PostgresServer, applied: Applied) -> None:
    """By default PUBLIC may execute every function: a SECURITY DEFINER one a
    migration creates would let analytics write with the migrator's rights."""
    with connect_as(pg, applied.spec, "migrator") as conn:
        conn.execute(
            "CREATE FUNCTION core.add_user(e text) RETURNS void LANGUAGE sql SECURITY DEFINER "
            "AS $$ INSERT INTO core.users (email) VALUES (e) $$"
        )
        conn.execute("SELECT core.add_user('by-the-migrator@example.com')")  # the owner still may
        conn.execute("DELETE FROM core.users WHERE email = 'by-the-migrator@example.com'")
    for key in ("app", "analytics", "backup", "monitoring"):
        with connect_as(pg, applied.spec, key) as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT core.add_user('smuggled@example.com')")
    with pg.admin(applied.spec.name) as conn:
        conn.execute("DROP FUNCTION core.add_user(text)")


def test_routines_granted_to_public_show_as_drift(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["database-access"]
    provider = DatabaseAccessProvider()
    assert (provider.read(props["database"], props).outs or {})["routines_public_revoked"] is True
    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE FUNCTION core.answer() RETURNS int LANGUAGE sql AS $$ SELECT 42 $$")
        conn.execute("GRANT EXECUTE ON FUNCTION core.answer() TO PUBLIC")
    drifted = provider.read(props["database"], props).outs or {}
    assert drifted["routines_public_revoked"] is False
    assert provider.diff(props["database"], drifted, props).changes
    provider.update(props["database"], drifted, props)
    assert (provider.read(props["database"], props).outs or {})["routines_public_revoked"] is True
    # An owner's future routines open to PUBLIC again is drift too.
    with pg.admin(applied.spec.name) as conn:
        conn.execute("ALTER DEFAULT PRIVILEGES FOR ROLE wondernest_migrator GRANT EXECUTE ON ROUTINES TO PUBLIC")
        # Made then, a routine carries no ACL of its own: PUBLIC's EXECUTE is the built-in default.
        conn.execute("SET ROLE wondernest_migrator")
        conn.execute("CREATE FUNCTION core.opened() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$")
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT proacl FROM pg_proc WHERE proname = 'opened'").fetchone() == (None,)
    assert (provider.read(props["database"], props).outs or {})["routines_public_revoked"] is False
    with pg.admin(applied.spec.name) as conn:
        conn.execute("ALTER DEFAULT PRIVILEGES FOR ROLE wondernest_migrator REVOKE EXECUTE ON ROUTINES FROM PUBLIC")
    # The routine made meanwhile is still open to PUBLIC.
    assert (provider.read(props["database"], props).outs or {})["routines_public_revoked"] is False
    provider.update(props["database"], props, props)
    assert (provider.read(props["database"], props).outs or {})["routines_public_revoked"] is True
    # PUBLIC beside another grantee in an owner's future rights: the entry stays, PUBLIC in it.
    with pg.admin(applied.spec.name) as conn:
        conn.execute(
            "ALTER DEFAULT PRIVILEGES FOR ROLE wondernest_migrator GRANT EXECUTE ON ROUTINES TO wondernest_app"
        )
        conn.execute("ALTER DEFAULT PRIVILEGES FOR ROLE wondernest_migrator GRANT EXECUTE ON ROUTINES TO PUBLIC")
    drifted = provider.read(props["database"], props).outs or {}
    # PUBLIC's part is `routines_public_revoked`'s alone, not listed again as undeclared.
    assert (drifted["routines_public_revoked"], drifted["undeclared"]) == (
        False,
        ["EXECUTE on future routines of wondernest_migrator, database-wide, to wondernest_app"],
    )
    provider.update(props["database"], props, props)
    assert (provider.read(props["database"], props).outs or {})["routines_public_revoked"] is True
    with pg.admin(applied.spec.name) as conn:
        conn.execute("DROP FUNCTION core.answer()")
        conn.execute("DROP FUNCTION core.opened()")


def test_expiry_settings_and_members_are_drift_and_update_removes_them(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["role-analytics"]
    name = props["name"]
    with pg.admin() as conn:
        conn.execute(f"ALTER ROLE {name} VALID UNTIL '2030-01-01 00:00:00+00'")
        conn.execute(f"ALTER ROLE {name} SET default_transaction_read_only = off")
        conn.execute(f"ALTER ROLE {name} IN DATABASE {applied.spec.name} SET statement_timeout = 0")
        conn.execute(f"CREATE ROLE borrower LOGIN; GRANT {name} TO borrower")
    try:
        refreshed = RoleProvider().read(name, props).outs or {}
        assert refreshed["escalations"] == [
            "MEMBER borrower",
            "SET default_transaction_read_only=off IN *",
            f"SET statement_timeout=0 IN {applied.spec.name}",
            "VALID UNTIL 2030-01-01 00:00:00+00",
        ]
        assert RoleProvider().diff(name, refreshed, props).changes
        RoleProvider().update(name, refreshed, props)
        assert (RoleProvider().read(name, props).outs or {})["escalations"] == []
        with pg.admin() as conn:
            assert conn.execute("SELECT pg_has_role('borrower', %s, 'usage')", (name,)).fetchone() == (False,)
    finally:
        with pg.admin() as conn:
            conn.execute("DROP ROLE IF EXISTS borrower")


# --- who owns what the schemas hold -------------------------------------------


def _owners(pg: PostgresServer, database: str) -> dict[str, str]:
    with pg.admin(database) as conn:
        rows = conn.execute(
            "SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner) FROM pg_class c "
            "WHERE c.relnamespace = 'core'::regnamespace AND c.relkind IN ('r', 'v', 'S') "
            "UNION ALL SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner) FROM pg_proc p "
            "WHERE p.pronamespace = 'core'::regnamespace "
            "UNION ALL SELECT t.oid::regtype::text, pg_get_userbyid(t.typowner) FROM pg_type t "
            "WHERE t.typnamespace = 'core'::regnamespace AND t.typtype IN ('d', 'e')"
        ).fetchall()
    return dict(rows)


def test_a_schema_holding_tables_is_refused_naming_five_of_them(pg: PostgresServer, applied: Applied) -> None:
    provider = SchemaProvider()
    props = {**applied.props["schema-core"], "name": "ledger", "grantees": [], "withheld": {}}
    provider.create(props)
    tables = ("a", "b", "c", "d", "e", "f")
    try:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("; ".join(f"CREATE TABLE ledger.{t} (id int)" for t in tables[:5]))
        refusal = (
            "schema ledger still holds {} relation(s) ({}); refusing to drop it and its data. Move or drop them "
            "deliberately first, or keep the schema in the stack."
        )
        with pytest.raises(PostgresResourceError, match=f"^{re.escape(refusal.format(5, 'a, b, c, d, e'))}$"):
            provider.delete("ledger", props)
        with pg.admin(applied.spec.name) as conn:
            conn.execute("CREATE TABLE ledger.f (id int)")
        with pytest.raises(PostgresResourceError, match=f"^{re.escape(refusal.format(6, 'a, b, c, d, e ...'))}$"):
            provider.delete("ledger", props)
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("; ".join(f"DROP TABLE IF EXISTS ledger.{t}" for t in tables))
    provider.delete("ledger", props)
    assert provider.drift(props) is None


def test_a_schema_given_away_by_hand_is_read_with_its_owner_and_given_back(
    pg: PostgresServer, applied: Applied
) -> None:
    props = applied.props["schema-core"]
    provider = SchemaProvider()
    with pg.admin(applied.spec.name) as conn:
        conn.execute("ALTER SCHEMA core OWNER TO wondernest_app")
        # Given away, the schema names the admin in its rights like anyone; who comes after it is read too.
        conn.execute(f"GRANT USAGE ON SCHEMA core TO {props['owner']}")
        conn.execute("GRANT USAGE ON SCHEMA core TO wondernest_monitoring")
    try:
        found = provider.read("core", props)
        assert (found.id, (found.outs or {})["owner"]) == ("core", "wondernest_app")
        assert provider.drift(props) == [
            f"owner is 'wondernest_app', declared {props['owner']!r}",
            "undeclared: USAGE on schema core to wondernest_monitoring",
        ]
        provider.update("core", found.outs or {}, props)
        assert provider.drift(props) == []
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute(f"ALTER SCHEMA core OWNER TO {props['owner']}")
            conn.execute("REVOKE USAGE ON SCHEMA core FROM wondernest_monitoring")


def test_a_withheld_column_granted_by_hand_is_undeclared_and_the_admins_own_rights_are_not(
    pg: PostgresServer, applied: Applied
) -> None:
    """The schema's second look at a credential: a column its reader reads
    column by column is declared, the withheld one is not. What the admin
    (the provider's own login) holds is its own."""
    props = applied.props["schema-core"]
    provider = SchemaProvider()
    with pg.admin(applied.spec.name) as conn:
        conn.execute("GRANT SELECT (password_hash) ON core.users TO wondernest_analytics")
        # The admin's rights, then others' after them on the same table and column list.
        conn.execute(f"GRANT SELECT ON core.users TO {props['owner']}")
        conn.execute(f"GRANT SELECT (id) ON core.users TO {props['owner']}")
        conn.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {props['object_owner']} IN SCHEMA core GRANT SELECT ON TABLES "
            f"TO {props['owner']}"
        )
        conn.execute("GRANT SELECT ON core.users TO wondernest_monitoring")
        # A column grant beside the app's whole-table SELECT: it would outlive that grant.
        conn.execute("GRANT SELECT (email) ON core.users TO wondernest_app")
        # A column to a role the schema does not declare; a declared column, with its grant option.
        conn.execute("GRANT SELECT (email) ON core.users TO wondernest_monitoring")
        conn.execute("GRANT SELECT (email) ON core.users TO wondernest_analytics WITH GRANT OPTION")
    admins = (
        "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
        f"WHERE c.oid = 'core.users'::regclass AND a.grantee = '{props['owner']}'::regrole"
    )
    try:
        drifted = provider.read("core", props).outs or {}
        assert drifted["undeclared"] == [
            "SELECT (email) on core.users to wondernest_app",
            "SELECT (email) on core.users to wondernest_monitoring",
            "SELECT (password_hash) on core.users to wondernest_analytics",
            "SELECT on core.users to wondernest_monitoring",
            "grant option: SELECT (email) on core.users to wondernest_analytics",
        ]
        # The update takes the credential's column back and leaves the admin's own right.
        provider.update("core", drifted, props)
        with pg.admin(applied.spec.name) as conn:
            readable = "SELECT has_column_privilege('wondernest_analytics', 'core.users', 'password_hash', 'SELECT')"
            assert conn.execute(readable).fetchone() == (False,)
            assert conn.execute(admins).fetchone() == (1,)
            # The grant option is taken, the column it came with kept.
            email = "SELECT has_column_privilege('wondernest_analytics', 'core.users', 'email', 'SELECT{}')"
            assert conn.execute(email.format("")).fetchone() == (True,)
            assert conn.execute(email.format(" WITH GRANT OPTION")).fetchone() == (False,)
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("REVOKE SELECT (password_hash) ON core.users FROM wondernest_analytics")
            conn.execute(f"REVOKE SELECT, SELECT (id) ON core.users FROM {props['owner']}")
            conn.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {props['object_owner']} IN SCHEMA core REVOKE SELECT ON TABLES "
                f"FROM {props['owner']}"
            )
            conn.execute("REVOKE SELECT, SELECT (email) ON core.users FROM wondernest_monitoring")
            conn.execute("REVOKE GRANT OPTION FOR SELECT (email) ON core.users FROM wondernest_analytics")
            conn.execute("REVOKE SELECT (email) ON core.users FROM wondernest_app")
    assert (provider.read("core", props).outs or {})["undeclared"] == []


def test_objects_another_role_owns_are_drift_and_update_hands_them_to_the_migrator(
    pg: PostgresServer, applied: Applied
) -> None:
    """What the app role owned before migrations had a role of their own (or
    what anyone else planted) is taken over, and the app keeps its row rights."""
    spec = applied.spec
    props = applied.props["schema-core"]
    provider = SchemaProvider()
    clean = provider.read("core", props).outs or {}
    assert clean["strays"] == [] and not provider.diff("core", clean, props).changes
    with pg.admin(spec.name) as conn:
        conn.execute("CREATE TABLE core.legacy (id bigserial PRIMARY KEY, v text)")
        conn.execute("CREATE VIEW core.legacy_view AS SELECT id FROM core.legacy")
        conn.execute("CREATE FUNCTION core.legacy_fn(a int) RETURNS int LANGUAGE sql AS $$ SELECT a $$")
        conn.execute("CREATE AGGREGATE core.legacy_sum(int) (SFUNC = int4pl, STYPE = int)")
        conn.execute("CREATE TYPE core.legacy_mood AS ENUM ('ok')")
        conn.execute("CREATE DOMAIN core.legacy_email AS text CHECK (VALUE LIKE '%@%')")
        for statement in (
            "ALTER TABLE core.legacy OWNER TO wondernest_app",
            "ALTER VIEW core.legacy_view OWNER TO wondernest_analytics",
            "ALTER FUNCTION core.legacy_fn(int) OWNER TO wondernest_app",
            "ALTER AGGREGATE core.legacy_sum(int) OWNER TO wondernest_app",
            "ALTER TYPE core.legacy_mood OWNER TO wondernest_app",
            "ALTER DOMAIN core.legacy_email OWNER TO wondernest_app",
        ):
            conn.execute(statement)
    drifted = provider.read("core", props).outs or {}
    assert drifted["strays"] == [
        "AGGREGATE core.legacy_sum(integer) owned by wondernest_app",
        "DOMAIN core.legacy_email owned by wondernest_app",
        "FUNCTION core.legacy_fn(integer) owned by wondernest_app",
        "TABLE core.legacy owned by wondernest_app",
        "TYPE core.legacy_mood owned by wondernest_app",
        "VIEW core.legacy_view owned by wondernest_analytics",
    ]
    assert provider.diff("core", drifted, props).changes
    provider.update("core", drifted, props)
    assert (provider.read("core", props).outs or {})["strays"] == []
    owners = _owners(pg, spec.name)
    for name in ("core.legacy", "core.legacy_id_seq", "core.legacy_view", "core.legacy_fn(integer)"):
        assert owners[name] == "wondernest_migrator", name
    assert owners["core.legacy_mood"] == owners["core.legacy_email"] == "wondernest_migrator"
    # The app's grant, applied after the schema, gives it rows on what it no longer owns.
    grant = applied.props["grant-core-app"]
    SchemaGrantProvider().update("x", grant, grant)
    with connect_as(pg, spec, "app") as conn:
        conn.execute("INSERT INTO core.legacy (v) VALUES ('still writable')")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DROP TABLE core.legacy CASCADE")
    with pg.admin(spec.name) as conn:
        conn.execute("DROP TABLE core.legacy CASCADE")
        conn.execute("DROP FUNCTION core.legacy_fn(int)")
        conn.execute("DROP AGGREGATE core.legacy_sum(int)")
        conn.execute("DROP TYPE core.legacy_mood")
        conn.execute("DROP DOMAIN core.legacy_email")


def test_an_admin_that_is_not_a_superuser_hands_objects_over_too(pg: PostgresServer, applied: Applied) -> None:
    """RDS's master user has CREATEROLE, not SUPERUSER: it borrows the owners'
    rights for the transaction and gives them back."""
    from components.postgres.provider import _hand_over

    spec = applied.spec
    with pg.admin(spec.name) as conn:
        conn.execute("CREATE ROLE master_like LOGIN CREATEROLE PASSWORD 'master-like-pass'")
        conn.execute(f"GRANT CONNECT ON DATABASE {spec.name} TO master_like")
        conn.execute("CREATE TABLE core.borrowed (id int)")
        conn.execute("ALTER TABLE core.borrowed OWNER TO wondernest_app")
    try:
        dsn = pg.dsn(user="master_like", password="master-like-pass", dbname=spec.name)
        with psycopg.connect(dsn) as conn, conn.cursor() as cur:
            _hand_over(cur, "core", spec.admin_role, spec.object_owner)
        assert _owners(pg, spec.name)["core.borrowed"] == "wondernest_migrator"
        with pg.admin(spec.name) as conn:
            held = conn.execute("SELECT count(*) FROM pg_auth_members WHERE member = 'master_like'::regrole").fetchone()
        assert held == (0,)
    finally:
        with pg.admin(spec.name) as conn:
            conn.execute("DROP TABLE IF EXISTS core.borrowed")
            conn.execute("DROP OWNED BY master_like")
            conn.execute("DROP ROLE master_like")


# --- catalog functions every role could run -----------------------------------


def test_read_only_roles_can_neither_store_large_objects_nor_take_the_migrations_lock(
    pg: PostgresServer, applied: Applied
) -> None:
    for key in ("app", "analytics", "backup", "monitoring"):
        with connect_as(pg, applied.spec, key) as conn:
            for statement in (
                "SELECT lo_from_bytea(0, 'smuggled')",
                "SELECT lo_create(0)",
                "SELECT lo_creat(-1)",
                "SELECT pg_advisory_lock(1)",
                "SELECT pg_try_advisory_lock(1, 2)",
                "SELECT pg_advisory_xact_lock_shared(1)",
            ):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(statement)
    # The migrator takes and gives back its lock, and nothing more.
    with connect_as(pg, applied.spec, "migrator") as conn:
        conn.execute("SELECT pg_advisory_lock(42)")
        assert conn.execute("SELECT pg_advisory_unlock(42)").fetchone() == (True,)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT lo_from_bytea(0, 'smuggled')")


def test_a_catalog_function_opened_again_is_drift_and_update_closes_it(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["database-access"]
    provider = DatabaseAccessProvider()
    clean = provider.read(props["database"], props).outs or {}
    assert clean["restricted_functions"] == props["restricted_functions"]
    assert clean["function_grants"] == props["function_grants"]
    assert not provider.diff(props["database"], clean, props).changes
    with pg.admin(applied.spec.name) as conn:
        conn.execute("GRANT EXECUTE ON FUNCTION lo_from_bytea(oid, bytea) TO PUBLIC")
        conn.execute("GRANT EXECUTE ON FUNCTION pg_try_advisory_lock(bigint) TO wondernest_analytics")
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_advisory_unlock(bigint) FROM wondernest_migrator")
    drifted = provider.read(props["database"], props).outs or {}
    assert "lo_from_bytea" not in drifted["restricted_functions"]
    assert "pg_try_advisory_lock" not in drifted["restricted_functions"]
    assert drifted["function_grants"]["pg_advisory_unlock(bigint)"] == []
    assert provider.diff(props["database"], drifted, props).changes
    provider.update(props["database"], drifted, props)
    assert (provider.read(props["database"], props).outs or {}) == clean


def test_a_declared_function_the_server_does_not_have_reads_as_granted_to_nobody(
    pg: PostgresServer, applied: Applied
) -> None:
    """A grant on a signature the server lacks (another major version's, a
    type that differs) is drift to show, not a read that fails."""
    props = applied.props["database-access"]
    migrator = applied.spec.role("migrator").name
    declared = {**props, "function_grants": {**props["function_grants"], "pg_advisory_lock(text)": [migrator]}}
    read = DatabaseAccessProvider().read(props["database"], declared).outs or {}
    assert read["function_grants"] == {**props["function_grants"], "pg_advisory_lock(text)": []}


def test_an_access_declared_before_catalog_functions_were_restricted_shows_a_change(applied: Applied) -> None:
    props = applied.props["database-access"]
    older = {k: v for k, v in props.items() if k not in ("restricted_functions", "function_grants")}
    provider = DatabaseAccessProvider()
    assert provider.diff(props["database"], older, props).changes
    unrestricted = {**props, "restricted_functions": [], "function_grants": {}}
    assert not provider.diff(props["database"], older, unrestricted).changes


# --- rights no grant resource accounts for ------------------------------------


def test_rights_no_grant_declares_are_drift_and_update_removes_exactly_them(
    pg: PostgresServer, applied: Applied
) -> None:
    props = applied.props["schema-core"]
    assert props["grantees"] == sorted(
        ["wondernest_migrator", "wondernest_app", "wondernest_analytics", "wondernest_backup"]
    )
    provider = SchemaProvider()
    clean = provider.read("core", props).outs or {}
    assert clean["undeclared"] == [] and not provider.diff("core", clean, props).changes
    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE FUNCTION core.planted() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$")
        conn.execute("ALTER FUNCTION core.planted() OWNER TO wondernest_migrator")
        for statement in (
            # A role with no grant here, and PUBLIC.
            "GRANT USAGE ON SCHEMA core TO wondernest_monitoring",
            "GRANT SELECT ON core.users TO wondernest_monitoring",
            "GRANT SELECT ON core.users TO PUBLIC",
            "GRANT UPDATE ON SEQUENCE core.users_id_seq TO wondernest_monitoring",
            # A column privilege, and grant options, for declared grantees.
            "GRANT UPDATE (email) ON core.users TO wondernest_analytics",
            "GRANT SELECT ON SEQUENCE core.users_id_seq TO wondernest_analytics WITH GRANT OPTION",
            "GRANT USAGE ON SCHEMA core TO wondernest_app WITH GRANT OPTION",
            # A routine privilege, and default privileges for a role with no grant.
            "GRANT EXECUTE ON FUNCTION core.planted() TO wondernest_analytics",
            "ALTER DEFAULT PRIVILEGES FOR ROLE wondernest_migrator IN SCHEMA core "
            "GRANT SELECT ON TABLES TO wondernest_monitoring",
            "ALTER DEFAULT PRIVILEGES FOR ROLE wondernest_migrator IN SCHEMA core "
            "GRANT SELECT ON TABLES TO wondernest_backup WITH GRANT OPTION",
            # An alternate user is no grantee either.
            "CREATE ROLE wondernest_app_clone",
            "GRANT SELECT ON core.users TO wondernest_app_clone",
        ):
            conn.execute(statement)
    try:
        drifted = provider.read("core", props).outs or {}
        assert drifted["undeclared"] == sorted(
            [
                "USAGE on schema core to wondernest_monitoring",
                "SELECT on core.users to wondernest_monitoring",
                "SELECT on core.users to PUBLIC",
                "UPDATE on core.users_id_seq to wondernest_monitoring",
                "UPDATE (email) on core.users to wondernest_analytics",
                "grant option: SELECT on core.users_id_seq to wondernest_analytics",
                "grant option: USAGE on schema core to wondernest_app",
                "EXECUTE on core.planted() to wondernest_analytics",
                "SELECT on future tables of wondernest_migrator in core to wondernest_monitoring",
                "grant option: SELECT on future tables of wondernest_migrator in core to wondernest_backup",
                "SELECT on core.users to wondernest_app_clone",
            ]
        )
        assert provider.diff("core", drifted, props).changes
        provider.update("core", drifted, props)
        assert (provider.read("core", props).outs or {})["undeclared"] == []
        # What the grants declare is untouched: the readers still read, the app still writes.
        grants = SchemaGrantProvider()
        for key in ("grant-core-analytics", "grant-core-app", "grant-core-backup"):
            observed = grants.read(key, applied.props[key]).outs or {}
            assert not grants.diff(key, observed, applied.props[key]).changes, (key, observed.get("withholding"))
        with connect_as(pg, applied.spec, "analytics") as conn:
            assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (1,)
        with connect_as(pg, applied.spec, "monitoring") as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM core.users")
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("DROP FUNCTION IF EXISTS core.planted()")
            conn.execute("DROP OWNED BY wondernest_app_clone")
            conn.execute("DROP ROLE IF EXISTS wondernest_app_clone")


def test_database_rights_beyond_connect_are_drift_and_update_removes_them(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["database-access"]
    database = props["database"]
    provider = DatabaseAccessProvider()
    clean = provider.read(database, props).outs or {}
    assert clean["undeclared"] == [] and not provider.diff(database, clean, props).changes
    with pg.admin(database) as conn:
        for statement in (
            f"GRANT CREATE ON DATABASE {database} TO wondernest_analytics",
            f"GRANT TEMPORARY ON DATABASE {database} TO wondernest_backup",
            f"GRANT CONNECT ON DATABASE {database} TO wondernest_app WITH GRANT OPTION",
            "ALTER DEFAULT PRIVILEGES FOR ROLE wondernest_migrator GRANT SELECT ON TABLES TO wondernest_monitoring",
            "ALTER DEFAULT PRIVILEGES FOR ROLE wondernest_migrator GRANT USAGE ON SCHEMAS TO wondernest_monitoring",
        ):
            conn.execute(statement)
    drifted = provider.read(database, props).outs or {}
    assert drifted["undeclared"] == sorted(
        [
            f"CREATE on database {database} to wondernest_analytics",
            f"TEMPORARY on database {database} to wondernest_backup",
            f"grant option: CONNECT on database {database} to wondernest_app",
            "SELECT on future tables of wondernest_migrator, database-wide, to wondernest_monitoring",
            "USAGE on future schemas of wondernest_migrator, database-wide, to wondernest_monitoring",
        ]
    )
    assert provider.diff(database, drifted, props).changes
    provider.update(database, drifted, props)
    after = provider.read(database, props).outs or {}
    assert after["undeclared"] == [] and after["connect_roles"] == props["connect_roles"]
    with connect_as(pg, applied.spec, "analytics") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("CREATE SCHEMA planted")
    with connect_as(pg, applied.spec, "backup") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("CREATE TEMPORARY TABLE planted (id int)")
    with connect_as(pg, applied.spec, "app") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# --- statement statistics ------------------------------------------------------

SLOW_QUERIES = "SELECT query, calls, total_exec_time, mean_exec_time FROM pg_stat_statements ORDER BY 3 DESC LIMIT 10"


def test_only_the_monitoring_role_reads_statement_statistics(pg: PostgresServer, applied: Applied) -> None:
    """The guide's slow-query query (with PostgreSQL 13+'s column names), as monitoring, unqualified."""
    with connect_as(pg, applied.spec, "analytics") as conn:
        conn.execute("SELECT count(*) FROM core.users WHERE id > 0")
    with connect_as(pg, applied.spec, "monitoring") as conn:
        rows = conn.execute(SLOW_QUERIES).fetchall()
        assert rows and all(len(row) == 4 for row in rows)
        # pg_monitor lets it see every role's statement text.
        seen = conn.execute("SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%core.users WHERE id%'")
        assert seen.fetchone() == (1,)
        assert conn.execute("SELECT dealloc FROM pg_stat_statements_info").fetchone() is not None
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT pg_stat_statements_reset()")
    for key in ("app", "analytics", "backup", "migrator"):
        with connect_as(pg, applied.spec, key) as conn:
            # Without USAGE on `public` the unqualified name does not even resolve.
            with pytest.raises((errors.InsufficientPrivilege, errors.UndefinedTable)):
                conn.execute(SLOW_QUERIES)
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM public.pg_stat_statements(true)")


def test_statistics_opened_to_others_are_drift_and_update_closes_them(pg: PostgresServer, applied: Applied) -> None:
    props = applied.props["extension-pg_stat_statements"]
    provider = ExtensionProvider()
    clean = provider.read("pg_stat_statements", props).outs or {}
    assert clean["readers"] == ["wondernest_monitoring"] and clean["undeclared"] == []
    assert not provider.diff("pg_stat_statements", clean, props).changes
    with pg.admin(applied.spec.name) as conn:
        conn.execute("GRANT SELECT ON public.pg_stat_statements TO PUBLIC")
        conn.execute("GRANT EXECUTE ON FUNCTION public.pg_stat_statements_reset(oid, oid, bigint) TO wondernest_app")
        conn.execute("REVOKE SELECT ON public.pg_stat_statements_info FROM wondernest_monitoring")
        conn.execute("GRANT SELECT ON public.pg_stat_statements_info TO wondernest_backup WITH GRANT OPTION")
    drifted = provider.read("pg_stat_statements", props).outs or {}
    assert drifted["readers"] == []
    assert drifted["undeclared"] == [
        "EXECUTE on public.pg_stat_statements_reset(oid, oid, bigint) to wondernest_app",
        "SELECT on public.pg_stat_statements to PUBLIC",
        "grant option: SELECT on public.pg_stat_statements_info to wondernest_backup",
    ]
    # What `make verify` prints: the input that differs, then each undeclared right.
    assert provider.drift(props) == [
        "readers is [], declared ['wondernest_monitoring']",
        "undeclared: EXECUTE on public.pg_stat_statements_reset(oid, oid, bigint) to wondernest_app",
        "undeclared: SELECT on public.pg_stat_statements to PUBLIC",
        "undeclared: grant option: SELECT on public.pg_stat_statements_info to wondernest_backup",
    ]
    assert provider.diff("pg_stat_statements", drifted, props).changes
    provider.update("pg_stat_statements", drifted, props)
    assert (provider.read("pg_stat_statements", props).outs or {}) == clean
    assert provider.drift(props) == []


def test_an_extension_deleted_takes_its_readers_rights_with_it(pg: PostgresServer, applied: Applied) -> None:
    """Its readers lose USAGE on its schema too; a reader dropped since is passed over."""
    provider = ExtensionProvider()
    props = {
        **applied.props["extension-pg_stat_statements"],
        "name": "pg_trgm",
        "schema": "trigrams",
        "readers": ["trigram_reader", "trigram_gone"],
        "views": [],
        "functions": ["similarity(text, text)"],
    }
    usage = "SELECT has_schema_privilege('trigram_reader', 'trigrams', 'USAGE')"
    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE SCHEMA trigrams; CREATE ROLE trigram_reader; CREATE ROLE trigram_gone")
    try:
        # What the engine records: the id, and the inputs as outputs.
        created = provider.create(props)
        assert (created.id, created.outs) == ("pg_trgm", props)
        assert (provider.read("pg_trgm", props).outs or {})["readers"] == ["trigram_reader", "trigram_gone"]
        with pg.admin(applied.spec.name) as conn:
            conn.execute("DROP OWNED BY trigram_gone; DROP ROLE trigram_gone")
            assert conn.execute(usage).fetchone() == (True,)
        provider.delete("pg_trgm", props)
        with pg.admin(applied.spec.name) as conn:
            assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").fetchone() == (0,)
            assert conn.execute(usage).fetchone() == (False,)
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute("DROP EXTENSION IF EXISTS pg_trgm; DROP SCHEMA trigrams; DROP OWNED BY trigram_reader")
            conn.execute("DROP ROLE trigram_reader; DROP ROLE IF EXISTS trigram_gone")


def test_statistics_moved_by_hand_are_read_where_they_are_and_moved_back(pg: PostgresServer, applied: Applied) -> None:
    """An extension moved to another schema by hand: read there (its rights
    judged on its objects as they are named now), and an update moves it back
    without replacing it."""
    props = applied.props["extension-pg_stat_statements"]
    provider = ExtensionProvider()
    with pg.admin(applied.spec.name) as conn:
        conn.execute("CREATE SCHEMA elsewhere; ALTER EXTENSION pg_stat_statements SET SCHEMA elsewhere")
    try:
        moved = provider.read("pg_stat_statements", props)
        outs = moved.outs or {}
        # Its rights moved with it; the monitoring role has no USAGE on the new schema, so reads nothing.
        assert (moved.id, outs["name"], outs["schema"], outs["readers"], outs["undeclared"]) == (
            "pg_stat_statements", "pg_stat_statements", "elsewhere", [], []
        )  # fmt: skip
        change = provider.diff("pg_stat_statements", outs, props)
        assert (change.changes, change.replaces) == (True, [])
        # What the engine records after the update: the inputs as outputs.
        assert provider.update("pg_stat_statements", outs, props).outs == props
        assert (provider.read("pg_stat_statements", props).outs or {})["schema"] == "public"
        assert provider.drift(props) == []
        # Declared elsewhere: moved there, its readers granted there.
        declared = {**props, "schema": "elsewhere"}
        provider.update("pg_stat_statements", props, declared)
        there = provider.read("pg_stat_statements", declared).outs or {}
        assert (there["schema"], there["readers"], there["undeclared"]) == ("elsewhere", ["wondernest_monitoring"], [])
        provider.update("pg_stat_statements", declared, props)
        assert provider.drift(props) == []
    finally:
        with pg.admin(applied.spec.name) as conn:
            conn.execute(
                "DO $$ BEGIN IF (SELECT extnamespace::regnamespace::text FROM pg_extension "
                "WHERE extname = 'pg_stat_statements') = 'elsewhere' THEN "
                "ALTER EXTENSION pg_stat_statements SET SCHEMA public; END IF; END $$"
            )
            conn.execute("DROP SCHEMA elsewhere")


def test_each_role_starts_its_sessions_with_its_timeouts(applied: Applied, pg: PostgresServer) -> None:
    spec = applied.spec
    expected = {
        "app": {"statement_timeout": "30s", "idle_in_transaction_session_timeout": "1min", "lock_timeout": "0"},
        "migrator": {"statement_timeout": "0", "idle_in_transaction_session_timeout": "5min", "lock_timeout": "10s"},
        "analytics": {"statement_timeout": "15min", "idle_in_transaction_session_timeout": "1min"},
        "monitoring": {"statement_timeout": "10s", "idle_in_transaction_session_timeout": "1min"},
        # Not the server's one-hour backstop: the snapshot's session idles while pg_dump runs.
        "backup": {"statement_timeout": "0", "idle_in_transaction_session_timeout": "0"},
    }
    for key, settings in expected.items():
        with connect_as(pg, spec, key) as conn:
            for name, value in settings.items():
                assert conn.execute(f"SHOW {name}").fetchone() == (value,), (key, name)
    # The monitoring role still reads through pg_monitor: settings do not make it NOINHERIT.
    with connect_as(pg, spec, "monitoring") as conn:
        assert conn.execute("SELECT count(*) >= 0 FROM pg_stat_statements").fetchone() == (True,)


def test_an_idle_transaction_is_ended_and_a_timeout_changed_by_hand_is_drift(
    applied: Applied, pg: PostgresServer
) -> None:
    props = applied.props["role-analytics"]
    name = props["name"]
    with pg.admin("wondernest") as conn:
        conn.execute(f"ALTER ROLE {name} SET idle_in_transaction_session_timeout = '1s'")
    try:
        outs = RoleProvider().read(name, props).outs or {}
        assert outs["escalations"] == [
            "MISSING SET idle_in_transaction_session_timeout=1min",
            "SET idle_in_transaction_session_timeout=1s IN *",
        ]
        assert RoleProvider().diff(name, {**props, **outs}, props).changes
        with connect_as(pg, applied.spec, "analytics") as conn:
            conn.autocommit = False
            conn.execute("SELECT 1")
            time.sleep(2)
            with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
                conn.execute("SELECT 1")
    finally:
        RoleProvider().update(name, props, props)
    with connect_as(pg, applied.spec, "analytics") as conn:
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
