"""The rendered rules under `promtool test rules`: every alert fires in one case
(its labels and annotations checked) and stays silent in another, including
the traffic that must not page: one failure at low volume, a Prometheus only
minutes old, a server whose exporter is gone."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.model.alerts import RUNBOOKS_DOC, AlertThresholds, alerts, render_rule_file, rule_groups, runbook_link
from tests.servers import require_binary

PROMTOOL = "/usr/bin/promtool"
THRESHOLDS = AlertThresholds(slo_objective=0.999, latency_p99_seconds=1.0, database="wondernest")
API = 'job="api",instance="api:8080"'
PG = 'job="postgres",instance="postgres-exporter:9187"'
RD = 'job="redis",instance="redis-exporter:9121"'
PROM = 'job="prometheus",instance="localhost:9090"'
AM = 'job="alertmanager",instance="alertmanager:9093"'
BK = 'job="backups",instance="backups:9200"'
NODE = 'job="node",instance="node-exporter:9100",device="/dev/vda1",fstype="ext4"'
SERVICES = {a.name: a.service for a in alerts(rule_groups(THRESHOLDS)) if a.service is not None}
"""Each alert's fixed service label; the others take it from their series."""


@dataclass
class Case:
    alert: str
    series: dict[str, str]
    eval_time: str
    labels: dict[str, str] | None = None
    """None: the alert must not fire."""
    annotations: dict[str, str] = field(default_factory=dict)
    interval: str = "1m"
    early: str | None = None
    """For a firing case of an alert that waits (its `for`): a time at which
    its condition already holds, but for less than the wait. The alert is
    silent then, and fires then in the rules with every wait taken out."""

    def too_early(self) -> Case:
        """Silent: the condition has held for less than the wait."""
        assert self.early is not None
        return Case(self.alert, self.series, self.early, interval=self.interval)

    def without_wait(self) -> Case:
        """Firing at the same time, in the rules with no wait."""
        assert self.early is not None
        return dataclasses.replace(self, eval_time=self.early, early=None)

    def promtool(self, runbooks: str = RUNBOOKS_DOC, *, annotated: bool = True) -> dict[str, object]:
        expected: list[dict[str, object]] = []
        if self.labels is not None:
            annotations = {"runbook_url": runbook_link(runbooks, self.alert), **self.annotations}
            labels = {**self.labels, **({"service": SERVICES[self.alert]} if self.alert in SERVICES else {})}
            expected = [{"exp_labels": labels, "exp_annotations": annotations if annotated else {}}]
        return {
            "interval": self.interval,
            "input_series": [{"series": s, "values": v} for s, v in self.series.items()],
            "alert_rule_test": [{"eval_time": self.eval_time, "alertname": self.alert, "exp_alerts": expected}],
        }


def scraped(samples: int) -> dict[str, str]:
    """The API's `up` for as long as the traffic: the burn-rate alerts judge a
    window only once Prometheus has scraped the API for that long."""
    return {f"up{{{API}}}": f"1x{samples}"}


def requests(errors_per_min: float, ok_per_min: float, minutes: int) -> dict[str, str]:
    series = 'http_requests_total{{{api},method="GET",route="/api/users/me",status="{status}"}}'
    return {
        series.format(api=API, status="500"): f"0+{errors_per_min}x{minutes}",
        series.format(api=API, status="200"): f"0+{ok_per_min}x{minutes}",
        **scraped(minutes),
    }


BURN_SUMMARY = {"summary": "API is burning its 99.9% availability error budget"}
FAST = {
    **BURN_SUMMARY,
    "description": "The API's 5xx ratio is consuming the error budget fast enough to exhaust it within days.",
}
SLOW = {
    **BURN_SUMMARY,
    "description": (
        "The API's 5xx ratio is consuming the error budget steadily; at this rate it runs out before the window ends."
    ),
}
WITHIN_OBJECTIVE = requests(1, 1099, 400)  # 0.09 % errors: inside a 99.9 % objective


def phases(*spans: tuple[int, int, int]) -> dict[str, str]:
    """User traffic in phases of (samples, ok per sample, errors per sample):
    counters that keep rising at each phase's own pace."""
    series = 'http_requests_total{{{api},method="GET",route="/api/users/me",status="{status}"}}'
    values: dict[str, list[str]] = {"200": [], "500": []}
    totals = {"200": 0, "500": 0}
    for samples, ok, errors in spans:
        for status, step in (("200", ok), ("500", errors)):
            values[status].append(f"{totals[status]}+{step}x{samples - 1}")
            totals[status] += step * samples
    return {
        **{series.format(api=API, status=status): " ".join(parts) for status, parts in values.items()},
        **scraped(sum(samples for samples, _, _ in spans)),
    }


# Six clean hours, then ten minutes of 10 % errors, then clean again: only the
# 1h/5m pair can see it (the 6h ratio stays at 0.28 %, under 6 x the budget).
SHORT_OUTAGE = phases((360, 100, 0), (10, 90, 10), (60, 100, 0))


def probes(per_min: int, minutes: int, status: str = "200") -> dict[str, str]:
    """Background traffic that is not users': liveness and readiness probes."""
    series = 'http_requests_total{{{api},method="GET",route="{route}",status="{status}"}}'
    return {
        series.format(api=API, route=route, status=status): f"0+{per_min}x{minutes}"
        for route in ("/health", "/health/ready")
    }


