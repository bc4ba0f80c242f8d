"""prometheus.yml and alertmanager.yml, rendered from the platform's own facts.

Prometheus scrapes the exporters, never Postgres or Redis themselves (their
wire protocols are not the exposition format). Alertmanager routes by
severity; receivers come from the stack config, their secrets as files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import yaml

# Job name → scrape interval. The API at 5 s, as in the seed; everything else 15 s.
SCRAPE_INTERVALS: dict[str, str] = {
    "api": "5s",
    "postgres": "15s",
    "redis": "15s",
    "prometheus": "15s",
    "alertmanager": "15s",
    "grafana": "15s",
    "backups": "15s",
}

SECRETS_DIR = "/etc/alertmanager/secrets"
WEBHOOK_TOKEN_FILE = f"{SECRETS_DIR}/webhook-token"
SLACK_URL_FILE = f"{SECRETS_DIR}/slack-webhook-url"
SMTP_PASSWORD_FILE = f"{SECRETS_DIR}/smtp-password"


def render_prometheus_config(
    *,
    targets: Mapping[str, str],
    external_labels: Mapping[str, str],
    alertmanager: str,
    rule_files: Sequence[str],
) -> str:
    """`targets` maps each job to its `host:port`; jobs absent from it are not scraped."""
    unknown = set(targets) - set(SCRAPE_INTERVALS)
    if unknown:
        raise ValueError(f"no scrape settings for jobs {sorted(unknown)}")
    config = {
        "global": {
            "scrape_interval": "15s",
            "evaluation_interval": "15s",
            "scrape_timeout": "10s",
            "external_labels": dict(external_labels),
        },
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_interval": interval,
                "scrape_timeout": "4s" if interval == "5s" else "10s",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [targets[job]]}],
            }
            for job, interval in SCRAPE_INTERVALS.items()
            if job in targets
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class Receivers:
    """Where notifications go; with none of these set, alerts stay visible in
    Alertmanager's UI and API and go nowhere else."""

    webhook_url: str | None = None
    webhook_has_token: bool = False
    slack_channel: str | None = None
    email_to: str | None = None
    email_from: str | None = None
    smarthost: str | None = None
    smtp_username: str | None = None
    watchdog_url: str | None = None

    @property
    def external(self) -> bool:
        return any((self.webhook_url, self.slack_channel, self.email_to, self.watchdog_url))


def _integrations(r: Receivers, severity: str) -> dict[str, object]:
    integrations: dict[str, object] = {}
    if r.webhook_url:
        webhook: dict[str, object] = {"url": r.webhook_url, "send_resolved": True}
        if r.webhook_has_token:
            webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": WEBHOOK_TOKEN_FILE}}
        integrations["webhook_configs"] = [webhook]
    if r.slack_channel:
        integrations["slack_configs"] = [
            {
                "api_url_file": SLACK_URL_FILE,
                "channel": r.slack_channel,
                "send_resolved": True,
                "title": f"[{severity.upper()}] {{{{ .CommonLabels.alertname }}}}",
                "text": "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.description }}\n{{ end }}",
            }
        ]
    if r.email_to:
        integrations["email_configs"] = [{"to": r.email_to, "send_resolved": True}]
    return integrations


def routing() -> dict[str, object]:
    """The route tree and inhibitions both targets' Alertmanagers use; receivers
    `default`, `critical`, `warning` and `watchdog` are each target's to define."""
    return {
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "job"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            "routes": [
                {
                    # The dead man's switch: notified every minute, so its absence is the alarm.
                    "matchers": ['alertname="Watchdog"'],
                    "receiver": "watchdog",
                    "group_wait": "0s",
                    "group_interval": "1m",
                    "repeat_interval": "1m",
                },
                {
                    "matchers": ['severity="critical"'],
                    "receiver": "critical",
                    "group_wait": "10s",
                    "repeat_interval": "1h",
                },
                {"matchers": ['severity="warning"'], "receiver": "warning", "repeat_interval": "12h"},
            ],
        },
        "inhibit_rules": [
            {
                # A critical alert silences the warning of the same name on the same instance.
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["alertname", "instance"],
            }
        ],
    }


