"""Versioned SQL migrations, applied under a Postgres advisory lock.

Files are `NNNN_name.sql` in `migrations/`, applied in order, each in its own
transaction, and recorded with a checksum in `core.schema_migrations`. Any
number of containers may run this at once: they queue on the lock, and all
but the first find nothing left to do. An applied file that has since changed
is an error, never silently skipped.

Migrations run as the role that owns the schema objects; the API serves as a
role that may only read and write rows, and refuses to start on a database
that lacks a migration it knows.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

# pg_advisory_lock takes a bigint; any fixed value unique to this purpose will do.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"wondernest_api.migrations").digest()[:8], "big", signed=True)
# How long a run waits for the lock before it names the session holding it.
LOCK_WAIT_SECONDS = 120
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(Exception):
    pass


# The ledger is the migrations' alone: a row deleted or edited by the app's
# role (which may write the other tables of `core`) would stop every later
# deployment. Whoever writes it must be its owner, whatever privileges a grant
# on the whole schema hands out; installed on every run, so an existing ledger
# gets it too.
LEDGER_GUARD = """
CREATE OR REPLACE FUNCTION core.schema_migrations_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
        RAISE EXCEPTION 'core.schema_migrations is written by the migrations (its owner) alone, not by %',
            current_user USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE OR REPLACE TRIGGER schema_migrations_written_by_owner
    BEFORE INSERT OR UPDATE OR DELETE ON core.schema_migrations
    FOR EACH ROW EXECUTE FUNCTION core.schema_migrations_guard();
CREATE OR REPLACE TRIGGER schema_migrations_not_truncated BEFORE TRUNCATE ON core.schema_migrations
    FOR EACH STATEMENT EXECUTE FUNCTION core.schema_migrations_guard();
"""


def available() -> list[Migration]:
    found = []
    for entry in resources.files("wondernest_api.migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(match["version"], match["name"], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {versions}")
    return found


# The platform creates the schemas (and grants on them); migrations only fill them.
REQUIRED_SCHEMAS = ("core", "audit")


def _check_schemas(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(REQUIRED_SCHEMAS),)
    ).fetchall()
    missing = sorted(set(REQUIRED_SCHEMAS) - {str(row[0]) for row in rows})
    if missing:
        database = conn.info.dbname
        raise MigrationError(
            f"database {database!r} has no schema {', '.join(missing)}: the platform creates the schemas "
            "(pulumi up); check DB_NAME points at the platform's database"
        )


def pending(conninfo: str) -> list[str]:
    """The versions this code has that the database has not applied."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('core.schema_migrations')").fetchone() in (None, (None,)):
            applied: set[str] = set()
        else:
            applied = {str(row[0]) for row in conn.execute("SELECT version FROM core.schema_migrations").fetchall()}
    return [m.version for m in available() if m.version not in applied]


def _lock(conn: psycopg.Connection[tuple[object, ...]], wait_seconds: float) -> None:
    """Take the migrations' lock, or say who holds it: a session left open on it
    would otherwise stall every deployment without a word."""
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(wait_seconds * 1000)}ms",))
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    except psycopg.errors.LockNotAvailable:
        unsigned = LOCK_KEY & 0xFFFFFFFFFFFFFFFF
        holder = conn.execute(
            "SELECT l.pid, a.usename, a.backend_start FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        ).fetchone()
        who = "a session"
        if holder is not None:
            pid, user, since = holder
            who = f"session {pid} of {user or 'another role'}" + (
                f" (connected {since:%Y-%m-%d %H:%M:%S})" if since else ""
            )
        raise MigrationError(
            f"{who} has held the migrations lock for more than {wait_seconds:g} s; "
            "wait for that run to finish, or end the session if it is stuck"
        ) from None
    finally:
        conn.execute("RESET lock_timeout")


_LEDGER = (
    "CREATE TABLE IF NOT EXISTS core.schema_migrations ("
    " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)


def _ledger(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, str]:
    """The ledger, created (with its guard) when missing: version → checksum."""
    conn.execute(_LEDGER)
    with conn.transaction():
        conn.execute(LEDGER_GUARD.encode())
    rows = conn.execute("SELECT version, checksum FROM core.schema_migrations").fetchall()
    return {str(version): str(checksum) for version, checksum in rows}


_CREATED = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?(?P<kind>TABLE|INDEX|FUNCTION)\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>[a-z_]+(?:\.[a-z_]+)?)"
    r"(?:\s+ON\s+(?P<table>[a-z_]+\.[a-z_]+))?"
    r"|CREATE\s+(?:OR\s+REPLACE\s+)?TRIGGER\s+(?P<trigger>[a-z_]+)\s.*?\sON\s+(?P<on>[a-z_]+\.[a-z_]+)",
    re.IGNORECASE | re.DOTALL,
)
_DROPPED = re.compile(r"DROP\s+INDEX\s+(?:IF\s+EXISTS\s+)?(?P<name>[a-z_]+\.[a-z_]+)", re.IGNORECASE)


