"""The bundled API on ECS Fargate behind an ALB: ECR image by content hash,
migrations as an init container, a metrics sidecar, autoscaling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components.aws.app_services import AppServices, AppServicesArgs
from components.aws.buckets import PrivateBucket, access_log_statement, expire_logs, private_bucket
from components.aws.iam import service_role
from components.aws.monitoring import collector, remote_write_role, remote_write_statement
from components.aws.network import HTTPS, Network
from components.aws.registry import ecr_image
from components.aws.secrets import Secrets, external_key
from components.aws.tasks import (
    TASKS_SERVICE,
    Container,
    HealthCheck,
    execution_role,
    log_group,
    task_definition,
)
from components.aws.tls import VERIFIED
from components.model.api import hash_concurrency
from components.model.app import AppConfig, image_build, migration_mapping, probe_command
from components.model.naming import Names

# ELBSecurityPolicy-TLS13-1-2-2021-06: TLS 1.3 and 1.2 only, forward-secret ciphers.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True)
class ApiArgs:
    names: Names
    app: AppConfig
    settings: Mapping[str, str]
    """The bundled API's own settings from the `api` section; empty for another app."""
    region: str
    cpu: int
    memory_mib: int
    desired_count: int
    min_count: int
    max_count: int
    cpu_target_percent: int
    requests_per_target: int
    certificate_arn: str | None
    domain_name: str | None
    hosted_zone_id: str | None
    """With domain_name: the certificate is made and validated in this zone, and the name aliased to the ALB."""
    log_retention_days: int
    database: str
    postgres_host: pulumi.Output[str]
    postgres_port: int
    postgres_reader_hosts: pulumi.Output[str] | None
    redis_host: pulumi.Output[str]
    redis_port: int
    redis_user: str
    cluster: aws.ecs.Cluster
    network: Network
    secrets: Secrets
    remote_write_url: pulumi.Output[str]
    workspace_arn: pulumi.Output[str]
    elb_account_arn: pulumi.Output[str]
    depends_on: tuple[pulumi.Resource, ...]
    email_zone_id: str | None = None
    """A Route 53 zone holding the app's email domain: its DKIM records go there."""


