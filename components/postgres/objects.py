"""Declares a DatabaseSpec's roles, schemas and grants; both targets call this."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi

from components.model.database import DatabaseSpec
from components.postgres.resources import (
    AdminConnection,
    DatabaseAccess,
    Extension,
    Role,
    Schema,
    SchemaGrant,
)


@dataclass(frozen=True)
class DatabaseObjects:
    roles: dict[str, Role]
    schemas: dict[str, Schema]
    grants: list[SchemaGrant]
    access: DatabaseAccess
    extensions: list[Extension]

    @property
    def all(self) -> list[pulumi.Resource]:
        return [*self.roles.values(), *self.schemas.values(), *self.grants, self.access, *self.extensions]


def declare_database_objects(
    spec: DatabaseSpec,
    *,
    password_for: Callable[[str], pulumi.Input[str]],
    connection: AdminConnection,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
) -> DatabaseObjects:
    """Logical names are `role-<key>`, `schema-<name>`, `grant-<schema>-<role key>`:
    stable, so a preview after a code change shows only what really changed."""
    server = pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on))
    # The schemas and the role that owns their tables hold or own data, which
    # lives in the protected volume (or instance): `pulumi destroy` leaves them
    # in the database instead of failing on the provider's refusal to drop
    # data, and the next `up` adopts them as they are.
    roles: dict[str, Role] = {}
    for role in spec.roles:
        # An alternate user is a member of its role: that role must exist first.
        acted = [roles[r.key] for r in spec.roles if r.name == role.acts_as]
        roles[role.key] = Role(
            f"role-{role.key}",
            spec=role,
            members=spec.members(role),
            password=password_for(role.key),
            connection=connection,
            opts=pulumi.ResourceOptions.merge(
                server,
                pulumi.ResourceOptions(depends_on=acted, retain_on_delete=role.name == spec.object_owner),
            ),
        )
    key_of = {role.name: role.key for role in spec.roles}
    # What another role owns in a schema is handed to the object owner: it must exist first.
    owned_by = pulumi.ResourceOptions.merge(
        server, pulumi.ResourceOptions(depends_on=[roles[key_of[spec.object_owner]]], retain_on_delete=True)
    )
    schemas = {
        name: Schema(f"schema-{name}", spec=spec, schema=name, connection=connection, opts=owned_by)
        for name in spec.schemas
    }
    grants = [
        SchemaGrant(
            f"grant-{grant.schema}-{key_of[grant.role]}",
            spec=grant,
            connection=connection,
            opts=pulumi.ResourceOptions(
                parent=parent,
                depends_on=[
                    schemas[grant.schema],
                    roles[key_of[grant.role]],
                    *(roles[key_of[o]] for o in grant.default_owners if o in key_of),
                ],
            ),
        )
        for grant in spec.grants
    ]
    access = DatabaseAccess(
        "database-access",
        spec=spec,
        connection=connection,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*roles.values(), *schemas.values()]),
    )
    extensions = [
        Extension(
            f"extension-{extension.name}",
            spec=extension,
            connection=connection,
            opts=pulumi.ResourceOptions(
                parent=parent,
                # After the database access: it closes `public` to PUBLIC, then the readers get in.
                depends_on=[access, *(roles[key_of[r]] for r in extension.readers)],
            ),
        )
        for extension in spec.extensions
    ]
    return DatabaseObjects(roles=roles, schemas=schemas, grants=grants, access=access, extensions=extensions)
