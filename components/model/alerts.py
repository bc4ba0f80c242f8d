"""Recording and alert rules, as data; rendered to the rule files Prometheus
(and, on AWS, Amazon Managed Service for Prometheus) loads unchanged.

Every alert carries `severity` (critical pages, warning files a ticket) and
`service` labels, and `summary`, `description` and `runbook_url` annotations,
the last linking its section in docs/runbooks.md. Alertmanager groups by
`service` and silences a service's warnings while one of its pages fires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

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
NODE_JOB = "node"
VOLUMES_DIR = "/volumes"
"""Where the node exporter mounts each watched volume, read-only, as `<dir>/<service>`."""


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str = "0m"
    service: str | None = None
    """The service label; None when the expression sets it from the series (a
    rule's own labels would override it)."""
    runbooks: str = RUNBOOKS_DOC

    def rule(self) -> dict[str, object]:
        labels = {"severity": self.severity}
        if self.service is not None:
            labels["service"] = self.service
        rule: dict[str, object] = {
            "alert": self.name,
            "expr": self.expr,
            "labels": labels,
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": runbook_link(self.runbooks, self.name),
            },
        }
        if self.for_ != "0m":
            rule["for"] = self.for_
        return rule


def runbook_link(runbooks: str, anchor: str) -> str:
    return f"{runbooks}#runbook-{anchor.lower()}"


def in_service(service: str, rules: Sequence[Alert]) -> list[Alert]:
    return [replace(rule, service=service) for rule in rules]


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

    def render(self) -> dict[str, object]:
        return {"name": self.name, "rules": [r.rule() for r in self.rules]}


@dataclass(frozen=True)
class AlertThresholds:
    slo_objective: float
    latency_p99_seconds: float
    database: str
    backup_max_age_seconds: int = 96_840
    """From the backup schedule: 1.1 x its period plus a margin (model/backups.py)."""
    runbook_url: str = RUNBOOKS_DOC
    app_metrics: bool = True
    """The app exposes metrics, with the bundled API's HTTP series: its rules apply."""
    min_requests: int = 20
    """Fewest user requests in a ratio alert's short window for its ratio to
    count: below it, one failure among a handful of requests is not an outage."""


def slo_ratio(window: str) -> str:
    return f"job:slo_errors_per_request:ratio_rate{window}"


def slo_volume(window: str) -> str:
    return f"job:slo_requests:increase{window}"


def history(window: str) -> str:
    """Prometheus has scraped the API since at least `window` ago: a long
    window judged on a few minutes of data (a new stack, a wiped volume)
    would read a short blip as a lasting burn."""
    return f'count by (job) (up{{job="{API_JOB}"}} offset {window})'


def api_rules(t: AlertThresholds) -> list[RuleGroup]:
    budget = 1 - t.slo_objective
    short_windows = sorted({short for _, short, _, _ in BURN_RATES}, key=SLO_WINDOWS.index)
    recordings = [
        Recording(
            slo_ratio(window),
            f'sum by (job) (rate(http_requests_total{{{SLI},status=~"5.."}}[{window}]))\n'
            f"/\nsum by (job) (rate(http_requests_total{{{SLI}}}[{window}]))",
        )
        for window in SLO_WINDOWS
    ] + [
        Recording(slo_volume(window), f"sum by (job) (increase(http_requests_total{{{SLI}}}[{window}]))")
        for window in short_windows
    ]
    burn: list[Alert] = []
    for severity, name, wording in (
        ("critical", "ApiErrorBudgetBurnFast", "fast enough to exhaust it within days"),
        ("warning", "ApiErrorBudgetBurnSlow", "steadily; at this rate it runs out before the window ends"),
    ):
        clauses = [
            f"(\n  {slo_ratio(long)} > ({factor} * {budget:.6g})\n"
            f"  and {slo_ratio(short)} > ({factor} * {budget:.6g})\n"
            f"  and {slo_volume(short)} >= {t.min_requests}\n"
            f"  and on (job) {history(long)}\n)"
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
            # Where the scrape goes with the task (a sidecar on AWS), a dead API
            # leaves no `up` series at all.
            f'up{{job="{API_JOB}"}} == 0\nor\nabsent(up{{job="{API_JOB}"}})',
            "critical",
            "API {{ with $labels.instance }}instance {{ . }} {{ end }}is down",
            "Prometheus cannot scrape the API's /metrics, or has no API to scrape, for 2 minutes.",
            for_="2m",
        ),
        Alert(
            "HighErrorRate",
            f"{slo_ratio('5m')} > 0.05\nand\n{slo_volume('5m')} >= {t.min_requests}",
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
        RuleGroup("api-slo-alerts", in_service("api", burn)),
        RuleGroup("api", in_service("api", api)),
    ]


def down(job: str, metric: str) -> str:
    """The exporter says its server is down, the exporter cannot be scraped, or
    there is nothing to scrape: each is a server nobody can see is up."""
    return f'{metric} == 0\nor\nup{{job="{job}"}} == 0\nor\nabsent(up{{job="{job}"}})'


