"""Every credential the local platform uses, generated once and kept in state."""

from __future__ import annotations

import pulumi

from components.credentials import PASSWORD_LENGTH, SIGNING_KEY_LENGTH, generated_secret

PASSWORDS: tuple[str, ...] = (
    "postgres-superuser",
    "postgres-migrator",
    "postgres-app",
    "postgres-analytics",
    "postgres-monitoring",
    "postgres-backup",
    "redis-app",
    "redis-healthcheck",
    "redis-monitoring",
    "grafana-admin",
    "pgadmin-login",
    # The API account `verify --auth` signs in with: one account reused, so that
    # a check run often never spends what real clients are limited by.
    "verify-login",
)


# initdb writes the superuser's password into the protected data volume, and the
# image never changes it afterwards; a new password with the old volume would
# lock the platform out of its own database. The verify account's password is
# in that database too (its hash, in core.users). Each is kept or deleted with it.
BOUND_TO_DATA = frozenset({"postgres-superuser", "verify-login"})


class Secrets(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Secrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self._values: dict[str, pulumi.Output[str]] = {}
        for key in PASSWORDS:
            opts = child
            if key in BOUND_TO_DATA:
                opts = pulumi.ResourceOptions(parent=self, protect=True)
            self._values[key] = generated_secret(key, PASSWORD_LENGTH, opts)
        # The key that signs, and the two accepted beside it (the API's rotation
        # contract, as on AWS, where they rotate; here they stay as generated).
        for key in ("jwt-signing-key", "jwt-signing-key-previous", "jwt-signing-key-next"):
            self._values[key] = generated_secret(key, SIGNING_KEY_LENGTH, child)
        self.register_outputs({key.replace("-", "_"): value for key, value in self._values.items()})

    def get(self, key: str) -> pulumi.Output[str]:
        return self._values[key]

    def role_password(self, role_key: str) -> pulumi.Output[str]:
        return self._values[f"postgres-{role_key}"]

    @property
    def all(self) -> dict[str, pulumi.Output[str]]:
        return dict(self._values)
