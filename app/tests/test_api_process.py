"""The API as the container runs it: a real uvicorn process, its own Postgres and
Redis, outages of each, `--check-only`, and a graceful SIGTERM."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Running

from tests.api_stack import api_env, run_cli, start_api
from tests.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def running(servers: tuple[PostgresServer, RedisServer]) -> Iterator[Running]:
    pg, rd = servers
    api = start_api(pg, rd)
    yield Running(pg, rd, api, api.url)
    api.stop()


def ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/health/ready", timeout=10)


def wait_until_ready(url: str, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    response = ready(url)
    while response.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.25)
        response = ready(url)
    return response


def test_ready_in_the_seed_shape(running: Running) -> None:
    response = wait_until_ready(running.url)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "UP"
    assert set(body["services"]) == {"database", "redis"}
    for service in body["services"].values():
        assert service["status"] == "UP" and service["responseTime"] >= 0
    assert body["timestamp"]


def test_redis_down_degrades_readiness_but_not_the_rest(running: Running) -> None:
    running.cache.stop()
    try:
        response = ready(running.url)
        assert response.status_code == 503
        assert response.json()["status"] == "DEGRADED"
        assert response.json()["services"]["redis"]["status"] == "DOWN"
        assert httpx.get(f"{running.url}/health").status_code == 200
        # Registration needs only Postgres; login needs the rate limiter and pauses.
        reg = httpx.post(
            f"{running.url}/auth/register",
            json={"email": "redis-down@example.com", "password": "long enough"},
        )
        assert reg.status_code == 201
        login = httpx.post(
            f"{running.url}/auth/login", json={"email": "redis-down@example.com", "password": "long enough"}
        )
        assert login.status_code == 503 and login.json()["error"]["code"] == "rate_limiter_unavailable"
    finally:
        running.cache.start()
    assert wait_until_ready(running.url).status_code == 200
    assert running.api.process.poll() is None


def test_postgres_down_degrades_readiness_and_recovers(running: Running) -> None:
    running.db.stop()
    try:
        response = ready(running.url)
        assert response.status_code == 503
        assert response.json()["services"]["database"]["status"] == "DOWN"
        reg = httpx.post(
            f"{running.url}/auth/register", json={"email": "pg-down@example.com", "password": "long enough"}
        )
        assert reg.status_code == 503 and reg.json()["error"]["code"] == "database_unavailable"
        assert httpx.get(f"{running.url}/health").status_code == 200
    finally:
        running.db.start()
    assert wait_until_ready(running.url).status_code == 200
    reg = httpx.post(f"{running.url}/auth/register", json={"email": "pg-back@example.com", "password": "long enough"})
    assert reg.status_code == 201
    assert running.api.process.poll() is None


def test_sigterm_lets_in_flight_requests_finish(servers: tuple[PostgresServer, RedisServer]) -> None:
    pg, rd = servers
    # Cost 14 makes one registration take long enough to be caught in flight.
    api = start_api(pg, rd, BCRYPT_ROUNDS="14")
    process, url = api.process, api.url
    result: dict[str, int] = {}

    def slow_request() -> None:
        r = httpx.post(
            f"{url}/auth/register",
            json={"email": "inflight@example.com", "password": "long enough"},
            timeout=30,
        )
        result["status"] = r.status_code

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    worker.join(timeout=30)
    process.wait(timeout=30)
    output = api.output()
    api.stop()
    assert result.get("status") == 201
    # uvicorn re-raises SIGTERM once it has shut down cleanly, so a supervisor
    # sees "stopped by SIGTERM"; the log line proves the pools were closed.
    assert process.returncode in (0, -signal.SIGTERM)
    assert '"msg":"stopped"' in output


def test_check_only_validates_config_and_connectivity(servers: tuple[PostgresServer, RedisServer]) -> None:
    pg, rd = servers
    ok = run_cli(api_env(pg, rd), "--check-only")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert '"database":"ok (PostgreSQL 15' in ok.stdout and '"redis":"ok"' in ok.stdout
    bad_password = run_cli(api_env(pg, rd, DB_PASSWORD="wrong-password"), "--check-only")
    assert bad_password.returncode == 1
    assert '"database":"failed' in bad_password.stdout
    assert "wrong-password" not in bad_password.stdout + bad_password.stderr
    broken = run_cli({"DB_HOST": "127.0.0.1", "JWT_SECRET": "short"}, "--check-only")
    assert broken.returncode == 2
    for problem in (
        "DB_NAME: required and not set",
        "DB_USER: required and not set",
        "DB_PASSWORD: required and not set (or DB_PASSWORD_FILE)",
        "REDIS_HOST: required and not set",
        "JWT_SECRET: must be at least 32 characters",
    ):
        assert problem in broken.stderr
    assert "short" not in broken.stderr


def test_behind_a_proxy_the_client_is_the_address_the_proxy_appended(
    servers: tuple[PostgresServer, RedisServer],
) -> None:
    """A client that writes its own X-Forwarded-For head gets neither a fresh
    rate-limit budget nor a false address in the audit log."""
    pg, rd = servers
    api = start_api(pg, rd, FORWARDED_ALLOW_IPS="127.0.0.1/32", LOGIN_IP_LIMIT="2", LOGIN_IP_WINDOW_SECONDS="60")
    try:
        statuses = []
        for spoof in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
            response = httpx.post(
                f"{api.url}/auth/login",
                json={"email": "nobody-proxied@example.com", "password": "wrong one"},
                headers={"X-Forwarded-For": f"{spoof}, 203.0.113.77"},
                timeout=10,
            )
            statuses.append(response.status_code)
    finally:
        api.stop()
    assert statuses == [401, 401, 429]
    with pg.admin("wondernest") as conn:
        addresses = {
            row[0]
            for row in conn.execute(
                "SELECT host(ip_address) FROM audit.activity_logs WHERE action = 'user.login_failed' "
                "AND created_at > now() - interval '1 minute'"
            ).fetchall()
        }
    assert "203.0.113.77" in addresses and not addresses & {"1.1.1.1", "2.2.2.2", "3.3.3.3"}


def _raw(url: str, payload: bytes, *, chunk: int = 64 * 1024) -> bytes:
    """Send `payload` on a fresh connection, as far as the server reads it, and
    return whatever it answered before closing."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            for start in range(0, len(payload), chunk):
                sock.sendall(payload[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while part := sock.recv(65536):
                answer += part
        return answer


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_request_heads_are_bounded_on_the_real_server(running: Running) -> None:
    """httptools holds whatever headers it is sent until they end: one endless
    header, or thousands of small ones, are refused with 431 and a JSON body
    once the head passes its bound, and memory stays where it was."""
    normal = _raw(running.url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert normal.startswith(b"HTTP/1.1 200")
    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (40 * 1024) + b"\r\n\r\n"
    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n"
    for head in (huge, many):
        answer = _raw(running.url, head)
        status, _, body = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 431"), answer[:200]
        assert json.loads(body)["error"]["code"] == "request_header_fields_too_large"
    before = _rss_kib(running.api.process.pid)
    # Eight clients each sending 16 MB of one header: each is cut off at the bound.
    flood = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Flood: " + b"b" * (16 * 1024 * 1024)
    threads = [threading.Thread(target=_raw, args=(running.url, flood)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    grown_mib = (_rss_kib(running.api.process.pid) - before) / 1024
    assert grown_mib < 16, f"resident memory grew {grown_mib:.0f} MiB"
    assert httpx.get(f"{running.url}/health", timeout=5).status_code == 200
    # A body does not count against the head: a large body up to its own bound still goes through.
    body = json.dumps({"email": "x@example.com", "password": "p" * 100}).encode()
    post = (
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert _raw(running.url, post).startswith(b"HTTP/1.1 401")