def postgres_rules(t: AlertThresholds) -> RuleGroup:
    db = t.database
    rules = [
        Alert(
            "PostgresDown",
            down("postgres", "pg_up"),
            "critical",
            "PostgreSQL is down, or nothing can tell that it is up",
            "postgres_exporter {{ with $labels.instance }}on {{ . }} {{ end }}cannot reach the server, "
            "or cannot itself be scraped.",
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
    ]
    return RuleGroup("postgres", in_service("postgres", rules))


def redis_rules() -> RuleGroup:
    rules = [
        Alert(
            "RedisDown",
            down("redis", "redis_up"),
            "critical",
            "Redis is down, or nothing can tell that it is up",
            "redis_exporter {{ with $labels.instance }}on {{ . }} {{ end }}cannot reach Redis, "
            "or cannot itself be scraped.",
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
    ]
    return RuleGroup("redis", in_service("redis", rules))


def backup_rules(t: AlertThresholds) -> RuleGroup:
    hours = t.backup_max_age_seconds / 3600
    age = t.backup_max_age_seconds
    verified = 'backup_last_verified_timestamp_seconds{job="backups"}'
    rules = [
        Alert(
            "BackupTooOld",
            # The newest proof the service reported within the bound, so a service
            # that stopped reporting still ages its last backup; after the bound
            # with no report at all, nothing proves any backup.
            f"time() - max by (job) (max_over_time({verified}[{age}s])) > {age}\n"
            f"or\nabsent_over_time({verified}[{age}s])",
            "critical",
            f"No restore-verified backup in the last {hours:.1f} hours",
            "{{ if gt $value 1.0 }}The newest backup proven by a restore is {{ $value | humanizeDuration }} old."
            "{{ else }}The backup service has reported no verified backup for that long.{{ end }}",
            for_="5m",
        ),
        Alert(
            "BackupOffsiteTooOld",
            f"time() - backup_last_offsite_timestamp_seconds > {age}\n"
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
    ]
    return RuleGroup("backups", in_service("backups", rules))


def volume_rules() -> RuleGroup:
    """Disk space of the volumes the node exporter watches, after the
    node-mixin's filesystem alerts: a prediction on the last six hours' trend,
    and a floor. Each alert's service is the volume's."""
    selector = f'job="{NODE_JOB}",mountpoint=~"{VOLUMES_DIR}/.+"'
    free = f"node_filesystem_avail_bytes{{{selector}}} / node_filesystem_size_bytes{{{selector}}}"
    writable = f"node_filesystem_readonly{{{selector}}} == 0"

    def of_volume(expr: str) -> str:
        return f'label_replace(\n  {expr},\n  "service", "$1", "mountpoint", "{VOLUMES_DIR}/(.+)"\n)'

    def filling(hours: int, free_below: float) -> str:
        return of_volume(
            f"{free} < {free_below}\n  and predict_linear(node_filesystem_avail_bytes{{{selector}}}[6h], "
            f"{hours * 3600}) < 0\n  and {writable}"
        )

    return RuleGroup(
        "volumes",
        [
            Alert(
                "VolumeFillingUp",
                filling(24, 0.4),
                "warning",
                "The {{ $labels.service }} volume is predicted to fill within a day",
                "{{ $labels.mountpoint }} has {{ $value | humanizePercentage }} free and its last six hours "
                "run it out of space within 24 hours (volumes on one filesystem alert together).",
                for_="1h",
            ),
            Alert(
                "VolumeFillingUpFast",
                filling(4, 0.2),
                "critical",
                "The {{ $labels.service }} volume is predicted to fill within four hours",
                "{{ $labels.mountpoint }} has {{ $value | humanizePercentage }} free and its last six hours "
                "run it out of space within 4 hours.",
                for_="1h",
            ),
            Alert(
                "VolumeAlmostFull",
                of_volume(f"{free} < 0.05\n  and {writable}"),
                "critical",
                "The {{ $labels.service }} volume is almost full",
                "{{ $labels.mountpoint }} has {{ $value | humanizePercentage }} free.",
                for_="15m",
            ),
        ],
    )


def meta_rules() -> list[RuleGroup]:
    prometheus = [
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
    ]
    alertmanager = [
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
    ]
    return [
        RuleGroup(
            "monitoring",
            [
                Alert(
                    "Watchdog",
                    "vector(1)",
                    "none",
                    "The alerting pipeline works",
                    "Always firing. If its notifications stop arriving, Prometheus or Alertmanager is broken.",
                    service="alerting",
                ),
                Alert(
                    "TargetDown",
                    # The service is the job: a down server's own alert (PostgresDown,
                    # RedisDown) silences this one for it.
                    f'label_replace(up{{job!="{API_JOB}"}} == 0, "service", "$1", "job", "(.+)")',
                    "warning",
                    "Scrape target {{ $labels.job }} on {{ $labels.instance }} is down",
                    "Prometheus has not scraped it for 5 minutes.",
                    for_="5m",
                ),
                *in_service("prometheus", prometheus),
                *in_service("alertmanager", alertmanager),
            ],
        )
    ]


def rule_groups(t: AlertThresholds) -> list[RuleGroup]:
    groups = [
        *(api_rules(t) if t.app_metrics else []),
        postgres_rules(t),
        redis_rules(),
        backup_rules(t),
        volume_rules(),
        *meta_rules(),
    ]
    return [
        replace(g, rules=[replace(r, runbooks=t.runbook_url) if isinstance(r, Alert) else r for r in g.rules])
        for g in groups
    ]


def render_rule_file(groups: Sequence[RuleGroup]) -> str:
    return yaml.safe_dump({"groups": [g.render() for g in groups]}, sort_keys=False, width=120)


def alerts(groups: Sequence[RuleGroup]) -> list[Alert]:
    return [r for g in groups for r in g.rules if isinstance(r, Alert)]
