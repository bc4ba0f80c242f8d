"""Physical names derived from the app name and the stack.

Every name a Docker engine, a Postgres cluster or AWS sees comes from here, so a
second project is one config change (`appName`) and two stacks never collide.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    app: str
    stack: str

    def resource(self, suffix: str) -> str:
        """A Docker object name: `<app>-<stack>-<suffix>`."""
        return f"{self.app}-{self.stack}-{suffix}"

    @property
    def database(self) -> str:
        return self.app

    @property
    def admin_role(self) -> str:
        # The official image's bootstrap superuser; kept as the conventional name
        # so `psql -U postgres` works the way every Postgres operator expects.
        return "postgres"

    @property
    def app_role(self) -> str:
        return f"{self.app}_app"

    @property
    def migrator_role(self) -> str:
        return f"{self.app}_migrator"

    @property
    def analytics_role(self) -> str:
        return f"{self.app}_analytics"

    @property
    def monitoring_role(self) -> str:
        return f"{self.app}_monitoring"

    @property
    def backup_role(self) -> str:
        return f"{self.app}_backup"

    @property
    def redis_app_user(self) -> str:
        return f"{self.app}_app"

    @property
    def redis_monitoring_user(self) -> str:
        return f"{self.app}_monitoring"

    @property
    def redis_healthcheck_user(self) -> str:
        return "healthcheck"

    def labels(self, component: str) -> dict[str, str]:
        """Labels every container, volume and network carries."""
        return {
            "com.wondernest.app": self.app,
            "com.wondernest.stack": self.stack,
            "com.wondernest.component": component,
            "com.wondernest.managed-by": "pulumi",
        }


@dataclass(frozen=True)
class AwsNameLimit:
    """The longest name of a kind the AWS target derives from `<app>-<stack>`,
    and AWS's limit on it."""

    what: str
    suffix: str
    """What follows `<app>-<stack>` in the longest such name."""
    limit: int


# Only the kinds whose limits a name can reach: the rest allow 128 characters
# or more. The suffixes are the components' own (a test derives every name of
# the prod graph at these lengths and holds each to AWS's limit for its type).
AWS_NAME_LIMITS = (
    AwsNameLimit("the load balancer and its target group", "-api", 32),
    AwsNameLimit("the ElastiCache replication group", "-redis", 40),
    AwsNameLimit("the ElastiCache user ids", "-redis-monitoring", 40),
    AwsNameLimit("the AWS Backup vaults", "-vault-copy", 50),
    AwsNameLimit("the AWS Backup selection", "-postgres", 50),
    AwsNameLimit("the S3 buckets (with the 12-digit account id)", "-backups-copy-123456789012", 63),
    AwsNameLimit("the RDS instances", "-postgres-replica-5", 63),
    AwsNameLimit("the EventBridge schedules", "-exporters-redeploy", 64),
)


def aws_name_problems(names: Names) -> list[str]:
    """Each AWS name the stack would derive over AWS's limit, with by how much."""
    prefix = f"{names.app}-{names.stack}"
    return [
        f"{what.what} would be named {prefix}{what.suffix} ({len(prefix + what.suffix)} characters; "
        f"AWS allows {what.limit}): shorten appName or the stack name by {len(prefix + what.suffix) - what.limit}"
        for what in AWS_NAME_LIMITS
        if len(prefix + what.suffix) > what.limit
    ]
