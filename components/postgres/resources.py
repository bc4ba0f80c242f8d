"""Postgres roles, schemas and grants as resources a `pulumi preview` can show.

Type tokens read `pulumi-python:dynamic/postgres:<Thing>`, so a reviewer sees
"Role", "Schema", "SchemaGrant" in a diff rather than an opaque blob.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic

from components.model.database import RESTRICTED_FUNCTIONS, DatabaseSpec, ExtensionSpec, RoleSpec, SchemaGrantSpec
from components.postgres import withheld
from components.postgres.provider import (
    DatabaseAccessProvider,
    ExtensionProvider,
    PostgresProvider,
    RoleProvider,
    SchemaGrantProvider,
    SchemaProvider,
)

_SECRET_OUTPUTS = ["password", "connection"]


@dataclass(frozen=True)
class AdminConnection:
    """How the provider reaches the server as its admin; the target decides
    (a loopback port locally, an in-VPC runner or SSM tunnel on AWS)."""

    host: pulumi.Input[str]
    port: pulumi.Input[int]
    user: pulumi.Input[str]
    password: pulumi.Input[str] | None
    """None with `password_secret`."""
    database: pulumi.Input[str]
    sslmode: str = "prefer"
    ca_pem: pulumi.Input[str] | None = None
    """The CA the server's certificate must chain to (with `sslmode` verify-full)."""
    superuser: bool = False
    """Whether the admin is a superuser: only a superuser may change who runs
    pg_catalog's functions (RDS's master user is not one)."""
    password_secret: tuple[pulumi.Input[str], str] | None = None
    """(Secrets Manager ARN, region) of a secret whose JSON holds the password,
    read when the provider connects. RDS rotates its master password every
    seven days: a reference that stays the same keeps every object's inputs
    the same, so a rotation shows no change in a preview."""

    def as_input(self) -> pulumi.Output[dict[str, Any]]:
        if (self.password is None) == (self.password_secret is None):
            raise ValueError("an admin connection takes a password or a password secret, one of them")
        extra: dict[str, Any] = {} if self.ca_pem is None else {"ca_pem": self.ca_pem}
        if self.password_secret is not None:
            arn, region = self.password_secret
            extra["password_secret"] = pulumi.Output.all(arn=arn, region=region)
        else:
            extra["password"] = self.password
        return pulumi.Output.secret(
            pulumi.Output.all(
                host=self.host,
                port=self.port,
                user=self.user,
                database=self.database,
                **extra,
            ).apply(lambda c: {**c, "sslmode": self.sslmode})
        )


def _opts(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=_SECRET_OUTPUTS))


def role_inputs(spec: RoleSpec, members: Sequence[str]) -> dict[str, Any]:
    """A role's inputs but its password and connection; `members` are the roles
    allowed to act with its rights."""
    return {
        "name": spec.name,
        "login": True,
        "connection_limit": spec.connection_limit,
        "member_of": sorted(spec.member_of),
        "members": sorted(members),
        "settings": list(spec.settings),
        "rotated": spec.rotated,
    }


def schema_inputs(spec: DatabaseSpec, schema: str) -> dict[str, Any]:
    return {
        "name": schema,
        "owner": spec.admin_role,
        "object_owner": spec.object_owner,
        # Only these hold rights in the schema, each exactly through its SchemaGrant.
        "grantees": sorted({grant.role for grant in spec.grants if grant.schema == schema}),
        # Whose reads are column by column there, and without which columns.
        "withheld": {
            grant.role: sorted(grant.withheld) for grant in spec.grants if grant.schema == schema and grant.withheld
        },
    }


def grant_inputs(grant: SchemaGrantSpec) -> dict[str, Any]:
    return {
        "role": grant.role,
        "schema": grant.schema,
        "schema_privileges": sorted(grant.schema_privileges),
        "table_privileges": sorted(grant.table_privileges),
        "sequence_privileges": sorted(grant.sequence_privileges),
        "default_owners": sorted(grant.default_owners),
        "withheld": sorted(grant.withheld),
    }


def extension_inputs(extension: ExtensionSpec) -> dict[str, Any]:
    return {
        "name": extension.name,
        "schema": extension.schema,
        "readers": sorted(extension.readers),
        "views": sorted(extension.views),
        "functions": sorted(extension.functions),
    }


