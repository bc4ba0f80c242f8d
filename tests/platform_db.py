"""The platform's database objects applied to a test server the way `pulumi up`
applies them: through the dynamic providers, in dependency order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.postgres.provider import (
    DatabaseAccessProvider,
    ExtensionProvider,
    RoleProvider,
    SchemaGrantProvider,
    SchemaProvider,
)
from components.postgres.resources import (
    access_inputs,
    extension_inputs,
    grant_inputs,
    role_inputs,
    schema_inputs,
)
from components.spec.database import DatabaseSpec
from tests.servers import PostgresServer

PASSWORDS = {
    "migrator": "migrator-pass-0000",
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
        p = {**schema_inputs(spec, schema), "connection": conn}
        SchemaProvider().create(p)
        props[f"schema-{schema}"] = p
    for grant in spec.grants:
        p = {**grant_inputs(grant), "connection": conn}
        SchemaGrantProvider().create(p)
        props[f"grant-{grant.schema}-{grant.role}"] = p
    p = {**access_inputs(spec, superuser=True), "connection": conn}
    DatabaseAccessProvider().create(p)
    props["database-access"] = p
    for extension in spec.extensions:
        p = {**extension_inputs(extension), "connection": conn}
        ExtensionProvider().create(p)
        props[f"extension-{extension.name}"] = p
    return Applied(spec, props)


def destroy(applied: Applied) -> None:
    """What `pulumi destroy` does: dependents first."""
    p = applied.props
    for key, props in p.items():
        if key.startswith("extension-"):
            ExtensionProvider().delete(props["name"], props)
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
