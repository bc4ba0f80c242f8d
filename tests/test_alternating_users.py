"""Rotation by alternating users against a real PostgreSQL 15: the statements the
AWS-provided rotation function runs (ALTER USER ... WITH PASSWORD as the admin),
then what the platform promises about the pair of users it declares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from components.model.database import DatabaseSpec, database_spec
from components.model.naming import Names
from components.postgres.provider import RoleProvider
from tests.platform_db import Applied, apply_spec, destroy
from tests.servers import PostgresServer, postgres_server

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    # Its own server: pg_hba.conf admits the platform's roles to one database only.
    with postgres_server(database="rotating") as server:
        yield server


@pytest.fixture(scope="module")
def pair(pg: PostgresServer) -> Iterator[Applied]:
    spec = database_spec(Names(app="rotating", stack="test")).with_alternating_users()
    applied = apply_spec(pg, spec, {role.key: f"{role.key}-generated-0000" for role in spec.roles})
    yield applied
    with pg.admin(spec.name) as conn:
        conn.execute("DROP TABLE IF EXISTS core.made_by_alternate, core.after_reset")
    destroy(applied)


def rotate(pg: PostgresServer, user: str, password: str) -> None:
    """What the rotation function's setSecret step runs for an existing user."""
    with pg.admin() as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER USER {} WITH PASSWORD {}").format(
                psycopg.sql.Identifier(user), psycopg.sql.Literal(password)
            )
        )


