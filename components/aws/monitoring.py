"""Observability on AWS: Amazon Managed Service for Prometheus with the platform's
rule file and routes, Amazon Managed Grafana with the same dashboards, the
exporters as a small ECS service, and CloudWatch alarms for what AWS exposes only
there. Pages and tickets reach people through a KMS-encrypted SNS topic each.

Grafana is Amazon Managed Grafana rather than Grafana on ECS: sign-in goes
through IAM Identity Center instead of a shared admin password, there is no
server, database or volume to patch and back up, and the dashboards are
resources whose JSON a preview diffs one by one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumiverse_grafana as grafana

from components.aws.iam import policy_document, service_role
from components.aws.network import Network
from components.aws.registry import ecr_image
from components.aws.secrets import Secrets
from components.aws.tasks import TASKS_SERVICE, Container, HealthCheck, execution_role, log_group, task_definition
from components.aws.tls import RDS_CA_BUNDLE
from components.config import Destination
from components.model import dashboards, monitoring
from components.model.alerts import AlertThresholds, render_rule_file, rule_groups, runbook_link
from components.model.collector import render_collector_config
from components.model.naming import Names

# Relative to the project, like app/: the build context is an input of the image
# resource, and an absolute path would show as a change from another checkout.
EXPORTER_DIR = Path("components/aws/exporter")
EXPORTER_QUERIES = "/etc/postgres_exporter/queries.yaml"
COLLECTOR_IMAGE = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3"
COLLECTOR_UID = "10001"
NOBODY = "65534"
# Managed Grafana service-account tokens live at most 30 days. The token is
# named for the half of the month it was minted in, so any `pulumi up` mints a
# fresh one at most ~16 days after the last and never uses an expired one.
TOKEN_TTL_SECONDS = 30 * 86_400


def token_period(today: dt.date) -> str:
    return f"{today:%Y-%m}{'a' if today.day <= 15 else 'b'}"


@dataclass(frozen=True)
class Alarm:
    """A CloudWatch alarm on one metric, notifying its topic both ways: a page
    wakes someone, a ticket waits for working hours."""

    key: str
    description: str
    namespace: str
    metric: str
    dimensions: Mapping[str, pulumi.Input[str]]
    statistic: str
    comparison: str
    threshold: float
    period: int = 300
    periods: int = 3
    missing: str = "missing"
    page: bool = False
    runbook: str | None = None
    """The runbook section, when several alarms share one (per node, per replica)."""


@dataclass(frozen=True)
class MonitoringArgs:
    names: Names
    region: str
    thresholds: AlertThresholds
    slo_objective: float
    page: Destination
    ticket: Destination
    log_retention_days: int
    secrets: Secrets


def collector(
    targets: dict[str, str],
    names: Names,
    remote_write_url: pulumi.Output[str],
    region: str,
    *,
    metrics_paths: Mapping[str, str] | None = None,
) -> Container:
    """The ADOT sidecar every task that exposes metrics carries."""
    return Container(
        name="metrics-collector",
        image=COLLECTOR_IMAGE,
        user=f"{COLLECTOR_UID}:{COLLECTOR_UID}",
        # Losing metrics must not stop the service it watches.
        essential=False,
        environment={
            "AOT_CONFIG_CONTENT": remote_write_url.apply(
                lambda url: render_collector_config(
                    targets=targets,
                    external_labels={"app": names.app, "environment": names.stack},
                    remote_write_url=url,
                    region=region,
                    metrics_paths=metrics_paths or {},
                )
            )
        },
        health_check=HealthCheck(("CMD", "/healthcheck"), interval=30, timeout=5, start_period=10),
        stop_timeout=10,
    )


class Monitoring(pulumi.ComponentResource):
    workspace: aws.amp.Workspace
    topics: dict[str, aws.sns.Topic]
    """The page and ticket topics, by kind."""
    remote_write_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:Monitoring", name, None, opts)
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        key_arn = args.secrets.key.arn
        self._names = names
        self._args = args

        self.topics = {
            kind: self._topic(kind, destination, args)
            for kind, destination in ((monitoring.PAGE, args.page), (monitoring.TICKET, args.ticket))
        }

        amp_logs = log_group(
            "prometheus-logs",
            names,
            "prometheus",
            retention_days=args.log_retention_days,
            kms_key_arn=key_arn,
            parent=self,
        )
        self.workspace = aws.amp.Workspace(
            "prometheus",
            alias=names.resource("prometheus"),
            kms_key_arn=key_arn,
            logging_configuration=aws.amp.WorkspaceLoggingConfigurationArgs(
                log_group_arn=amp_logs.arn.apply(lambda arn: f"{arn}:*")
            ),
            opts=child,
        )
        aws.amp.RuleGroupNamespace(
            "rules",
            name="wondernest",
            workspace_id=self.workspace.id,
            data=render_rule_file(rule_groups(args.thresholds)),
            opts=pulumi.ResourceOptions(parent=self.workspace),
        )
        aws.amp.AlertManagerDefinition(
            "alertmanager",
            workspace_id=self.workspace.id,
            definition=pulumi.Output.all(*(topic.arn for topic in self.topics.values())).apply(
                lambda arns: monitoring.render_amp_alertmanager_definition(
                    topics=dict(zip(self.topics, arns, strict=True)), region=args.region
                )
            ),
            opts=pulumi.ResourceOptions(parent=self.workspace),
        )
        self.remote_write_url = self.workspace.prometheus_endpoint.apply(lambda e: f"{e}api/v1/remote_write")
        self._grafana(args)
        self.register_outputs({"prometheusUrl": self.workspace.prometheus_endpoint, "grafanaUrl": self.grafana_url})

    def _topic(self, kind: str, destination: Destination, args: MonitoringArgs) -> aws.sns.Topic:
        """A topic Managed Prometheus and CloudWatch alarms publish to, with the
        destination's email and HTTPS webhook subscribed (each confirms the
        subscription AWS sends it)."""
        topic = aws.sns.Topic(
            f"alerts-{kind}",
            name=self._names.resource(f"alerts-{kind}"),
            kms_master_key_id=args.secrets.key.arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        account = args.secrets.account_id
        aws.sns.TopicPolicy(
            f"alerts-{kind}",
            arn=topic.arn,
            policy=policy_document(
                [
                    {
                        "Sid": "ManagedPrometheusPublishes",
                        "Effect": "Allow",
                        "Principal": {"Service": "aps.amazonaws.com"},
                        "Action": ["sns:Publish", "sns:GetTopicAttributes"],
                        "Resource": topic.arn,
                        "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                    },
                    {
                        "Sid": "CloudWatchAlarmsPublish",
                        "Effect": "Allow",
                        "Principal": {"Service": "cloudwatch.amazonaws.com"},
                        "Action": "sns:Publish",
                        "Resource": topic.arn,
                        "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                    },
                ]
            ),
            opts=pulumi.ResourceOptions(parent=topic),
        )
        endpoints = {"email": destination.email, "https": destination.webhook_url}
        for protocol, endpoint in endpoints.items():
            if endpoint is not None:
                aws.sns.TopicSubscription(
                    f"alerts-{kind}-{protocol}",
                    topic=topic.arn,
                    protocol=protocol,
                    endpoint=endpoint,
                    opts=pulumi.ResourceOptions(parent=topic),
                )
        return topic

    def _grafana(self, args: MonitoringArgs) -> None:
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        role = service_role(
            "grafana-role",
            service="grafana.amazonaws.com",
            description="Managed Grafana: query the workspace's Prometheus",
            statements=[
                {
                    "Effect": "Allow",
                    "Action": ["aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels", "aps:GetMetricMetadata"],
                    "Resource": self.workspace.arn,
                }
            ],
            parent=self,
        )
        workspace = aws.grafana.Workspace(
            "grafana",
            name=names.resource("grafana"),
            description="Dashboards for the platform, provisioned by Pulumi",
            account_access_type="CURRENT_ACCOUNT",
            authentication_providers=["AWS_SSO"],
            permission_type="CUSTOMER_MANAGED",
            role_arn=role.arn,
            data_sources=["PROMETHEUS"],
            grafana_version="10.4",
            opts=child,
        )
        account = aws.grafana.WorkspaceServiceAccount(
            "grafana-provisioner",
            name="pulumi-provisioner",
            grafana_role="ADMIN",
            workspace_id=workspace.id,
            opts=pulumi.ResourceOptions(parent=workspace),
        )
        token = aws.grafana.WorkspaceServiceAccountToken(
            "grafana-provisioner-token",
            name=f"pulumi-{token_period(dt.datetime.now(dt.UTC).date())}",
            service_account_id=account.service_account_id,
            seconds_to_live=TOKEN_TTL_SECONDS,
            workspace_id=workspace.id,
            opts=pulumi.ResourceOptions(parent=account, additional_secret_outputs=["key"]),
        )
        self.grafana_url = workspace.endpoint.apply(lambda e: f"https://{e}")
        provider = grafana.Provider(
            "grafana",
            url=self.grafana_url,
            # The token is a secret output of its resource (additional_secret_outputs).
            auth=token.key,
            opts=pulumi.ResourceOptions(parent=workspace),
        )
        in_grafana = pulumi.ResourceOptions(parent=workspace, provider=provider)
        datasource = grafana.oss.DataSource(
            "prometheus",
            name="Prometheus",
            type="prometheus",
            uid=dashboards.DATASOURCE_UID,
            url=self.workspace.prometheus_endpoint,
            is_default=True,
            json_data_encoded=json.dumps(
                {
                    "httpMethod": "POST",
                    "sigV4Auth": True,
                    "sigV4AuthType": "ec2_iam_role",
                    "sigV4Region": args.region,
                    "timeInterval": "15s",
                },
                sort_keys=True,
            ),
            opts=in_grafana,
        )
        folder = grafana.oss.Folder("folder", title=names.app, uid=names.app, opts=in_grafana)
        for file, text in dashboards.dashboards(
            slo_objective=args.slo_objective,
            database=args.thresholds.database,
            app_metrics=args.thresholds.app_metrics,
        ).items():
            grafana.oss.Dashboard(
                f"dashboard-{file.removesuffix('.json')}",
                folder=folder.uid,
                config_json=text,
                overwrite=True,
                opts=pulumi.ResourceOptions(parent=workspace, provider=provider, depends_on=[datasource]),
            )

    def exporters(
        self,
        *,
        cluster: aws.ecs.Cluster,
        network: Network,
        postgres_host: pulumi.Output[str],
        postgres_port: int,
        database: str,
        redis_host: pulumi.Output[str],
        redis_port: int,
        redis_user: str,
        postgres_exporter_image: str,
        redis_exporter_image: str,
        depends_on: Sequence[pulumi.Resource],
    ) -> aws.ecs.Service:
        """postgres_exporter and redis_exporter in one task, scraped by its sidecar."""
        names, args = self._names, self._args
        key_arn = args.secrets.key.arn
        # The stack's exporter image with the extra query file baked in (see
        # exporter/Dockerfile): a Fargate task cannot mount a single file.
        pg_image = ecr_image(
            "postgres-exporter",
            names,
            context=EXPORTER_DIR,
            inputs=("Dockerfile", "queries.yaml"),
            build_args={"BASE": postgres_exporter_image},
            kms_key_arn=key_arn,
            parent=self,
        )
        pg = Container(
            name="postgres-exporter",
            image=pg_image,
            user=f"{NOBODY}:{NOBODY}",
            command=tuple(
                monitoring.postgres_exporter_args(
                    listen=f"127.0.0.1:{monitoring.POSTGRES_EXPORTER_PORT}", queries_path=EXPORTER_QUERIES
                )
            ),
            environment={
                "DATA_SOURCE_URI": pulumi.Output.concat(
                    postgres_host, f":{postgres_port}/{database}?sslmode=verify-full&sslrootcert={RDS_CA_BUNDLE}"
                ),
            },
            # Rotation alternates between the monitoring role and its alternate user.
            secrets={
                "DATA_SOURCE_USER": args.secrets.value_from("postgres-monitoring", "username"),
                "DATA_SOURCE_PASS": args.secrets.value_from("postgres-monitoring"),
            },
        )
        redis = Container(
            name="redis-exporter",
            image=redis_exporter_image,
            user=f"{NOBODY}:{NOBODY}",
            environment={
                "REDIS_ADDR": pulumi.Output.concat("rediss://", redis_host, f":{redis_port}"),
                "REDIS_USER": redis_user,
                "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{monitoring.REDIS_EXPORTER_PORT}",
            },
            secrets={"REDIS_PASSWORD": args.secrets.value_from("redis-monitoring")},
        )
        sidecar = collector(
            {
                "postgres": f"127.0.0.1:{monitoring.POSTGRES_EXPORTER_PORT}",
                "redis": f"127.0.0.1:{monitoring.REDIS_EXPORTER_PORT}",
            },
            names,
            self.remote_write_url,
            args.region,
        )
        logs = log_group(
            "exporters-logs",
            names,
            "exporters",
            retention_days=args.log_retention_days,
            kms_key_arn=key_arn,
            parent=self,
        )
        secret_arns = [args.secrets.arns["postgres-monitoring"], args.secrets.arns["redis-monitoring"]]
        task = task_definition(
            "exporters-task",
            family=names.resource("exporters"),
            cpu=256,
            memory_mib=512,
            containers=[pg, redis, sidecar],
            volumes=[],
            log_group_name=logs.name,
            region=args.region,
            execution_role_arn=execution_role(
                "exporters-execution-role", secret_arns=secret_arns, kms_key_arn=key_arn, parent=self
            ).arn,
            task_role_arn=remote_write_role("exporters-task-role", self.workspace.arn, self).arn,
            parent=self,
        )
        return aws.ecs.Service(
            "exporters-service",
            name=names.resource("exporters"),
            cluster=cluster.arn,
            task_definition=task.arn,
            launch_type="FARGATE",
            platform_version="1.4.0",
            desired_count=1,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=network.subnet_ids("private"),
                security_groups=[network.security_groups.exporters.id],
                assign_public_ip=False,
            ),
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            # The exporter logs in as the monitoring role: it must exist first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def alarm(self, alarm: Alarm) -> aws.cloudwatch.MetricAlarm:
        return self._notifying_alarm(
            alarm.key,
            alarm.description,
            alarm.page,
            alarm.runbook or alarm.key,
            alarm.comparison,
            alarm.threshold,
            alarm.periods,
            alarm.missing,
            namespace=alarm.namespace,
            metric_name=alarm.metric,
            dimensions=dict(alarm.dimensions),
            statistic=alarm.statistic,
            period=alarm.period,
        )

    def prometheus_alarms(self) -> None:
        """Managed Prometheus reports on itself only to CloudWatch: these replace
        the local Prometheus and Alertmanager self-monitoring rules, whose
        metrics AMP does not expose. Metrics Insights sums over the account's
        workspaces in the region, which the platform assumes is this one alone."""
        queries = {
            # Watchdog fires for ever: no alert received means rule evaluation or
            # the path to the Alertmanager is broken, and nothing else would say so.
            "alert-pipeline": (
                "AlertManagerAlertsReceived", "LessThanThreshold", 1, "breaching", True,
                "The Prometheus workspace's Alertmanager received no alerts: Watchdog is not arriving",
            ),
            "alert-delivery": (
                "AlertManagerNotificationsFailed", "GreaterThanThreshold", 0, "notBreaching", True,
                "The Prometheus workspace failed to deliver notifications to SNS",
            ),
            "rule-evaluation": (
                "RuleEvaluationFailures", "GreaterThanThreshold", 0, "notBreaching", False,
                "Rule evaluations fail in the Prometheus workspace",
            ),
        }  # fmt: skip
        for key, (metric, comparison, threshold, missing, page, description) in queries.items():
            self._notifying_alarm(
                key,
                description,
                page,
                key,
                comparison,
                threshold,
                3,
                missing,
                metric_queries=[
                    aws.cloudwatch.MetricAlarmMetricQueryArgs(
                        id="q",
                        expression=f'SELECT SUM({metric}) FROM "AWS/Prometheus"',
                        period=300,
                        return_data=True,
                    )
                ],
            )

    def _notifying_alarm(
        self,
        key: str,
        description: str,
        page: bool,
        runbook: str,
        comparison: str,
        threshold: float,
        periods: int,
        missing: str,
        **source: Any,
    ) -> aws.cloudwatch.MetricAlarm:
        """An alarm that notifies the page or ticket topic when it fires and when
        it clears, its description ending with its runbook's link (the
        notification quotes it); `source` is either a metric (namespace, name,
        dimensions, statistic, period) or metric queries."""
        topic = self.topics[monitoring.PAGE if page else monitoring.TICKET]
        link = runbook_link(self._args.thresholds.runbook_url, f"alarm-{runbook}")
        return aws.cloudwatch.MetricAlarm(
            f"alarm-{key}",
            name=self._names.resource(key),
            alarm_description=f"{description}. Runbook: {link}",
            comparison_operator=comparison,
            threshold=threshold,
            evaluation_periods=periods,
            treat_missing_data=missing,
            alarm_actions=[topic.arn],
            ok_actions=[topic.arn],
            opts=pulumi.ResourceOptions(parent=self),
            **source,
        )


def remote_write_statement(workspace_arn: pulumi.Input[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": "aps:RemoteWrite", "Resource": workspace_arn}


def remote_write_role(resource_name: str, workspace_arn: pulumi.Input[str], parent: pulumi.Resource) -> aws.iam.Role:
    return service_role(
        resource_name,
        service=TASKS_SERVICE,
        description="Task role: remote-write metrics to the platform's Prometheus workspace",
        statements=[remote_write_statement(workspace_arn)],
        parent=parent,
    )