def outage(ok_per_min: int, errors_per_min: int, start: int, length: int, minutes: int) -> dict[str, str]:
    """Steady user traffic with errors for `length` minutes from minute `start`."""
    series = 'http_requests_total{{{api},method="POST",route="/auth/login",status="{status}"}}'
    failed = errors_per_min * length
    errors = f"0x{start} {errors_per_min}+{errors_per_min}x{length - 1} {failed}x{minutes - start - length}"
    return {
        series.format(api=API, status="200"): f"0+{ok_per_min}x{minutes}",
        series.format(api=API, status="500"): errors,
        **scraped(minutes),
    }


def latency(bucket_with_traffic: str) -> dict[str, str]:
    return {
        f'http_request_duration_seconds_bucket{{{API},method="GET",route="/api/users/me",le="{le}"}}': (
            "0+10x30" if float(le) >= float(bucket_with_traffic) else "0x30"
        )
        for le in ("0.5", "1", "2.5", "+Inf")
    }


def one_failure(minutes: int, at: int) -> dict[str, str]:
    """One request a minute, one of them failing at minute `at`; the API
    starts each route's error series at 0, so the failure is an increase."""
    series = 'http_requests_total{{{api},method="GET",route="/api/users/me",status="{status}"}}'
    return {
        series.format(api=API, status="200"): f"0+1x{at - 1} {at - 1}+1x{minutes - at}",
        series.format(api=API, status="500"): f"0x{at} 1x{minutes - at}",
        **scraped(minutes),
    }


# One request a minute: a single failure pages no one at any point after it,
# and 10 % failing requests do not make HighErrorRate flap.
LOW_TRAFFIC = [
    *(Case(alert, one_failure(180, 120), f"{t}m") for alert in (
        "ApiErrorBudgetBurnFast", "HighErrorRate", "ApiErrorBudgetBurnSlow") for t in (121, 123, 125, 130, 150)),
    *(Case("HighErrorRate", requests(0.1, 0.9, 180), f"{t}m") for t in (60, 95, 130, 170)),
    # Twenty requests in five minutes is enough volume: 20 % of them failing is an outage.
    Case(
        "HighErrorRate",
        requests(1, 3, 20),
        "10m",
        {"severity": "critical", "job": "api"},
        {"summary": "More than 5% of API requests fail", "description": "25% of requests answered 5xx over 5 minutes."},
    ),
]  # fmt: skip

# Prometheus scraping for a quarter of an hour (`make up`, a wiped volume): a
# half-minute outage at minute 10 is not an hour's or three days' burn.
BLIP = phases((10, 100, 0), (1, 50, 50), (10, 100, 0))
YOUNG_PROMETHEUS = [
    *(Case(alert, BLIP, f"{t}m") for alert in ("ApiErrorBudgetBurnFast", "ApiErrorBudgetBurnSlow")
      for t in (12, 15, 20)),
]  # fmt: skip

# The metric an alert reads is gone with what exports it.
GONE = [
    # No API to scrape at all: on AWS the scrape dies with the task.
    Case(
        "ApiDown",
        {f"up{{{PG}}}": "1x5"},
        "3m",
        {"severity": "critical", "job": "api"},
        {
            "summary": "API is down",
            "description": "Prometheus cannot scrape the API's /metrics, or has no API to scrape, for 2 minutes.",
        },
    ),
    Case(
        "PostgresDown",
        {f"up{{{PG}}}": "0x5"},
        "2m",
        {"severity": "critical", "job": "postgres", "instance": "postgres-exporter:9187"},
        {
            "summary": "PostgreSQL is down, or nothing can tell that it is up",
            "description": "postgres_exporter on postgres-exporter:9187 cannot reach the server, "
            "or cannot itself be scraped.",
        },
    ),
    Case(
        "PostgresDown",
        {f"up{{{RD}}}": "1x5"},
        "2m",
        {"severity": "critical", "job": "postgres"},
        {
            "summary": "PostgreSQL is down, or nothing can tell that it is up",
            "description": "postgres_exporter cannot reach the server, or cannot itself be scraped.",
        },
    ),
    Case(
        "RedisDown",
        {f"up{{{RD}}}": "0x5"},
        "2m",
        {"severity": "critical", "job": "redis", "instance": "redis-exporter:9121"},
        {
            "summary": "Redis is down, or nothing can tell that it is up",
            "description": "redis_exporter on redis-exporter:9121 cannot reach Redis, or cannot itself be scraped.",
        },
    ),
    Case(
        "RedisDown",
        {f"up{{{PG}}}": "1x5"},
        "2m",
        {"severity": "critical", "job": "redis"},
        {
            "summary": "Redis is down, or nothing can tell that it is up",
            "description": "redis_exporter cannot reach Redis, or cannot itself be scraped.",
        },
    ),
    # The backup service reported a fresh proof for an hour, then stopped: its
    # backup ages all the same, and after the bound nothing proves any backup.
    *(
        Case(
            "BackupTooOld",
            {f"backup_last_verified_timestamp_seconds{{{BK}}}": "0x12"},
            eval_time,
            {"severity": "critical", "job": "backups"},
            {"summary": "No restore-verified backup in the last 26.9 hours", "description": description},
            interval="5m",
        )
        for eval_time, description in (
            ("27h", "The newest backup proven by a restore is 1d 3h 0m 0s old."),
            ("48h", "The backup service has reported no verified backup for that long."),
        )
    ),
    Case("BackupTooOld", {f"backup_last_verified_timestamp_seconds{{{BK}}}": "0x12"}, "20h", interval="5m"),
]


