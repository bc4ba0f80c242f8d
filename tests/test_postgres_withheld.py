"""Columns withheld from the analytics role, on a real PostgreSQL 15: password
hashes and token digests stay unreadable through every migration that creates
or alters their tables, while everything else stays readable; drift in either
direction is read and put right."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import errors

from components.model.database import WITHHELD_FROM_ANALYTICS, database_spec
from components.model.naming import Names
from components.postgres import withheld
from components.postgres.provider import DatabaseAccessProvider, SchemaGrantProvider, SchemaProvider
from tests.platform_db import Applied, connect_as, platform_with_users
from tests.servers import PostgresServer, postgres_server

pytestmark = pytest.mark.servers

# The bundled app's sessions table, in the form that matters here.
SESSIONS = (
    "CREATE TABLE core.user_sessions (id bigserial PRIMARY KEY, user_id bigint NOT NULL, token_hash text NOT NULL)"
)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        yield pg


@pytest.fixture(scope="module")
def applied(server: PostgresServer) -> Applied:
    return platform_with_users(server, "('a@example.com', '$2b$12$secret')")


def grant(applied: Applied) -> tuple[SchemaGrantProvider, dict[str, Any]]:
    return SchemaGrantProvider(), applied.props["grant-core-analytics"]


def test_the_spec_withholds_credentials_from_analytics_alone() -> None:
    spec = database_spec(Names(app="wondernest", stack="test"))
    narrowed = {(g.schema, g.role): g.withheld for g in spec.grants if g.withheld}
    assert narrowed == {("core", "wondernest_analytics"): WITHHELD_FROM_ANALYTICS["core"]}
    assert WITHHELD_FROM_ANALYTICS["core"] == ("user_sessions.token_hash", "users.password_hash")


def test_the_trigger_keeps_the_name_it_was_deployed_under() -> None:
    """An update finds the deployed trigger by this name: another (a longer
    digest, say) would leave the old one behind, still narrowing by the old
    declaration, beside the new."""
    assert withheld.trigger_name("core", "wondernest_analytics") == "wn_withhold_14884d487dc37767"


def test_a_table_a_migration_creates_shows_analytics_all_but_the_credential(
    server: PostgresServer, applied: Applied
) -> None:
    with connect_as(server, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT id, email FROM core.users").fetchall() == [(1, "a@example.com")]
        for query in ("SELECT password_hash FROM core.users", "SELECT * FROM core.users"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(query)
    # The backup reads every column, or a restore would lose the passwords.
    with connect_as(server, applied.spec, "backup") as conn:
        assert conn.execute("SELECT password_hash FROM core.users").fetchall() == [("$2b$12$secret",)]
    provider, props = grant(applied)
    clean = provider.read("core.wondernest_analytics", props).outs or {}
    assert clean["withholding"] == [] and not provider.diff("x", clean, props).changes
    schema = SchemaProvider().read("core", applied.props["schema-core"]).outs or {}
    assert schema["undeclared"] == []


def test_later_migrations_keep_credentials_withheld_and_new_columns_readable(
    server: PostgresServer, applied: Applied
) -> None:
    with connect_as(server, applied.spec, "migrator") as conn:
        conn.execute(SESSIONS)
        conn.execute("ALTER TABLE core.users ADD COLUMN nickname text")
    try:
        with connect_as(server, applied.spec, "analytics") as conn:
            conn.execute("SELECT id, email, nickname FROM core.users")
            conn.execute("SELECT id, user_id FROM core.user_sessions")
            for query in ("SELECT token_hash FROM core.user_sessions", "SELECT password_hash FROM core.users"):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(query)
        provider, props = grant(applied)
        assert (provider.read("x", props).outs or {})["withholding"] == []
    finally:
        with connect_as(server, applied.spec, "migrator") as conn:
            conn.execute("DROP TABLE core.user_sessions")
            conn.execute("ALTER TABLE core.users DROP COLUMN nickname")


def test_a_credential_renamed_away_closes_its_table_until_the_declaration_names_it(
    server: PostgresServer, applied: Applied
) -> None:
    """The column a withheld one became is not known: the table shows nothing
    rather than the credential under a new name, and the read says why."""
    with connect_as(server, applied.spec, "migrator") as conn:
        conn.execute("ALTER TABLE core.users RENAME COLUMN password_hash TO password_digest")
    provider, props = grant(applied)
    try:
        with connect_as(server, applied.spec, "analytics") as conn:
            for query in ("SELECT password_digest FROM core.users", "SELECT email FROM core.users"):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(query)
        drifted = provider.read("x", props).outs or {}
        assert drifted["withholding"] == [
            "core.users has no column password_hash, declared withheld: closed to wondernest_analytics whole "
            "until the declaration names the column it became"
        ]
        # An update keeps it closed: it cannot know which column to withhold.
        provider.update("x", drifted, props)
        with connect_as(server, applied.spec, "analytics") as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT password_digest FROM core.users")
        # Declared under its new name, the table opens again without it.
        renamed = {**props, "withheld": ["user_sessions.token_hash", "users.password_digest"]}
        provider.update("x", props, renamed)
        with connect_as(server, applied.spec, "analytics") as conn:
            assert conn.execute("SELECT email FROM core.users").fetchall() == [("a@example.com",)]
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("SELECT password_digest FROM core.users")
    finally:
        with connect_as(server, applied.spec, "migrator") as conn:
            conn.execute("ALTER TABLE core.users RENAME COLUMN password_digest TO password_hash")
        provider.update("x", props, props)
    assert (provider.read("x", props).outs or {})["withholding"] == []


@pytest.mark.parametrize(
    "child",
    [
        "CREATE TABLE core.admin_users () INHERITS (core.users)",
        "CREATE TABLE family.admin_users () INHERITS (core.users)",
    ],
)
def test_a_child_table_read_directly_withholds_what_its_parent_does(
    server: PostgresServer, applied: Applied, child: str
) -> None:
    table = child.split()[2]
    with connect_as(server, applied.spec, "migrator") as conn:
        conn.execute(child)
        conn.execute(f"INSERT INTO {table} (email, password_hash) VALUES ('b@example.com', '$2b$12$other')")
    try:
        with connect_as(server, applied.spec, "analytics") as conn:
            assert conn.execute(f"SELECT email FROM {table}").fetchall() == [("b@example.com",)]
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"SELECT password_hash FROM {table}")
        # By hand, and found.
        with server.admin(applied.spec.name) as conn:
            conn.execute(f"GRANT SELECT ON {table} TO wondernest_analytics")
        provider, props = grant(applied)
        drifted = provider.read("x", props).outs or {}
        assert f"{table} (password_hash) readable by wondernest_analytics, declared withheld" in drifted["withholding"]
        provider.update("x", drifted, props)
        with connect_as(server, applied.spec, "analytics") as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"SELECT password_hash FROM {table}")
    finally:
        with connect_as(server, applied.spec, "migrator") as conn:
            conn.execute(f"DROP TABLE {table}")


def test_a_child_table_the_role_may_not_read_stays_closed(server: PostgresServer, applied: Applied) -> None:
    """Narrowing follows a withheld table's children into other schemas; in
    one the role is granted nothing, the child's other columns stay closed."""
    with server.admin(applied.spec.name) as conn:
        conn.execute("CREATE SCHEMA private; CREATE TABLE private.admin_users () INHERITS (core.users)")
    try:
        provider, props = grant(applied)
        provider.update("x", props, props)
        with server.admin(applied.spec.name) as conn:
            readable = "SELECT has_any_column_privilege('wondernest_analytics', 'private.admin_users', 'SELECT')"
            assert conn.execute(readable).fetchone() == (False,)
    finally:
        with server.admin(applied.spec.name) as conn:
            conn.execute("DROP SCHEMA private CASCADE")


