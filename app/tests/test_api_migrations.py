"""Migrations: from empty, re-run, concurrent, owned by the migrator, used by the app role, readable by analytics."""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from wondernest_api.migrate import MigrationError, available, migrate

from tests.api_stack import NAMES, api_env, migrator_env, run_cli
from tests.platform_db import PASSWORDS
from tests.servers import PostgresServer, RedisServer

PASSWORD_APP = PASSWORDS["app"]

pytestmark = pytest.mark.servers


def test_two_concurrent_runs_both_succeed_and_apply_once(
    migrated: list[subprocess.CompletedProcess[str]], db: PostgresServer
) -> None:
    assert [r.returncode for r in migrated] == [0, 0], [r.stderr for r in migrated]
    messages = " ".join(r.stdout for r in migrated)
    assert messages.count('"migrations applied"') == 1
    assert messages.count('"migrations up to date"') == 1
    with db.admin("wondernest") as conn:
        rows = conn.execute("SELECT version FROM core.schema_migrations ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [m.version for m in available()]


def test_a_rerun_applies_nothing(db: PostgresServer, migrated: object) -> None:
    result = run_cli(migrator_env(db), "migrate")
    assert result.returncode == 0, result.stderr
    assert '"migrations up to date"' in result.stdout


def test_the_seed_tables_and_indexes_exist_owned_by_the_migrator(db: PostgresServer, migrated: object) -> None:
    with db.admin("wondernest") as conn:
        owners = dict(
            conn.execute(
                "SELECT schemaname || '.' || tablename, tableowner FROM pg_tables WHERE schemaname IN ('core', 'audit')"
            ).fetchall()
        )
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes").fetchall()}
    assert owners == {
        "core.users": NAMES.migrator_role,
        "core.user_sessions": NAMES.migrator_role,
        "core.schema_migrations": NAMES.migrator_role,
        "audit.activity_logs": NAMES.migrator_role,
    }
    assert {
        "idx_users_email_key",
        "idx_users_active",
        "idx_user_sessions_token",
        "idx_activity_logs_user_id",
    } <= indexes


def test_analytics_reads_what_the_migrations_created(db: PostgresServer, migrated: object) -> None:
    dsn = db.dsn(user=NAMES.analytics_role, password=PASSWORDS["analytics"], dbname="wondernest")
    with psycopg.connect(dsn) as conn:
        for table in ("core.users", "core.user_sessions", "audit.activity_logs"):
            conn.execute(f"SELECT count(*) FROM {table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit.activity_logs")


def test_an_edited_applied_migration_is_refused(
    db: PostgresServer, cache: RedisServer, migrated: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wondernest_api import migrate as module

    original = module.available()
    tampered = [
        module.Migration(m.version, m.name, m.sql + "\n-- edited") if m.version == "0001" else m for m in original
    ]
    monkeypatch.setattr(module, "available", lambda: tampered)
    from wondernest_api.settings import load_migration_settings

    with pytest.raises(MigrationError, match="0001_core_users_and_sessions changed after it was applied"):
        migrate(load_migration_settings(migrator_env(db)).conninfo("test"))


def test_migrate_into_a_database_without_the_platform_schemas_is_one_error_line(db: PostgresServer) -> None:
    with db.admin("postgres") as conn:
        conn.execute("DROP DATABASE IF EXISTS bare")
        conn.execute("CREATE DATABASE bare")
    env = migrator_env(db, DB_NAME="bare", DB_USER=db.superuser, DB_PASSWORD=db.superuser_password)
    result = run_cli(env, "migrate")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: database 'bare' has no schema audit, core: the platform creates the schemas (pulumi up); "
        "check DB_NAME points at the platform's database"
    ]
    with db.admin("bare") as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_an_unreachable_database_is_one_error_line(db: PostgresServer) -> None:
    from tests.servers import free_port

    result = run_cli(migrator_env(db, DB_PORT=str(free_port())), "migrate")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: migrations: OperationalError: ")


def test_the_required_schemas_are_every_schema_the_migrations_name() -> None:
    import re

    from wondernest_api.migrate import REQUIRED_SCHEMAS

    named = {
        match
        for migration in available()
        for match in re.findall(r"\b(?:TABLE|INDEX[^(]*? ON|REFERENCES)\s+([a-z_]+)\.", migration.sql)
    }
    assert named and named == set(REQUIRED_SCHEMAS)


def test_migrate_needs_only_the_database_settings(db: PostgresServer, migrated: object) -> None:
    """The migrate container gets the migrator's credentials and nothing of the API's."""
    env = migrator_env(db)
    assert not any(key.startswith(("REDIS_", "JWT_")) for key in env)
    result = run_cli(env, "migrate")
    assert result.returncode == 0, result.stderr


def test_the_app_role_cannot_change_the_schema_or_the_audit_trail(db: PostgresServer, migrated: object) -> None:
    dsn = db.dsn(user=NAMES.app_role, password=PASSWORDS["app"], dbname="wondernest")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO audit.activity_logs (action) VALUES ('test.append')")
        assert conn.execute("SELECT count(*) FROM audit.activity_logs WHERE action = 'test.append'").fetchone() == (1,)
        for statement in (
            "UPDATE audit.activity_logs SET action = 'rewritten'",
            "DELETE FROM audit.activity_logs",
            "TRUNCATE audit.activity_logs",
            "SELECT setval(pg_get_serial_sequence('audit.activity_logs', 'id'), 1)",
            "CREATE TABLE core.planted (id int)",
            "ALTER TABLE core.users ADD COLUMN planted text",
            "DROP TABLE core.user_sessions",
            "CREATE INDEX ON core.users (created_at)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # Everything else the API does to rows it still may.
        conn.execute("SELECT count(*) FROM core.users")
        conn.execute("UPDATE core.users SET updated_at = now() WHERE false")
        conn.execute("DELETE FROM core.user_sessions WHERE false")


def test_serve_refuses_a_database_without_its_migrations(db: PostgresServer, cache: RedisServer) -> None:
    with db.admin("postgres") as conn:
        conn.execute("DROP DATABASE IF EXISTS unmigrated")
        conn.execute("CREATE DATABASE unmigrated")
    with db.admin("unmigrated") as conn:
        conn.execute("CREATE SCHEMA core")
    env = api_env(db, cache, DB_NAME="unmigrated", DB_USER=db.superuser, DB_PASSWORD=db.superuser_password)
    result = run_cli(env, "serve", timeout=30)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: database 'unmigrated' lacks migration(s) "
        + ", ".join(m.version for m in available())
        + ": run `python -m wondernest_api migrate` as the migrator role first"
    ]


def test_a_session_holding_the_lock_is_named_instead_of_waited_on_forever(db: PostgresServer, migrated: object) -> None:
    from wondernest_api.migrate import LOCK_KEY
    from wondernest_api.settings import load_migration_settings

    conninfo = load_migration_settings(migrator_env(db)).conninfo("test")
    with psycopg.connect(conninfo, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        pid = holder.info.backend_pid
        with pytest.raises(MigrationError) as caught:
            migrate(conninfo, lock_wait_seconds=0.5)
    message = str(caught.value)
    assert message.startswith(f"session {pid} of {NAMES.migrator_role} (connected ")
    assert message.endswith(
        "has held the migrations lock for more than 0.5 s; "
        "wait for that run to finish, or end the session if it is stuck"
    )
    # Released, the next run takes the lock at once.
    assert migrate(conninfo, lock_wait_seconds=0.5) == []


def test_only_the_migrations_write_their_ledger(db: PostgresServer, migrated: object) -> None:
    """The app role may write every other table of `core`; its ledger, which
    every later deployment reads, is the migrator's alone."""
    dsn = db.dsn(user=NAMES.app_role, password=PASSWORD_APP, dbname="wondernest")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM core.schema_migrations").fetchone() == (len(available()),)
        for statement in (
            "INSERT INTO core.schema_migrations (version, name, checksum) VALUES ('9999', 'planted', 'x')",
            "UPDATE core.schema_migrations SET checksum = 'edited'",
            "DELETE FROM core.schema_migrations",
            "TRUNCATE core.schema_migrations",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    # The migrator still records runs, and a rerun finds everything applied.
    result = run_cli(migrator_env(db), "migrate")
    assert result.returncode == 0 and '"migrations up to date"' in result.stdout, result.stderr


def test_audit_rows_are_numbered_and_dated_by_the_database_and_outlive_their_user(
    db: PostgresServer, migrated: object
) -> None:
    dsn = db.dsn(user=NAMES.app_role, password=PASSWORD_APP, dbname="wondernest")
    with psycopg.connect(dsn, autocommit=True) as conn:
        user = conn.execute(
            "INSERT INTO core.users (email, password_hash) VALUES ('audited@example.com', 'x') RETURNING id"
        ).fetchone()
        assert user is not None
        forged = conn.execute(
            "INSERT INTO audit.activity_logs (id, user_id, action, created_at) OVERRIDING SYSTEM VALUE "
            "VALUES (9000000000, %s, 'test.forged', '2000-01-01') "
            "RETURNING id, created_at > now() - interval '1 minute'",
            (user[0],),
        ).fetchone()
        assert forged is not None and forged[0] < 9000000000 and forged[1] is True
        # The id was not taken from the future: the next rows go in as ever.
        for _ in range(3):
            conn.execute("INSERT INTO audit.activity_logs (user_id, action) VALUES (%s, 'test.after')", (user[0],))
        conn.execute("DELETE FROM core.users WHERE id = %s", (user[0],))
        kept = conn.execute(
            "SELECT count(*) FROM audit.activity_logs WHERE user_id = %s AND action LIKE 'test.%%'", (user[0],)
        ).fetchone()
        assert kept == (4,)
    # Its owner aside, nobody changes a row once written, the admin included.
    with db.admin("wondernest") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege, match="evidence"):
        conn.execute("UPDATE audit.activity_logs SET action = 'rewritten' WHERE action = 'test.forged'")