def volume(service: str, avail: str, samples: int, readonly: int = 0) -> dict[str, str]:
    """A watched volume of 100 bytes, `avail` of them free."""
    labels = f'{NODE},mountpoint="/volumes/{service}"'
    return {
        f"node_filesystem_avail_bytes{{{labels}}}": avail,
        f"node_filesystem_size_bytes{{{labels}}}": f"100x{samples}",
        f"node_filesystem_readonly{{{labels}}}": f"{readonly}x{samples}",
    }


VOLUME_LABELS = {"job": "node", "instance": "node-exporter:9100", "device": "/dev/vda1", "fstype": "ext4"}


def on_the_horizon(alert: str, service: str, avail: str, severity: str, summary: str, description: str) -> list[Case]:
    """A volume whose condition first holds at 6h05m: pending at 7h, firing at 7h05m."""
    labels = {**VOLUME_LABELS, "severity": severity, "service": service, "mountpoint": f"/volumes/{service}"}
    annotations = {"summary": summary, "description": description}
    series = volume(service, avail, 100)
    return [
        Case(alert, series, "7h", None, annotations, interval="5m"),
        Case(alert, series, "425m", labels, annotations, interval="5m"),
    ]


VOLUMES = [
    # 39 % free, losing 43 % a day: full within a day, not within four hours.
    Case(
        "VolumeFillingUp",
        volume("postgres", "39-0.15x100", 100),
        "7h",
        {**VOLUME_LABELS, "severity": "warning", "service": "postgres", "mountpoint": "/volumes/postgres"},
        {
            "summary": "The postgres volume is predicted to fill within a day",
            "description": "/volumes/postgres has 26.4% free and its last six hours run it out of space within "
            "24 hours (volumes on one filesystem alert together).",
        },
        interval="5m",
        early="60m",
    ),
    Case("VolumeFillingUpFast", volume("postgres", "39-0.15x100", 100), "7h", interval="5m"),
    Case("VolumeFillingUp", volume("postgres", "30x100", 100), "7h", interval="5m"),
    # 19 % free, losing 6 % an hour.
    Case(
        "VolumeFillingUpFast",
        volume("backups", "19-0.5x30", 30),
        "2h",
        {**VOLUME_LABELS, "severity": "critical", "service": "backups", "mountpoint": "/volumes/backups"},
        {
            "summary": "The backups volume is predicted to fill within four hours",
            "description": "/volumes/backups has 7% free and its last six hours run it out of space within 4 hours.",
        },
        interval="5m",
        early="60m",
    ),
    Case("VolumeAlmostFull", volume("backups", "19-0.5x30", 30), "2h", interval="5m"),
    Case(
        "VolumeAlmostFull",
        volume("redis", "4x30", 30),
        "20m",
        {**VOLUME_LABELS, "severity": "critical", "service": "redis", "mountpoint": "/volumes/redis"},
        {"summary": "The redis volume is almost full", "description": "/volumes/redis has 4% free."},
        early="14m",
    ),
    # Read-only: nothing will write to it, so it fills no further.
    Case("VolumeAlmostFull", volume("redis", "4x30", 30, readonly=1), "20m"),
    # More free than each prediction's floor (40 % and 20 %): 52 % free, full in 2 h 10 m.
    Case("VolumeFillingUp", volume("postgres", "220-2x100", 100), "7h", interval="5m"),
    Case("VolumeFillingUpFast", volume("postgres", "220-2x100", 100), "7h", interval="5m"),
    # On each prediction's horizon, losing 0.1 % every 5 minutes: at 6 h the
    # volume is full 24 h 0 m 12 s later (4 h 0 m 2 s for the fast one), so its
    # condition holds from 6h05m and it fires an hour after that, not at 7h.
    *on_the_horizon(
        "VolumeFillingUp",
        "postgres",
        "36.004-0.1x100",
        "warning",
        "The postgres volume is predicted to fill within a day",
        "/volumes/postgres has 27.5% free and its last six hours run it out of space within 24 hours (volumes on "
        "one filesystem alert together).",
    ),
    *on_the_horizon(
        "VolumeFillingUpFast",
        "backups",
        "12.00067-0.1x100",
        "critical",
        "The backups volume is predicted to fill within four hours",
        "/volumes/backups has 3.501% free and its last six hours run it out of space within 4 hours.",
    ),
]


