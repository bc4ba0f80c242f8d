"""Columns withheld from the analytics role, on a real PostgreSQL 15: password
hashes and token digests stay unreadable through every migration that creates
or alters their tables, while everything else stays readable; drift in either
direction is read and put right."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from components.postgres import withheld
from components.postgres.provider import DatabaseAccessProvider, SchemaGrantProvider, SchemaProvider
from components.spec.database import WITHHELD_FROM_ANALYTICS, DatabaseSpec, database_spec
from components.spec.naming import Names
from tests.platform_db import PASSWORDS, Applied, apply_spec
from tests.servers import PostgresServer, postgres_server

pytestmark = pytest.mark.servers

# The bundled app's first migration, in the form that matters here.
USERS = "CREATE TABLE core.users (id bigserial PRIMARY KEY, email text NOT NULL, password_hash text NOT NULL)"
SESSIONS = (
    "CREATE TABLE core.user_sessions (id bigserial PRIMARY KEY, user_id bigint NOT NULL, token_hash text NOT NULL)"
)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        yield pg


@pytest.fixture(scope="module")
def applied(server: PostgresServer) -> Applied:
    spec = database_spec(Names(app="wondernest", stack="test"))
    result = apply_spec(server, spec)
    # The migrations run after the grants, as they do on both targets.
    with connect_as(server, spec, "migrator") as conn:
        conn.execute(USERS)
        conn.execute("INSERT INTO core.users (email, password_hash) VALUES ('a@example.com', '$2b$12$secret')")
    return result


def connect_as(server: PostgresServer, spec: DatabaseSpec, key: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(
        server.dsn(user=spec.role(key).name, password=PASSWORDS[key], dbname=spec.name), autocommit=True
    )


def grant(applied: Applied) -> tuple[SchemaGrantProvider, dict[str, Any]]:
    return SchemaGrantProvider(), applied.props["grant-core-analytics"]


def test_the_spec_withholds_credentials_from_analytics_alone() -> None:
    spec = database_spec(Names(app="wondernest", stack="test"))
    narrowed = {(g.schema, g.role): g.withheld for g in spec.grants if g.withheld}
    assert narrowed == {("core", "wondernest_analytics"): WITHHELD_FROM_ANALYTICS["core"]}
    assert WITHHELD_FROM_ANALYTICS["core"] == ("user_sessions.token_hash", "users.password_hash")


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
        # A credential that arrives by renaming is caught too.
        conn.execute("ALTER TABLE core.user_sessions RENAME COLUMN token_hash TO token_digest")
        conn.execute("ALTER TABLE core.user_sessions ADD COLUMN token_hash text")
    try:
        with connect_as(server, applied.spec, "analytics") as conn:
            conn.execute("SELECT id, email, nickname FROM core.users")
            conn.execute("SELECT id, user_id, token_digest FROM core.user_sessions")
            for query in ("SELECT token_hash FROM core.user_sessions", "SELECT password_hash FROM core.users"):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(query)
        provider, props = grant(applied)
        assert (provider.read("x", props).outs or {})["withholding"] == []
    finally:
        with connect_as(server, applied.spec, "migrator") as conn:
            conn.execute("DROP TABLE core.user_sessions")
            conn.execute("ALTER TABLE core.users DROP COLUMN nickname")


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