@pytest.mark.parametrize(
    ("move", "back", "where", "key"),
    [
        ("ALTER TABLE core.users RENAME TO accounts", "ALTER TABLE core.accounts RENAME TO users", "core.accounts",
         "grant-core-analytics"),
        ("ALTER TABLE core.users SET SCHEMA family", "ALTER TABLE family.users SET SCHEMA core", "family.users",
         "grant-family-analytics"),
    ],
)  # fmt: skip
def test_a_table_renamed_or_moved_away_from_its_declaration_is_never_widened(
    server: PostgresServer, applied: Applied, move: str, back: str, where: str, key: str
) -> None:
    with connect_as(server, applied.spec, "migrator") as conn:
        conn.execute(move)
    try:
        grants = SchemaGrantProvider()
        props = applied.props[key]
        drifted = grants.read("x", props).outs or {}
        assert drifted["withholding"] == [
            f"{where} is read column by column by wondernest_analytics, which no declaration says (a table with "
            "withheld columns, renamed or moved here?): declare its withheld columns, or grant it whole by hand"
        ]
        schema = where.split(".")[0]
        assert (SchemaProvider().read(schema, applied.props[f"schema-{schema}"]).outs or {})["undeclared"] == []
        # Every update there is, in the order `pulumi up` runs them: the credential stays withheld.
        SchemaProvider().update(schema, applied.props[f"schema-{schema}"], applied.props[f"schema-{schema}"])
        grants.update("x", drifted, props)
        with connect_as(server, applied.spec, "analytics") as conn:
            assert conn.execute(f"SELECT email FROM {where}").fetchall() == [("a@example.com",)]
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"SELECT password_hash FROM {where}")
    finally:
        with connect_as(server, applied.spec, "migrator") as conn:
            conn.execute(back)
    provider, core = grant(applied)
    assert (provider.read("x", core).outs or {})["withholding"] == []


