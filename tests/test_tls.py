"""The local stack's TLS, on the real servers: Postgres and Redis with the
rendered configuration and a certificate from a throwaway CA, and every client
as the stack configures it (verify-full, the CA file, the host name checked)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from starlette.testclient import TestClient

from components.postgres.provider import RoleProvider, connect
from tests.api_stack import APP_DIR, NAMES, api_env, tls_platform
from tests.platform_db import PASSWORDS
from tests.servers import PostgresServer, RedisServer, tls_files

sys.path.insert(0, str(APP_DIR))

from wondernest_api.app import create_app
from wondernest_api.settings import load_settings
from wondernest_backup.backup import Repository, run, verify
from wondernest_backup.pgtools import Endpoint

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostgresServer, RedisServer]]:
    with tls_platform() as servers:
        yield servers


def tls_env(pg: PostgresServer, rd: RedisServer) -> dict[str, str]:
    assert pg.ca is not None and rd.ca is not None
    # How api_env connects to servers running TLS: verify-full, the Redis CA.
    env = api_env(pg, rd)
    assert env["DB_SSLMODE"] == "verify-full" and env["REDIS_TLS"] == "true"
    return env


def test_postgres_accepts_only_encrypted_connections(servers: tuple[PostgresServer, RedisServer]) -> None:
    pg, _ = servers
    with pg.admin("wondernest") as conn:
        assert conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() in (
            (True, "TLSv1.2"),
            (True, "TLSv1.3"),
        )
    plain = pg.dsn(dbname="wondernest") + " sslmode=disable"
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(plain)


def test_a_certificate_from_another_ca_is_refused(servers: tuple[PostgresServer, RedisServer], tmp_path: Path) -> None:
    pg, rd = servers
    other_ca, _, _ = tls_files(tmp_path)
    # The other CA has the same name: OpenSSL finds it and the signature fails.
    refused = r"certificate verify failed|signature failure"
    with pytest.raises(psycopg.OperationalError, match=refused):
        psycopg.connect(pg.dsn(dbname="wondernest") + f" sslrootcert={other_ca}")
    # The provider's admin connection verifies the same way.
    connection = {**pg.admin_connection("wondernest"), "ca_pem": other_ca.read_text(), "wait_seconds": 0}
    with pytest.raises(psycopg.OperationalError, match=refused):
        connect(connection)
    settings = load_settings({**tls_env(pg, rd), "REDIS_CA_FILE": str(other_ca)})
    with pytest.raises(redis.ConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|signature failure"):
        redis.Redis(**settings.redis_options(), socket_timeout=3).ping()  # type: ignore[arg-type]


def test_the_provider_reads_and_updates_over_verify_full(servers: tuple[PostgresServer, RedisServer]) -> None:
    pg, _ = servers
    role = RoleProvider().read(
        NAMES.analytics_role, {"name": NAMES.analytics_role, "connection": pg.admin_connection("wondernest")}
    )
    assert role.outs and role.outs["connection_limit"] == 10


def test_through_a_tunnel_the_certificate_is_checked_against_the_servers_name(
    servers: tuple[PostgresServer, RedisServer],
) -> None:
    """`hostaddr` is where the bytes go (an SSM tunnel on loopback); `host` is
    the name `verify-full` holds the certificate to, as for RDS's endpoint."""
    pg, _ = servers
    admin = pg.admin_connection("wondernest")
    with connect({**admin, "host": "localhost", "hostaddr": "127.0.0.1"}) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        connect({**admin, "host": "db.example.org", "hostaddr": "127.0.0.1", "wait_seconds": 0})


def test_redis_speaks_tls_only_and_the_app_user_keeps_its_rules(servers: tuple[PostgresServer, RedisServer]) -> None:
    pg, rd = servers
    settings = load_settings(tls_env(pg, rd))
    client = redis.Redis(**settings.redis_options(), socket_timeout=3)  # type: ignore[arg-type]
    assert client.ping() is True and client.acl_whoami() == NAMES.redis_app_user
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()
    plain = load_settings({**tls_env(pg, rd), "REDIS_TLS": "false"})
    with pytest.raises(redis.ConnectionError):
        redis.Redis(**plain.redis_options(), socket_timeout=3).ping()  # type: ignore[arg-type]


def test_the_api_registers_and_logs_in_over_tls_to_both(servers: tuple[PostgresServer, RedisServer]) -> None:
    pg, rd = servers
    app, _ = create_app(load_settings(tls_env(pg, rd)))
    with TestClient(app, client=("192.0.2.40", 40000)) as client:
        body = {"email": "tls@example.com", "password": "a long enough password"}
        assert client.post("/auth/register", json=body).status_code == 201
        token = client.post("/auth/login", json=body).json()["accessToken"]
        assert client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/health/ready").json()["status"] == "UP"


def test_the_backup_role_dumps_and_verifies_over_verify_full(
    servers: tuple[PostgresServer, RedisServer], tmp_path: Path
) -> None:
    pg, _ = servers
    assert pg.ca is not None
    backup = Endpoint(
        "127.0.0.1", pg.port, NAMES.backup_role, PASSWORDS["backup"], "wondernest", "verify-full", str(pg.ca)
    )
    repo = Repository(tmp_path)
    manifest = run(backup, repo)
    assert "core.users" in manifest.tables
    assert verify(repo, manifest.id).verified_at


def test_the_rendered_redis_healthcheck_verifies_the_server(
    servers: tuple[PostgresServer, RedisServer], tmp_path: Path
) -> None:
    import subprocess

    from components.model import redis_conf
    from tests.api_stack import HEALTHCHECK_PASSWORD

    _, rd = servers
    assert rd.ca is not None
    password_file = tmp_path / "health"
    password_file.write_text(HEALTHCHECK_PASSWORD)
    line = redis_conf.healthcheck_command(
        user=NAMES.redis_healthcheck_user, password_file=str(password_file), port=rd.port, ca_file=str(rd.ca)
    )
    assert subprocess.run(["sh", "-c", line], check=False).returncode == 0
    other_ca, _, _ = tls_files(tmp_path)
    untrusted = line.replace(str(rd.ca), str(other_ca))
    assert subprocess.run(["sh", "-c", untrusted], check=False, capture_output=True).returncode != 0
