"""The rendered postgresql.conf and pg_hba.conf, loaded by a real PostgreSQL 15."""

from __future__ import annotations

import subprocess
import time

import psycopg
import pytest

from components.model.postgres_conf import healthcheck_args, tune
from tests.servers import PG_BINDIR, PostgresServer, postgres_server

pytestmark = pytest.mark.servers


def show(server: PostgresServer, setting: str) -> str:
    with server.admin() as conn:
        row = conn.execute(f"SHOW {setting}").fetchone()
    assert row is not None
    return str(row[0])


def test_tuned_settings_are_in_effect(pg: PostgresServer) -> None:
    tuning = tune(1024**3, 100)
    assert show(pg, "shared_buffers") == "256MB"
    assert show(pg, "effective_cache_size") == "768MB"
    assert show(pg, "work_mem") == f"{tuning.work_mem_kb}kB"
    assert show(pg, "maintenance_work_mem") == "64MB"
    assert show(pg, "max_connections") == "100"
    assert show(pg, "random_page_cost") == "1.1"
    assert show(pg, "effective_io_concurrency") == "200"
    assert show(pg, "checkpoint_completion_target") == "0.9"
    assert show(pg, "password_encryption") == "scram-sha-256"
    assert show(pg, "shared_preload_libraries") == "pg_stat_statements"
    assert show(pg, "log_min_duration_statement") == "500ms"


def test_pg_stat_statements_is_loaded(pg: PostgresServer) -> None:
    with pg.admin("wondernest") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        row = conn.execute("SELECT count(*) >= 0 FROM pg_stat_statements").fetchone()
    assert row == (True,)


def test_scram_login_works_and_is_the_only_method(pg: PostgresServer) -> None:
    with pg.admin() as conn:
        conn.execute("CREATE ROLE hba_probe LOGIN PASSWORD 'probe-password-1'")
        conn.execute("GRANT CONNECT ON DATABASE wondernest TO hba_probe")
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'hba_probe'").fetchone()
    assert stored is not None and str(stored[0]).startswith("SCRAM-SHA-256$")
    with psycopg.connect(pg.dsn(user="hba_probe", password="probe-password-1", dbname="wondernest")) as c:
        assert c.pgconn.used_password
    with pg.admin() as conn:
        rules = conn.execute("SELECT auth_method, error FROM pg_hba_file_rules").fetchall()
    assert rules, "the server read no pg_hba rules"
    assert {method for method, _ in rules} == {"scram-sha-256"}
    assert all(error is None for _, error in rules)


def test_md5_verifier_cannot_log_in(pg: PostgresServer) -> None:
    # A role whose stored verifier is md5 (as an old dump would restore it)
    # is refused: the server only offers SCRAM.
    import hashlib

    md5 = "md5" + hashlib.md5(b"legacy-password" + b"md5_probe").hexdigest()  # noqa: S324
    with pg.admin() as conn:
        conn.execute(f"CREATE ROLE md5_probe LOGIN PASSWORD '{md5}'")
        conn.execute("GRANT CONNECT ON DATABASE wondernest TO md5_probe")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.dsn(user="md5_probe", password="legacy-password", dbname="wondernest"))


def test_passwordless_login_is_refused(pg: PostgresServer) -> None:
    # What a `trust` line would let through: the superuser with no password.
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(pg.dsn(password=""))


def test_non_admin_roles_reach_only_the_app_database(pg: PostgresServer) -> None:
    with pg.admin() as conn:
        conn.execute("CREATE ROLE db_probe LOGIN PASSWORD 'probe-password-2'")
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(pg.dsn(user="db_probe", password="probe-password-2", dbname="postgres"))


def test_a_small_server_starts_with_its_own_tuning() -> None:
    with postgres_server(memory_bytes=256 * 1024**2, max_connections=50) as small:
        assert show(small, "shared_buffers") == "64MB"
        assert show(small, "max_connections") == "50"


def test_the_container_healthcheck_passes_quietly(pg: PostgresServer) -> None:
    """The exact probe the container runs, against the rendered pg_hba.conf: ready,
    and no FATAL in the log (a probe with no matching line logs one every 10 s)."""
    args = healthcheck_args(admin_role="postgres", database="wondernest", port=pg.port)
    before = pg.log().count("FATAL")
    result = subprocess.run([str(PG_BINDIR / args[0]), *args[1:]], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    time.sleep(0.3)
    assert pg.log().count("FATAL") == before


def test_a_probe_without_a_matching_hba_line_would_be_noisy(pg: PostgresServer) -> None:
    args = healthcheck_args(admin_role="nobody", database="elsewhere", port=pg.port)
    subprocess.run([str(PG_BINDIR / args[0]), *args[1:]], capture_output=True, check=True)
    time.sleep(0.3)
    assert 'no pg_hba.conf entry for host "127.0.0.1", user "nobody"' in pg.log()