def test_partitions_withhold_what_their_table_does(server: PostgresServer, applied: Applied) -> None:
    statements = [
        "ALTER TABLE core.users RENAME TO users_flat",
        "CREATE TABLE core.users (id bigint, email text, password_hash text) PARTITION BY HASH (id)",
        "CREATE TABLE core.users_p0 PARTITION OF core.users FOR VALUES WITH (MODULUS 2, REMAINDER 0)",
        "CREATE TABLE core.users_p1 PARTITION OF core.users FOR VALUES WITH (MODULUS 2, REMAINDER 1)",
        "INSERT INTO core.users SELECT id, email, password_hash FROM core.users_flat",
    ]
    with connect_as(server, applied.spec, "migrator") as conn:
        for statement in statements:
            conn.execute(statement)
    try:
        with connect_as(server, applied.spec, "analytics") as conn:
            for table in ("core.users", "core.users_p0", "core.users_p1"):
                conn.execute(f"SELECT email FROM {table}")
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(f"SELECT password_hash FROM {table}")
            # The old table, renamed, stays as narrow as it was.
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("SELECT password_hash FROM core.users_flat")
    finally:
        with connect_as(server, applied.spec, "migrator") as conn:
            conn.execute("DROP TABLE core.users")
            conn.execute("ALTER TABLE core.users_flat RENAME TO users")


