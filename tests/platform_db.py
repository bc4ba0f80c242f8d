"""The platform's database objects applied to a test server the way `pulumi up`
applies them: through the dynamic providers, in dependency order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.postgres.provider import (
    DatabaseAccessProvider,
    RoleProvider,
    SchemaGrantProvider,
    SchemaProvider,
)
from components.postgres.resources import role_inputs
from components.spec.database import DatabaseSpec
from tests.servers import PostgresServer

PASSWORDS = {
    "app": "app-pass-1111",
    "analytics": "analytics-pass-2222",
    "monitoring": "mon-pass-3333",
    "backup": "backup-pass-4444",
}


@dataclass
class Applied:
    spec: DatabaseSpec
    props: dict[str, dict[str, Any]]
    """Logical name → the props the engine would pass, as created."""


def role_props(server: PostgresServer, spec: DatabaseSpec, key: str, password: str) -> dict[str, Any]:
    role = spec.role(key)
    return {
        **role_inputs(role, spec.members(role)),
        "password": password,
        "connection": server.admin_connection(spec.name),
    }


def apply_spec(server: PostgresServer, spec: DatabaseSpec, passwords: Mapping[str, str] = PASSWORDS) -> Applied:
    """What `pulumi up` does with a DatabaseSpec, in dependency order."""
    conn = server.admin_connection(spec.name)
    props: dict[str, dict[str, Any]] = {}
    for role in spec.roles:
        p = role_props(server, spec, role.key, passwords[role.key])
        RoleProvider().create(p)
        props[f"role-{role.key}"] = p
    for schema in spec.schemas:
        p = {"name": schema, "owner": spec.admin_role, "connection": conn}
        SchemaProvider().create(p)
        props[f"schema-{schema}"] = p
    for grant in spec.grants:
        p = {
            "role": grant.role,
            "schema": grant.schema,
            "schema_privileges": sorted(grant.schema_privileges),
            "table_privileges": sorted(grant.table_privileges),
            "sequence_privileges": sorted(grant.sequence_privileges),
            "default_owners": sorted(grant.default_owners),
            "connection": conn,
        }
        SchemaGrantProvider().create(p)
        props[f"grant-{grant.schema}-{grant.role}"] = p
    p = {
        "database": spec.name,
        "connect_roles": sorted(spec.connect_roles),
        "public_revoked": True,
        "routine_owners": sorted(spec.routine_owners),
        "schemas": sorted(spec.schemas),
        "routines_public_revoked": True,
        "connection": conn,
    }
    DatabaseAccessProvider().create(p)
    props["database-access"] = p
    return Applied(spec, props)


def destroy(applied: Applied) -> None:
    """What `pulumi destroy` does: dependents first."""
    p = applied.props
    DatabaseAccessProvider().delete(applied.spec.name, p["database-access"])
    for key, props in p.items():
        if key.startswith("grant-"):
            SchemaGrantProvider().delete(key, props)
    for key, props in p.items():
        if key.startswith("schema-"):
            SchemaProvider().delete(props["name"], props)
    for key, props in p.items():
        if key.startswith("role-"):
            RoleProvider().delete(props["name"], props)