CASES: list[Case] = [
    Case(
        "ApiDown",
        {f"up{{{API}}}": "0x5"},
        "3m",
        {"severity": "critical", "job": "api", "instance": "api:8080"},
        {
            "summary": "API instance api:8080 is down",
            "description": "Prometheus cannot scrape the API's /metrics, or has no API to scrape, for 2 minutes.",
        },
        early="1m",
    ),
    Case("ApiDown", {f"up{{{API}}}": "1x5"}, "3m"),
    Case(
        "HighErrorRate",
        requests(6, 54, 20),
        "10m",
        {"severity": "critical", "job": "api"},
        {"summary": "More than 5% of API requests fail", "description": "10% of requests answered 5xx over 5 minutes."},
        early="2m",
    ),
    Case("HighErrorRate", requests(1, 99, 20), "10m"),
    Case(
        "ApiHighLatencyP99",
        latency("2.5"),
        "20m",
        {"severity": "warning", "job": "api"},
        {"summary": "API p99 latency above 1s", "description": "The 99th percentile of request duration is 2.485s."},
        early="10m",
    ),
    Case("ApiHighLatencyP99", latency("0.5"), "20m"),
    # A readiness probe waiting on a slow dependency is not a slow API.
    Case(
        "ApiHighLatencyP99",
        {
            **latency("0.5"),
            **{
                f'http_request_duration_seconds_bucket{{{API},method="GET",route="/health/ready",le="{le}"}}': (
                    "0+50x30" if le == "+Inf" else "0x30"
                )
                for le in ("0.5", "1", "2.5", "+Inf")
            },
        },
        "20m",
    ),
    # A fast burn: 2 % errors, 20 times the budget.
    Case("ApiErrorBudgetBurnFast", requests(2, 98, 90), "70m", {"severity": "critical", "job": "api"}, FAST),
    Case("ApiErrorBudgetBurnFast", requests(1, 199, 200), "150m"),  # 0.5 %: slow, not fast
    # Ten minutes of 10 % failing logins pages, however much probe traffic runs beside them.
    Case(
        "ApiErrorBudgetBurnFast",
        {**outage(100, 10, 60, 10, 90), **probes(600, 90)},
        "70m",
        {"severity": "critical", "job": "api"},
        FAST,
    ),
    # A failing readiness probe is not an outage: users were served.
    Case("ApiErrorBudgetBurnFast", {**requests(0, 100, 90), **probes(60, 90, status="503")}, "70m"),
    Case("HighErrorRate", {**requests(0, 100, 20), **probes(60, 20, status="503")}, "15m"),
    Case("ApiErrorBudgetBurnFast", WITHIN_OBJECTIVE, "6h"),
    # Each burn-rate pair on its own, so each factor and window is needed.
    # 1h/5m: the short outage pages while it lasts...
    Case("ApiErrorBudgetBurnFast", SHORT_OUTAGE, "369m", {"severity": "critical", "job": "api"}, FAST),
    # ...and the page clears once the 5-minute window recovers, though the hour still holds the errors.
    Case("ApiErrorBudgetBurnFast", SHORT_OUTAGE, "390m"),
    # 6h/30m: 0.8 % for hours, under 14.4 x and over 6 x the budget.
    Case("ApiErrorBudgetBurnFast", requests(8, 992, 400), "380m", {"severity": "critical", "job": "api"}, FAST),
    # ...while the slow pairs wait for a day of history to judge a day by.
    Case("ApiErrorBudgetBurnSlow", requests(8, 992, 400), "380m"),
    # 3d/6h: 0.2 %, under 3 x and over 1 x the budget, for three days.
    Case(
        "ApiErrorBudgetBurnSlow",
        phases((900, 998, 2)),
        "74h",
        {"severity": "warning", "job": "api"},
        SLOW,
        interval="5m",
    ),
    Case("ApiErrorBudgetBurnFast", phases((900, 998, 2)), "74h", interval="5m"),
    # 1d/2h: a day at 0.5 % after two busy clean days, the three-day ratio under 1 x.
    Case(
        "ApiErrorBudgetBurnSlow",
        phases((576, 10000, 0), (300, 995, 5)),
        "73h",
        {"severity": "warning", "job": "api"},
        SLOW,
        interval="5m",
    ),
    # Under every threshold: 0.05 % for three days.
    Case("ApiErrorBudgetBurnSlow", phases((900, 19990, 10)), "74h", interval="5m"),
    # A slow burn: 0.5 %, 5 times the budget, below the fast thresholds (6x, 14.4x).
    # A day at 0.5 %: 5 times the budget over 1 d and 2 h, below the fast thresholds (6x, 14.4x).
    Case(
        "ApiErrorBudgetBurnSlow",
        phases((320, 995, 5)),
        "26h",
        {"severity": "warning", "job": "api"},
        SLOW,
        interval="5m",
    ),
    Case("ApiErrorBudgetBurnFast", phases((320, 995, 5)), "26h", interval="5m"),
    # The same 0.5 % over the two and a half hours a new Prometheus holds says nothing about a day.
    Case("ApiErrorBudgetBurnSlow", requests(1, 199, 150), "150m"),
    Case("ApiErrorBudgetBurnSlow", WITHIN_OBJECTIVE, "6h"),
    Case(
        "PostgresDown",
        {f"pg_up{{{PG}}}": "0x5", f"up{{{PG}}}": "1x5"},
        "2m",
        {"severity": "critical", "job": "postgres", "instance": "postgres-exporter:9187"},
        {
            "summary": "PostgreSQL is down, or nothing can tell that it is up",
            "description": "postgres_exporter on postgres-exporter:9187 cannot reach the server, "
            "or cannot itself be scraped.",
        },
        early="0m",
    ),
    Case("PostgresDown", {f"pg_up{{{PG}}}": "1x5", f"up{{{PG}}}": "1x5"}, "2m"),
    # Down at one evaluation only: pending for its minute, not yet a page.
    Case("PostgresDown", {f"pg_up{{{PG}}}": "1 1 0 0", f"up{{{PG}}}": "1x3"}, "2m"),
    Case(
        "PostgresRestarted",
        {f"pg_postmaster_start_time_seconds{{{PG}}}": "240x10"},
        "5m",
        {"severity": "warning", "job": "postgres", "instance": "postgres-exporter:9187"},
        {
            "summary": "PostgreSQL restarted",
            "description": "The server on postgres-exporter:9187 started less than 5 minutes ago.",
        },
    ),
    Case("PostgresRestarted", {f"pg_postmaster_start_time_seconds{{{PG}}}": "240x10"}, "10m"),
    Case(
        "PostgresConnectionsHigh",
        {
            f'pg_stat_activity_count{{{PG},datname="wondernest",state="active"}}': "85x10",
            f"pg_settings_max_connections{{{PG}}}": "100x10",
        },
        "6m",
        {"severity": "warning", "instance": "postgres-exporter:9187"},
        {
            "summary": "PostgreSQL connections above 80% of max_connections",
            "description": "85% of max_connections are in use on postgres-exporter:9187.",
        },
        early="4m",
    ),
    Case(
        "PostgresConnectionsHigh",
        {
            f'pg_stat_activity_count{{{PG},datname="wondernest",state="active"}}': "50x10",
            f"pg_settings_max_connections{{{PG}}}": "100x10",
        },
        "6m",
    ),
    Case(
        "PostgresDeadlocks",
        {f'pg_stat_database_deadlocks{{{PG},datname="wondernest"}}': "0+1x15"},
        "12m",
        {"severity": "warning", "job": "postgres", "instance": "postgres-exporter:9187", "datname": "wondernest"},
        {"summary": "PostgreSQL deadlocks", "description": "10 deadlocks in database wondernest in 10 minutes."},
    ),
    Case("PostgresDeadlocks", {f'pg_stat_database_deadlocks{{{PG},datname="wondernest"}}': "5x15"}, "12m"),
    Case(
        "PostgresHighRollbackRatio",
        {
            f'pg_stat_database_xact_rollback{{{PG},datname="wondernest"}}': "0+2x30",
            f'pg_stat_database_xact_commit{{{PG},datname="wondernest"}}': "0+8x30",
        },
        "25m",
        {"severity": "warning", "job": "postgres", "instance": "postgres-exporter:9187", "datname": "wondernest"},
        {
            "summary": "More than 10% of PostgreSQL transactions roll back",
            "description": "20% of transactions in wondernest roll back.",
        },
        early="17m",
    ),
    Case(
        "PostgresHighRollbackRatio",
        {
            f'pg_stat_database_xact_rollback{{{PG},datname="wondernest"}}': "0x30",
            f'pg_stat_database_xact_commit{{{PG},datname="wondernest"}}': "0+8x30",
        },
        "25m",
    ),
    Case(
        "PostgresExporterErrors",
        {f"pg_exporter_last_scrape_error{{{PG}}}": "1x10"},
        "6m",
        {"severity": "warning", "job": "postgres", "instance": "postgres-exporter:9187"},
        {
            "summary": "postgres_exporter scrapes fail",
            "description": "The exporter on postgres-exporter:9187 reports errors; Postgres metrics are incomplete.",
        },
        early="4m",
    ),
    Case("PostgresExporterErrors", {f"pg_exporter_last_scrape_error{{{PG}}}": "0x10"}, "6m"),
    Case(
        "RedisDown",
        {f"redis_up{{{RD}}}": "0x5", f"up{{{RD}}}": "1x5"},
        "2m",
        {"severity": "critical", "job": "redis", "instance": "redis-exporter:9121"},
        {
            "summary": "Redis is down, or nothing can tell that it is up",
            "description": "redis_exporter on redis-exporter:9121 cannot reach Redis, or cannot itself be scraped.",
        },
        early="0m",
    ),
    Case("RedisDown", {f"redis_up{{{RD}}}": "1x5", f"up{{{RD}}}": "1x5"}, "2m"),
    Case(
        "RedisMemoryHigh",
        {f"redis_memory_used_bytes{{{RD}}}": "95x10", f"redis_memory_max_bytes{{{RD}}}": "100x10"},
        "6m",
        {"severity": "warning", "job": "redis", "instance": "redis-exporter:9121"},
        {
            "summary": "Redis memory above 90% of maxmemory",
            "description": "95% of maxmemory is used; eviction is imminent or under way.",
        },
        early="4m",
    ),
    Case(
        "RedisMemoryHigh",
        {f"redis_memory_used_bytes{{{RD}}}": "50x10", f"redis_memory_max_bytes{{{RD}}}": "100x10"},
        "6m",
    ),
    Case(
        "RedisRejectedConnections",
        {f"redis_rejected_connections_total{{{RD}}}": "0+1x10"},
        "6m",
        {"severity": "warning", "job": "redis", "instance": "redis-exporter:9121"},
        {
            "summary": "Redis rejects connections",
            "description": "5 connections were rejected in 5 minutes (maxclients reached).",
        },
    ),
    Case("RedisRejectedConnections", {f"redis_rejected_connections_total{{{RD}}}": "3x10"}, "6m"),
    Case(
        "RedisEvictions",
        {f"redis_evicted_keys_total{{{RD}}}": "0+10x10"},
        "6m",
        {"severity": "warning", "job": "redis", "instance": "redis-exporter:9121"},
        {
            "summary": "Redis evicts keys",
            "description": "50 keys were evicted in 5 minutes: the dataset does not fit maxmemory.",
        },
    ),
    Case("RedisEvictions", {f"redis_evicted_keys_total{{{RD}}}": "7x10"}, "6m"),
    Case(
        "RedisRdbSaveMissing",
        {f"redis_rdb_last_bgsave_status{{{RD}}}": "0x5"},
        "1m",
        {"severity": "warning", "job": "redis", "instance": "redis-exporter:9121"},
        {
            "summary": "Redis has not saved an RDB snapshot",
            "description": "The last background save failed, or changes have waited more than 30 minutes for one.",
        },
    ),
    Case(
        "RedisRdbSaveMissing",
        {
            f"redis_rdb_last_bgsave_status{{{RD}}}": "1x40",
            f"redis_rdb_changes_since_last_save{{{RD}}}": "5x40",
            f"redis_rdb_last_save_timestamp_seconds{{{RD}}}": "0x40",
        },
        "40m",
        {"severity": "warning", "job": "redis", "instance": "redis-exporter:9121"},
        {
            "summary": "Redis has not saved an RDB snapshot",
            "description": "The last background save failed, or changes have waited more than 30 minutes for one.",
        },
    ),
    Case(
        "RedisRdbSaveMissing",
        {
            f"redis_rdb_last_bgsave_status{{{RD}}}": "1x40",
            f"redis_rdb_changes_since_last_save{{{RD}}}": "0x40",
            f"redis_rdb_last_save_timestamp_seconds{{{RD}}}": "0x40",
        },
        "40m",
    ),
    Case(
        "BackupTooOld",
        {f"backup_last_verified_timestamp_seconds{{{BK}}}": "-100000x10"},
        "6m",
        {"severity": "critical", "job": "backups"},
        {
            "summary": "No restore-verified backup in the last 26.9 hours",
            "description": "The newest backup proven by a restore is 1d 3h 52m 40s old.",
        },
        early="4m",
    ),
    Case("BackupTooOld", {f"backup_last_verified_timestamp_seconds{{{BK}}}": "0x10"}, "6m"),
    Case(
        "BackupOffsiteTooOld",
        {f"backup_last_offsite_timestamp_seconds{{{BK}}}": "-100000x10", f"backup_offsite_enabled{{{BK}}}": "1x10"},
        "6m",
        {"severity": "warning", "job": "backups", "instance": "backups:9200"},
        {
            "summary": "No verified backup copied off-site in the last 26.9 hours",
            "description": "The newest backup with an off-site copy is 1d 3h 52m 40s old; the local ones are not, "
            "so a lost volume would lose more than a day.",
        },
        early="4m",
    ),
    # No off-site copy configured: nothing to be late.
    Case(
        "BackupOffsiteTooOld",
        {f"backup_last_offsite_timestamp_seconds{{{BK}}}": "-100000x10", f"backup_offsite_enabled{{{BK}}}": "0x10"},
        "6m",
    ),
    Case(
        "BackupOffsiteTooOld",
        {f"backup_last_offsite_timestamp_seconds{{{BK}}}": "0x10", f"backup_offsite_enabled{{{BK}}}": "1x10"},
        "6m",
    ),
    Case(
        "BackupFailed",
        {f'backup_failures_total{{{BK},stage="verify"}}': "0+1x10"},
        "6m",
        {"severity": "warning", "job": "backups", "instance": "backups:9200", "stage": "verify"},
        {
            "summary": "A backup cycle failed at its verify stage",
            "description": "The backup job failed to verify in the last hour; see its log.",
        },
    ),
    Case("BackupFailed", {f'backup_failures_total{{{BK},stage="verify"}}': "0x10"}, "6m"),
    Case(
        "Watchdog",
        {},
        "0m",
        {"severity": "none"},
        {
            "summary": "The alerting pipeline works",
            "description": "Always firing. If its notifications stop arriving, Prometheus or Alertmanager is broken.",
        },
    ),
    Case(
        "TargetDown",
        {f"up{{{RD}}}": "0x10", f"up{{{API}}}": "0x10"},
        "6m",
        {"severity": "warning", "job": "redis", "instance": "redis-exporter:9121", "service": "redis"},
        {
            "summary": "Scrape target redis on redis-exporter:9121 is down",
            "description": "Prometheus has not scraped it for 5 minutes.",
        },
        early="4m",
    ),
    Case("TargetDown", {f"up{{{RD}}}": "1x10"}, "6m"),
    Case(
        "PrometheusConfigReloadFailed",
        {f"prometheus_config_last_reload_successful{{{PROM}}}": "0x10"},
        "6m",
        {"severity": "warning", "job": "prometheus", "instance": "localhost:9090"},
        {
            "summary": "Prometheus configuration reload failed",
            "description": "Prometheus on localhost:9090 runs an older configuration.",
        },
        early="4m",
    ),
    Case("PrometheusConfigReloadFailed", {f"prometheus_config_last_reload_successful{{{PROM}}}": "1x10"}, "6m"),
    Case(
        "PrometheusRuleEvaluationFailures",
        {f'prometheus_rule_evaluation_failures_total{{{PROM},rule_group="platform.yml;api"}}': "0+1x10"},
        "6m",
        {"severity": "warning", "job": "prometheus", "instance": "localhost:9090", "rule_group": "platform.yml;api"},
        {
            "summary": "Prometheus rule evaluations fail",
            "description": "5 rule evaluations failed in group platform.yml;api.",
        },
    ),
    Case(
        "PrometheusRuleEvaluationFailures",
        {f'prometheus_rule_evaluation_failures_total{{{PROM},rule_group="platform.yml;api"}}': "2x10"},
        "6m",
    ),
    Case(
        "PrometheusAlertmanagerUnreachable",
        {f"prometheus_notifications_alertmanagers_discovered{{{PROM}}}": "0x10"},
        "6m",
        {"severity": "critical", "job": "prometheus", "instance": "localhost:9090"},
        {
            "summary": "Prometheus cannot deliver alerts to Alertmanager",
            "description": "No Alertmanager is discovered, or sending alerts to it fails.",
        },
        early="4m",
    ),
    Case(
        "PrometheusAlertmanagerUnreachable",
        {
            f"prometheus_notifications_alertmanagers_discovered{{{PROM}}}": "1x10",
            f'prometheus_notifications_errors_total{{{PROM},alertmanager="http://am:9093/api/v2/alerts"}}': "0x10",
        },
        "6m",
    ),
    Case(
        "AlertmanagerConfigReloadFailed",
        {f"alertmanager_config_last_reload_successful{{{AM}}}": "0x10"},
        "6m",
        {"severity": "warning", "job": "alertmanager", "instance": "alertmanager:9093"},
        {
            "summary": "Alertmanager configuration reload failed",
            "description": "Alertmanager on alertmanager:9093 runs an older configuration.",
        },
        early="4m",
    ),
    Case("AlertmanagerConfigReloadFailed", {f"alertmanager_config_last_reload_successful{{{AM}}}": "1x10"}, "6m"),
    Case(
        "AlertmanagerNotificationsFailing",
        {f'alertmanager_notifications_failed_total{{{AM},integration="webhook"}}': "0+1x10"},
        "6m",
        {"severity": "warning", "job": "alertmanager", "instance": "alertmanager:9093", "integration": "webhook"},
        {
            "summary": "Alertmanager notifications fail",
            "description": "Notifications through webhook fail: alerts may not reach anyone.",
        },
        early="5m",
    ),
    Case(
        "AlertmanagerNotificationsFailing",
        {f'alertmanager_notifications_failed_total{{{AM},integration="webhook"}}': "4x10"},
        "6m",
    ),
    *LOW_TRAFFIC,
    *YOUNG_PROMETHEUS,
    *GONE,
    *VOLUMES,
]


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    names = {a.name for a in alerts(rule_groups(THRESHOLDS))}
    firing = {c.alert for c in CASES if c.labels is not None}
    silent = {c.alert for c in CASES if c.labels is None}
    assert firing == names
    # Watchdog fires by definition; it is the only alert with no silent case.
    assert silent == names - {"Watchdog"}


