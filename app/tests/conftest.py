"""A real Postgres with the platform's roles and grants, a real Redis with its
ACL, and the API wired to them exactly as the platform wires it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient
from wondernest_api.app import create_app
from wondernest_api.settings import load_settings

from tests.api_stack import (
    ApiProcess,
    api_env,
    cli_env,
    migrate_platform,
    migrator_env,
    platform,
    rendered_acl,
)
from tests.servers import PostgresServer, RedisServer, postgres_server, redis_server


@pytest.fixture(scope="session")
def db() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        platform(pg)
        yield pg


@pytest.fixture(scope="session")
def cache() -> Iterator[RedisServer]:
    with redis_server(acl=rendered_acl(), maxmemory_bytes=64 * 1024 * 1024, eviction_policy="allkeys-lru") as r:
        yield r


@pytest.fixture(scope="session")
def migrated(db: PostgresServer, cache: RedisServer) -> list[subprocess.CompletedProcess[str]]:
    """Two containers starting at once: both run `migrate` concurrently."""
    env = cli_env(migrator_env(db))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "wondernest_api", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(db: PostgresServer, cache: RedisServer, migrated: object) -> Iterator[ClientFactory]:
    opened: list[TestClient] = []

    def factory(ip: str = "192.0.2.10", **overrides: str) -> TestClient:
        app, _ = create_app(load_settings(api_env(db, cache, **overrides)))
        client = TestClient(app, client=(ip, 40000), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@dataclass
class Running:
    db: PostgresServer
    cache: RedisServer
    api: ApiProcess
    url: str


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostgresServer, RedisServer]]:
    with (
        postgres_server() as pg,
        redis_server(acl=rendered_acl(), maxmemory_bytes=64 * 1024 * 1024, eviction_policy="allkeys-lru") as rd,
    ):
        platform(pg)
        migrate_platform(pg)
        yield pg, rd