def test_a_credential_opened_by_hand_is_drift_and_update_withholds_it_again(
    server: PostgresServer, applied: Applied
) -> None:
    provider, props = grant(applied)
    with server.admin(applied.spec.name) as conn:
        conn.execute("GRANT SELECT ON core.users TO wondernest_analytics")
    drifted = provider.read("x", props).outs or {}
    assert drifted["withholding"] == [
        "core.users (password_hash) readable by wondernest_analytics, declared withheld",
        "SELECT on the whole of core.users to wondernest_analytics, declared column by column",
    ]
    assert provider.diff("x", drifted, props).changes
    provider.update("x", drifted, props)
    assert (provider.read("x", props).outs or {})["withholding"] == []
    with connect_as(server, applied.spec, "analytics") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT password_hash FROM core.users")
    # A column grant of the credential alone is caught as well.
    with server.admin(applied.spec.name) as conn:
        conn.execute("GRANT SELECT (password_hash) ON core.users TO wondernest_analytics")
    drifted = provider.read("x", props).outs or {}
    assert drifted["withholding"] == ["core.users (password_hash) readable by wondernest_analytics, declared withheld"]
    provider.update("x", drifted, props)
    assert (provider.read("x", props).outs or {})["withholding"] == []


def test_a_column_taken_away_by_hand_is_drift_and_update_gives_it_back(
    server: PostgresServer, applied: Applied
) -> None:
    provider, props = grant(applied)
    with server.admin(applied.spec.name) as conn:
        conn.execute("REVOKE SELECT (email) ON core.users FROM wondernest_analytics")
    drifted = provider.read("x", props).outs or {}
    assert drifted["withholding"] == ["core.users (email) not readable by wondernest_analytics"]
    provider.update("x", drifted, props)
    with connect_as(server, applied.spec, "analytics") as conn:
        assert conn.execute("SELECT email FROM core.users").fetchall() == [("a@example.com",)]


def test_each_finding_names_every_column_and_privilege_it_is_about(server: PostgresServer, applied: Applied) -> None:
    """A table with two withheld columns, drifted every way in turn."""
    provider, props = grant(applied)
    declared = {**props, "withheld": [*props["withheld"], "keys.secret_a", "keys.secret_b"]}

    def withholding() -> list[str]:
        return list((provider.read("x", declared).outs or {})["withholding"])

    with connect_as(server, applied.spec, "migrator") as conn:
        conn.execute("CREATE TABLE core.keys (id int, secret_a text, secret_b text, label text, note text)")
    try:
        provider.update("x", props, declared)
        assert withholding() == []
        with server.admin(applied.spec.name) as conn:
            conn.execute("GRANT SELECT, UPDATE ON core.keys TO wondernest_analytics")
        assert withholding() == [
            "core.keys (secret_a, secret_b) readable by wondernest_analytics, declared withheld",
            "SELECT, UPDATE on the whole of core.keys to wondernest_analytics, declared column by column",
        ]
        provider.update("x", declared, declared)
        with server.admin(applied.spec.name) as conn:
            conn.execute("REVOKE SELECT (label, note) ON core.keys FROM wondernest_analytics")
        assert withholding() == ["core.keys (label, note) not readable by wondernest_analytics"]
        provider.update("x", declared, declared)
        with connect_as(server, applied.spec, "migrator") as conn:
            conn.execute("ALTER TABLE core.keys DROP COLUMN secret_a, DROP COLUMN secret_b")
        with server.admin(applied.spec.name) as conn:
            conn.execute("GRANT SELECT (label) ON core.keys TO wondernest_analytics")
        assert withholding() == [
            "core.keys has no column secret_a, secret_b, declared withheld: closed to wondernest_analytics whole "
            "until the declaration names the column it became",
            "core.keys readable by wondernest_analytics though a withheld column is gone",
        ]
    finally:
        with connect_as(server, applied.spec, "migrator") as conn:
            conn.execute("DROP TABLE IF EXISTS core.keys")
        provider.update("x", declared, props)
    assert (provider.read("x", props).outs or {})["withholding"] == []


