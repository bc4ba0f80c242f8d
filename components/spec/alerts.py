"""Recording and alert rules, as data; rendered to the rule files Prometheus
(and, on AWS, Amazon Managed Service for Prometheus) loads unchanged.

Every alert carries `severity`, `summary`, `description` and a `runbook`
annotation linking its section in docs/runbooks.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import yaml

RUNBOOKS_DOC = "docs/runbooks.md"
"""Where the runbooks are in the repository; `alerting.runbookUrl` may say where they are published."""
API_JOB = "api"
# (long window, short window, burn-rate factor, severity): the SRE workbook's
# multiwindow, multi-burn-rate alerts for a 30-day error budget.
BURN_RATES: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# Liveness and readiness probes are not what users ask for: counted, a failing
# readiness probe would page as an outage, and their steady volume would dilute
# real errors below every threshold. (Scrapes go to a listener of their own and
# are never counted.)
NOT_USER_TRAFFIC = ("/health", "/health/ready")
SLI = f'job="{API_JOB}",route!~"{"|".join(NOT_USER_TRAFFIC)}"'


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str = "0m"
    extra_labels: dict[str, str] = field(default_factory=dict)
    runbooks: str = RUNBOOKS_DOC

    def rule(self) -> dict[str, object]:
        rule: dict[str, object] = {
            "alert": self.name,
            "expr": self.expr,
            "labels": {"severity": self.severity, **self.extra_labels},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook": f"{self.runbooks}#runbook-{self.name.lower()}",
            },
        }
        if self.for_ != "0m":
            rule["for"] = self.for_
        return rule


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str

    def rule(self) -> dict[str, object]:
        return {"record": self.record, "expr": self.expr}


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: Sequence[Alert | Recording]
    interval: str | None = None

    def render(self) -> dict[str, object]:
        group: dict[str, object] = {"name": self.name, "rules": [r.rule() for r in self.rules]}
        if self.interval:
            group["interval"] = self.interval
        return group


@dataclass(frozen=True)
class AlertThresholds:
    slo_objective: float
    latency_p99_seconds: float
    database: str
    backup_max_age_seconds: int = 96_840
    """From the backup schedule: 1.1 x its period plus a margin (spec/backups.py)."""
    runbook_url: str = RUNBOOKS_DOC


def slo_ratio(window: str) -> str:
    return f"job:slo_errors_per_request:ratio_rate{window}"


def api_rules(t: AlertThresholds) -> list[RuleGroup]:
    budget = 1 - t.slo_objective
    recordings = [
        Recording(
            slo_ratio(window),
            f'sum by (job) (rate(http_requests_total{{{SLI},status=~"5.."}}[{window}]))\n'
            f"/\nsum by (job) (rate(http_requests_total{{{SLI}}}[{window}]))",
        )
        for window in SLO_WINDOWS
    ]
    burn: list[Alert] = []
    for severity, name, wording in (
        ("critical", "ApiErrorBudgetBurnFast", "fast enough to exhaust it within days"),
        ("warning", "ApiErrorBudgetBurnSlow", "steadily; at this rate it runs out before the window ends"),
    ):
        clauses = [
            f"({slo_ratio(long)} > ({factor} * {budget:.6g}) and {slo_ratio(short)} > ({factor} * {budget:.6g}))"
            for long, short, factor, sev in BURN_RATES
            if sev == severity
        ]
        burn.append(
            Alert(
                name,
                "\nor\n".join(clauses),
                severity,
                f"API is burning its {t.slo_objective * 100:g}% availability error budget",
                f"The API's 5xx ratio is consuming the error budget {wording}.",
            )
        )
    api = [
        Alert(
            "ApiDown",
            f'up{{job="{API_JOB}"}} == 0',
            "critical",
            "API instance {{ $labels.instance }} is down",
            "Prometheus cannot scrape the API's /metrics for 2 minutes.",
            for_="2m",
        ),
        Alert(
            "HighErrorRate",
            f'sum by (job) (rate(http_requests_total{{{SLI},status=~"5.."}}[5m]))\n'
            f"/\nsum by (job) (rate(http_requests_total{{{SLI}}}[5m])) > 0.05",
            "critical",
            "More than 5% of API requests fail",
            "{{ $value | humanizePercentage }} of requests answered 5xx over 5 minutes.",
            for_="2m",
        ),
        Alert(
            "ApiHighLatencyP99",
            "histogram_quantile(0.99,\n"
            f"  sum by (le, job) (rate(http_request_duration_seconds_bucket{{{SLI}}}[5m]))\n"
            f") > {t.latency_p99_seconds:g}",
            "warning",
            f"API p99 latency above {t.latency_p99_seconds:g}s",
            "The 99th percentile of request duration is {{ $value | humanizeDuration }}.",
            for_="10m",
        ),
    ]
    return [
        RuleGroup("api-slo-recording", recordings),
        RuleGroup("api-slo-alerts", burn),
        RuleGroup("api", api),
    ]


def postgres_rules(t: AlertThresholds) -> RuleGroup:
    db = t.database
    return RuleGroup(
        "postgres",
        [
            Alert(
                "PostgresDown",
                "pg_up == 0",
                "critical",
                "PostgreSQL is down",
                "postgres_exporter on {{ $labels.instance }} cannot reach the server.",
                for_="1m",
            ),
            Alert(
                "PostgresRestarted",
                "time() - pg_postmaster_start_time_seconds < 300",
                "warning",
                "PostgreSQL restarted",
                "The server on {{ $labels.instance }} started less than 5 minutes ago.",
            ),
            Alert(
                "PostgresConnectionsHigh",
                "sum by (instance) (pg_stat_activity_count)\n"
                "/ on (instance)\nmax by (instance) (pg_settings_max_connections) > 0.8",
                "warning",
                "PostgreSQL connections above 80% of max_connections",
                "{{ $value | humanizePercentage }} of max_connections are in use on {{ $labels.instance }}.",
                for_="5m",
            ),
            Alert(
                "PostgresDeadlocks",
                f'increase(pg_stat_database_deadlocks{{datname="{db}"}}[10m]) > 0',
                "warning",
                "PostgreSQL deadlocks",
                "{{ $value }} deadlocks in database {{ $labels.datname }} in 10 minutes.",
            ),
            Alert(
                "PostgresHighRollbackRatio",
                f'rate(pg_stat_database_xact_rollback{{datname="{db}"}}[10m])\n'
                f'/\n(rate(pg_stat_database_xact_commit{{datname="{db}"}}[10m])'
                f' + rate(pg_stat_database_xact_rollback{{datname="{db}"}}[10m])) > 0.1\n'
                f'and\nrate(pg_stat_database_xact_commit{{datname="{db}"}}[10m]) > 0.1',
                "warning",
                "More than 10% of PostgreSQL transactions roll back",
                "{{ $value | humanizePercentage }} of transactions in {{ $labels.datname }} roll back.",
                for_="10m",
            ),
            Alert(
                "PostgresExporterErrors",
                "pg_exporter_last_scrape_error == 1",
                "warning",
                "postgres_exporter scrapes fail",
                "The exporter on {{ $labels.instance }} reports errors; Postgres metrics are incomplete.",
                for_="5m",
            ),
        ],
    )


def redis_rules() -> RuleGroup:
    return RuleGroup(
        "redis",
        [
            Alert(
                "RedisDown",
                "redis_up == 0",
                "critical",
                "Redis is down",
                "redis_exporter on {{ $labels.instance }} cannot reach Redis.",
                for_="1m",
            ),
            Alert(
                "RedisMemoryHigh",
                "redis_memory_used_bytes / redis_memory_max_bytes > 0.9 and redis_memory_max_bytes > 0",
                "warning",
                "Redis memory above 90% of maxmemory",
                "{{ $value | humanizePercentage }} of maxmemory is used; eviction is imminent or under way.",
                for_="5m",
            ),
            Alert(
                "RedisRejectedConnections",
                "increase(redis_rejected_connections_total[5m]) > 0",
                "warning",
                "Redis rejects connections",
                "{{ $value }} connections were rejected in 5 minutes (maxclients reached).",
            ),
            Alert(
                "RedisEvictions",
                "increase(redis_evicted_keys_total[5m]) > 0",
                "warning",
                "Redis evicts keys",
                "{{ $value }} keys were evicted in 5 minutes: the dataset does not fit maxmemory.",
            ),
            Alert(
                "RedisRdbSaveMissing",
                "redis_rdb_last_bgsave_status == 0\nor\n"
                "(redis_rdb_changes_since_last_save > 0 and time() - redis_rdb_last_save_timestamp_seconds > 1800)",
                "warning",
                "Redis has not saved an RDB snapshot",
                "The last background save failed, or changes have waited more than 30 minutes for one.",
            ),
        ],
    )


def backup_rules(t: AlertThresholds) -> RuleGroup:
    hours = t.backup_max_age_seconds / 3600
    return RuleGroup(
        "backups",
        [
            Alert(
                "BackupTooOld",
                f"time() - backup_last_verified_timestamp_seconds > {t.backup_max_age_seconds}",
                "critical",
                f"No restore-verified backup in the last {hours:.1f} hours",
                "The newest backup proven by a restore is {{ $value | humanizeDuration }} old.",
                for_="5m",
            ),
            Alert(
                "BackupOffsiteTooOld",
                f"time() - backup_last_offsite_timestamp_seconds > {t.backup_max_age_seconds}\n"
                "and on (job, instance) backup_offsite_enabled == 1",
                "warning",
                f"No verified backup copied off-site in the last {hours:.1f} hours",
                "The newest backup with an off-site copy is {{ $value | humanizeDuration }} old; "
                "the local ones are not, so a lost volume would lose more than a day.",
                for_="5m",
            ),
            Alert(
                "BackupFailed",
                "increase(backup_failures_total[1h]) > 0",
                "warning",
                "A backup cycle failed at its {{ $labels.stage }} stage",
                "The backup job failed to {{ $labels.stage }} in the last hour; see its log.",
            ),
        ],
    )


def meta_rules() -> RuleGroup:
    return RuleGroup(
        "monitoring",
        [
            Alert(
                "Watchdog",
                "vector(1)",
                "none",
                "The alerting pipeline works",
                "Always firing. If its notifications stop arriving, Prometheus or Alertmanager is broken.",
            ),
            Alert(
                "TargetDown",
                f'up{{job!="{API_JOB}"}} == 0',
                "warning",
                "Scrape target {{ $labels.job }} on {{ $labels.instance }} is down",
                "Prometheus has not scraped it for 5 minutes.",
                for_="5m",
            ),
            Alert(
                "PrometheusConfigReloadFailed",
                "prometheus_config_last_reload_successful == 0",
                "warning",
                "Prometheus configuration reload failed",
                "Prometheus on {{ $labels.instance }} runs an older configuration.",
                for_="5m",
            ),
            Alert(
                "PrometheusRuleEvaluationFailures",
                "increase(prometheus_rule_evaluation_failures_total[5m]) > 0",
                "warning",
                "Prometheus rule evaluations fail",
                "{{ $value }} rule evaluations failed in group {{ $labels.rule_group }}.",
            ),
            Alert(
                "PrometheusAlertmanagerUnreachable",
                "prometheus_notifications_alertmanagers_discovered < 1\nor\n"
                "rate(prometheus_notifications_errors_total[5m]) > 0",
                "critical",
                "Prometheus cannot deliver alerts to Alertmanager",
                "No Alertmanager is discovered, or sending alerts to it fails.",
                for_="5m",
            ),
            Alert(
                "AlertmanagerConfigReloadFailed",
                "alertmanager_config_last_reload_successful == 0",
                "warning",
                "Alertmanager configuration reload failed",
                "Alertmanager on {{ $labels.instance }} runs an older configuration.",
                for_="5m",
            ),
            Alert(
                "AlertmanagerNotificationsFailing",
                "rate(alertmanager_notifications_failed_total[5m]) > 0",
                "warning",
                "Alertmanager notifications fail",
                "Notifications through {{ $labels.integration }} fail: alerts may not reach anyone.",
                for_="5m",
            ),
        ],
    )


def rule_groups(t: AlertThresholds) -> list[RuleGroup]:
    groups = [*api_rules(t), postgres_rules(t), redis_rules(), backup_rules(t), meta_rules()]
    return [
        replace(g, rules=[replace(r, runbooks=t.runbook_url) if isinstance(r, Alert) else r for r in g.rules])
        for g in groups
    ]


def render_rule_file(groups: Sequence[RuleGroup]) -> str:
    return yaml.safe_dump({"groups": [g.render() for g in groups]}, sort_keys=False, width=120)


def alerts(groups: Sequence[RuleGroup]) -> list[Alert]:
    return [r for g in groups for r in g.rules if isinstance(r, Alert)]
