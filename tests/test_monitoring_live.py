"""The whole monitoring path, running: real Prometheus and Alertmanager with the
rendered configs (container hostnames mapped to loopback ports), the real
exporters against a real Postgres and Redis, and the real API."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.spec import monitoring
from components.spec.alerts import AlertThresholds, Recording, render_rule_file, rule_groups
from components.spec.dashboards import dashboards, expressions
from tests.api_stack import (
    NAMES,
    REDIS_MONITORING_PASSWORD,
    ApiProcess,
    cli_env,
    database_tls,
    migrate_platform,
    platform,
    rendered_acl,
    start_api,
)
from tests.platform_db import PASSWORDS
from tests.servers import free_port, postgres_server, redis_server, require_binary

pytestmark = pytest.mark.servers

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
POSTGRES_EXPORTER = "/usr/bin/prometheus-postgres-exporter"
REDIS_EXPORTER = "/usr/bin/prometheus-redis-exporter"
THRESHOLDS = AlertThresholds(slo_objective=0.999, latency_p99_seconds=1.0, database="wondernest")
# Grafana is the one scrape target without a Debian package to run here.
LIVE_JOBS = ("api", "postgres", "redis", "prometheus", "alertmanager", "backups")


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    api: ApiProcess
    root: Path


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
    ):
        require_binary(binary, package)
    root = Path(tempfile.mkdtemp(prefix="wn-monitoring-"))
    ports = {job: free_port() for job in ("postgres", "redis", "prometheus", "alertmanager", "backups")}
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
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "pg_up"}


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