def test_every_alert_that_waits_has_a_case_before_its_wait() -> None:
    """The wait (`for`) of each alert is proven by promtool, not only read back
    from the file: a firing case taken early, while its condition has held for
    less than the wait, is silent, and fires with the wait taken out."""
    waits = {a.name: a.for_ for a in alerts(rule_groups(THRESHOLDS))}
    early = [c for c in CASES if c.early is not None]
    assert {c.alert for c in early} == {name for name, wait in waits.items() if wait != "0m"}
    for case in early:
        assert case.labels is not None, case
        assert case.early is not None and _duration(case.early) < _duration(case.eval_time), case


def test_every_alert_carries_severity_service_summary_description_and_runbook() -> None:
    runbooks = (Path(__file__).resolve().parents[1] / "docs" / "runbooks.md").read_text()
    for alert in alerts(rule_groups(THRESHOLDS)):
        rule: dict[str, Any] = alert.rule()
        assert rule["labels"]["severity"] in {"critical", "warning", "none"}
        # Inhibition and grouping go by service: fixed, or set from the series (label_replace).
        assert "service" in rule["labels"] or '"service"' in alert.expr, alert.name
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks.md#runbook-{alert.name.lower()}"
        assert f'<a id="runbook-{alert.name.lower()}"></a>' in runbooks, f"no runbook section for {alert.name}"


