"""A real Postgres with the platform's roles and grants, a real Redis with its
ACL, and the API wired to them exactly as the platform wires it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from wondernest_api.app import create_app
from wondernest_api.settings import load_settings

from components.spec import redis_conf
from components.spec.database import database_spec
from components.spec.naming import Names
from tests.platform_db import PASSWORDS, apply_spec
from tests.servers import PostgresServer, RedisServer, postgres_server, redis_server

APP_DIR = Path(__file__).resolve().parents[1]
NAMES = Names(app="wondernest", stack="test")
REDIS_APP_PASSWORD = "redis-app-pass-7777"
JWT_SECRET = "test-jwt-signing-key-0123456789abcdef"


def rendered_acl() -> str:
    return redis_conf.render_acl_file(
        [
            redis_conf.RedisUser(
                NAMES.redis_app_user,
                redis_conf.acl_password_hash(REDIS_APP_PASSWORD),
                redis_conf.APP_USER_RULES,
            )
        ]
    )


def platform(pg: PostgresServer) -> None:
    apply_spec(pg, database_spec(NAMES))


@pytest.fixture(scope="session")
def db() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        platform(pg)
        yield pg


@pytest.fixture(scope="session")
def cache() -> Iterator[RedisServer]:
    with redis_server(
        acl=rendered_acl(), maxmemory_bytes=64 * 1024 * 1024, eviction_policy="allkeys-lru"
    ) as r:
        yield r


def api_env(pg: PostgresServer, rd: RedisServer, **overrides: str) -> dict[str, str]:
    env = {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(pg.port),
        "DB_NAME": "wondernest",
        "DB_USER": NAMES.app_role,
        "DB_PASSWORD": PASSWORDS["app"],
        "DB_SSLMODE": "disable",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(rd.port),
        "REDIS_USER": NAMES.redis_app_user,
        "REDIS_PASSWORD": REDIS_APP_PASSWORD,
        "JWT_SECRET": JWT_SECRET,
        # The production cost (12) is asserted in test_api_settings; 4 keeps tests quick.
        "BCRYPT_ROUNDS": "4",
        "LOGIN_IP_LIMIT": "1000",
    }
    env.update(overrides)
    return env


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """Only what the process needs: the API's variables and a PATH."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**base, **env, "PYTHONPATH": str(APP_DIR)}


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wondernest_api", *args],
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def migrated(db: PostgresServer, cache: RedisServer) -> list[subprocess.CompletedProcess[str]]:
    """Two containers starting at once: both run `migrate` concurrently."""
    env = cli_env(api_env(db, cache))
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