def expected_objects(migrations: list[Migration]) -> dict[str, str]:
    """What the migrations leave behind, by name: tables, indexes, functions
    and triggers they create and no later one of them drops."""
    found: dict[str, str] = {}
    for migration in migrations:
        for match in _CREATED.finditer(migration.sql):
            if match["trigger"]:
                found[f"{match['on']}:{match['trigger']}"] = "trigger"
            elif match["kind"].upper() == "INDEX":
                schema = (match["table"] or match["name"]).split(".")[0]
                found[f"{schema}.{match['name'].split('.')[-1]}"] = "index"
            else:
                found[match["name"]] = match["kind"].lower()
        for match in _DROPPED.finditer(migration.sql):
            found.pop(match["name"], None)
    return found


def _missing(conn: psycopg.Connection[tuple[object, ...]], expected: dict[str, str]) -> list[str]:
    missing = []
    for name, kind in sorted(expected.items()):
        if kind == "trigger":
            table, trigger = name.split(":")
            row = conn.execute(
                "SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = %s", (table, trigger)
            ).fetchone()
        elif kind == "function":
            schema, function = name.split(".")
            row = conn.execute(
                "SELECT 1 FROM pg_proc WHERE pronamespace = to_regnamespace(%s) AND proname = %s", (schema, function)
            ).fetchone()
        else:
            row = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
            row = None if row is None or row[0] is None else row
        if row is None:
            missing.append(f"{kind} {name}")
    return missing


def baseline(conninfo: str, version: str, *, lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> list[str]:
    """Record the migrations up to `version` as applied without running them:
    for a database whose tables were made before the platform (by the guide's
    init script, say), handed to the migrator role. Refused once anything is
    recorded, and on a database with no table of its own to baseline."""
    known = [m.version for m in available()]
    if version not in known:
        raise MigrationError(f"no migration {version}; these exist: {', '.join(known)}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _check_schemas(conn)
        _lock(conn, lock_wait_seconds)
        try:
            tables = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations'",
                (list(REQUIRED_SCHEMAS),),
            ).fetchone()
            if tables is None or tables[0] == 0:
                raise MigrationError(
                    f"{', '.join(REQUIRED_SCHEMAS)} hold no table: there is nothing to baseline; run migrate instead"
                )
            if done := _ledger(conn):
                raise MigrationError(
                    f"migrations {', '.join(sorted(done))} are already recorded: a baseline is only for a "
                    "database the migrations never ran on"
                )
            recorded = [m for m in available() if m.version <= version]
            # Recorded as applied only what the database shows was applied.
            missing = _missing(conn, expected_objects(recorded))
            if missing:
                raise MigrationError(
                    f"migrations up to {version} would leave {', '.join(missing)}, which this database lacks: "
                    "baseline at the version its tables were made to, and let migrate apply the rest"
                )
            with conn.transaction():
                for migration in recorded:
                    conn.execute(
                        "INSERT INTO core.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return [m.version for m in recorded]


def migrate(conninfo: str, *, lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> list[str]:
    """Apply what is missing; return the versions applied by this call."""
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _check_schemas(conn)
        _lock(conn, lock_wait_seconds)
        try:
            done = _ledger(conn)
            for migration in available():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version}_{migration.name} changed after it was "
                            "applied; add a new migration instead of editing an old one"
                        )
                    continue
                with conn.transaction():
                    # Trusted text shipped in the package, several statements per file.
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO core.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now