class Api(pulumi.ComponentResource):
    image_ref: pulumi.Output[str]
    service: aws.ecs.Service
    url: pulumi.Output[str]
    logs_bucket: aws.s3.Bucket
    """SSE-S3, as log delivery requires: the load balancer's logs and the other buckets' access logs."""
    services: AppServices | None
    """The AWS services the app declares; None when it declares none."""

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:Api", name, None, opts)
        key_arn = args.secrets.key.arn
        self.image_ref = self._image(args, key_arn)
        access_logs = self._access_logs(args)
        self.services = self._app_services(args, access_logs.bucket)
        task = self._task_definition(args, key_arn)
        alb = self._load_balancer(args, access_logs)
        target_group = self._target_group(args)
        listener, self.url = self._listeners(args, alb, target_group)
        # Metrics are served only on the task's metrics port, which the target
        # group never reaches; the edge answers the path itself too, so such a
        # request does not reach a task at all.
        if args.app.metrics is not None:
            self._no_public_metrics(listener, args.app.metrics.path)
        self.service = self._service(args, task, target_group, listener)
        self._autoscaling(args, self.service, alb, target_group)
        self.alb = alb
        self.target_group = target_group
        self.logs_bucket = access_logs.bucket
        self.register_outputs({"url": self.url, "image": self.image_ref})

    def _task_definition(self, args: ApiArgs, key_arn: pulumi.Output[str]) -> aws.ecs.TaskDefinition:
        """The task's log group, roles and definition."""
        names = args.names
        logs = log_group(
            "api-logs", names, "api", retention_days=args.log_retention_days, kms_key_arn=key_arn, parent=self
        )
        containers, secret_keys = self._containers(args)
        task_role = self._task_role(args)
        exec_role = execution_role(
            "api-execution-role",
            secret_arns=[args.secrets.arns[key] for key in secret_keys],
            kms_key_arn=key_arn,
            parent=self,
        )
        return task_definition(
            "api-task",
            family=names.resource("api"),
            cpu=args.cpu,
            memory_mib=args.memory_mib,
            containers=containers,
            volumes=[],
            log_group_name=logs.name,
            region=args.region,
            execution_role_arn=exec_role.arn,
            task_role_arn=None if task_role is None else task_role.arn,
            parent=self,
        )

    def _app_services(self, args: ApiArgs, access_log_bucket: aws.s3.Bucket) -> AppServices | None:
        if not args.app.aws_services.declared:
            return None
        return AppServices(
            "app-services",
            AppServicesArgs(
                names=args.names,
                services=args.app.aws_services,
                mapped=frozenset(args.app.platform_environment.values()),
                region=args.region,
                key_arn=args.secrets.key.arn,
                account_id=args.secrets.account_id,
                account_root=args.secrets.account_root,
                access_log_bucket=access_log_bucket,
                email_zone_id=args.email_zone_id,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _task_role(self, args: ApiArgs) -> aws.iam.Role | None:
        """The task's own calls: the collector's remote write, when there is
        one, and the app's declared services, on those resources only."""
        if self.services is None:
            if args.app.metrics is None:
                return None
            return remote_write_role("api-task-role", args.workspace_arn, self)
        remote_write = [] if args.app.metrics is None else [remote_write_statement(args.workspace_arn)]
        return service_role(
            "api-task-role",
            service=TASKS_SERVICE,
            description="Task role: the app's declared AWS services"
            + ("" if args.app.metrics is None else ", and remote-write of its metrics"),
            statements=[*remote_write, *self.services.statements],
            parent=self,
        )

    def _containers(self, args: ApiArgs) -> tuple[list[Container], list[str]]:
        """The migrations (if any), the API and its metrics sidecar (if any),
        and the secrets they reference."""
        app = args.app
        serve_env, serve_secrets, serve_keys = self._environment(args, app.platform_environment, role="app")
        env: dict[str, pulumi.Input[str]] = {**serve_env, **args.settings, **app.environment}
        secret_keys = serve_keys
        user = f"{app.user}:{app.user}"
        containers: list[Container] = []
        if app.migrations is not None:
            migrate_env, migrate_secrets, migrate_keys = self._environment(
                args, migration_mapping(app), role=app.migrations.role
            )
            # In the order the execution role's policy has always listed them.
            secret_keys = list(dict.fromkeys([*migrate_keys, *serve_keys]))
            containers.append(
                Container(
                    name="migrate",
                    image=self.image_ref,
                    user=user,
                    essential=False,
                    command=app.migrations.command,
                    # As the contract's role (for the bundled API, the one that
                    # owns the schema objects), with nothing of the app's: the
                    # app's container never holds that role's password.
                    environment=migrate_env,
                    secrets=migrate_secrets,
                )
            )
        containers.append(
            Container(
                name="api",
                image=self.image_ref,
                user=user,
                command=app.command,
                environment=env,
                secrets=serve_secrets,
                port=app.port,
                # Liveness: ECS replaces a task that fails it.
                health_check=HealthCheck(
                    tuple(probe_command(app.probe, app.port, app.liveness_path)),
                    interval=10,
                    timeout=3,
                    start_period=20,
                ),
                depends_on={"migrate": "SUCCESS"} if app.migrations is not None else {},
            )
        )
        if app.metrics is not None:
            containers.append(
                collector(
                    {"api": f"127.0.0.1:{app.metrics.port}"},
                    args.names,
                    args.remote_write_url,
                    args.region,
                    metrics_paths={"api": app.metrics.path},
                )
            )
        return containers, secret_keys

    def _access_logs(self, args: ApiArgs) -> PrivateBucket:
        log_bucket = pulumi.Output.concat(args.names.resource("alb-logs"), "-", args.secrets.account_id)
        return private_bucket(
            "alb-logs",
            bucket_name=log_bucket,
            kms_key_arn=None,
            lifecycle=expire_logs(args.log_retention_days),
            extra_statements=[
                {
                    "Sid": "LoadBalancerWritesAccessLogs",
                    "Effect": "Allow",
                    "Principal": {"AWS": args.elb_account_arn},
                    "Action": "s3:PutObject",
                    "Resource": pulumi.Output.concat(
                        "arn:aws:s3:::", log_bucket, "/alb/AWSLogs/", args.secrets.account_id, "/*"
                    ),
                },
                # The platform's other buckets log their requests here too.
                access_log_statement(log_bucket, args.secrets.account_id),
            ],
            parent=self,
        )

    def _load_balancer(self, args: ApiArgs, access_logs: PrivateBucket) -> aws.lb.LoadBalancer:
        return aws.lb.LoadBalancer(
            "alb",
            name=args.names.resource("api"),
            load_balancer_type="application",
            internal=False,
            subnets=args.network.subnet_ids("public"),
            security_groups=[args.network.security_groups.alb.id],
            drop_invalid_header_fields=True,
            desync_mitigation_mode="strictest",
            enable_deletion_protection=True,
            idle_timeout=60,
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(bucket=access_logs.bucket.bucket, prefix="alb", enabled=True),
            # The load balancer checks on creation that it may write its logs.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access_logs.policy]),
        )

    def _target_group(self, args: ApiArgs) -> aws.lb.TargetGroup:
        return aws.lb.TargetGroup(
            "api",
            name=args.names.resource("api"),
            port=args.app.port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.network.vpc.id,
            deregistration_delay=30,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                # Liveness, not readiness: ECS replaces a task that fails its target
                # group's check, so a check that follows Postgres or Redis would
                # cycle every task through their outage.
                path=args.app.liveness_path,
                matcher="200",
                interval=15,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=3,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _listeners(
        self, args: ApiArgs, alb: aws.lb.LoadBalancer, target_group: aws.lb.TargetGroup
    ) -> tuple[aws.lb.Listener, pulumi.Output[str]]:
        """The listener that forwards to the target group, and the URL the API
        answers on: HTTPS (with HTTP redirected to it) once there is a
        certificate, plain HTTP until then."""
        child = pulumi.ResourceOptions(parent=self)
        forward = [aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)]
        certificate_arn: pulumi.Input[str] | None = args.certificate_arn
        if args.hosted_zone_id is not None and args.domain_name is not None:
            certificate_arn = self._certificate(args.domain_name, args.hosted_zone_id)
        if certificate_arn is None:
            # No certificate yet: plain HTTP, which the policy pack refuses for
            # prod until aws.certificateArn is set.
            listener = aws.lb.Listener(
                "http", load_balancer_arn=alb.arn, port=80, protocol="HTTP", default_actions=forward, opts=child
            )
            return listener, pulumi.Output.concat("http://", alb.dns_name)
        listener = aws.lb.Listener(
            "https",
            load_balancer_arn=alb.arn,
            port=HTTPS,
            protocol="HTTPS",
            ssl_policy=TLS_POLICY,
            certificate_arn=certificate_arn,
            default_actions=forward,
            opts=child,
        )
        aws.lb.Listener(
            "http",
            load_balancer_arn=alb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[
                aws.lb.ListenerDefaultActionArgs(
                    type="redirect",
                    redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                        protocol="HTTPS", port=str(HTTPS), status_code="HTTP_301"
                    ),
                )
            ],
            opts=child,
        )
        url = pulumi.Output.from_input(f"https://{args.domain_name}")
        if args.hosted_zone_id is not None and args.domain_name is not None:
            self._alias(args.domain_name, args.hosted_zone_id, alb)
        return listener, url

    def _service(
        self,
        args: ApiArgs,
        task: aws.ecs.TaskDefinition,
        target_group: aws.lb.TargetGroup,
        listener: aws.lb.Listener,
    ) -> aws.ecs.Service:
        return aws.ecs.Service(
            "api-service",
            name=args.names.resource("api"),
            cluster=args.cluster.arn,
            task_definition=task.arn,
            launch_type="FARGATE",
            platform_version="1.4.0",
            desired_count=args.desired_count,
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            health_check_grace_period_seconds=60,
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=args.network.subnet_ids("private"),
                security_groups=[args.network.security_groups.api.id],
                assign_public_ip=False,
            ),
            load_balancers=[
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=target_group.arn, container_name="api", container_port=args.app.port
                )
            ],
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            enable_execute_command=False,
            wait_for_steady_state=True,
            # Autoscaling owns the running count once the service exists.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[listener, *args.depends_on], ignore_changes=["desiredCount"]
            ),
        )

    def _autoscaling(
        self,
        args: ApiArgs,
        service: aws.ecs.Service,
        alb: aws.lb.LoadBalancer,
        target_group: aws.lb.TargetGroup,
    ) -> None:
        """The running count between min and max, tracking CPU and requests per target."""
        child = pulumi.ResourceOptions(parent=self)
        scaling = aws.appautoscaling.Target(
            "api-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", args.cluster.name, "/", service.name),
            min_capacity=args.min_count,
            max_capacity=args.max_count,
            opts=child,
        )
        target_tracking = {
            "cpu": (
                aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type="ECSServiceAverageCPUUtilization"
                ),
                args.cpu_target_percent,
            ),
            "requests": (
                aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type="ALBRequestCountPerTarget",
                    resource_label=pulumi.Output.concat(alb.arn_suffix, "/", target_group.arn_suffix),
                ),
                args.requests_per_target,
            ),
        }
        for key, (metric, target_value) in target_tracking.items():
            aws.appautoscaling.Policy(
                f"api-scale-on-{key}",
                name=args.names.resource(f"api-{key}"),
                policy_type="TargetTrackingScaling",
                service_namespace=scaling.service_namespace,
                scalable_dimension=scaling.scalable_dimension,
                resource_id=scaling.resource_id,
                target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                    predefined_metric_specification=metric,
                    target_value=target_value,
                    scale_in_cooldown=300,
                    scale_out_cooldown=60,
                ),
                opts=child,
            )

    def _image(self, args: ApiArgs, key_arn: pulumi.Output[str]) -> pulumi.Output[str]:
        """The contract's prebuilt image as given, or its build pushed to ECR by content."""
        build = image_build(args.app, aws=True)
        if build is None:
            assert args.app.image is not None
            return pulumi.Output.from_input(args.app.image)
        return ecr_image(
            "api",
            args.names,
            target=build.target,
            inputs=build.inputs,
            context=Path(build.context),
            dockerfile=Path(build.dockerfile),
            kms_key_arn=key_arn,
            parent=self,
        )

    def _environment(
        self, args: ApiArgs, mapping: Mapping[str, str], *, role: str
    ) -> tuple[dict[str, pulumi.Input[str]], dict[str, pulumi.Input[str]], list[str]]:
        """(plain variables, secret references, the secrets referenced) for the
        mapped platform values. The database user comes by reference with its
        password: rotation alternates between a role and its alternate user."""
        database_secret = f"postgres-{role}"
        references = {
            "postgres.user": (database_secret, "username"),
            "postgres.password": (database_secret, "password"),
            "redis.password": ("redis-app", "password"),
            "jwt.signingKey": ("jwt-signing-key", "current"),
            "jwt.previousSigningKey": ("jwt-signing-key", "previous"),
            "jwt.nextSigningKey": ("jwt-signing-key", "next"),
            **{f"secrets.{name}": (external_key(name), "value") for name in args.app.external_secrets},
        }
        values: dict[str, pulumi.Input[str]] = {
            "postgres.host": args.postgres_host,
            "postgres.port": str(args.postgres_port),
            "postgres.database": args.database,
            "postgres.sslmode": VERIFIED["DB_SSLMODE"],
            "postgres.caFile": VERIFIED["DB_SSLROOTCERT"],
            "redis.host": args.redis_host,
            "redis.port": str(args.redis_port),
            # Its own ElastiCache user: the default user is off.
            "redis.user": args.redis_user,
            "redis.tls": "true",
            "app.port": str(args.app.port),
            # Fargate's CPU units: 1024 to a vCPU.
            "app.cpuCount": str(hash_concurrency(args.cpu / 1024)),
            # The load balancer's nodes live in the public subnets. Trusting those
            # ranges, not every peer, makes the client address the last one the
            # load balancer appended to X-Forwarded-For, not whatever a client
            # wrote at its head.
            "app.trustedProxies": ",".join(str(cidr) for cidr in args.network.cidrs["public"]),
        }
        if args.postgres_reader_hosts is not None:
            values["postgres.readHosts"] = args.postgres_reader_hosts
        if args.app.metrics is not None:
            values["app.metricsPort"] = str(args.app.metrics.port)
        if self.services is not None and role == "app":
            values.update(self.services.values)
        env: dict[str, pulumi.Input[str]] = {}
        secrets: dict[str, pulumi.Input[str]] = {}
        for name, value in sorted(mapping.items()):
            if value in references:
                key, field = references[value]
                secrets[name] = args.secrets.value_from(key, field)
            elif value in values:
                env[name] = values[value]
        mapped = set(mapping.values())
        used = [key for value, (key, _) in references.items() if value in mapped]
        return env, secrets, list(dict.fromkeys(used))

    def _certificate(self, domain: str, zone_id: str) -> pulumi.Output[str]:
        """An ACM certificate for the domain, validated by the DNS record ACM
        asks for in the zone; the listener waits for it to be issued."""
        child = pulumi.ResourceOptions(parent=self)
        certificate = aws.acm.Certificate(
            "certificate",
            domain_name=domain,
            validation_method="DNS",
            key_algorithm="EC_prime256v1",
            # Replaced the engine's default way, the new one made before the old
            # one goes: the listener never lacks a certificate.
            opts=child,
        )
        option = certificate.domain_validation_options.apply(lambda options: options[0])
        record = aws.route53.Record(
            "certificate-validation",
            zone_id=zone_id,
            name=option.resource_record_name,
            type=option.resource_record_type,
            records=[option.resource_record_value],
            ttl=300,
            allow_overwrite=True,
            opts=child,
        )
        validation = aws.acm.CertificateValidation(
            "certificate",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn],
            opts=child,
        )
        return validation.certificate_arn

    def _alias(self, domain: str, zone_id: str, alb: aws.lb.LoadBalancer) -> None:
        aws.route53.Record(
            "alias",
            zone_id=zone_id,
            name=domain,
            type="A",
            aliases=[aws.route53.RecordAliasArgs(name=alb.dns_name, zone_id=alb.zone_id, evaluate_target_health=True)],
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _no_public_metrics(self, listener: aws.lb.Listener, path: str) -> None:
        aws.lb.ListenerRule(
            "no-public-metrics",
            listener_arn=listener.arn,
            priority=1,
            conditions=[
                aws.lb.ListenerRuleConditionArgs(
                    path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=[path, f"{path}/*"])
                )
            ],
            actions=[
                aws.lb.ListenerRuleActionArgs(
                    type="fixed-response",
                    fixed_response=aws.lb.ListenerRuleActionFixedResponseArgs(
                        content_type="application/json",
                        status_code="404",
                        message_body='{"error":{"code":"not_found","message":"Not Found"}}',
                    ),
                )
            ],
            opts=pulumi.ResourceOptions(parent=self),
        )