def test_the_runbook_links_follow_where_the_runbooks_are_published() -> None:
    published = "https://git.example.org/platform/blob/main/docs/runbooks.md"
    thresholds = dataclasses.replace(THRESHOLDS, runbook_url=published)
    links = {a.name: a.rule()["annotations"]["runbook_url"] for a in alerts(rule_groups(thresholds))}  # type: ignore[index]
    assert links["BackupTooOld"] == f"{published}#runbook-backuptooold"
    assert all(link.startswith(f"{published}#runbook-") for link in links.values())


def test_each_alert_is_rendered_with_the_wait_its_model_gives() -> None:
    """`for`: how long the condition must hold before the alert fires; none
    (fire at once) where the model gives 0m."""
    groups = yaml.safe_load(render_rule_file(rule_groups(THRESHOLDS)))["groups"]
    rendered = {rule["alert"]: rule.get("for") for group in groups for rule in group["rules"] if "alert" in rule}
    waits = {alert.name: alert.for_ for alert in alerts(rule_groups(THRESHOLDS))}
    assert rendered == {name: None if wait == "0m" else wait for name, wait in waits.items()}
    assert "0m" in waits.values() and set(waits.values()) - {"0m"}


def test_an_app_without_the_bundled_metrics_gets_no_api_rules() -> None:
    """An app whose contract exposes no metrics has no API series to read and
    no API target to scrape: ApiDown would page for it from the start."""
    with_api = rule_groups(THRESHOLDS)
    without = rule_groups(dataclasses.replace(THRESHOLDS, app_metrics=False))
    assert [g.name for g in without] == [g.name for g in with_api if not g.name.startswith("api")]
    assert not any("api" in a.name.lower() or 'job="api"' in a.expr for a in alerts(without))