def test_a_trigger_dropped_or_replaced_by_hand_is_drift_and_update_restores_it(
    server: PostgresServer, applied: Applied
) -> None:
    provider, props = grant(applied)
    name = withheld.trigger_name("core", "wondernest_analytics")
    with server.admin(applied.spec.name) as conn:
        conn.execute(f"ALTER EVENT TRIGGER {name} DISABLE")
    drifted = provider.read("x", props).outs or {}
    assert drifted["withholding"] == [f"event trigger {name}, which withholds core's columns from "
                                      "wondernest_analytics, is not as declared"]  # fmt: skip
    with server.admin(applied.spec.name) as conn:
        conn.execute(f"ALTER EVENT TRIGGER {name} ENABLE")
        # Its function made to find its helpers on another search path.
        conn.execute(f"ALTER FUNCTION core.{name}() SET search_path = core, pg_catalog")
    drifted = provider.read("x", props).outs or {}
    assert drifted["withholding"] == [f"event trigger {name}, which withholds core's columns from "
                                      "wondernest_analytics, is not as declared"]  # fmt: skip
    with server.admin(applied.spec.name) as conn:
        conn.execute(f"DROP EVENT TRIGGER {name}")
    drifted = provider.read("x", props).outs or {}
    assert drifted["withholding"] == [f"event trigger {name}, which withholds core's columns from "
                                      "wondernest_analytics, is missing"]  # fmt: skip
    # Nobody but the platform declares it, and the database-wide check does not call it foreign.
    access = applied.props["database-access"]
    assert not any(
        name in f for f in (DatabaseAccessProvider().read(access["database"], access).outs or {})["undeclared"]
    )
    provider.update("x", drifted, props)
    assert (provider.read("x", props).outs or {})["withholding"] == []
    with connect_as(server, applied.spec, "migrator") as conn:
        conn.execute(SESSIONS)
    try:
        with connect_as(server, applied.spec, "analytics") as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT token_hash FROM core.user_sessions")
    finally:
        with connect_as(server, applied.spec, "migrator") as conn:
            conn.execute("DROP TABLE core.user_sessions")


def test_an_event_trigger_nobody_declared_is_drift_and_update_drops_it(
    server: PostgresServer, applied: Applied
) -> None:
    access = applied.props["database-access"]
    provider = DatabaseAccessProvider()
    with server.admin(applied.spec.name) as conn:
        conn.execute(
            "CREATE FUNCTION core.grab() RETURNS event_trigger LANGUAGE plpgsql AS "
            "$$BEGIN EXECUTE 'GRANT SELECT ON ALL TABLES IN SCHEMA core TO wondernest_monitoring'; END$$"
        )
        conn.execute(
            "CREATE EVENT TRIGGER grab ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION core.grab()"
        )
    try:
        drifted = provider.read(access["database"], access).outs or {}
        assert "event trigger grab (runs core.grab()) is not declared" in drifted["undeclared"]
        provider.update(access["database"], drifted, access)
        with server.admin(applied.spec.name) as conn:
            assert conn.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname = 'grab'").fetchone() == (0,)
    finally:
        with server.admin(applied.spec.name) as conn:
            conn.execute("DROP EVENT TRIGGER IF EXISTS grab")
            conn.execute("DROP FUNCTION core.grab()")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"withheld": ["users"]}, "each is `table.column`"),
        ({"withheld": ["core.users.password_hash"]}, "each is `table.column`"),
        ({"table_privileges": ["INSERT", "SELECT"]}, "only from a grant of SELECT alone"),
    ],
)
def test_check_refuses_what_cannot_be_withheld(applied: Applied, change: dict[str, Any], message: str) -> None:
    provider, props = grant(applied)
    result = provider.check(props, {**props, **change})
    assert any(message in f.reason for f in result.failures or []), result.failures


def test_removing_the_grant_removes_its_trigger(server: PostgresServer, applied: Applied) -> None:
    provider, props = grant(applied)
    name = withheld.trigger_name("core", "wondernest_analytics")
    provider.delete("x", props)
    try:
        with server.admin(applied.spec.name) as conn:
            assert conn.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname = %s", (name,)).fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", (name,)).fetchone() == (0,)
    finally:
        provider.create(props)
    assert (provider.read("x", props).outs or {})["withholding"] == []