def access_inputs(spec: DatabaseSpec, *, superuser: bool) -> dict[str, Any]:
    """`superuser`: the admin may restrict catalog functions (large objects,
    advisory locks); elsewhere PUBLIC keeps them, and the inputs say so."""
    return {
        "database": spec.name,
        "connect_roles": sorted(spec.connect_roles),
        "public_revoked": True,
        "routine_owners": sorted(spec.routine_owners),
        "schemas": sorted(spec.schemas),
        "routines_public_revoked": True,
        "restricted_functions": sorted(RESTRICTED_FUNCTIONS) if superuser else [],
        "function_grants": {k: sorted(v) for k, v in spec.function_grants.items()} if superuser else {},
        # The grants' own, which keep withheld columns withheld.
        "event_triggers": sorted(withheld.trigger_name(g.schema, g.role) for g in spec.grants if g.withheld),
        "extension_readers": {
            schema: sorted({r for e in spec.extensions if e.schema == schema for r in e.readers})
            for schema in sorted({e.schema for e in spec.extensions})
        },
    }


def declared_objects(spec: DatabaseSpec, *, superuser: bool) -> list[tuple[str, PostgresProvider, dict[str, Any]]]:
    """Every object the spec declares, in the order `pulumi up` creates them: its
    logical name, provider and inputs, less the connection and roles' passwords."""
    key_of = {role.name: role.key for role in spec.roles}
    return [
        *((f"role-{role.key}", RoleProvider(), role_inputs(role, spec.members(role))) for role in spec.roles),
        *((f"schema-{name}", SchemaProvider(), schema_inputs(spec, name)) for name in spec.schemas),
        *(
            (f"grant-{grant.schema}-{key_of[grant.role]}", SchemaGrantProvider(), grant_inputs(grant))
            for grant in spec.grants
        ),
        ("database-access", DatabaseAccessProvider(), access_inputs(spec, superuser=superuser)),
        *(
            (f"extension-{extension.name}", ExtensionProvider(), extension_inputs(extension))
            for extension in spec.extensions
        ),
    ]


class Role(pulumi.dynamic.Resource, module="postgres", name="Role"):
    name: pulumi.Output[str]
    connection_limit: pulumi.Output[int]

    def __init__(
        self,
        resource_name: str,
        *,
        spec: RoleSpec,
        members: Sequence[str],
        password: pulumi.Input[str],
        connection: AdminConnection,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            **role_inputs(spec, members),
            "password": pulumi.Output.secret(password),
            "connection": connection.as_input(),
        }
        super().__init__(RoleProvider(), resource_name, props, _opts(opts))


class Schema(pulumi.dynamic.Resource, module="postgres", name="Schema"):
    name: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        spec: DatabaseSpec,
        schema: str,
        connection: AdminConnection,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {**schema_inputs(spec, schema), "connection": connection.as_input()}
        super().__init__(SchemaProvider(), resource_name, props, _opts(opts))


class SchemaGrant(pulumi.dynamic.Resource, module="postgres", name="SchemaGrant"):
    def __init__(
        self,
        resource_name: str,
        *,
        spec: SchemaGrantSpec,
        connection: AdminConnection,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {**grant_inputs(spec), "connection": connection.as_input()}
        super().__init__(SchemaGrantProvider(), resource_name, props, _opts(opts))


class DatabaseAccess(pulumi.dynamic.Resource, module="postgres", name="DatabaseAccess"):
    def __init__(
        self,
        resource_name: str,
        *,
        spec: DatabaseSpec,
        connection: AdminConnection,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            **access_inputs(spec, superuser=connection.superuser),
            "connection": connection.as_input(),
        }
        super().__init__(DatabaseAccessProvider(), resource_name, props, _opts(opts))


class Extension(pulumi.dynamic.Resource, module="postgres", name="Extension"):
    def __init__(
        self,
        resource_name: str,
        *,
        spec: ExtensionSpec,
        connection: AdminConnection,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {**extension_inputs(spec), "connection": connection.as_input()}
        super().__init__(ExtensionProvider(), resource_name, props, _opts(opts))
