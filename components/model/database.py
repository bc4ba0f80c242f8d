"""Schemas, roles and grants: the least-privilege model both targets apply."""

from __future__ import annotations

from dataclasses import dataclass, replace

from components.model.naming import Names

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
# One migration run holds one connection; two containers may start at once.
MIGRATOR_CONNECTION_LIMIT = 3
ANALYTICS_CONNECTION_LIMIT = 10
# postgres_exporter runs its collectors side by side and has been seen holding
# three connections at once; the rest is room for a restart overlapping and an
# operator's session (`make psql ROLE=monitoring`, `make verify`).
MONITORING_CONNECTION_LIMIT = 6
# The snapshot-holding session plus pg_dump's own connection.
BACKUP_CONNECTION_LIMIT = 3

# Each role's sessions start with these. A transaction left open holds its
# locks: the migrations' DDL then waits behind it, and every query of the app
# queues behind that DDL, so an idle transaction ends within a minute (the
# migrator's within five: a data migration may pause between statements). The
# migrator waits at most 10 s for a lock and fails rather than stall the app
# (the job runs again on the next `up`). Statements end at what their caller
# waits for: an API request, a scrape (10 s), an analyst's query. The backup
# role's sessions have no idle limit: the one that exports the dump's snapshot
# sits idle in its transaction for as long as pg_dump runs, which may be hours,
# and the server's one-hour backstop would end it and lose the backup.
APP_SESSION = (("idle_in_transaction_session_timeout", "1min"), ("statement_timeout", "30s"))
MIGRATOR_SESSION = (("idle_in_transaction_session_timeout", "5min"), ("lock_timeout", "10s"))
ANALYTICS_SESSION = (("idle_in_transaction_session_timeout", "1min"), ("statement_timeout", "15min"))
MONITORING_SESSION = (("idle_in_transaction_session_timeout", "1min"), ("statement_timeout", "10s"))
BACKUP_SESSION = (("idle_in_transaction_session_timeout", "0"),)

CRUD = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_WRITE = ("SELECT", "UPDATE", "USAGE")
READ = ("SELECT",)
# What the running app may do where rows are evidence: add them and read them.
APPEND_ONLY = ("INSERT", "SELECT")
# nextval() without setval(): an append-only schema's identities only move forward.
SEQUENCE_NEXT = ("SELECT", "USAGE")
APPEND_ONLY_SCHEMAS = frozenset({"audit"})
# Credentials the running app checks and nobody reads: password hashes and
# refresh-token digests (a digest is as good as the token to anyone who can
# write it back, and a hash can be attacked offline). Analytics reads every
# other column; the backup reads them all, or restores would lose them.
WITHHELD_FROM_ANALYTICS: dict[str, tuple[str, ...]] = {
    "core": ("user_sessions.token_hash", "users.password_hash"),
}
# The API's migrations create their tables here: a stack must keep both.
REQUIRED_SCHEMAS: tuple[str, ...] = ("core", "audit")

# Catalog functions every role may run by default that let a read-only role
# store data (a large object it creates is its own) or take the session lock
# the migrations queue on. Every overload of each loses PUBLIC's EXECUTE.
RESTRICTED_FUNCTIONS: tuple[str, ...] = (
    "lo_creat",
    "lo_create",
    "lo_from_bytea",
    "lo_import",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
)
# What the migrations take and give back, as the catalog prints them.
MIGRATION_LOCK_FUNCTIONS = ("pg_advisory_lock(bigint)", "pg_advisory_unlock(bigint)")

# The AWS-provided alternating-users rotation function names the second user of
# a pair `<user>_clone`; Postgres identifiers stop at 63 bytes.
ALTERNATE_SUFFIX = "_clone"
MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class RoleSpec:
    key: str
    """Stable logical key: names the Pulumi resource and the role's secret."""
    name: str
    connection_limit: int
    member_of: tuple[str, ...] = ()
    acts_as: str | None = None
    """The role every session of this one takes on at login (`SET role`), so
    what it creates is owned by that role: the alternate user of a pair."""
    rotated: bool = False
    """After creation the password belongs to Secrets Manager rotation: an
    update never sets it back to the generated one."""
    session: tuple[tuple[str, str], ...] = ()
    """Settings every session of the role starts with (timeouts)."""

    @property
    def settings(self) -> tuple[str, ...]:
        """Per-role settings as the catalog lists them (`name=value`)."""
        acting = (f"role={self.acts_as}",) if self.acts_as is not None else ()
        return tuple(sorted((*acting, *(f"{key}={value}" for key, value in self.session))))


@dataclass(frozen=True)
class SchemaGrantSpec:
    role: str
    schema: str
    schema_privileges: tuple[str, ...]
    table_privileges: tuple[str, ...]
    sequence_privileges: tuple[str, ...]
    default_owners: tuple[str, ...]
    """Roles whose future tables and sequences get the same privileges."""
    withheld: tuple[str, ...] = ()
    """`table.column`s of the schema the role may not read (credentials):
    it reads the rest of those tables column by column, now and after every
    migration that creates or alters them."""


@dataclass(frozen=True)
class ExtensionSpec:
    """An extension and who may read it: nobody else, PUBLIC included."""

    name: str
    schema: str
    readers: tuple[str, ...]
    views: tuple[str, ...]
    """Its views the readers may SELECT."""
    functions: tuple[str, ...]
    """The functions those views call (signatures as the catalog prints them)."""


