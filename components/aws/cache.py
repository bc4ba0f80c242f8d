"""ElastiCache Redis 7: a Multi-AZ replication group with failover, TLS, and
users with the same command rules as the local ACL (RBAC), the default user off."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.network import REDIS_PORT, Network
from components.aws.secrets import Secrets
from components.aws.tasks import log_group_name
from components.credentials import PASSWORD_LENGTH, generated_secret
from components.model.naming import Names
from components.model.redis_conf import APP_USER_RULES, EXPORTER_USER_RULES, EvictionPolicy

ENGINE_VERSION = "7.1"
PARAMETER_FAMILY = "redis7"


def elasticache_access_string(rules: str) -> str:
    """A local ACL rule list as an ElastiCache user's access string: `on` first;
    a new user has no keys or channels to reset."""
    kept = [rule for rule in rules.split() if rule not in ("resetkeys", "resetchannels")]
    return " ".join(["on", *kept])


@dataclass(frozen=True)
class CacheArgs:
    names: Names
    node_type: str
    replicas: int
    eviction_policy: EvictionPolicy
    snapshot_retention_days: int
    log_retention_days: int
    network: Network
    secrets: Secrets


class Cache(pulumi.ComponentResource):
    group: aws.elasticache.ReplicationGroup
    endpoint: pulumi.Output[str]
    app_user: str
    monitoring_user: str

    def __init__(self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:Cache", name, None, opts)
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        subnets = aws.elasticache.SubnetGroup(
            "subnets",
            name=names.resource("redis"),
            description="Isolated subnets: no route out of the VPC",
            subnet_ids=args.network.subnet_ids("isolated"),
            opts=child,
        )
        parameters = aws.elasticache.ParameterGroup(
            "parameters",
            name=names.resource("redis7"),
            family=PARAMETER_FAMILY,
            description="The platform's eviction policy",
            parameters=[
                aws.elasticache.ParameterGroupParameterArgs(name="maxmemory-policy", value=args.eviction_policy)
            ],
            opts=child,
        )
        logs = {
            kind: aws.cloudwatch.LogGroup(
                f"{kind}-log",
                name=log_group_name(names, f"redis/{kind}"),
                retention_in_days=args.log_retention_days,
                kms_key_id=args.secrets.key.arn,
                opts=child,
            )
            for kind in ("slow-log", "engine-log")
        }
        users = self._users(args)
        self.app_user = names.redis_app_user
        self.monitoring_user = names.redis_monitoring_user
        self.group = aws.elasticache.ReplicationGroup(
            "redis",
            replication_group_id=names.resource("redis"),
            description=f"{names.resource('redis')}: sessions, rate limits and caches",
            engine="redis",
            engine_version=ENGINE_VERSION,
            node_type=args.node_type,
            num_cache_clusters=1 + args.replicas,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            port=REDIS_PORT,
            parameter_group_name=parameters.name,
            subnet_group_name=subnets.name,
            security_group_ids=[args.network.security_groups.redis.id],
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            # Users, not a shared token: a stack that had an auth token drops it
            # as the user group is attached (DELETE is ignored on create).
            user_group_ids=[users.user_group_id],
            auth_token_update_strategy="DELETE",  # noqa: S106 (a strategy name, not a token)
            at_rest_encryption_enabled=True,
            kms_key_id=args.secrets.key.arn,
            snapshot_retention_limit=args.snapshot_retention_days,
            snapshot_window="01:00-02:00",
            maintenance_window="sun:04:30-sun:05:30",
            final_snapshot_identifier=names.resource("redis-final"),
            auto_minor_version_upgrade=True,
            apply_immediately=False,
            log_delivery_configurations=[
                aws.elasticache.ReplicationGroupLogDeliveryConfigurationArgs(
                    destination=group.name,
                    destination_type="cloudwatch-logs",
                    log_format="json",
                    log_type=kind,
                )
                for kind, group in logs.items()
            ],
            opts=child,
        )
        self.host = self.group.primary_endpoint_address
        self.port = REDIS_PORT
        self.endpoint = pulumi.Output.concat(self.host, ":", str(REDIS_PORT))
        self.register_outputs({"endpoint": self.endpoint})

    def _users(self, args: CacheArgs) -> aws.elasticache.UserGroup:
        """The default user switched off (its password is generated and given to
        no one), and one user each for the API and the exporter, with the rules
        the local ACL file gives them: the API may not flush, load functions or
        run scripts; the exporter reads server statistics only."""
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        secret = pulumi.ResourceOptions(parent=self, additional_secret_outputs=["passwords"])
        self.user_ids: dict[str, pulumi.Output[str]] = {}

        def user(
            key: str, user_name: str, access: str, password: pulumi.Input[str], *, rotated: bool = True
        ) -> aws.elasticache.User:
            # A rotated user's passwords are the rotation's from its first run on:
            # an update must not set the generated one back.
            opts = pulumi.ResourceOptions.merge(
                secret, pulumi.ResourceOptions(ignore_changes=["authenticationMode"] if rotated else None)
            )
            made = aws.elasticache.User(
                f"redis-user-{key}",
                user_id=names.resource(f"redis-{key}"),
                user_name=user_name,
                engine="redis",
                access_string=access,
                authentication_mode=aws.elasticache.UserAuthenticationModeArgs(
                    type="password", passwords=[pulumi.Output.secret(password)]
                ),
                opts=opts,
            )
            if rotated:
                document = pulumi.Output.json_dumps(
                    {"username": user_name, "password": password, "user_id": made.user_id}
                )
                args.secrets.seed(f"redis-{key}", document, depends_on=[made])
                self.user_ids[f"redis-{key}"] = made.user_id
            return made

        default = user(
            "default",
            "default",
            "off -@all",
            generated_secret("redis-default-user", PASSWORD_LENGTH, child),
            rotated=False,
        )
        app = user(
            "app", names.redis_app_user, elasticache_access_string(APP_USER_RULES), args.secrets.value("redis-app")
        )
        monitoring = user(
            "monitoring",
            names.redis_monitoring_user,
            elasticache_access_string(EXPORTER_USER_RULES),
            args.secrets.value("redis-monitoring"),
        )
        return aws.elasticache.UserGroup(
            "redis-users",
            user_group_id=names.resource("redis-users"),
            engine="redis",
            user_ids=[default.user_id, app.user_id, monitoring.user_id],
            opts=child,
        )
