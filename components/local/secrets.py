"""Every credential the local platform uses, generated once and kept in state.

pulumi-random values are stable across updates (no churn in previews) and are
secret outputs from the moment they exist.
"""

from __future__ import annotations

import pulumi
import pulumi_random as random

# Alphanumeric only: these end up in connection strings, pgpass files and
# redis-cli arguments, where punctuation needs escaping that is easy to get wrong.
# 32 characters of [A-Za-z0-9] is ~190 bits.
_PASSWORD_LENGTH = 32
_SIGNING_KEY_LENGTH = 64

PASSWORDS: tuple[str, ...] = (
    "postgres-superuser",
    "postgres-app",
    "postgres-analytics",
    "postgres-monitoring",
    "postgres-backup",
    "redis-app",
    "redis-healthcheck",
    "redis-monitoring",
    "grafana-admin",
    "pgadmin-login",
)


# initdb writes the superuser's password into the protected data volume, and the
# image never changes it afterwards; a new password with the old volume would
# lock the platform out of its own database. The two are kept or deleted together.
BOUND_TO_DATA = frozenset({"postgres-superuser"})


class Secrets(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Secrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self._values: dict[str, pulumi.Output[str]] = {}
        for key in PASSWORDS:
            opts = child
            if key in BOUND_TO_DATA:
                opts = pulumi.ResourceOptions(parent=self, protect=True)
            self._values[key] = self._random(key, _PASSWORD_LENGTH, opts)
        self._values["jwt-signing-key"] = self._random("jwt-signing-key", _SIGNING_KEY_LENGTH, child)
        self.register_outputs({key.replace("-", "_"): value for key, value in self._values.items()})

    @staticmethod
    def _random(key: str, length: int, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
        password = random.RandomPassword(
            key,
            length=length,
            special=False,
            min_lower=1,
            min_upper=1,
            min_numeric=1,
            opts=opts,
        )
        return pulumi.Output.secret(password.result)

    def get(self, key: str) -> pulumi.Output[str]:
        return self._values[key]

    def role_password(self, role_key: str) -> pulumi.Output[str]:
        return self._values[f"postgres-{role_key}"]

    @property
    def all(self) -> dict[str, pulumi.Output[str]]:
        return dict(self._values)