@dataclass(frozen=True)
class DatabaseSpec:
    name: str
    admin_role: str
    object_owner: str
    """The role that owns what the schemas hold (tables, sequences, routines):
    the migrations' role. Whatever another role owns there, apart from the
    admin, is handed to it."""
    schemas: tuple[str, ...]
    roles: tuple[RoleSpec, ...]
    grants: tuple[SchemaGrantSpec, ...]
    extensions: tuple[ExtensionSpec, ...] = ()

    @property
    def connect_roles(self) -> tuple[str, ...]:
        return tuple(role.name for role in self.roles)

    @property
    def routine_owners(self) -> tuple[str, ...]:
        """The roles that create functions and procedures: the admin and whoever may create in a schema."""
        creators = {grant.role for grant in self.grants if "CREATE" in grant.schema_privileges}
        return (self.admin_role, *sorted(creators))

    @property
    def function_grants(self) -> dict[str, tuple[str, ...]]:
        """Who may still run a restricted function (signature → roles): the migrator, its lock."""
        return {signature: (self.object_owner,) for signature in MIGRATION_LOCK_FUNCTIONS}

    def role(self, key: str) -> RoleSpec:
        for role in self.roles:
            if role.key == key:
                return role
        raise KeyError(key)

    def members(self, role: RoleSpec) -> tuple[str, ...]:
        """The roles declared as acting with `role`'s rights: its alternate, if any."""
        return tuple(sorted(r.name for r in self.roles if r.acts_as == role.name))

    def with_alternating_users(self) -> DatabaseSpec:
        """Each login role as a pair for rotation by alternating users: the role
        and `<role>_clone`, a member of it that acts as it. Rotation changes the
        password of the user not in use, so the credentials a running task holds
        stay valid for one more rotation period."""
        pairs: list[RoleSpec] = []
        for role in self.roles:
            alternate = role.name + ALTERNATE_SUFFIX
            if len(alternate) > MAX_IDENTIFIER:
                raise ValueError(f"{alternate!r} is longer than {MAX_IDENTIFIER} characters")
            pairs.append(replace(role, rotated=True))
            pairs.append(
                RoleSpec(
                    key=f"{role.key}-alternate",
                    name=alternate,
                    connection_limit=role.connection_limit,
                    member_of=(role.name,),
                    acts_as=role.name,
                    rotated=True,
                    # Settings belong to the login role: a session that acts as
                    # another through `SET role` keeps its own.
                    session=role.session,
                )
            )
        return replace(self, roles=tuple(pairs))


def database_spec(names: Names, schemas: tuple[str, ...] = SCHEMAS) -> DatabaseSpec:
    # Migrations own the schema objects; the running app only reads and writes
    # rows. Code execution in the API can then neither change the schema nor
    # rewrite the audit trail.
    migrator = RoleSpec("migrator", names.migrator_role, MIGRATOR_CONNECTION_LIMIT, session=MIGRATOR_SESSION)
    app = RoleSpec("app", names.app_role, APP_CONNECTION_LIMIT, session=APP_SESSION)
    analytics = RoleSpec("analytics", names.analytics_role, ANALYTICS_CONNECTION_LIMIT, session=ANALYTICS_SESSION)
    monitoring = RoleSpec(
        "monitoring",
        names.monitoring_role,
        MONITORING_CONNECTION_LIMIT,
        member_of=("pg_monitor",),
        session=MONITORING_SESSION,
    )
    # Exactly what pg_dump of the platform's database needs: USAGE on its schemas
    # and SELECT on their tables and sequences, now and later. Not
    # pg_read_all_data, which also reads pg_authid's password verifiers and
    # every other database on the server.
    backup = RoleSpec("backup", names.backup_role, BACKUP_CONNECTION_LIMIT, session=BACKUP_SESSION)
    grants: list[SchemaGrantSpec] = []
    for schema in schemas:
        # Data migrations may also change rows in tables an operator added by hand.
        grants.append(
            SchemaGrantSpec(
                role=migrator.name,
                schema=schema,
                schema_privileges=("CREATE", "USAGE"),
                table_privileges=CRUD,
                sequence_privileges=SEQUENCE_WRITE,
                default_owners=(names.admin_role,),
            )
        )
        append_only = schema in APPEND_ONLY_SCHEMAS
        grants.append(
            SchemaGrantSpec(
                role=app.name,
                schema=schema,
                schema_privileges=("USAGE",),
                table_privileges=APPEND_ONLY if append_only else CRUD,
                sequence_privileges=SEQUENCE_NEXT if append_only else SEQUENCE_WRITE,
                default_owners=(names.admin_role, migrator.name),
            )
        )
        # The migrator owns what the migrations create; the admin owns anything an
        # operator adds by hand. Analytics and the backup read both, now and later.
        for reader in (analytics, backup):
            grants.append(
                SchemaGrantSpec(
                    role=reader.name,
                    schema=schema,
                    schema_privileges=("USAGE",),
                    table_privileges=READ,
                    sequence_privileges=READ,
                    default_owners=(names.admin_role, migrator.name),
                    withheld=WITHHELD_FROM_ANALYTICS.get(schema, ()) if reader is analytics else (),
                )
            )
    # Statement statistics for the monitoring role (pg_monitor lets it see every
    # role's query text), in `public`, where an unqualified name finds it.
    statements = ExtensionSpec(
        name="pg_stat_statements",
        schema="public",
        readers=(monitoring.name,),
        views=("pg_stat_statements", "pg_stat_statements_info"),
        functions=("pg_stat_statements(boolean)", "pg_stat_statements_info()"),
    )
    return DatabaseSpec(
        name=names.database,
        admin_role=names.admin_role,
        object_owner=migrator.name,
        schemas=schemas,
        roles=(migrator, app, analytics, monitoring, backup),
        grants=tuple(grants),
        extensions=(statements,),
    )
