"""Schemas, roles and grants: the least-privilege model both targets apply."""

from __future__ import annotations

from dataclasses import dataclass

from components.spec.naming import Names

SCHEMAS: tuple[str, ...] = (
    "core",
    "family",
    "subscription",
    "content",
    "audio",
    "analytics",
    "ml",
    "safety",
    "audit",
)

APP_CONNECTION_LIMIT = 50
ANALYTICS_CONNECTION_LIMIT = 10
# The exporter holds one connection; the rest is room for a restart overlapping.
MONITORING_CONNECTION_LIMIT = 3
# The snapshot-holding session plus pg_dump's own connection.
BACKUP_CONNECTION_LIMIT = 3

CRUD = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_WRITE = ("SELECT", "UPDATE", "USAGE")
READ = ("SELECT",)


@dataclass(frozen=True)
class RoleSpec:
    key: str
    """Stable logical key: names the Pulumi resource and the role's secret."""
    name: str
    connection_limit: int
    member_of: tuple[str, ...] = ()


@dataclass(frozen=True)
class SchemaGrantSpec:
    role: str
    schema: str
    schema_privileges: tuple[str, ...]
    table_privileges: tuple[str, ...]
    sequence_privileges: tuple[str, ...]
    default_owners: tuple[str, ...]
    """Roles whose future tables and sequences get the same privileges."""


@dataclass(frozen=True)
class DatabaseSpec:
    name: str
    admin_role: str
    schemas: tuple[str, ...]
    roles: tuple[RoleSpec, ...]
    grants: tuple[SchemaGrantSpec, ...]

    @property
    def connect_roles(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles)

    @property
    def routine_owners(self) -> tuple[str, ...]:
        """The roles that create functions and procedures: the admin and whoever may create in a schema."""
        creators = {grant.role for grant in self.grants if "CREATE" in grant.schema_privileges}
        return (self.admin_role, *sorted(creators))

    def role(self, key: str) -> RoleSpec:
        for role in self.roles:
            if role.key == key:
                return role
        raise KeyError(key)


def database_spec(names: Names) -> DatabaseSpec:
    app = RoleSpec("app", names.app_role, APP_CONNECTION_LIMIT)
    analytics = RoleSpec("analytics", names.analytics_role, ANALYTICS_CONNECTION_LIMIT)
    monitoring = RoleSpec("monitoring", names.monitoring_role, MONITORING_CONNECTION_LIMIT, member_of=("pg_monitor",))
    # Exactly what pg_dump of the platform's database needs: USAGE on its schemas
    # and SELECT on their tables and sequences, now and later. Not
    # pg_read_all_data, which also reads pg_authid's password verifiers and
    # every other database on the server.
    backup = RoleSpec("backup", names.backup_role, BACKUP_CONNECTION_LIMIT)
    grants: list[SchemaGrantSpec] = []
    for schema in SCHEMAS:
        grants.append(
            SchemaGrantSpec(
                role=app.name,
                schema=schema,
                schema_privileges=("CREATE", "USAGE"),
                table_privileges=CRUD,
                sequence_privileges=SEQUENCE_WRITE,
                default_owners=(names.admin_role,),
            )
        )
        # The app owns what its migrations create; the admin owns anything an
        # operator adds by hand. Analytics and the backup read both, now and later.
        for reader in (analytics, backup):
            grants.append(
                SchemaGrantSpec(
                    role=reader.name,
                    schema=schema,
                    schema_privileges=("USAGE",),
                    table_privileges=READ,
                    sequence_privileges=READ,
                    default_owners=(names.admin_role, app.name),
                )
            )
    return DatabaseSpec(
        name=names.database,
        admin_role=names.admin_role,
        schemas=SCHEMAS,
        roles=(app, analytics, monitoring, backup),
        grants=tuple(grants),
    )
