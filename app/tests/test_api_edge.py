"""What every response carries: request id, security headers, JSON errors,
body limits, CORS, metrics by route template, and a log line without secrets."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator

import pytest
from conftest import ClientFactory
from starlette.testclient import TestClient
from wondernest_api.app import create_app
from wondernest_api.jsonlog import JsonLog
from wondernest_api.settings import load_settings

from tests.api_stack import api_env
from tests.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.servers


@pytest.fixture
def logged(db: PostgresServer, cache: RedisServer, migrated: object) -> Iterator[tuple[TestClient, io.BytesIO]]:
    stream = io.BytesIO()
    app, _ = create_app(load_settings(api_env(db, cache)), logger=JsonLog(stream))
    with TestClient(app, client=("192.0.2.80", 1)) as client:
        yield client, stream


def test_security_headers_on_every_response(client: TestClient) -> None:
    for response in (client.get("/health"), client.get("/nope"), client.post("/auth/login", json={})):
        h = response.headers
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["strict-transport-security"].startswith("max-age=")
        assert h["content-security-policy"].startswith("default-src 'none'")


def test_responses_with_tokens_or_account_data_are_not_cacheable(client: TestClient) -> None:
    address = f"cache-{uuid.uuid4().hex[:8]}@example.com"
    registered = client.post("/auth/register", json={"email": address, "password": "long enough"})
    tokens = client.post("/auth/login", json={"email": address, "password": "long enough"})
    me = client.get("/api/users/me", headers={"Authorization": f"Bearer {tokens.json()['accessToken']}"})
    rotated = client.post("/auth/refresh", json={"refreshToken": tokens.json()["refreshToken"]})
    for response in (registered, tokens, me, rotated):
        assert response.headers["cache-control"] == "no-store"


GENERATED_ID = re.compile(r"^[0-9a-f]{12}-[0-9a-f]+$")


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-Id": "abc-123"}).headers["x-request-id"] == "abc-123"
    first, second = (client.get("/health").headers["x-request-id"] for _ in range(2))
    assert GENERATED_ID.match(first) and GENERATED_ID.match(second) and first != second
    # An id that could smuggle log lines or headers is replaced, not echoed.
    hostile = client.get("/health", headers={"X-Request-Id": "x\tinjected"}).headers["x-request-id"]
    assert GENERATED_ID.match(hostile)


def test_unknown_route_and_wrong_method_answer_json(client: TestClient) -> None:
    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.delete("/auth/login")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


def test_oversized_bodies_are_413(make_client: ClientFactory) -> None:
    client = make_client(MAX_BODY_BYTES="2048")
    declared = client.post("/auth/register", content=b"x" * 4096, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"x" * 512

    streamed = client.post("/auth/register", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_cors_allows_only_the_configured_origins(make_client: ClientFactory) -> None:
    client = make_client(CORS_ALLOWED_ORIGINS="https://app.example.com, http://localhost:3000")
    preflight = {"Access-Control-Request-Method": "POST"}
    ok = client.options("/auth/login", headers={"Origin": "https://app.example.com", **preflight})
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    denied = client.options("/auth/login", headers={"Origin": "https://evil.example.com", **preflight})
    assert "access-control-allow-origin" not in denied.headers
    no_cors = make_client()
    plain = no_cors.get("/health", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in plain.headers


def test_liveness_is_the_same_answer_at_the_edge_and_through_the_app(
    make_client: ClientFactory, logged: tuple[TestClient, io.BytesIO]
) -> None:
    """A probe's /health (no Origin) is answered by the edge; a browser's goes
    through the app and its CORS handling. Both are the same bytes and both are
    logged and counted."""
    client = make_client(CORS_ALLOWED_ORIGINS="https://app.example.com")
    probe = client.get("/health")
    browser = client.get("/health", headers={"Origin": "https://app.example.com"})
    for response in (probe, browser):
        assert response.status_code == 200 and response.json() == {"status": "UP"}
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in probe.headers
    assert browser.headers["access-control-allow-origin"] == "https://app.example.com"
    head = client.head("/health")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(probe.content))
    wrong = client.post("/health", json={})
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert 'http_requests_total{method="GET",route="/health",status="200"} 2.0' in client.get(METRICS).text
    quiet, stream = logged
    quiet.get("/health", headers={"X-Request-Id": "probe-1"})
    quiet.get(METRICS)  # a scrape drains the pending request records
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [probed] = [line for line in lines if line.get("requestId") == "probe-1"]
    assert probed["route"] == "/health" and probed["status"] == 200 and probed["method"] == "GET"


# The metrics listener: TestClient puts the URL's port in the scope's server address.
METRICS = "http://testserver:9102/metrics"


def test_metrics_are_served_on_their_own_listener_only(client: TestClient) -> None:
    public = client.get("/metrics")
    assert public.status_code == 404 and public.json()["error"]["code"] == "not_found"
    assert client.get(METRICS).status_code == 200
    # The metrics listener serves nothing else, and a scrape is not a request the SLI counts.
    assert client.get("http://testserver:9102/health").status_code == 404
    assert client.get("http://testserver:9102/auth/login").status_code == 404
    assert 'route="/metrics"' not in client.get(METRICS).text


def test_metrics_include_the_process_cpu_memory_and_file_descriptors(client: TestClient) -> None:
    import re

    text = client.get(METRICS).text
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ):
        found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert found is not None, name
        assert float(found.group(1)) > 0, name


def test_metrics_count_by_route_template(client: TestClient) -> None:
    client.get("/health")
    client.get("/health")
    for i in range(3):
        client.get(f"/random/{i}")
    client.post("/auth/register", json={"email": f"m-{uuid.uuid4().hex[:8]}@example.com", "password": "long enough"})
    client.post("/auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    text = client.get(METRICS).text
    assert 'http_requests_total{method="GET",route="/health",status="200"} 2.0' in text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 3.0' in text
    assert "/random/" not in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/health"}' in text
    assert "user_registrations_total 1.0" in text
    assert 'auth_login_failures_total{reason="bad_credentials"} 1.0' in text
    assert "db_pool_size" in text and "db_pool_in_use" in text


def test_one_json_log_line_per_request_and_no_secret_in_it(logged: tuple[TestClient, io.BytesIO]) -> None:
    client, stream = logged
    password = "a-secret-password-42"
    address = f"log-{uuid.uuid4().hex[:8]}@example.com"
    client.post("/auth/register", json={"email": address, "password": password})
    tokens = client.post("/auth/login", json={"email": address, "password": password}).json()
    client.get(
        "/api/users/me",
        headers={"Authorization": f"Bearer {tokens['accessToken']}", "X-Request-Id": "trace-1"},
    )
    client.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    client.get(METRICS)  # a scrape drains the pending request records
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [line for line in lines if line["msg"] == "request"]
    assert [r["route"] for r in requests] == [
        "/auth/register",
        "/auth/login",
        "/api/users/me",
        "/auth/refresh",
    ]
    me = requests[2]
    assert me["requestId"] == "trace-1" and me["method"] == "GET" and me["status"] == 200
    assert isinstance(me["durationMs"], float)
    text = stream.getvalue().decode()
    for secret in (password, tokens["accessToken"], tokens["refreshToken"], address):
        assert secret not in text


def test_the_openapi_document_describes_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {
        "/health",
        "/health/ready",
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/api/users/me",
        "/api/users/me/activity",
    }


def test_every_routes_error_series_starts_at_zero(client: TestClient) -> None:
    """Before any request fails, each route's 5xx series exist at 0, so the
    first failure after a start is an increase the alert rules see."""
    text = client.get(METRICS).text
    for method, route in (("GET", "/api/users/me"), ("POST", "/auth/login"), ("GET", "/health/ready")):
        for status in ("500", "503"):
            assert f'http_requests_total{{method="{method}",route="{route}",status="{status}"}} 0.0' in text
    assert 'method="HEAD"' not in text
    assert 'route="/auth/login",status="200"' not in text  # only the error series are declared