def test_the_rule_groups_keep_their_names() -> None:
    """A group's name, with its file's, is its identity in Prometheus: a reload
    carries the alerts' pending and firing state over only to the group of the
    same file and name (rules/manager.go, Manager.Update, GroupKey), so a group
    renamed by a change would resolve its firing alerts and make them wait out
    their `for` again."""
    assert [group.name for group in rule_groups(THRESHOLDS)] == [
        "api-slo-recording",
        "api-slo-alerts",
        "api",
        "postgres",
        "redis",
        "backups",
        "volumes",
        "monitoring",
    ]


@pytest.mark.parametrize(
    ("max_age_seconds", "hours"),
    # 97,033 s is 26.954 hours: a tenth's rounding on its edge.
    [(96_840, "26.9"), (97_033, "27.0"), (3_600, "1.0")],
)
def test_the_backup_alerts_state_their_bound_in_hours(max_age_seconds: int, hours: str) -> None:
    thresholds = dataclasses.replace(THRESHOLDS, backup_max_age_seconds=max_age_seconds)
    summaries = {a.name: a.summary for a in alerts(rule_groups(thresholds))}
    assert summaries["BackupTooOld"] == f"No restore-verified backup in the last {hours} hours"
    assert summaries["BackupOffsiteTooOld"] == f"No verified backup copied off-site in the last {hours} hours"