def render_amp_alertmanager_definition(*, topic_arn: str, region: str) -> str:
    """Amazon Managed Prometheus' Alertmanager: the same routes, every severity
    published to one SNS topic (AMP's only receiver kind), with the severity as
    a message attribute subscribers can filter on."""

    def sns(severity: str) -> dict[str, object]:
        return {
            "sns_configs": [
                {
                    "topic_arn": topic_arn,
                    "sigv4": {"region": region},
                    "send_resolved": True,
                    "subject": f"[{severity.upper()}] {{{{ .CommonLabels.alertname }}}}",
                    "attributes": {"severity": severity},
                }
            ]
        }

    inner = {
        **routing(),
        "receivers": [
            {"name": "default"},
            {"name": "critical", **sns("critical")},
            {"name": "warning", **sns("warning")},
            # AMP cannot call a dead man's switch URL; Watchdog's absence shows
            # as a CloudWatch alarm on the alerts the workspace receives.
            {"name": "watchdog"},
        ],
    }
    body = yaml.safe_dump(inner, sort_keys=False, width=120)
    # A block scalar, so a preview's diff of the definition reads line by line.
    return "alertmanager_config: |\n" + "".join(f"  {line}\n" for line in body.splitlines())


def render_alertmanager_config(receivers: Receivers) -> str:
    global_: dict[str, object] = {"resolve_timeout": "5m"}
    if receivers.email_to:
        global_.update(
            smtp_smarthost=receivers.smarthost,
            smtp_from=receivers.email_from,
            smtp_require_tls=True,
        )
        if receivers.smtp_username:
            global_.update(smtp_auth_username=receivers.smtp_username, smtp_auth_password_file=SMTP_PASSWORD_FILE)
    watchdog: dict[str, object] = {"name": "watchdog"}
    if receivers.watchdog_url:
        watchdog["webhook_configs"] = [{"url": receivers.watchdog_url, "send_resolved": False}]
    config = {
        "global": global_,
        **routing(),
        "receivers": [
            {"name": "default"},
            {"name": "critical", **_integrations(receivers, "critical")},
            {"name": "warning", **_integrations(receivers, "warning")},
            watchdog,
        ],
    }
    return yaml.safe_dump(config, sort_keys=False, width=120)


POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
GRAFANA_PORT = 3000
BACKUPS_PORT = 9200


def container_targets(api_target: str) -> dict[str, str]:
    """Each job's address on the backend network, by container alias."""
    return {
        "api": api_target,
        "postgres": f"postgres-exporter:{POSTGRES_EXPORTER_PORT}",
        "redis": f"redis-exporter:{REDIS_EXPORTER_PORT}",
        "prometheus": f"localhost:{PROMETHEUS_PORT}",
        "alertmanager": f"alertmanager:{ALERTMANAGER_PORT}",
        "grafana": f"grafana:{GRAFANA_PORT}",
        "backups": f"backups:{BACKUPS_PORT}",
    }


def postgres_exporter_env(
    *, host: str, port: int, database: str, user: str, password_file: str, ca_file: str | None = None
) -> dict[str, str]:
    """postgres_exporter's settings; the password only ever as a file. With
    `ca_file`, TLS with the server's certificate verified and its name checked."""
    tls = "sslmode=disable" if ca_file is None else f"sslmode=verify-full&sslrootcert={ca_file}"
    return {
        "DATA_SOURCE_URI": f"{host}:{port}/{database}?{tls}",
        "DATA_SOURCE_USER": user,
        "DATA_SOURCE_PASS_FILE": password_file,
    }


# postgres_exporter 0.11 has no postmaster collector; the restart alert and the
# uptime panel need the start time, so it comes from one extra query.
POSTGRES_EXPORTER_QUERIES = {
    "pg_postmaster": {
        "query": "SELECT extract(epoch FROM pg_postmaster_start_time()) AS start_time_seconds",
        "master": True,
        "metrics": [{"start_time_seconds": {"usage": "GAUGE", "description": "When the postmaster started"}}],
    }
}


def render_postgres_exporter_queries() -> str:
    return yaml.safe_dump(POSTGRES_EXPORTER_QUERIES, sort_keys=False)


def postgres_exporter_args(*, listen: str, queries_path: str) -> list[str]:
    return [f"--web.listen-address={listen}", f"--extend.query-path={queries_path}"]


def redis_exporter_args(
    *, address: str, user: str, password_file: str, listen: str, ca_file: str | None = None
) -> list[str]:
    """redis_exporter reads passwords from a JSON file mapping each address to
    its password. With `ca_file`, TLS (`rediss://`) verified against that CA."""
    tls = [] if ca_file is None else [f"--tls-ca-cert-file={ca_file}"]
    return [
        f"--redis.addr={redis_url(address, tls=ca_file is not None)}",
        f"--redis.user={user}",
        f"--redis.password-file={password_file}",
        *tls,
        f"--web.listen-address={listen}",
    ]


def redis_url(address: str, *, tls: bool) -> str:
    return f"{'rediss' if tls else 'redis'}://{address}"


def redis_exporter_password_file(address: str, password: str, *, tls: bool = False) -> str:
    return json.dumps({redis_url(address, tls=tls): password})
