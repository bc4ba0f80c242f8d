"""The rendered redis.conf and ACL file, loaded by a real redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from components.model import redis_conf
from components.model.naming import Names
from tests.servers import RedisServer, redis_server

pytestmark = pytest.mark.servers

NAMES = Names(app="wondernest", stack="test")
APP_PASSWORD = "app-redis-pass-5555"
HEALTH_PASSWORD = "health-redis-pass-6666"
MAXMEMORY = 32 * 1024 * 1024


def rendered_acl() -> str:
    return redis_conf.render_platform_acl(
        NAMES, app=APP_PASSWORD, healthcheck=HEALTH_PASSWORD, monitoring="monitoring-redis-pass-9999"
    )


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server(acl=rendered_acl(), maxmemory_bytes=MAXMEMORY, eviction_policy="allkeys-lru") as s:
        yield s


def client(server: RedisServer, username: str | None = None, password: str | None = None) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, username=username, password=password)


def app(server: RedisServer) -> redis.Redis:
    return client(server, NAMES.redis_app_user, APP_PASSWORD)


def test_the_acl_file_holds_no_plaintext_password() -> None:
    text = rendered_acl()
    assert APP_PASSWORD not in text and HEALTH_PASSWORD not in text
    assert redis_conf.acl_password_hash(APP_PASSWORD) in text


def test_unauthenticated_commands_fail(server: RedisServer) -> None:
    with pytest.raises(redis.AuthenticationError):
        client(server).ping()
    with pytest.raises(redis.AuthenticationError):
        client(server).get("anything")


def test_the_default_user_cannot_log_in(server: RedisServer) -> None:
    with pytest.raises(redis.AuthenticationError):
        client(server, "default", "").ping()


def test_wrong_password_fails(server: RedisServer) -> None:
    with pytest.raises(redis.AuthenticationError):
        client(server, NAMES.redis_app_user, "not-the-password").ping()


def test_the_app_user_reads_and_writes(server: RedisServer) -> None:
    r = app(server)
    assert r.set("session:1", "v", ex=60)
    assert r.get("session:1") == b"v"
    assert r.incr("ratelimit:login:1") == 1
    assert r.expire("ratelimit:login:1", 60)


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "maxmemory"),
        ("CONFIG", "SET", "maxmemory", "0"),
        ("DEBUG", "SLEEP", "0"),
        ("SHUTDOWN", "NOSAVE"),
        ("KEYS", "*"),
        ("ACL", "LIST"),
        ("MONITOR",),
        ("FUNCTION", "LOAD", "#!lua name=evil\nredis.register_function('f', function() return 1 end)"),
        ("FUNCTION", "FLUSH"),
        ("SCRIPT", "FLUSH"),
        ("SCRIPT", "LOAD", "return 1"),
        ("EVAL", "return redis.call('FLUSHALL')", "0"),
        ("FCALL", "f", "0"),
    ],
)
def test_the_app_user_is_denied_dangerous_commands(server: RedisServer, command: tuple[str, ...]) -> None:
    # DEBUG is refused before the ACL is consulted (enable-debug-command no);
    # everything else by the ACL.
    with pytest.raises(redis.exceptions.ResponseError, match=r"no permissions|DEBUG command not allowed"):
        app(server).execute_command(*command)  # type: ignore[no-untyped-call]
    assert server.process.poll() is None


def test_the_healthcheck_user_may_only_ping(server: RedisServer) -> None:
    r = client(server, NAMES.redis_healthcheck_user, HEALTH_PASSWORD)
    assert r.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.get("session:1")


MONITORING_ALLOWED: list[tuple[str, ...]] = [
    ("PING",),
    ("CLIENT", "SETNAME", "redis_exporter"),
    ("INFO", "ALL"),
    ("SLOWLOG", "LEN"),
    ("LATENCY", "LATEST"),
]
MONITORING_DENIED: list[tuple[str, ...]] = [
    ("CONFIG", "GET", "*"),
    ("CONFIG", "GET", "requirepass"),
    ("SLOWLOG", "GET", "1"),
    ("SLOWLOG", "RESET"),
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "ID", "1"),
    ("MONITOR",),
    ("GET", "session:1"),
    ("SCAN", "0"),
    ("KEYS", "*"),
    ("SELECT", "1"),
    ("SET", "k", "v"),
    ("ACL", "LIST"),
]


def monitoring(server: RedisServer) -> redis.Redis:
    return client(server, NAMES.redis_monitoring_user, "monitoring-redis-pass-9999")


@pytest.mark.parametrize("command", MONITORING_ALLOWED, ids=" ".join)
def test_the_monitoring_user_runs_what_the_exporter_runs(server: RedisServer, command: tuple[str, ...]) -> None:
    monitoring(server).execute_command(*command)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("command", MONITORING_DENIED, ids=" ".join)
def test_the_monitoring_user_reads_no_configuration_keys_or_command_arguments(
    server: RedisServer, command: tuple[str, ...]
) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        monitoring(server).execute_command(*command)  # type: ignore[no-untyped-call]


def test_the_rendered_healthcheck_line_authenticates(server: RedisServer, tmp_path: Path) -> None:
    password_file = tmp_path / "health"
    password_file.write_text(HEALTH_PASSWORD)
    line = redis_conf.healthcheck_command(
        user=NAMES.redis_healthcheck_user, password_file=str(password_file), port=server.port
    )
    assert HEALTH_PASSWORD not in line
    assert subprocess.run(["sh", "-c", line], check=False).returncode == 0
    password_file.write_text("wrong")
    assert subprocess.run(["sh", "-c", line], check=False, capture_output=True).returncode != 0


def test_aof_persists_writes_across_a_crash(server: RedisServer) -> None:
    app(server).set("durable", "yes")
    time.sleep(1.5)  # appendfsync everysec
    server.restart()
    assert app(server).get("durable") == b"yes"
    aof_files = list((server.root / "data").rglob("*.aof"))
    assert aof_files, "no AOF files written"


def test_allkeys_lru_evicts_instead_of_refusing_writes(server: RedisServer) -> None:
    r = app(server)
    payload = b"v" * 4096
    written = 2 * MAXMEMORY // len(payload)
    pipe = r.pipeline(transaction=False)
    # Twice maxmemory: with noeviction the writes would fail with OOM.
    for i in range(written):
        pipe.set(f"fill:{i}", payload)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    # Every write was accepted, and keys were evicted to make room (LRU is
    # sampled, so which ones is not asserted).
    assert int(r.dbsize()) < written  # type: ignore[arg-type]
    assert r.get(f"fill:{written - 1}") == payload


def test_noeviction_would_refuse_the_same_writes() -> None:
    # The counterpart that shows the eviction test can fail.
    with redis_server(acl=rendered_acl(), maxmemory_bytes=MAXMEMORY, eviction_policy="noeviction") as s:
        r = app(s)
        payload = b"v" * 4096
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(2 * MAXMEMORY // len(payload)):
                r.set(f"fill:{i}", payload)


def test_redis_cli_as_make_redis_cli_runs_it_logs_in_with_the_password_from_its_environment() -> None:
    """`make redis-cli`: TLS to the stack's CA, --user, and REDISCLI_AUTH rather than -a."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed (redis-tools)")
    with redis_server(acl=rendered_acl(), maxmemory_bytes=MAXMEMORY, eviction_policy="allkeys-lru", tls=True) as tls:
        command = [cli, "--tls", "--cacert", str(tls.ca), "-h", "127.0.0.1", "-p", str(tls.port)]
        command += ["--user", NAMES.redis_app_user, "ACL", "WHOAMI"]
        env = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": APP_PASSWORD}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert result.stdout.strip() == NAMES.redis_app_user, result.stdout + result.stderr
        wrong = subprocess.run(
            command, env={**env, "REDISCLI_AUTH": "not-it"}, capture_output=True, text=True, timeout=30, check=False
        )
        assert NAMES.redis_app_user not in wrong.stdout
