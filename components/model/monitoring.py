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
    "node": "15s",
}

SECRETS_DIR = "/etc/alertmanager/secrets"
SMTP_PASSWORD_FILE = f"{SECRETS_DIR}/smtp-password"
TEMPLATES_DIR = "/etc/alertmanager/templates"
TEMPLATE_FILE = "wondernest.tmpl"
PAGE, TICKET = "page", "ticket"
"""The receivers of critical and warning alerts."""


def webhook_token_file(kind: str) -> str:
    return f"{SECRETS_DIR}/{kind}-webhook-token"


def slack_url_file(kind: str) -> str:
    return f"{SECRETS_DIR}/{kind}-slack-webhook-url"


def render_prometheus_config(
    *,
    targets: Mapping[str, str],
    external_labels: Mapping[str, str],
    alertmanager: str,
    rule_files: Sequence[str],
    metrics_paths: Mapping[str, str] | None = None,
) -> str:
    """`targets` maps each job to its `host:port`; jobs absent from it are not
    scraped. Each job's path is /metrics unless `metrics_paths` says otherwise."""
    paths = metrics_paths or {}
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
                "metrics_path": paths.get(job, "/metrics"),
                "static_configs": [{"targets": [targets[job]]}],
            }
            for job, interval in SCRAPE_INTERVALS.items()
            if job in targets
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class Destination:
    """One receiver's integrations; secrets are never here, only whether they are set."""

    email_to: str | None = None
    webhook_url: str | None = None
    webhook_has_token: bool = False
    slack_channel: str | None = None

    @property
    def configured(self) -> bool:
        return any((self.email_to, self.webhook_url, self.slack_channel))


@dataclass(frozen=True)
class Receivers:
    """Where pages and tickets go; with neither set, alerts stay visible in
    Alertmanager's UI and API and go nowhere else."""

    page: Destination = Destination()
    ticket: Destination = Destination()
    email_from: str | None = None
    smarthost: str | None = None
    smtp_username: str | None = None
    watchdog_url: str | None = None

    @property
    def external(self) -> bool:
        return self.page.configured or self.ticket.configured or self.watchdog_url is not None


# Every message lists each alert with its summary, description and runbook
# link. Alertmanager groups by service, so one message may carry several.
NOTIFICATION_TEMPLATES = """\
{{ define "wondernest.title" -}}
[{{ .Receiver | toUpper }}{{ if eq .Status "resolved" }} RESOLVED{{ end }}] {{ .GroupLabels.service }}: \
{{ if .CommonLabels.alertname }}{{ .CommonLabels.alertname }}{{ else }}{{ .Alerts | len }} alerts{{ end }}
{{- end }}

{{ define "wondernest.text" -}}
{{ range .Alerts -}}
{{ if eq .Status "resolved" }}[resolved] {{ end }}{{ .Labels.alertname }}: {{ .Annotations.summary }}
{{ .Annotations.description }}
Runbook: {{ .Annotations.runbook_url }}

{{ end -}}
{{- end }}
"""


def _integrations(destination: Destination, kind: str) -> dict[str, object]:
    integrations: dict[str, object] = {}
    if destination.webhook_url:
        webhook: dict[str, object] = {"url": destination.webhook_url, "send_resolved": True}
        if destination.webhook_has_token:
            webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": webhook_token_file(kind)}}
        integrations["webhook_configs"] = [webhook]
    if destination.slack_channel:
        integrations["slack_configs"] = [
            {
                "api_url_file": slack_url_file(kind),
                "channel": destination.slack_channel,
                "send_resolved": True,
                "title": '{{ template "wondernest.title" . }}',
                "text": '{{ template "wondernest.text" . }}',
            }
        ]
    if destination.email_to:
        integrations["email_configs"] = [
            {
                "to": destination.email_to,
                "send_resolved": True,
                "headers": {"Subject": '{{ template "wondernest.title" . }}'},
                # Plain text: the default HTML body shows the runbook link as text among the labels.
                "html": "",
                "text": '{{ template "wondernest.text" . }}',
            }
        ]
    return integrations


