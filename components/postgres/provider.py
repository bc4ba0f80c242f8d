"""The dynamic providers for Postgres roles, schemas, grants, database access
and extensions, under the names Pulumi's state records.

Pulumi pickles each provider instance into state by its class's module and
name, and calls it back from a separate provider process. Stacks made before
the providers were split into a module per kind of object (`roles`,
`schemas`, `grants`, `access`, `extensions`, over `base`) name
`components.postgres.provider.RoleProvider` and its siblings, so every class
stays importable from here; new state names its own module.
"""

from __future__ import annotations

from components.postgres.access import DatabaseAccessProvider
from components.postgres.base import QUIET_SESSION, PostgresProvider, PostgresResourceError, connect
from components.postgres.extensions import ExtensionProvider
from components.postgres.grants import SchemaGrantProvider
from components.postgres.roles import RoleProvider, scram_matches
from components.postgres.schemas import SchemaProvider, _hand_over

__all__ = [
    "QUIET_SESSION",
    "DatabaseAccessProvider",
    "ExtensionProvider",
    "PostgresProvider",
    "PostgresResourceError",
    "RoleProvider",
    "SchemaGrantProvider",
    "SchemaProvider",
    "_hand_over",
    "connect",
    "scram_matches",
]
