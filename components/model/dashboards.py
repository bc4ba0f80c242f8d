"""Grafana dashboards as code (grafana-foundation-sdk), and Grafana's provisioning files.

Each dashboard has a fixed uid and queries the provisioned Prometheus data
source by its fixed uid, so links and provisioning survive re-creation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from components.model.alerts import SLI

DATASOURCE_UID = "prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
DASHBOARDS_DIR = "/etc/grafana/dashboards"
API = 'job="api"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


def _target(query: Query, ref: str) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
    return target.legend_format(query.legend) if query.legend else target


def _timeseries(title: str, unit: str, *queries: Query, width: int = 12) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8).span(width)
    for i, query in enumerate(queries):
        panel = panel.with_target(_target(query, chr(ord("A") + i)))
    return panel


def _stat(title: str, unit: str, query: Query, width: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(4)
        .span(width)
        .with_target(_target(query, "A"))
    )


def _dashboard(uid: str, title: str, tags: list[str]) -> db.Dashboard:
    return db.Dashboard(title).uid(uid).tags(["wondernest", *tags]).refresh("30s").time("now-6h", "now").timezone("utc")


def api_dashboard(slo_objective: float) -> db.Dashboard:
    budget = 1 - slo_objective
    errors = f'sum(rate(http_requests_total{{{SLI},status=~"5.."}}[5m]))'
    total = f"sum(rate(http_requests_total{{{SLI}}}[5m]))"
    quantile = "histogram_quantile({q}, sum by (le, route) (rate(http_request_duration_seconds_bucket{{{api}}}[5m])))"
    return (
        _dashboard("wondernest-api", "API golden signals", ["api"])
        .with_row(db.Row("Traffic and errors"))
        .with_panel(
            _timeseries(
                "Request rate by route",
                "reqps",
                Query(f"sum by (route) (rate(http_requests_total{{{API}}}[5m]))", "{{route}}"),
            )
        )
        .with_panel(_timeseries("Error ratio (5xx)", "percentunit", Query(f"{errors} / {total}", "5xx ratio")))
        .with_row(db.Row("Latency"))
        .with_panel(
            _timeseries(
                "Latency by route",
                "s",
                *(Query(quantile.format(q=q, api=API), f"p{int(q * 100)} {{{{route}}}}") for q in (0.5, 0.95, 0.99)),
                width=24,
            )
        )
        .with_row(db.Row(f"Availability SLO ({slo_objective * 100:g}%)"))
        .with_panel(
            _stat(
                "Error budget left (30 days)",
                "percentunit",
                Query(
                    f'1 - (sum(increase(http_requests_total{{{SLI},status=~"5.."}}[30d]))'
                    f" / sum(increase(http_requests_total{{{SLI}}}[30d]))) / {budget:.6g}"
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Burn rate (1h and 6h windows)",
                "none",
                Query(f"job:slo_errors_per_request:ratio_rate1h{{{API}}} / {budget:.6g}", "1h"),
                Query(f"job:slo_errors_per_request:ratio_rate6h{{{API}}} / {budget:.6g}", "6h"),
                width=18,
            )
        )
        .with_row(db.Row("Saturation"))
        .with_panel(
            _timeseries(
                "Database pool",
                "none",
                Query(f"sum by (pool) (db_pool_size{{{API}}})", "{{pool}} open"),
                Query(f"sum by (pool) (db_pool_in_use{{{API}}})", "{{pool}} in use"),
                Query(f"sum by (pool) (db_pool_waiting{{{API}}})", "{{pool}} waiting"),
            )
        )
        .with_panel(
            _timeseries(
                "Sign-ups and failed logins",
                "ops",
                Query("sum(rate(user_registrations_total[5m]))", "registrations"),
                Query("sum by (reason) (rate(auth_login_failures_total[5m]))", "login failures: {{reason}}"),
            )
        )
        .with_row(db.Row("Process"))
        .with_panel(
            _timeseries(
                "CPU (cores)",
                "none",
                Query(f"rate(process_cpu_seconds_total{{{API}}}[5m])", "{{instance}}"),
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Resident memory",
                "bytes",
                Query(f"process_resident_memory_bytes{{{API}}}", "{{instance}}"),
                width=8,
            )
        )
        .with_panel(
            _timeseries(
                "Open file descriptors (share of the limit)",
                "percentunit",
                Query(f"process_open_fds{{{API}}} / process_max_fds{{{API}}}", "{{instance}}"),
                width=8,
            )
        )
    )


def postgres_dashboard(database: str) -> db.Dashboard:
    d = f'datname="{database}"'
    return (
        _dashboard("wondernest-postgres", "PostgreSQL", ["postgres"])
        .with_panel(_stat("Up", "none", Query("pg_up")))
        .with_panel(_stat("Uptime", "s", Query("time() - pg_postmaster_start_time_seconds")))
        .with_panel(_stat("Database size", "bytes", Query(f"pg_database_size_bytes{{{d}}}")))
        .with_panel(
            _stat(
                "Connections used",
                "percentunit",
                Query("sum(pg_stat_activity_count) / max(pg_settings_max_connections)"),
            )
        )
        .with_panel(
            _timeseries(
                "Connections by state",
                "none",
                Query(f"sum by (state) (pg_stat_activity_count{{{d}}})", "{{state}}"),
            )
        )
        .with_panel(
            _timeseries(
                "Transactions",
                "ops",
                Query(f"rate(pg_stat_database_xact_commit{{{d}}}[5m])", "commits"),
                Query(f"rate(pg_stat_database_xact_rollback{{{d}}}[5m])", "rollbacks"),
            )
        )
        .with_panel(
            _timeseries(
                "Cache hit ratio",
                "percentunit",
                Query(
                    f"rate(pg_stat_database_blks_hit{{{d}}}[5m]) / "
                    f"(rate(pg_stat_database_blks_hit{{{d}}}[5m]) + rate(pg_stat_database_blks_read{{{d}}}[5m]))",
                    "hit ratio",
                ),
            )
        )
        .with_panel(
            _timeseries("Deadlocks", "none", Query(f"increase(pg_stat_database_deadlocks{{{d}}}[5m])", "deadlocks"))
        )
    )


def redis_dashboard() -> db.Dashboard:
    return (
        _dashboard("wondernest-redis", "Redis", ["redis"])
        .with_panel(_stat("Up", "none", Query("redis_up")))
        .with_panel(
            _stat(
                "Memory used of maxmemory",
                "percentunit",
                Query("redis_memory_used_bytes / redis_memory_max_bytes"),
            )
        )
        .with_panel(_stat("Connected clients", "none", Query("redis_connected_clients")))
        .with_panel(
            _stat(
                "Hit ratio",
                "percentunit",
                Query(
                    "rate(redis_keyspace_hits_total[5m]) / "
                    "(rate(redis_keyspace_hits_total[5m]) + rate(redis_keyspace_misses_total[5m]))"
                ),
            )
        )
        .with_panel(_timeseries("Commands", "ops", Query("rate(redis_commands_processed_total[5m])", "commands")))
        .with_panel(
            _timeseries(
                "Memory",
                "bytes",
                Query("redis_memory_used_bytes", "used"),
                Query("redis_memory_max_bytes", "maxmemory"),
            )
        )
        .with_panel(
            _timeseries(
                "Evictions and rejected connections",
                "none",
                Query("increase(redis_evicted_keys_total[5m])", "evicted keys"),
                Query("increase(redis_rejected_connections_total[5m])", "rejected connections"),
            )
        )
    )


def overview_dashboard() -> db.Dashboard:
    return (
        _dashboard("wondernest-overview", "Platform overview", ["overview"])
        .with_panel(_stat("Targets down", "none", Query("count(up == 0) or vector(0)"), width=6))
        .with_panel(
            _stat(
                "Alerts firing",
                "none",
                Query('count(ALERTS{alertstate="firing",alertname!="Watchdog"}) or vector(0)'),
                width=6,
            )
        )
        .with_panel(_stat("API requests/s", "reqps", Query(f"sum(rate(http_requests_total{{{API}}}[5m]))"), width=6))
        .with_panel(
            _stat(
                "Newest verified backup (age)", "s", Query("time() - backup_last_verified_timestamp_seconds"), width=6
            )
        )
        .with_panel(_timeseries("Targets up", "none", Query("up", "{{job}} {{instance}}"), width=12))
        .with_panel(
            _timeseries(
                "Firing alerts",
                "none",
                Query(
                    'count by (alertname, severity) (ALERTS{alertstate="firing"})',
                    "{{alertname}} ({{severity}})",
                ),
                width=12,
            )
        )
    )


def dashboards(*, slo_objective: float, database: str, app_metrics: bool = True) -> dict[str, str]:
    """File name → dashboard JSON, as Grafana's file provider reads it; the
    API's only for an app that exposes its metrics."""
    built = {
        **({"api.json": api_dashboard(slo_objective)} if app_metrics else {}),
        "postgres.json": postgres_dashboard(database),
        "redis.json": redis_dashboard(),
        "overview.json": overview_dashboard(),
    }
    return {name: json.dumps(d.build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n" for name, d in built.items()}


def render_datasource(prometheus_url: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    "type": "prometheus",
                    "uid": DATASOURCE_UID,
                    "access": "proxy",
                    "url": prometheus_url,
                    "isDefault": True,
                    "editable": False,
                    "jsonData": {"timeInterval": "15s"},
                }
            ],
        },
        sort_keys=False,
    )


def render_dashboard_provider() -> str:
    return yaml.safe_dump(
        {
            "apiVersion": 1,
            "providers": [
                {
                    "name": "wondernest",
                    "folder": "WonderNest",
                    "type": "file",
                    "disableDeletion": True,
                    "allowUiUpdates": False,
                    "updateIntervalSeconds": 60,
                    "options": {"path": DASHBOARDS_DIR},
                }
            ],
        },
        sort_keys=False,
    )
