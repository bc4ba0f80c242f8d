"""Prometheus, Alertmanager, Grafana and the Postgres and Redis exporters.

Only Grafana and Prometheus are published (on the bind address); the exporters
and Alertmanager live on the internal backend network. Alertmanager joins the
frontend network only when a receiver needs to reach the outside world.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_docker as docker

from components.config import AlertingConfig, Destination, ImagesConfig, MonitoringConfig
from components.local.containers import (
    ContainerSpec,
    Publish,
    SecretFile,
    hardened_container,
    labelled_volume,
    remote_image,
    wget_probe,
)
from components.local.network import Network
from components.local.secrets import Secrets
from components.model import dashboards, monitoring
from components.model.alerts import VOLUMES_DIR, AlertThresholds, render_rule_file, rule_groups
from components.model.naming import Names

MIB = 1024 * 1024
NOBODY = "65534"  # the prom/* and postgres-exporter images' user
REDIS_EXPORTER_UID = "59000"
GRAFANA_UID = "472"
PROMETHEUS_PORT = monitoring.PROMETHEUS_PORT
ALERTMANAGER_PORT = monitoring.ALERTMANAGER_PORT
GRAFANA_PORT = monitoring.GRAFANA_PORT
RULES_FILE = "/etc/prometheus/rules/platform.yml"
CA_FILE = "/run/secrets/ca.crt"


@dataclass(frozen=True)
class MonitoringArgs:
    names: Names
    thresholds: AlertThresholds
    config: MonitoringConfig
    alerting: AlertingConfig
    images: ImagesConfig
    bind_address: IPv4Address
    database: str
    monitoring_role: str
    postgres_host: str
    postgres_port: int
    redis_host: str
    redis_port: int
    api_target: str | None
    """None for an app without metrics."""
    api_metrics_path: str
    network: Network
    secrets: Secrets
    ca_pem: pulumi.Output[str]
    """The stack's CA: the exporters verify Postgres and Redis against it."""
    watched_volumes: Mapping[str, pulumi.Input[str]]
    """Service → the name of its data volume, whose free space is watched."""
    depends_on: tuple[pulumi.Resource, ...]


def receivers(alerting: AlertingConfig) -> monitoring.Receivers:
    def destination(d: Destination) -> monitoring.Destination:
        return monitoring.Destination(
            email_to=d.email,
            webhook_url=d.webhook_url,
            webhook_has_token=d.webhook_token is not None,
            slack_channel=d.slack_channel,
        )

    return monitoring.Receivers(
        page=destination(alerting.page),
        ticket=destination(alerting.ticket),
        email_from=alerting.email_from,
        smarthost=alerting.smtp_smarthost,
        smtp_username=alerting.smtp_username,
        watchdog_url=alerting.watchdog_url,
    )


def receiver_secrets(alerting: AlertingConfig) -> list[SecretFile]:
    """Each destination's secrets as files Alertmanager reads (never in its config)."""
    values = [(monitoring.SMTP_PASSWORD_FILE, alerting.smtp_password)]
    for kind, d in ((monitoring.PAGE, alerting.page), (monitoring.TICKET, alerting.ticket)):
        values += [
            (monitoring.webhook_token_file(kind), d.webhook_token),
            (monitoring.slack_url_file(kind), d.slack_webhook_url),
        ]
    return [
        SecretFile(path, pulumi.Output.secret(value.get_secret_value()), NOBODY)
        for path, value in values
        if value is not None
    ]