def login(pg: PostgresServer, spec: DatabaseSpec, user: str, password: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(pg.dsn(user=user, password=password, dbname=spec.name), autocommit=True)


def test_the_alternate_acts_as_its_role_and_what_it_creates_is_the_roles(pg: PostgresServer, pair: Applied) -> None:
    spec = pair.spec
    migrator, alternate = spec.role("migrator").name, spec.role("migrator-alternate").name
    rotate(pg, alternate, "first-rotation-1111")
    with login(pg, spec, alternate, "first-rotation-1111") as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == (migrator, alternate)
        conn.execute("CREATE TABLE core.made_by_alternate (id int)")
    with pg.admin(spec.name) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_alternate'").fetchone()
    assert owner == (migrator,)
    # The app's default privileges follow the owner: its alternate writes rows.
    rotate(pg, spec.role("app-alternate").name, "app-rotated-1111")
    with login(pg, spec, spec.role("app-alternate").name, "app-rotated-1111") as conn:
        conn.execute("INSERT INTO core.made_by_alternate VALUES (1)")
    # The readers' default privileges follow the owner, so they see it too.
    rotate(pg, spec.role("analytics-alternate").name, "analytics-rotated-2222")
    with login(pg, spec, spec.role("analytics-alternate").name, "analytics-rotated-2222") as conn:
        assert conn.execute("SELECT count(*) FROM core.made_by_alternate").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO core.made_by_alternate VALUES (2)")


def test_as_itself_the_alternate_can_create_nothing(pg: PostgresServer, pair: Applied) -> None:
    spec = pair.spec
    migrator, alternate = spec.role("migrator").name, spec.role("migrator-alternate").name
    rotate(pg, alternate, "reset-check-3333")
    with login(pg, spec, alternate, "reset-check-3333") as conn:
        # RESET ROLE returns to the login's default, which is the role.
        conn.execute("RESET ROLE")
        assert conn.execute("SELECT current_user").fetchone() == (migrator,)
        conn.execute("SET ROLE NONE")
        assert conn.execute("SELECT current_user").fetchone() == (alternate,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE core.after_reset (id int)")


def test_an_update_keeps_rotated_passwords(pg: PostgresServer, pair: Applied) -> None:
    spec = pair.spec
    for key in ("app", "app-alternate"):
        props = pair.props[f"role-{key}"]
        rotate(pg, props["name"], f"{key}-rotated-4444")
        new = {**props, "password": "regenerated-5555", "connection_limit": props["connection_limit"] + 1}
        diff = RoleProvider().diff(props["name"], props, {**props, "password": "regenerated-5555"})
        assert not diff.changes, "a new generated password alone must not touch a rotated role"
        RoleProvider().update(props["name"], props, new)
        try:
            with login(pg, spec, props["name"], f"{key}-rotated-4444") as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                login(pg, spec, props["name"], "regenerated-5555")
        finally:
            RoleProvider().update(props["name"], new, props)


def test_declared_pairs_are_not_drift_and_anything_else_is(pg: PostgresServer, pair: Applied) -> None:
    app, alternate = pair.props["role-app"], pair.props["role-app-alternate"]
    for props in (app, alternate):
        # A rotated role's password is Secrets Manager's: one changed on the server is no drift.
        rotate(pg, props["name"], f"{props['name']}-rotated-6666")
        outs = RoleProvider().read(props["name"], props).outs or {}
        assert outs["escalations"] == [], props["name"]
        assert not RoleProvider().diff(props["name"], outs, props).changes
    with pg.admin() as conn:
        conn.execute(f"ALTER ROLE {alternate['name']} RESET role")
    missing = RoleProvider().read(alternate["name"], alternate).outs or {}
    assert missing["escalations"] == [f"MISSING SET role={app['name']}"]
    with pg.admin() as conn:
        conn.execute("CREATE ROLE squatter LOGIN")
        conn.execute(f"GRANT {app['name']} TO squatter")
        conn.execute(f"ALTER ROLE {alternate['name']} SET statement_timeout = 0")
        conn.execute(f"ALTER ROLE {alternate['name']} INHERIT")
    try:
        assert (RoleProvider().read(app["name"], app).outs or {})["escalations"] == ["MEMBER squatter"]
        drifted = RoleProvider().read(alternate["name"], alternate).outs or {}
        assert drifted["escalations"] == [
            "INHERIT",
            f"MISSING SET role={app['name']}",
            "MISSING SET statement_timeout=30s",
            "SET statement_timeout=0 IN *",
        ]
        RoleProvider().update(app["name"], app, app)
        RoleProvider().update(alternate["name"], drifted, alternate)
        for props in (app, alternate):
            assert (RoleProvider().read(props["name"], props).outs or {})["escalations"] == []
        with pg.admin() as conn:
            members = conn.execute(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
                "WHERE m.roleid = %s::regrole ORDER BY 1",
                (app["name"],),
            ).fetchall()
            settings = conn.execute(
                "SELECT setconfig FROM pg_db_role_setting WHERE setrole = %s::regrole", (alternate["name"],)
            ).fetchall()
        assert members == [(alternate["name"],)]
        assert settings == [(sorted(alternate["settings"]),)]
    finally:
        with pg.admin() as conn:
            conn.execute("DROP ROLE IF EXISTS squatter")


def test_every_login_role_has_an_alternate_within_its_limit(pair: Applied) -> None:
    spec = pair.spec
    primaries = [r for r in spec.roles if r.acts_as is None]
    assert {r.key for r in primaries} == {"migrator", "app", "analytics", "monitoring", "backup"}
    for role in primaries:
        alternate = spec.role(f"{role.key}-alternate")
        assert alternate.name == f"{role.name}_clone"
        assert alternate.member_of == (role.name,) and alternate.connection_limit == role.connection_limit
        assert role.rotated and alternate.rotated
        assert spec.members(role) == (alternate.name,)


def test_an_alternate_name_past_the_identifier_limit_is_refused() -> None:
    spec = database_spec(Names(app="x" * 56, stack="test"))
    with pytest.raises(ValueError, match="longer than 63"):
        spec.with_alternating_users()


def test_an_update_of_a_role_keeps_its_declared_alternate_and_only_it(pg: PostgresServer, pair: Applied) -> None:
    spec, props = pair.spec, pair.props["role-migrator"]
    migrator, alternate = spec.role("migrator").name, spec.role("migrator-alternate").name
    with pg.admin() as conn:
        conn.execute(f"CREATE ROLE hanger_on; GRANT {migrator} TO hanger_on")
    try:
        RoleProvider().update(migrator, props, props)
        with pg.admin() as conn:
            members = conn.execute(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member "
                "WHERE a.roleid = %s::regrole ORDER BY 1",
                (migrator,),
            ).fetchall()
        assert [m for (m,) in members if m != pg.superuser] == [alternate]
        assert (RoleProvider().read(migrator, props).outs or {})["escalations"] == []
    finally:
        with pg.admin() as conn:
            conn.execute("DROP ROLE hanger_on")