@pytest.mark.servers
def test_promtool_checks_and_unit_tests_pass(tmp_path: Path) -> None:
    rules = tmp_path / "platform.yml"
    rules.write_text(render_rule_file(rule_groups(THRESHOLDS)))
    assert_promtool_passes(rules, tmp_path)


def assert_promtool_passes(rules: Path, tmp_path: Path, runbooks: str = RUNBOOKS_DOC) -> None:
    """`promtool check rules`, then every firing and silent case under `promtool test rules`,
    the rules linking the runbooks at `runbooks`; and each alert that waits,
    taken before its wait: silent in these rules, firing in them once no alert waits.

    The cases run in small batches, the shortest first, one promtool per CPU:
    rules that break a case mostly break a short one, and the first failing
    batch ends the run (the batches already running finish and report too),
    so a broken rule file fails in seconds instead of after every days-long case."""
    require_binary(PROMTOOL, "prometheus")
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    # promtool evaluates the groups of one step in map order unless told: an
    # alert group run before the recording group it reads sees the previous
    # step's values, and a case on a window's edge passes or fails by chance.
    # The file's own order puts each recording group before its readers.
    document = yaml.safe_load(rules.read_text())
    order = [group["name"] for group in document["groups"]]
    # The same rules with no alert waiting (and no annotations, which the
    # firing cases before their wait do not pin): each case taken before its
    # alert's wait fires there, so the silence in the real rules is the wait's.
    waitless = tmp_path / "waitless.yml"
    for rule in (rule for group in document["groups"] for rule in group["rules"] if "alert" in rule):
        rule.pop("for", None)
        rule.pop("annotations", None)
    waitless.write_text(yaml.safe_dump(document, sort_keys=False))
    early = [c for c in CASES if c.early is not None]
    runs = [
        (rules, [*CASES, *(c.too_early() for c in early)], True),
        (waitless, [c.without_wait() for c in early], False),
    ]
    planned = [(rule_file, annotated, batch) for rule_file, cases, annotated in runs for batch in _batches(cases)]
    files: list[Path] = []
    # Both runs' batches by their shortest case, as _batches orders one run's.
    for rule_file, annotated, batch in sorted(planned, key=lambda plan: _steps(plan[2][0])):
        tests = tmp_path / f"tests-{len(files):03d}.yml"
        # One file per sample interval, evaluated at that interval: the cases
        # that span days run at 5m steps, the rest at 1m.
        content = {
            "rule_files": [str(rule_file)],
            "evaluation_interval": batch[0].interval,
            "group_eval_order": order,
            "tests": [c.promtool(runbooks, annotated=annotated) for c in batch],
        }
        tests.write_text(yaml.safe_dump(content, sort_keys=False))
        files.append(tests)
    assert sum(len(yaml.safe_load(f.read_text())["tests"]) for f in files) == len(CASES) + 2 * len(early)

    def promtool_test(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, check=False)

    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        running = [pool.submit(promtool_test, path) for path in files]
        for future in as_completed(running):
            if future.cancelled():
                continue
            result = future.result()
            if result.returncode != 0:
                failed.append(result.stdout + result.stderr)
                for waiting in running:
                    waiting.cancel()
    assert not failed, "\n".join(failed)


BATCH_COST = 120
"""About half a second of one promtool's work: 5 ms an evaluation step on
these rules, and about ten steps' worth to set up each case."""


def _batches(cases: list[Case]) -> list[list[Case]]:
    """The cases in files of one sample interval each, the shortest first,
    each file costing at most BATCH_COST unless one case alone costs more."""
    batches: list[list[Case]] = []
    cost = 0
    for case in sorted(cases, key=_steps):
        batch = batches[-1] if batches else None
        if batch is None or batch[0].interval != case.interval or cost + _cost(case) > BATCH_COST:
            batches.append([case])
            cost = _cost(case)
        else:
            batch.append(case)
            cost += _cost(case)
    return batches


def _cost(case: Case) -> int:
    return _steps(case) + 10


def _steps(case: Case) -> int:
    """How many times promtool evaluates the rules for this case."""
    return _duration(case.eval_time) // _duration(case.interval)


def _duration(text: str) -> int:
    """A duration as the cases write it (`30s`, `1m`, `5m`, `74h`) in seconds."""
    return int(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]


@pytest.mark.parametrize("objective", [0.99, 0.999, 0.9995])
def test_burn_thresholds_follow_the_objective(objective: float) -> None:
    groups = rule_groups(AlertThresholds(objective, 1.0, "wondernest"))
    fast = next(a for a in alerts(groups) if a.name == "ApiErrorBudgetBurnFast")
    budget = 1 - objective
    assert f"(14.4 * {budget:.6g})" in fast.expr and f"(6.0 * {budget:.6g})" in fast.expr
