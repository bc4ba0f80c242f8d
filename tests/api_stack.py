"""The API wired to a real Postgres (with the platform's roles and grants) and a
real Redis (with the rendered ACL), exactly as the platform wires it; shared by
the API's own tests, the monitoring tests and the benchmark."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from components.model import redis_conf
from components.model.database import database_spec
from components.model.naming import Names
from tests.platform_db import PASSWORDS, apply_spec
from tests.servers import PostgresServer, RedisServer, free_port, postgres_server, redis_server

APP_DIR = Path(__file__).resolve().parents[1] / "app"
NAMES = Names(app="wondernest", stack="test")
REDIS_APP_PASSWORD = "redis-app-pass-7777"
VERIFY_LOGIN = "verify-login-pass-8888"
REDIS_MONITORING_PASSWORD = "redis-monitoring-pass-8888"
HEALTHCHECK_PASSWORD = "redis-health-pass-6666"
JWT_SECRET = "test-jwt-signing-key-0123456789abcdef"


def rendered_acl() -> str:
    """The ACL file the stack renders, with this harness's passwords."""
    return redis_conf.render_platform_acl(
        NAMES, app=REDIS_APP_PASSWORD, healthcheck=HEALTHCHECK_PASSWORD, monitoring=REDIS_MONITORING_PASSWORD
    )


@contextlib.contextmanager
def tls_platform() -> Iterator[tuple[PostgresServer, RedisServer]]:
    """Postgres and Redis TLS-only, as the local stack runs them, with the
    platform applied over verify-full (the CA from the stack) and migrated."""
    with (
        postgres_server(tls=True) as pg,
        redis_server(
            acl=rendered_acl(), maxmemory_bytes=64 * 1024 * 1024, eviction_policy="allkeys-lru", tls=True
        ) as rd,
    ):
        platform(pg)
        migrate_platform(pg)
        yield pg, rd


def platform(pg: PostgresServer) -> None:
    apply_spec(pg, database_spec(NAMES))


def api_env(pg: PostgresServer, rd: RedisServer, **overrides: str) -> dict[str, str]:
    env = {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(pg.port),
        "DB_NAME": "wondernest",
        "DB_USER": NAMES.app_role,
        "DB_PASSWORD": PASSWORDS["app"],
        **database_tls(pg),
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(rd.port),
        **({} if rd.ca is None else {"REDIS_TLS": "true", "REDIS_CA_FILE": str(rd.ca)}),
        "REDIS_USER": NAMES.redis_app_user,
        "REDIS_PASSWORD": REDIS_APP_PASSWORD,
        "JWT_SECRET": JWT_SECRET,
        # The production cost (12) is asserted in test_api_settings; 4 keeps tests quick.
        "BCRYPT_ROUNDS": "4",
        "LOGIN_IP_LIMIT": "1000",
        "REGISTER_IP_LIMIT": "1000",
    }
    env.update(overrides)
    return env


def database_tls(pg: PostgresServer) -> dict[str, str]:
    """How a client connects to `pg`: verify-full against its CA when it runs TLS."""
    if pg.ca is None:
        return {"DB_SSLMODE": "disable"}
    return {"DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": str(pg.ca)}


def migrator_env(pg: PostgresServer, **overrides: str) -> dict[str, str]:
    """What the stack's migrate container gets: the database, as the role that owns its objects."""
    env = {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(pg.port),
        "DB_NAME": "wondernest",
        "DB_USER": NAMES.migrator_role,
        "DB_PASSWORD": PASSWORDS["migrator"],
        **database_tls(pg),
    }
    env.update(overrides)
    return env


def migrate_platform(pg: PostgresServer) -> list[str]:
    """The migrations, applied the way the migrate container applies them."""
    from wondernest_api.migrate import migrate
    from wondernest_api.settings import load_migration_settings

    return migrate(load_migration_settings(migrator_env(pg)).conninfo("wondernest-migrate"))


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


@dataclass
class ApiProcess:
    """`python -m wondernest_api serve`, logging to a file: a pipe nobody drains
    would fill and block the server on its next log line."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    metrics_url: str = ""

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log_path.unlink(missing_ok=True)


def start_api(pg: PostgresServer, rd: RedisServer, **overrides: str) -> ApiProcess:
    port, metrics_port = free_port(), free_port()
    env = cli_env(api_env(pg, rd, HOST="127.0.0.1", PORT=str(port), METRICS_PORT=str(metrics_port), **overrides))
    fd, name = tempfile.mkstemp(prefix="wn-api-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wondernest_api", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    api = ApiProcess(process, f"http://127.0.0.1:{port}", Path(name), f"http://127.0.0.1:{metrics_port}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"api exited: {api.output()}")
        try:
            if httpx.get(f"{api.url}/health", timeout=1).status_code == 200:
                return api
        except httpx.TransportError:
            time.sleep(0.1)
    api.stop()
    raise RuntimeError("api did not start")
