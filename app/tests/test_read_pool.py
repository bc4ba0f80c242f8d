"""DB_READ_HOSTS against a real hot standby streaming from the primary, as an
RDS read replica runs: reads land on the standby, writes are refused there,
and with the standby gone the pool falls back to the primary, still read-only."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client import generate_latest
from starlette.testclient import TestClient
from wondernest_api.app import Api, create_app
from wondernest_api.settings import Settings, load_settings

from tests.api_stack import api_env, tls_platform
from tests.servers import PostgresServer, RedisServer, postgres_standby

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostgresServer, PostgresServer, RedisServer]]:
    with tls_platform() as (pg, rd), postgres_standby(pg) as standby:
        yield pg, standby, rd


def settings(servers: tuple[PostgresServer, PostgresServer, RedisServer]) -> Settings:
    pg, standby, rd = servers
    # `localhost`: the standby's certificate names it, and verify-full checks each host's own.
    return load_settings(api_env(pg, rd, DB_READ_HOSTS=f"localhost:{standby.port}"))


def read_once(settings: Settings) -> tuple[Any, ...]:
    """Where a read through the read pool lands, after proving a write is refused there."""
    api = Api(settings)
    assert api.read_pool is not None

    async def run() -> tuple[Any, ...]:
        assert api.read_pool is not None
        await api.read_pool.open(wait=True)
        try:
            async with api.db_read() as conn:
                cur = await conn.execute("SELECT pg_is_in_recovery(), inet_server_port(), current_user")
                row = await cur.fetchone()
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    await conn.execute("INSERT INTO audit.activity_logs (action) VALUES ('x')")
                assert row is not None
                return tuple(row)
        finally:
            await api.read_pool.close()

    return asyncio.run(run())


def ready(client: TestClient) -> dict[str, Any]:
    response = client.get("/health/ready")
    body: dict[str, Any] = response.json()
    assert response.status_code == 200, body
    return body


def test_reads_go_to_the_standby_and_cannot_write(servers: tuple[PostgresServer, PostgresServer, RedisServer]) -> None:
    assert read_once(settings(servers)) == (True, servers[1].port, "wondernest_app")


def test_readiness_reports_the_read_pool_and_metrics_label_both_pools(
    servers: tuple[PostgresServer, PostgresServer, RedisServer],
) -> None:
    app, api = create_app(settings(servers))
    with TestClient(app) as client:
        body = ready(client)
        assert body["services"]["databaseRead"]["status"] == "UP"
        assert body["services"]["databaseRead"]["details"]["standby"] == "yes"
        assert body["services"]["database"]["status"] == "UP"
        exposed = generate_latest(api.metrics.registry).decode()
    assert 'db_pool_size{pool="primary"}' in exposed and 'db_pool_size{pool="read"}' in exposed


def test_without_a_standby_reads_fall_back_to_the_primary_still_read_only(
    servers: tuple[PostgresServer, PostgresServer, RedisServer],
) -> None:
    pg, standby, _ = servers
    standby.stop()
    try:
        app, _ = create_app(settings(servers))
        with TestClient(app) as client:
            assert ready(client)["services"]["databaseRead"]["details"]["standby"] == "no"
        assert read_once(settings(servers)) == (False, pg.port, "wondernest_app")
    finally:
        standby.start()


def _account(client: TestClient, address: str) -> str:
    """A new account signed in; its access token."""
    body = {"email": address, "password": "correct horse battery"}
    assert client.post("/auth/register", json=body).status_code == 201
    response = client.post("/auth/login", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["accessToken"])


def _logins(client: TestClient, token: str) -> int:
    response = client.get("/api/users/me/activity", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return sum(item["action"] == "user.login" for item in response.json()["items"])


def _eventually(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.05)


def test_activity_is_read_on_the_standby_and_lags_with_it_while_sessions_are_decided_on_the_primary(
    servers: tuple[PostgresServer, PostgresServer, RedisServer],
) -> None:
    _, standby, _ = servers
    app, _ = create_app(settings(servers))
    with TestClient(app) as client:
        address = f"lag-{uuid.uuid4().hex[:12]}@example.com"
        first = _account(client, address)
        _eventually(lambda: _logins(client, first) == 1)
        with standby.admin() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
        try:
            login = client.post("/auth/login", json={"email": address, "password": "correct horse battery"})
            second = login.json()["refreshToken"]
            # The new session is known at once (the primary decides), its login not yet (the standby lags).
            assert _logins(client, login.json()["accessToken"]) == 1
            assert client.post("/auth/logout", json={"refreshToken": second}).status_code == 204
            ended = client.get(
                "/api/users/me/activity", headers={"Authorization": f"Bearer {login.json()['accessToken']}"}
            )
            assert ended.status_code == 401
        finally:
            with standby.admin() as conn:
                conn.execute("SELECT pg_wal_replay_resume()")
        _eventually(lambda: _logins(client, first) == 2)