class Monitoring(pulumi.ComponentResource):
    grafana_url: pulumi.Output[str]
    prometheus_url: pulumi.Output[str]
    alertmanager_url: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Monitoring", name, None, opts)
        self._postgres_exporter(args)
        self._redis_exporter(args)
        tsdb = labelled_volume("prometheus-data", args.names, "prometheus", pulumi.ResourceOptions(parent=self))
        self._node_exporter(args, tsdb)
        self._alertmanager(args)
        self._prometheus(args, tsdb)
        self._grafana(args)

        self.grafana_url = pulumi.Output.from_input(f"http://{args.bind_address}:{args.config.grafana_port}")
        self.prometheus_url = pulumi.Output.from_input(f"http://{args.bind_address}:{args.config.prometheus_port}")
        # Not published: reach it through Prometheus (/alerts) or from the backend network.
        self.alertmanager_url = pulumi.Output.from_input(f"http://alertmanager:{ALERTMANAGER_PORT}")
        self.register_outputs(
            {
                "grafanaUrl": self.grafana_url,
                "prometheusUrl": self.prometheus_url,
                "alertmanagerUrl": self.alertmanager_url,
            }
        )

    def _postgres_exporter(self, args: MonitoringArgs) -> None:
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        pg_password_file = "/run/secrets/postgres-password"  # noqa: S105 (a path)
        queries_file = "/etc/postgres-exporter/queries.yaml"
        pg_env = monitoring.postgres_exporter_env(
            host=args.postgres_host,
            port=args.postgres_port,
            database=args.database,
            user=args.monitoring_role,
            password_file=pg_password_file,
            ca_file=CA_FILE,
        )
        hardened_container(
            "postgres-exporter",
            ContainerSpec(
                name=names.resource("postgres-exporter"),
                image=remote_image("postgres-exporter-image", args.images.postgres_exporter, child).image_id,
                user=f"{NOBODY}:{NOBODY}",
                memory_bytes=64 * MIB,
                networks=[(args.network.backend.name, ["postgres-exporter"])],
                envs=[f"{k}={v}" for k, v in sorted(pg_env.items())],
                command=monitoring.postgres_exporter_args(
                    listen=f":{monitoring.POSTGRES_EXPORTER_PORT}", queries_path=queries_file
                ),
                config_files={queries_file: monitoring.render_postgres_exporter_queries()},
                secret_files=[
                    SecretFile(pg_password_file, args.secrets.role_password("monitoring"), NOBODY),
                    SecretFile(CA_FILE, args.ca_pem, NOBODY),
                ],
                healthcheck=wget_probe(monitoring.POSTGRES_EXPORTER_PORT, "/"),
                labels=names.labels("postgres-exporter"),
                metrics_job="postgres",
            ),
            pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )

    def _redis_exporter(self, args: MonitoringArgs) -> None:
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        redis_password_file = "/run/secrets/redis-passwords.json"  # noqa: S105 (a path)
        redis_address = f"{args.redis_host}:{args.redis_port}"
        hardened_container(
            "redis-exporter",
            ContainerSpec(
                name=names.resource("redis-exporter"),
                image=remote_image("redis-exporter-image", args.images.redis_exporter, child).image_id,
                user=f"{REDIS_EXPORTER_UID}:{REDIS_EXPORTER_UID}",
                memory_bytes=64 * MIB,
                networks=[(args.network.backend.name, ["redis-exporter"])],
                command=monitoring.redis_exporter_args(
                    address=redis_address,
                    user=names.redis_monitoring_user,
                    password_file=redis_password_file,
                    listen=f":{monitoring.REDIS_EXPORTER_PORT}",
                    ca_file=CA_FILE,
                ),
                secret_files=[
                    SecretFile(
                        redis_password_file,
                        args.secrets.get("redis-monitoring").apply(
                            lambda pw: monitoring.redis_exporter_password_file(redis_address, pw, tls=True)
                        ),
                        REDIS_EXPORTER_UID,
                    ),
                    SecretFile(CA_FILE, args.ca_pem, REDIS_EXPORTER_UID),
                ],
                healthcheck=wget_probe(monitoring.REDIS_EXPORTER_PORT, "/health"),
                labels=names.labels("redis-exporter"),
                metrics_job="redis",
            ),
            pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )

    def _node_exporter(self, args: MonitoringArgs, tsdb: docker.Volume) -> None:
        """The free space of the data volumes, Prometheus's own among them."""
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        watched = {**args.watched_volumes, "prometheus": tsdb.name}
        # statfs needs the mount, not the files: read-only, as nobody with no
        # capabilities, the exporter cannot read what the 0700 data directories hold.
        hardened_container(
            "node-exporter",
            ContainerSpec(
                name=names.resource("node-exporter"),
                image=remote_image("node-exporter-image", args.images.node_exporter, child).image_id,
                user=f"{NOBODY}:{NOBODY}",
                memory_bytes=48 * MIB,
                networks=[(args.network.backend.name, ["node-exporter"])],
                command=monitoring.node_exporter_args(listen=f":{monitoring.NODE_EXPORTER_PORT}"),
                volumes=[
                    docker.ContainerVolumeArgs(
                        volume_name=volume, container_path=f"{VOLUMES_DIR}/{service}", read_only=True
                    )
                    for service, volume in sorted(watched.items())
                ],
                read_only=True,
                healthcheck=wget_probe(monitoring.NODE_EXPORTER_PORT, "/"),
                labels=names.labels("node-exporter"),
                metrics_job="node",
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[tsdb]),
        )

    def _alertmanager(self, args: MonitoringArgs) -> None:
        names, net = args.names, args.network
        child = pulumi.ResourceOptions(parent=self)
        routes_to = receivers(args.alerting)
        alertmanager_networks: list[tuple[pulumi.Input[str], list[str]]] = [(net.backend.name, ["alertmanager"])]
        if routes_to.external:
            # The backend network has no route out; receivers on the internet need one.
            alertmanager_networks.append((net.frontend.name, []))
        am_data = labelled_volume("alertmanager-data", names, "alertmanager", child)
        hardened_container(
            "alertmanager",
            ContainerSpec(
                name=names.resource("alertmanager"),
                image=remote_image("alertmanager-image", args.images.alertmanager, child).image_id,
                user=f"{NOBODY}:{NOBODY}",
                memory_bytes=128 * MIB,
                networks=alertmanager_networks,
                command=[
                    "--config.file=/etc/alertmanager/alertmanager.yml",
                    "--storage.path=/alertmanager",
                    "--cluster.listen-address=",
                ],
                config_files={
                    "/etc/alertmanager/alertmanager.yml": monitoring.render_alertmanager_config(routes_to),
                    f"{monitoring.TEMPLATES_DIR}/{monitoring.TEMPLATE_FILE}": monitoring.NOTIFICATION_TEMPLATES,
                },
                secret_files=receiver_secrets(args.alerting),
                volumes=[docker.ContainerVolumeArgs(volume_name=am_data.name, container_path="/alertmanager")],
                healthcheck=wget_probe(ALERTMANAGER_PORT, "/-/healthy"),
                labels=names.labels("alertmanager"),
                metrics_job="alertmanager",
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[am_data]),
        )

    def _prometheus(self, args: MonitoringArgs, tsdb: docker.Volume) -> None:
        names, net = args.names, args.network
        child = pulumi.ResourceOptions(parent=self)
        targets = monitoring.container_targets(args.api_target)
        prometheus_config = monitoring.render_prometheus_config(
            targets=targets,
            external_labels={"app": names.app, "environment": names.stack},
            alertmanager=targets["alertmanager"],
            rule_files=[RULES_FILE],
            metrics_paths={"api": args.api_metrics_path},
        )
        hardened_container(
            "prometheus",
            ContainerSpec(
                name=names.resource("prometheus"),
                image=remote_image("prometheus-image", args.images.prometheus, child).image_id,
                user=f"{NOBODY}:{NOBODY}",
                memory_bytes=int(args.config.prometheus_memory),
                networks=[(net.backend.name, ["prometheus"]), (net.frontend.name, [])],
                command=[
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={args.config.retention}",
                ],
                config_files={
                    "/etc/prometheus/prometheus.yml": prometheus_config,
                    RULES_FILE: render_rule_file(rule_groups(args.thresholds)),
                },
                volumes=[docker.ContainerVolumeArgs(volume_name=tsdb.name, container_path="/prometheus")],
                publish=[Publish(PROMETHEUS_PORT, args.config.prometheus_port, args.bind_address)],
                healthcheck=wget_probe(PROMETHEUS_PORT, "/-/healthy"),
                labels=names.labels("prometheus"),
                metrics_job="prometheus",
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[tsdb]),
        )

    def _grafana(self, args: MonitoringArgs) -> None:
        names, net = args.names, args.network
        child = pulumi.ResourceOptions(parent=self)
        grafana_data = labelled_volume("grafana-data", names, "grafana", child)
        admin_password_file = "/run/secrets/grafana-admin-password"  # noqa: S105 (a path)
        dashboard_files = {
            f"{dashboards.DASHBOARDS_DIR}/{file}": text
            for file, text in dashboards.dashboards(
                slo_objective=args.alerting.slo_objective,
                database=args.database,
                app_metrics=args.thresholds.app_metrics,
            ).items()
        }
        grafana_env = {
            "GF_SECURITY_ADMIN_USER": "admin",
            "GF_SECURITY_ADMIN_PASSWORD__FILE": admin_password_file,
            "GF_AUTH_ANONYMOUS_ENABLED": "false",
            "GF_USERS_ALLOW_SIGN_UP": "false",
            "GF_USERS_ALLOW_ORG_CREATE": "false",
            "GF_SECURITY_DISABLE_GRAVATAR": "true",
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            "GF_SERVER_ROOT_URL": f"http://{args.bind_address}:{args.config.grafana_port}",
        }
        hardened_container(
            "grafana",
            ContainerSpec(
                name=names.resource("grafana"),
                image=remote_image("grafana-image", args.images.grafana, child).image_id,
                user=f"{GRAFANA_UID}:0",
                memory_bytes=int(args.config.grafana_memory),
                networks=[(net.backend.name, ["grafana"]), (net.frontend.name, [])],
                envs=[f"{k}={v}" for k, v in sorted(grafana_env.items())],
                config_files={
                    "/etc/grafana/provisioning/datasources/prometheus.yml": dashboards.render_datasource(
                        f"http://prometheus:{PROMETHEUS_PORT}"
                    ),
                    "/etc/grafana/provisioning/dashboards/wondernest.yml": dashboards.render_dashboard_provider(),
                    **dashboard_files,
                },
                secret_files=[SecretFile(admin_password_file, args.secrets.get("grafana-admin"), GRAFANA_UID)],
                volumes=[docker.ContainerVolumeArgs(volume_name=grafana_data.name, container_path="/var/lib/grafana")],
                publish=[Publish(GRAFANA_PORT, args.config.grafana_port, args.bind_address)],
                healthcheck=wget_probe(GRAFANA_PORT, "/api/health"),
                labels=names.labels("grafana"),
                metrics_job="grafana",
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[grafana_data]),
        )
