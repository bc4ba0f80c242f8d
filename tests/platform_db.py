"""The platform's database objects applied to a test server the way `pulumi up`
applies them: through the dynamic providers, in dependency order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

from components.model.database import DatabaseSpec, database_spec
from components.model.naming import Names
from components.postgres.provider import RoleProvider
from components.postgres.resources import declared_objects, role_inputs
from tests.servers import PostgresServer

# The bundled app's first migration, in the form that matters here: the hash is withheld from analytics.
USERS = (
    "CREATE TABLE core.users (id bigserial PRIMARY KEY, email text NOT NULL, password_hash text NOT NULL DEFAULT '-')"
)

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
    for name, provider, inputs in declared_objects(spec, superuser=True):
        p = {**inputs, "connection": conn}
        if isinstance(provider, RoleProvider):
            p["password"] = passwords[name.removeprefix("role-")]
        provider.create(p)
        props[name] = p
    return Applied(spec, props)


def destroy(applied: Applied) -> None:
    """What `pulumi destroy` does: dependents first."""
    for name, provider, _inputs in reversed(declared_objects(applied.spec, superuser=True)):
        props = applied.props[name]
        provider.delete(provider._id(props), props)


def connect_as(
    server: PostgresServer, spec: DatabaseSpec, key: str, password: str | None = None
) -> psycopg.Connection[tuple[Any, ...]]:
    """A session as one of the spec's roles, with its password or the one given."""
    return psycopg.connect(
        server.dsn(user=spec.role(key).name, password=password or PASSWORDS[key], dbname=spec.name),
        autocommit=True,
    )


def platform_with_users(server: PostgresServer, *rows: str) -> Applied:
    """The platform's objects applied, then `core.users` created by the
    migrator after them (as the migrations run on both targets), with `rows`
    inserted as `(email, password_hash)` value lists."""
    spec = database_spec(Names(app="wondernest", stack="test"))
    result = apply_spec(server, spec)
    with connect_as(server, spec, "migrator") as conn:
        conn.execute(USERS)
        for row in rows:
            conn.execute(f"INSERT INTO core.users (email, password_hash) VALUES {row}")
    return result
