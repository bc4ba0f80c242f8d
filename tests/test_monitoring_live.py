"""The whole monitoring path, running: real Prometheus and Alertmanager with the
rendered configs (container hostnames mapped to loopback ports), the real
exporters against a real Postgres and Redis, and the real API."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from components.commands.verify import services
from components.commands.verify.__main__ import probes
from components.commands.verify.access import Access, endpoint, local_credentials
from components.commands.verify.data import OBJECT_KINDS
from components.commands.verify.results import CheckFailed, Result, run_all
from components.model import monitoring
from components.model.alerts import AlertThresholds, Recording, render_rule_file, rule_groups
from components.model.dashboards import dashboards
from components.model.database import database_spec
from tests.api_stack import (
    NAMES,
    REDIS_APP_PASSWORD,
    REDIS_MONITORING_PASSWORD,
    VERIFY_LOGIN,
    ApiProcess,
    cli_env,
    database_tls,
    migrate_platform,
    platform,
    rendered_acl,
    start_api,
)
from tests.platform_db import PASSWORDS
from tests.servers import PostgresServer, RedisServer, free_port, postgres_server, redis_server, require_binary

pytestmark = pytest.mark.servers


def expressions(rendered: dict[str, str]) -> list[str]:
    """Every PromQL expression in the rendered dashboards."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for text in rendered.values():
        walk(json.loads(text))
    return found


PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
POSTGRES_EXPORTER = "/usr/bin/prometheus-postgres-exporter"
REDIS_EXPORTER = "/usr/bin/prometheus-redis-exporter"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
THRESHOLDS = AlertThresholds(slo_objective=0.999, latency_p99_seconds=1.0, database="wondernest")
# Grafana is the one scrape target without a Debian package to run here.
LIVE_JOBS = ("api", "postgres", "redis", "prometheus", "alertmanager", "backups", "node")


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    api: ApiProcess
    root: Path
    pg: PostgresServer
    rd: RedisServer


