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