def routing() -> dict[str, object]:
    """The route tree and inhibitions both targets' Alertmanagers use; receivers
    `default`, `page`, `ticket` and `watchdog` are each target's to define.

    Grouped by service, one incident is one message however many of the
    service's alerts it trips; while a service has a page firing, its tickets
    are held back (a down database also trips its scrape target's warning)."""
    return {
        "route": {
            "receiver": "default",
            "group_by": ["service"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            "routes": [
                {
                    # The dead man's switch: notified every minute, so its absence is the alarm.
                    "matchers": ['alertname="Watchdog"'],
                    "receiver": "watchdog",
                    "group_by": ["alertname"],
                    "group_wait": "0s",
                    "group_interval": "1m",
                    "repeat_interval": "1m",
                },
                {
                    "matchers": ['severity="critical"'],
                    "receiver": PAGE,
                    "group_wait": "10s",
                    "repeat_interval": "1h",
                },
                {"matchers": ['severity="warning"'], "receiver": TICKET, "repeat_interval": "12h"},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["service"],
            }
        ],
    }


def render_amp_alertmanager_definition(*, topics: dict[str, str], region: str) -> str:
    """Amazon Managed Prometheus' Alertmanager: the same routes, pages and
    tickets each published to their own SNS topic (AMP's only receiver kind),
    with the same message template as the local Alertmanager's."""

    def sns(kind: str) -> dict[str, object]:
        return {
            "sns_configs": [
                {
                    "topic_arn": topics[kind],
                    "sigv4": {"region": region},
                    "send_resolved": True,
                    # SNS subjects are at most 100 characters.
                    "subject": '{{ template "wondernest.title" . }}',
                    "message": '{{ template "wondernest.text" . }}',
                    "attributes": {"severity": "critical" if kind == PAGE else "warning"},
                }
            ]
        }

    inner = {
        "templates": [TEMPLATE_FILE],
        **routing(),
        "receivers": [
            {"name": "default"},
            {"name": PAGE, **sns(PAGE)},
            {"name": TICKET, **sns(TICKET)},
            # AMP cannot call a dead man's switch URL; Watchdog's absence shows
            # as a CloudWatch alarm on the alerts the workspace receives.
            {"name": "watchdog"},
        ],
    }
    body = yaml.safe_dump(inner, sort_keys=False, width=120)
    # Block scalars, so a preview's diff of the definition reads line by line.
    return (
        "template_files:\n"
        f"  {TEMPLATE_FILE}: |\n"
        + "".join(f"    {line}\n" for line in NOTIFICATION_TEMPLATES.splitlines())
        + "alertmanager_config: |\n"
        + "".join(f"  {line}\n" for line in body.splitlines())
    )


def render_alertmanager_config(receivers: Receivers) -> str:
    global_: dict[str, object] = {"resolve_timeout": "5m"}
    if receivers.smarthost:
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
        "templates": [f"{TEMPLATES_DIR}/*.tmpl"],
        **routing(),
        "receivers": [
            {"name": "default"},
            {"name": PAGE, **_integrations(receivers.page, PAGE)},
            {"name": TICKET, **_integrations(receivers.ticket, TICKET)},
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
NODE_EXPORTER_PORT = 9100


def container_targets(api_target: str | None) -> dict[str, str]:
    """Each job's address on the backend network, by container alias; no `api`
    job for an app without metrics."""
    return {
        **({} if api_target is None else {"api": api_target}),
        "postgres": f"postgres-exporter:{POSTGRES_EXPORTER_PORT}",
        "redis": f"redis-exporter:{REDIS_EXPORTER_PORT}",
        "prometheus": f"localhost:{PROMETHEUS_PORT}",
        "alertmanager": f"alertmanager:{ALERTMANAGER_PORT}",
        "grafana": f"grafana:{GRAFANA_PORT}",
        "backups": f"backups:{BACKUPS_PORT}",
        "node": f"node-exporter:{NODE_EXPORTER_PORT}",
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


def node_exporter_args(*, listen: str) -> list[str]:
    """Only the filesystem collector: the exporter runs in a container, where
    the host's CPU, memory and network collectors would describe the container
    or nothing. Mounts outside the watched volumes are left out."""
    return [
        f"--web.listen-address={listen}",
        "--collector.disable-defaults",
        "--collector.filesystem",
        "--collector.filesystem.mount-points-exclude=^/(|dev|etc|proc|sys)($|/)",
    ]


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