@contextlib.contextmanager
def process(
    command: list[str], root: Path, name: str, ready_url: str, env: dict[str, str] | None = None
) -> Iterator[None]:
    """Start a server and wait until `ready_url` answers 200."""
    with open(root / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{(root / f'{name}.log').read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    for binary, package in (
        (PROMETHEUS, "prometheus"),
        (ALERTMANAGER, "prometheus-alertmanager"),
        (POSTGRES_EXPORTER, "prometheus-postgres-exporter"),
        (REDIS_EXPORTER, "prometheus-redis-exporter"),
        (NODE_EXPORTER, "prometheus-node-exporter"),
    ):
        require_binary(binary, package)
    root = Path(tempfile.mkdtemp(prefix="wn-monitoring-"))
    ports = {job: free_port() for job in ("postgres", "redis", "prometheus", "alertmanager", "backups", "node")}
    try:
        with (
            # TLS only, as the local stack runs them: every client verifies the servers.
            postgres_server(tls=True) as pg,
            redis_server(
                acl=rendered_acl(), maxmemory_bytes=64 * 1024 * 1024, eviction_policy="allkeys-lru", tls=True
            ) as rd,
        ):
            assert pg.ca is not None and rd.ca is not None
            platform(pg)
            migrate_platform(pg)
            api = start_api(pg, rd)
            (root / "pg-password").write_text(PASSWORDS["monitoring"])
            (root / "queries.yaml").write_text(monitoring.render_postgres_exporter_queries())
            redis_address = f"127.0.0.1:{rd.port}"
            (root / "redis-passwords.json").write_text(
                monitoring.redis_exporter_password_file(redis_address, REDIS_MONITORING_PASSWORD, tls=True)
            )
            (root / "rules.yml").write_text(render_rule_file(rule_groups(THRESHOLDS)))
            (root / "alertmanager.yml").write_text(monitoring.render_alertmanager_config(monitoring.Receivers()))
            targets = {
                "api": api.metrics_url.removeprefix("http://"),
                "postgres": f"127.0.0.1:{ports['postgres']}",
                "redis": f"127.0.0.1:{ports['redis']}",
                "prometheus": f"127.0.0.1:{ports['prometheus']}",
                "alertmanager": f"127.0.0.1:{ports['alertmanager']}",
                "backups": f"127.0.0.1:{ports['backups']}",
                "node": f"127.0.0.1:{ports['node']}",
            }
            (root / "prometheus.yml").write_text(
                monitoring.render_prometheus_config(
                    targets=targets,
                    external_labels={"app": "wondernest", "environment": "test"},
                    alertmanager=targets["alertmanager"],
                    rule_files=[str(root / "rules.yml")],
                )
            )
            pg_env = monitoring.postgres_exporter_env(
                host="127.0.0.1",
                port=pg.port,
                database="wondernest",
                user=NAMES.monitoring_role,
                password_file=str(root / "pg-password"),
                ca_file=str(pg.ca),
            )
            backup_env = cli_env(
                {
                    "DB_HOST": "127.0.0.1",
                    "DB_PORT": str(pg.port),
                    "DB_NAME": "wondernest",
                    "DB_USER": NAMES.backup_role,
                    "DB_PASSWORD": PASSWORDS["backup"],
                    **database_tls(pg),
                    "BACKUP_DIR": str(root / "backups"),
                    "METRICS_PORT": str(ports["backups"]),
                }
            )
            with (
                process(
                    [NODE_EXPORTER, *monitoring.node_exporter_args(listen=f"127.0.0.1:{ports['node']}")],
                    root,
                    "node-exporter",
                    f"http://127.0.0.1:{ports['node']}/metrics",
                ),
                process(
                    [sys.executable, "-m", "wondernest_backup", "serve"],
                    root,
                    "backups",
                    f"http://127.0.0.1:{ports['backups']}/metrics",
                    env=backup_env,
                ),
                process(
                    [
                        POSTGRES_EXPORTER,
                        *monitoring.postgres_exporter_args(
                            listen=f"127.0.0.1:{ports['postgres']}", queries_path=str(root / "queries.yaml")
                        ),
                    ],
                    root,
                    "postgres-exporter",
                    f"http://127.0.0.1:{ports['postgres']}/",
                    env={"PATH": "/usr/bin:/bin", **pg_env},
                ),
                process(
                    [
                        REDIS_EXPORTER,
                        *monitoring.redis_exporter_args(
                            address=redis_address,
                            user=NAMES.redis_monitoring_user,
                            password_file=str(root / "redis-passwords.json"),
                            listen=f"127.0.0.1:{ports['redis']}",
                            ca_file=str(rd.ca),
                        ),
                    ],
                    root,
                    "redis-exporter",
                    f"http://127.0.0.1:{ports['redis']}/health",
                ),
                process(
                    [
                        ALERTMANAGER,
                        f"--config.file={root / 'alertmanager.yml'}",
                        f"--storage.path={root / 'am-data'}",
                        f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                        "--cluster.listen-address=",
                    ],
                    root,
                    "alertmanager",
                    f"http://127.0.0.1:{ports['alertmanager']}/-/ready",
                ),
                process(
                    [
                        PROMETHEUS,
                        f"--config.file={root / 'prometheus.yml'}",
                        f"--storage.tsdb.path={root / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                    ],
                    root,
                    "prometheus",
                    f"http://127.0.0.1:{ports['prometheus']}/-/ready",
                ),
            ):
                yield Stack(
                    f"http://127.0.0.1:{ports['prometheus']}",
                    f"http://127.0.0.1:{ports['alertmanager']}",
                    api,
                    root,
                    pg,
                    rd,
                )
            api.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def eventually(check: object, timeout: float = 75) -> object:
    """Scrapes happen every 15 s: poll until the check returns something truthy."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"not reached within {timeout}s; last: {last!r}")


def query(stack: Stack, path: str, **params: str) -> Any:
    response = httpx.get(f"{stack.prometheus}{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def test_every_target_is_up(stack: Stack) -> None:
    def all_up() -> dict[str, str] | None:
        active = query(stack, "/api/v1/targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return health if set(health) == set(LIVE_JOBS) and set(health.values()) == {"up"} else None

    try:
        eventually(all_up)
    except AssertionError:
        logs = {p.name: p.read_text()[-2000:] for p in stack.root.glob("*.log")}
        raise AssertionError(f"targets not all up: {query(stack, '/api/v1/targets')}\n{logs}") from None


def test_rules_load_and_evaluate_without_errors(stack: Stack) -> None:
    def evaluated() -> list[dict[str, object]] | None:
        groups = query(stack, "/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    rules = eventually(evaluated)
    assert isinstance(rules, list)
    assert len(rules) == sum(len(g.rules) for g in rule_groups(THRESHOLDS))
    assert [r["name"] for r in rules if r["health"] != "ok"] == []


def test_the_watchdog_fires_and_reaches_alertmanager(stack: Stack) -> None:
    def firing() -> bool:
        alerts = query(stack, "/api/v1/alerts")["alerts"]
        return any(a["labels"]["alertname"] == "Watchdog" and a["state"] == "firing" for a in alerts)

    eventually(firing)

    def delivered() -> bool:
        alerts = httpx.get(f"{stack.alertmanager}/api/v2/alerts", timeout=10).json()
        return any(a["labels"]["alertname"] == "Watchdog" for a in alerts)

    eventually(delivered)


_SKIP = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions,
    keywords, label names in grouping clauses, label matchers or durations."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\boffset\s+[0-9a-z]+", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group(0).lower() in _SKIP:
            continue
        names.add(match.group(0))
    return names


def test_every_metric_used_is_exposed_or_recorded(stack: Stack) -> None:
    # Traffic so that labelled series exist: a registration, a failed login.
    httpx.post(f"{stack.api.url}/auth/register", json={"email": "metrics@example.com", "password": "long enough"})
    httpx.post(f"{stack.api.url}/auth/login", json={"email": "metrics@example.com", "password": "wrong password"})
    groups = rule_groups(THRESHOLDS)
    used: dict[str, set[str]] = {}
    for group in groups:
        for rule in group.rules:
            used.setdefault(f"rule {getattr(rule, 'name', getattr(rule, 'record', ''))}", set()).update(
                metric_names(rule.expr)
            )
    for expr in expressions(dashboards(slo_objective=0.999, database="wondernest")):
        used.setdefault("dashboards", set()).update(metric_names(expr))
    recorded = {r.record for g in groups for r in g.rules if isinstance(r, Recording)}
    # ALERTS is Prometheus' own series of pending and firing alerts.
    synthetic = {"ALERTS"}

    def missing() -> dict[str, set[str]] | None:
        exposed = set(query(stack, "/api/v1/label/__name__/values"))
        gaps = {where: names - exposed - recorded - synthetic for where, names in used.items()}
        gaps = {k: v for k, v in gaps.items() if v}
        return gaps or None

    deadline = time.monotonic() + 60
    gaps = missing()
    while gaps and time.monotonic() < deadline:
        time.sleep(2)
        gaps = missing()
    assert not gaps, f"metrics used but exposed by no target: {gaps}"


def test_the_api_process_panels_read_the_apis_own_series(stack: Stack) -> None:
    """Every exporter has process_* series of its own: the API's panels must find the API's."""
    wanted = {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds"}

    def names() -> set[str]:
        series = query(stack, "/api/v1/series", **{"match[]": '{job="api",__name__=~"process_.*"}'})
        return {s["__name__"] for s in series}

    deadline = time.monotonic() + 60
    while not wanted <= names() and time.monotonic() < deadline:
        time.sleep(2)
    assert wanted <= names()


def test_the_metric_name_extractor() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket{job="api"}[5m])))'
        " > 1 and on (instance) pg_up == 0 or vector(1)"
        ' and on (job) count by (job) (up{job="api"} offset 1d)'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "pg_up", "up"}


def test_the_exporters_scrape_cleanly_with_their_least_privilege_users(stack: Stack) -> None:
    def clean() -> dict[str, float] | None:
        values = {}
        for metric in ("pg_exporter_last_scrape_error", "redis_exporter_last_scrape_error", "pg_up", "redis_up"):
            result = query(stack, "/api/v1/query", query=metric)["result"]
            if not result:
                return None
            values[metric] = float(result[0]["value"][1])
        return values

    values = eventually(clean)
    assert values == {
        "pg_exporter_last_scrape_error": 0.0,
        "redis_exporter_last_scrape_error": 0.0,
        "pg_up": 1.0,
        "redis_up": 1.0,
    }


def test_the_backup_job_reports_a_verified_backup(stack: Stack) -> None:
    def verified() -> float | None:
        result = query(stack, "/api/v1/query", query="backup_last_verified_timestamp_seconds")["result"]
        value = float(result[0]["value"][1]) if result else 0.0
        return value or None

    newest = eventually(verified)
    assert isinstance(newest, float) and newest > time.time() - 600
    failed = query(stack, "/api/v1/query", query="sum(backup_failures_total)")["result"]
    assert float(failed[0]["value"][1]) == 0


@pytest.fixture(scope="module")
def grafana() -> Iterator[str]:
    """Grafana has no Debian package: its documented /api/health answer, served."""
    body = json.dumps({"commit": "stand-in", "database": "ok", "version": "11.6.0"}).encode()

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/api/health"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if found else b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def stack_outputs(stack: Stack, grafana: str) -> dict[str, Any]:
    """What `pulumi stack output --json --show-secrets` of a local stack holds,
    for the servers this module runs; one CA bundle, as the stack has one CA."""
    assert stack.pg.ca is not None and stack.rd.ca is not None
    return {
        "apiUrl": stack.api.url,
        "grafanaUrl": grafana,
        "prometheusUrl": stack.prometheus,
        # As the local stack has it: on the internal network, not reachable from the host.
        "alertmanagerUrl": "http://alertmanager:9093",
        "postgresEndpoint": f"0.0.0.0:{stack.pg.port}",
        "postgresDatabase": "wondernest",
        "redisEndpoint": f"0.0.0.0:{stack.rd.port}",
        "redisUser": NAMES.redis_app_user,
        "roles": {role.key: role.name for role in database_spec(NAMES).roles},
        "caCertificate": stack.pg.ca.read_text() + stack.rd.ca.read_text(),
        "secrets": {
            "postgres_superuser": stack.pg.superuser_password,
            **{f"postgres_{key}": password for key, password in PASSWORDS.items()},
            "redis_app": REDIS_APP_PASSWORD,
            "verify_login": VERIFY_LOGIN,
        },
    }


def local_access(stack: Stack, tmp_path: Path, outputs: dict[str, Any]) -> Access:
    ca = tmp_path / "ca.pem"
    ca.write_text(outputs["caCertificate"])
    return Access(
        target="docker",
        outputs=outputs,
        spec=database_spec(NAMES),
        admin_is_superuser=True,
        backup_max_age_seconds=3600,
        timeout=10,
        credentials=local_credentials(outputs),
        ca_file=str(ca),
        postgres=endpoint(outputs["postgresEndpoint"]),
        redis=endpoint(outputs["redisEndpoint"]),
        auth_round_trip=True,
    )


def verify(stack: Stack, tmp_path: Path, grafana: str, outputs: dict[str, Any] | None = None) -> dict[str, Result]:
    access = local_access(stack, tmp_path, outputs or stack_outputs(stack, grafana))
    return {f"{r.service} {r.check}": r for r in run_all(probes(access), access.timeout)}


@pytest.fixture(scope="module")
def healthy(stack: Stack, grafana: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Verify's results once every check passes: the Watchdog's first delivery
    and the first verified backup take a while after the stack starts. Once
    for the module: a failure here is every verify test's, reported at once."""
    tmp_path = tmp_path_factory.mktemp("verify")

    def all_pass() -> dict[str, Result] | None:
        results = verify(stack, tmp_path, grafana)
        return results if all(r.status == "pass" for r in results.values()) else None

    try:
        results = eventually(all_pass, timeout=150)
    except AssertionError:
        failing = {k: r.detail for k, r in verify(stack, tmp_path, grafana).items() if r.status != "pass"}
        raise AssertionError(f"verify found: {failing}") from None
    assert isinstance(results, dict)
    return results


def test_verify_passes_every_check_of_the_running_stack(healthy: dict[str, Result]) -> None:
    results = healthy
    assert set(results) >= {
        "api ready",
        "api auth round trip",
        "prometheus targets up",
        "prometheus rules healthy",
        "alertmanager Watchdog delivered",
        "grafana health",
        "backups verified backup fresh",
        "redis app user",
        *(f"postgres {key} logs in" for key in PASSWORDS),
        *(f"postgres {kind} as declared" for kind in OBJECT_KINDS),
    }
    assert "7 targets up" in results["prometheus targets up"].detail
    assert results["postgres app logs in"].detail.startswith(f"{NAMES.app_role} logged in over verified TLS")
    assert (
        results["redis app user"].detail
        == f"{NAMES.redis_app_user} authenticated over verified TLS; CONFIG refused to it"
    )


def test_verify_auth_runs_more_often_than_registrations_are_allowed(
    stack: Stack, tmp_path: Path, grafana: str, healthy: dict[str, Result]
) -> None:
    """Twelve round trips from one address, past the API's ten registrations
    an hour: the stack's verify account registers once and then signs in."""
    access = local_access(stack, tmp_path, stack_outputs(stack, grafana))
    details = [services.api_auth_round_trip(access) for _ in range(12)]
    assert all(d.startswith("verify@wondernest.example.com: ") for d in details), details
    assert sum("registered" in d for d in details) <= 1
    assert details[-1].endswith(": logged in, read itself and its activity, logged out, refused after logout")


def test_verify_names_what_is_wrong(stack: Stack, tmp_path: Path, healthy: dict[str, Result]) -> None:
    # Nothing listens on the discard port: Grafana is down.
    outputs = stack_outputs(stack, "http://127.0.0.1:9")
    outputs["secrets"]["postgres_analytics"] = "not-the-password"
    outputs["secrets"]["redis_app"] = "not-the-password"
    table = "core.by_hand_" + os.urandom(3).hex()
    with psycopg.connect(stack.pg.dsn(dbname="wondernest"), autocommit=True) as conn:
        # A table an operator made for the app by hand, and a right given behind the stack's back.
        conn.execute(f"CREATE TABLE {table} (id int)")
        conn.execute(f"ALTER TABLE {table} OWNER TO {NAMES.app_role}")
        conn.execute(f"GRANT TRUNCATE ON core.users TO {NAMES.analytics_role}")
        # Backdoors: a replication login nobody declared, and a catalog function handed to a platform role.
        conn.execute("CREATE ROLE side_door LOGIN REPLICATION PASSWORD 'side-door-pass'")
        conn.execute("GRANT CONNECT ON DATABASE wondernest TO side_door")
        conn.execute(f"GRANT EXECUTE ON FUNCTION pg_read_file(text) TO {NAMES.analytics_role}")
    try:
        results = verify(stack, tmp_path, "http://127.0.0.1:9", outputs)
    finally:
        with psycopg.connect(stack.pg.dsn(dbname="wondernest"), autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")
            conn.execute(f"REVOKE TRUNCATE ON core.users FROM {NAMES.analytics_role}")
            conn.execute(f"REVOKE EXECUTE ON FUNCTION pg_read_file(text) FROM {NAMES.analytics_role}")
            conn.execute("DROP OWNED BY side_door")
            conn.execute("DROP ROLE side_door")
    failed = {key: r.detail for key, r in results.items() if r.status == "fail"}
    assert set(failed) == {
        "grafana health",
        "postgres analytics logs in",
        "postgres schemas as declared",
        "postgres grants as declared",
        "postgres database as declared",
        "redis app user",
    }, failed
    database = failed["postgres database as declared"]
    assert f"EXECUTE on catalog function pg_read_file(text) to {NAMES.analytics_role}" in database
    assert "1 thing(s) `pulumi up` refuses to go on with" in database
    assert "role side_door (LOGIN, REPLICATION, CONNECT) is not declared: drop it" in database
    assert "password authentication failed" in failed["postgres analytics logs in"]
    assert f"schema-core: strays: TABLE {table} owned by {NAMES.app_role}" in failed["postgres schemas as declared"]
    assert (
        "grant-core-analytics: withholding: TRUNCATE on the whole of core.users to wondernest_analytics"
        in failed["postgres grants as declared"]
    )
    assert "WRONGPASS" in failed["redis app user"] or "invalid username-password" in failed["redis app user"]
    assert results["postgres app logs in"].status == "pass"


def test_the_verify_command_reads_the_outputs_and_the_stack_config(
    stack: Stack, tmp_path: Path, grafana: str, healthy: dict[str, Result]
) -> None:
    """`make verify`'s command as a newcomer runs it, with the dev stack's config:
    its role names are the ones this module's servers have."""
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(stack_outputs(stack, grafana)))
    command = [sys.executable, "-m", "components.commands.verify", "dev", "--outputs", str(outputs), "--auth"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["service", "check", "time", "detail"]
    assert lines[-1] == f"{len(lines) - 2} passed, 0 failed, 0 skipped"
    assert "\033[" not in shown.stdout  # no colour into a pipe
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["ok"] is True
    assert {check["status"] for check in document["checks"]} == {"pass"}


def test_verify_asks_alertmanagers_own_api_where_it_can_reach_it(
    stack: Stack, tmp_path: Path, grafana: str, healthy: dict[str, Result]
) -> None:
    """On AWS the output is the workspace's Alertmanager alerts API, which is
    Alertmanager's v2 API: the same request, here against the real one."""
    outputs = {**stack_outputs(stack, grafana), "alertmanagerUrl": f"{stack.alertmanager}/api/v2/alerts"}
    access = dataclasses.replace(local_access(stack, tmp_path, outputs), target="aws")

    def delivered() -> str | None:
        with contextlib.suppress(CheckFailed):
            return services.watchdog_delivered(access)
        return None

    # Delivery of the Watchdog itself may lag the first alert Alertmanager holds.
    assert str(eventually(delivered)).startswith("Watchdog active at Alertmanager since ")
