"""run, verify, restore: a backup is a pg_dump file plus a manifest that says
what it must contain, and it is good only once a restore has shown it does."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Annotated, Any

import psycopg
from psycopg import sql
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from wondernest_backup.pgtools import (
    BackupError,
    EarlyServer,
    Endpoint,
    alive,
    child_env,
    script_codec,
    throwaway_server,
    tool,
)
from wondernest_backup.retention import Candidate, RetentionPolicy, to_keep


class BackupDefect(BackupError):
    """Evidence that a backup is bad (as opposed to a tool or server failing)."""


# pg_dump 15 compresses custom-format archives with gzip only (zstd and lz4
# arrived in 16); level 6 is its default balance of size and speed.
COMPRESSION = "gzip:6"
CHUNK = 1 << 20
MAINTENANCE_DB = "postgres"

_TABLES = """
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition
ORDER BY 1
"""


BACKUP_ID = re.compile(r"^[0-9]{8}T[0-9]{12}Z$")
"""`20261205T030000123456Z`: the time the backup started, nothing a path could hide in."""


def _timestamp(value: str) -> str:
    dt.datetime.fromisoformat(value)
    return value


Timestamp = Annotated[str, AfterValidator(_timestamp)]


class Manifest(BaseModel):
    """What a backup must contain, read and written through this one model:
    a manifest of the wrong shape is unreadable (corrupt), never half-used."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    id: Annotated[str, Field(pattern=BACKUP_ID.pattern)]
    database: Annotated[str, Field(min_length=1)]
    server_version: str
    compression: str
    size_bytes: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    started_at: Timestamp
    finished_at: Timestamp
    tables: dict[str, Annotated[int, Field(ge=0)]]
    verified_at: Timestamp | None = None
    verification: dict[str, Any] = {}
    copied_at: Timestamp | None = None
    """When the off-site copy was made; None until it succeeds."""

    @property
    def created_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.started_at)


class Repository:
    """Backups in a directory: `<id>.dump` and `<id>.json`. A backup exists once
    its manifest does; the manifest is written last, by rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextlib.contextmanager
    def changing(self, *, wait: bool) -> Iterator[None]:
        """One command that changes the backups at a time, per directory (an
        advisory lock on `<dir>/.lock`): a prune racing a verification would
        leave a manifest saying "verified" with no dump. `wait`: queue behind
        the holder (the service's cycle) instead of refusing at once."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise BackupError(
                    f"{holder} is changing the backups in {self.root}; try again when it is done"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{' '.join(sys.argv[1:2]) or 'a command'} (pid {os.getpid()})".encode(), 0)
            yield
        finally:
            os.close(fd)

    def dump_path(self, backup_id: str) -> Path:
        return self.root / f"{backup_id}.dump"

    def manifest_path(self, backup_id: str) -> Path:
        return self.root / f"{backup_id}.json"

    def load(self, backup_id: str) -> Manifest:
        if not BACKUP_ID.match(backup_id):
            raise BackupError(f"{backup_id!r} is not a backup id (like 20261205T030000123456Z); `list` shows them")
        path = self.manifest_path(backup_id)
        if not path.exists():
            raise BackupError(f"no backup {backup_id!r} in {self.root}")
        try:
            manifest = Manifest.model_validate_json(path.read_text())
            if manifest.id != backup_id:
                raise ValueError(f"it names backup {manifest.id}")
            return manifest
        except (ValueError, OSError) as exc:
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in exc.errors()
            ) if isinstance(exc, ValidationError) else str(exc)  # fmt: skip
            raise BackupError(f"backup {backup_id}: its manifest is unreadable ({reason})") from None

    def partial_path(self, backup_id: str) -> Path:
        """Where a dump is written until complete, named for the writing process."""
        return self.root / f"{backup_id}.{os.getpid()}.dump.partial"

    def clean_partials(self) -> list[str]:
        """Removes the half-written dumps and manifests of runs that were killed."""
        removed = []
        for path in self.root.glob("*.partial"):
            parts = path.name.split(".")
            pid = parts[1] if len(parts) == 4 and parts[1].isdigit() else None
            if pid is None or not alive(int(pid)):
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def scan(self) -> tuple[list[Manifest], list[str]]:
        """Every readable manifest, oldest first, and the ids of those that cannot
        be read (listed, never used, never pruned): one read of each file."""
        manifests, bad = [], []
        for path in self.root.glob("*.json"):
            try:
                manifests.append(self.load(path.stem))
            except BackupError:
                bad.append(path.stem)
        return sorted(manifests, key=lambda m: m.started_at), sorted(bad)

    def corrupt(self) -> list[str]:
        return self.scan()[1]

    def manifest_partial_path(self, backup_id: str) -> Path:
        """Where a manifest is written before it replaces the last, named for the writing process."""
        return self.root / f"{backup_id}.{os.getpid()}.json.partial"

    def save(self, manifest: Manifest) -> None:
        tmp = self.manifest_partial_path(manifest.id)
        try:
            tmp.write_text(json.dumps(manifest.model_dump(), indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            # A failed write names no file (a full volume fails the close): the operator is told which.
            raise OSError(exc.errno, exc.strerror or str(exc), str(tmp)) from exc
        tmp.replace(self.manifest_path(manifest.id))

    def all(self) -> list[Manifest]:
        """Every backup whose manifest reads; `corrupt()` names the others."""
        return self.scan()[0]

    def delete(self, backup_id: str) -> None:
        # Manifest first: a half-deleted backup is then invisible, never a dump without a manifest.
        self.manifest_path(backup_id).unlink(missing_ok=True)
        self.dump_path(backup_id).unlink(missing_ok=True)

    def newest_verified(self) -> Manifest | None:
        verified = [m for m in self.all() if m.verified_at]
        return verified[-1] if verified else None

    @property
    def failures_path(self) -> Path:
        return self.root / FAILURES

    def record_failure(self, stage: str, detail: str) -> None:
        """One line per failed stage, whoever ran it (the service's cycle or a
        command by hand): the service's metrics count them, so an alert sees
        a failure however it happened. Appended, never rewritten."""
        line = json.dumps({"at": _now().isoformat(), "stage": stage, "detail": detail}) + "\n"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        try:
            fd = os.open(self.failures_path, flags, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError:
            # A full volume may be why it failed: the service's log still has it.
            pass

    def failures(self) -> dict[str, tuple[int, float]]:
        """Per stage: how many failures, and when the last one was."""
        found: dict[str, tuple[int, float]] = {}
        try:
            lines = self.failures_path.read_text().splitlines()
        except FileNotFoundError:
            return found
        for line in lines:
            try:
                entry = json.loads(line)
                stage, at = str(entry["stage"]), dt.datetime.fromisoformat(entry["at"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            count, last = found.get(stage, (0, 0.0))
            found[stage] = (count + 1, max(last, at))
        return found


FAILURES = "failures.jsonl"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run(source: Endpoint, repo: Repository, *, now: dt.datetime | None = None) -> Manifest:
    """Dump `source` into the repository. The row counts in the manifest and the
    dump come from one exported snapshot, so they describe the same instant."""
    started = now or _now()
    backup_id = started.strftime("%Y%m%dT%H%M%S%fZ")
    partial = repo.partial_path(backup_id)
    digest = hashlib.sha256()
    size = 0
    try:
        with psycopg.connect(source.conninfo()) as conn:
            if conn.info.parameter_status("server_encoding") == "SQL_ASCII":
                raise BackupError(
                    f"database {source.database!r} is SQL_ASCII: its text is bytes in no declared encoding, which "
                    "no restore can check or convert; convert it to UTF8 first"
                )
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()
            version = conn.execute("SHOW server_version").fetchone()
            tables = [row[0] for row in conn.execute(_TABLES).fetchall()]
            counts: dict[str, int] = {}
            for table in tables:
                schema, name = _split(table)
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
                counts[table] = int(row[0]) if row else 0
            if snapshot is None or version is None:
                raise BackupError("the server returned no snapshot or version")
            with source.passfile() as env, open(partial, "wb") as out:
                process = subprocess.Popen(
                    [tool("pg_dump"), "--format=custom", f"--compress={COMPRESSION.split(':')[1]}",
                     f"--snapshot={snapshot[0]}", "--no-password", f"--dbname={source.database}"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(env),
                )  # fmt: skip
                try:
                    if process.stdout is None or process.stderr is None:
                        raise BackupError("pg_dump's output could not be read")
                    while chunk := process.stdout.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    error = process.stderr.read().decode(errors="replace")
                    if process.wait() != 0:
                        raise BackupError(f"pg_dump failed: {error.strip()}")
                    out.flush()
                    os.fsync(out.fileno())
                except OSError as exc:
                    raise BackupError(f"writing {partial}: {exc.strerror or exc}") from exc
                finally:
                    # Whatever failed, the dump ends with it: a pg_dump left
                    # running holds its snapshot and locks on the live database.
                    if process.poll() is None:
                        process.kill()
                    process.wait()
            conn.execute("COMMIT")
        partial.replace(repo.dump_path(backup_id))
        manifest = Manifest(
            id=backup_id,
            database=source.database,
            server_version=str(version[0]),
            compression=COMPRESSION,
            size_bytes=size,
            sha256=digest.hexdigest(),
            started_at=started.isoformat(),
            finished_at=_now().isoformat(),
            tables=counts,
        )
        repo.save(manifest)
        return manifest
    except BaseException as exc:
        # A failed backup leaves nothing behind that could be mistaken for one.
        partial.unlink(missing_ok=True)
        repo.dump_path(backup_id).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            # Closing the file flushes it, and fails again on a full volume.
            raise BackupError(f"writing {exc.filename or partial}: {exc.strerror or exc}") from exc
        raise


def _split(table: str) -> tuple[str, str]:
    # `format('%I.%I')` quoted each part only where needed; unquote for Identifier.
    reader = csv.reader(io.StringIO(table), delimiter=".", quotechar='"')
    parts = next(reader)
    if len(parts) != 2:
        raise BackupError(f"unexpected table name {table!r}")
    return parts[0], parts[1]


def checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(
    repo: Repository,
    backup_id: str,
    *,
    jobs: int = 2,  # pragma: no mutate (restore workers: any count restores the same rows)
    platform_roles: Collection[str] | None = None,
    server: EarlyServer | None = None,
) -> Manifest:
    """Checksum, then a full restore into a throwaway server with the same
    ownership and privileges a real restore applies, then the restored tables
    and every row count against the manifest. With `platform_roles` (the live
    server's roles), a dump naming any other role fails too: it could not be
    restored there. A backup that fails any of it loses its verified mark, so
    `restore --latest` no longer picks it. `server`: one started ahead, else a
    new one is started here."""
    manifest = repo.load(backup_id)
    started = _now()
    try:
        found = _prove(repo, manifest, jobs, platform_roles, server)
    except BackupDefect as exc:
        manifest.verified_at = None
        manifest.verification = {"failed_at": _now().isoformat(), "error": str(exc)}
        try:
            repo.save(manifest)
        except OSError as unsaved:
            # Why it failed comes first; that its manifest still reads as before is the operator's to mend.
            raise BackupDefect(
                f"{exc}; the failure is not recorded: writing {unsaved.filename}: {unsaved.strerror}, so its "
                "manifest still reads as before"
            ) from exc
        raise
    manifest.verified_at = _now().isoformat()
    manifest.verification = {
        "restored_into": "throwaway server",
        "tables": len(found),
        "rows": sum(found.values()),
        "seconds": round((_now() - started).total_seconds(), 3),
    }
    repo.save(manifest)
    return manifest


def _prove(
    repo: Repository,
    manifest: Manifest,
    jobs: int,
    platform_roles: Collection[str] | None,
    server: EarlyServer | None,
) -> dict[str, int]:
    backup_id = manifest.id
    dump = repo.dump_path(backup_id)
    if not dump.exists():
        raise BackupDefect(f"backup {backup_id}: the dump file is missing")
    actual = checksum(dump)
    if actual != manifest.sha256:
        raise BackupDefect(
            f"backup {backup_id}: checksum mismatch (file {actual[:12]}, manifest {manifest.sha256[:12]})"
        )
    _check_origin(manifest, dump)
    roles = referenced_roles(dump)
    if platform_roles is not None and (foreign := sorted(roles - set(platform_roles))):
        raise BackupDefect(
            f"backup {backup_id}: it names roles the server does not have ({', '.join(foreign)}), "
            "so it could not be restored there"
        )
    with server.use() if server is not None else throwaway_server() as scratch:
        with psycopg.connect(scratch.conninfo(), autocommit=True) as conn:
            # The roles the dump's owners and grants name, as on the platform,
            # so the restore below applies them exactly as a real one does.
            for role in sorted(roles):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            # A fresh cluster already has an empty `postgres` database: a dump of
            # that one restores into it rather than into a second one.
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (manifest.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(manifest.database)))
        with scratch.passfile() as env, _without_event_triggers(dump) as listing:
            result = subprocess.run(
                [tool("pg_restore"), "--exit-on-error", f"--jobs={jobs}", f"--use-list={listing}",
                 "--no-password", f"--dbname={manifest.database}", str(dump)],
                capture_output=True, env=child_env(env), check=False,
            )  # fmt: skip
        if result.returncode != 0:
            raise BackupDefect(f"backup {backup_id}: restore failed: {result.stderr.decode(errors='replace').strip()}")
        with psycopg.connect(scratch.conninfo(manifest.database)) as conn:
            return _matches_manifest(conn, manifest)


@contextlib.contextmanager
def _without_event_triggers(dump: Path) -> Iterator[Path]:
    """The dump's table of contents less its event triggers. They hold no
    data, and one must belong to a superuser: in the scratch cluster the
    platform's admin is a plain role made for the restore, so restoring them
    there would fail a sound backup. A restore onto the platform's server
    keeps them."""
    kept = [line for line in table_of_contents(dump).splitlines() if " EVENT TRIGGER " not in line]
    with tempfile.NamedTemporaryFile("w", prefix="wn-toc-", suffix=".list") as listing:
        listing.write("\n".join(kept) + "\n")
        listing.flush()
        yield Path(listing.name)


_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_ROLE_CLAUSES = (
    re.compile(rf"\bOWNER TO ({_IDENT})"),
    re.compile(rf"\bFOR ROLE ({_IDENT})"),
    # Grants and revokes, on their own or inside ALTER DEFAULT PRIVILEGES.
    re.compile(rf"\b(?:GRANT|REVOKE)\b[^;]*?\b(?:TO|FROM) ({_IDENT}(?:\s*,\s*{_IDENT})*)"),
)


def server_roles(server: Endpoint) -> set[str]:
    """The roles a restore on `server` can give objects to."""
    with psycopg.connect(server.conninfo()) as conn:
        return {str(row[0]) for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}


def referenced_roles(dump: Path) -> set[str]:
    """Every role the dump's owners, grants and default privileges name."""
    result = subprocess.run(
        [tool("pg_restore"), "--schema-only", "--file=-", str(dump)],
        capture_output=True, env=child_env({}), check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BackupDefect(
            f"{dump.name}: its table of contents is unreadable: {result.stderr.decode(errors='replace').strip()}"
        )
    script = result.stdout.decode(script_codec(result.stdout), errors="replace")
    roles: set[str] = set()
    for pattern in _ROLE_CLAUSES:
        for match in pattern.finditer(script):
            for name in re.findall(_IDENT, match.group(1)):
                if name.upper() != "PUBLIC":
                    roles.add(name[1:-1].replace('""', '"') if name.startswith('"') else name)
    return roles


def _matches_manifest(conn: psycopg.Connection[Any], manifest: Manifest) -> dict[str, int]:
    """The restored database holds exactly the manifest's tables, each with its row count."""
    tables = {row[0] for row in conn.execute(_TABLES).fetchall()}
    if tables != set(manifest.tables):
        missing, extra = sorted(set(manifest.tables) - tables), sorted(tables - set(manifest.tables))
        raise BackupDefect(f"backup {manifest.id}: restored tables differ (missing {missing}, unexpected {extra})")
    found = {}
    for table in manifest.tables:
        schema, name = _split(table)
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
        found[table] = int(row[0]) if row else 0
    mismatched = {t: (manifest.tables[t], found[t]) for t in manifest.tables if found[t] != manifest.tables[t]}
    if mismatched:
        raise BackupDefect(f"backup {manifest.id}: row counts differ after restore (expected, found): {mismatched}")
    return found


RESTORED_MARK = "restored by wondernest_backup"
"""The comment on a database a restore created: one the tool may restore into again."""


def table_of_contents(dump: Path) -> str:
    """`pg_restore --list`: the archive's header and one line per entry."""
    result = subprocess.run(
        [tool("pg_restore"), "--list", str(dump)], capture_output=True, env=child_env({}), check=False
    )
    if result.returncode != 0:
        raise BackupDefect(
            f"{dump.name}: not a readable pg_dump archive: {result.stderr.decode(errors='replace').strip()}"
        )
    return result.stdout.decode(errors="replace")


def dump_database(dump: Path) -> str:
    """The database a custom-format dump was taken from, as its own header says."""
    found = re.search(r"^;\s+dbname: (.+)$", table_of_contents(dump), re.MULTILINE)
    if found is None:
        raise BackupDefect(f"{dump.name}: not a readable pg_dump archive: its header names no database")
    return found.group(1).strip()


def _check_origin(manifest: Manifest, dump: Path) -> None:
    """A dump of another database with a manifest forged to match it is not this backup."""
    taken_from = dump_database(dump)
    if taken_from != manifest.database:
        raise BackupDefect(
            f"backup {manifest.id}: the dump was taken from database {taken_from!r}, "
            f"its manifest says {manifest.database!r}"
        )


def _check_target(admin: psycopg.Connection[Any], target_db: str, platform_database: str | None) -> bool:
    """Whether `target_db` exists; refuses a template, the maintenance database,
    and an existing database that is neither the platform's nor one a restore
    made (another application's, say): a restore never overwrites a database it
    was not told to."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", target_db):
        raise BackupError(f"{target_db!r} is not a plain database name (lower-case letters, digits, _)")
    if target_db in (MAINTENANCE_DB, "template0", "template1"):
        raise BackupError(f"refusing to restore into {target_db!r}: it belongs to the server, not the platform")
    row = admin.execute(
        "SELECT datistemplate, NOT datallowconn, shobj_description(oid, 'pg_database') "
        "FROM pg_database WHERE datname = %s",
        (target_db,),
    ).fetchone()
    if row is None:
        return False
    template, closed, comment = row
    if template or closed:
        raise BackupError(f"refusing to restore into {target_db!r}: it is a template database")
    if target_db != platform_database and not str(comment or "").startswith(RESTORED_MARK):
        raise BackupError(
            f"refusing to restore into {target_db!r}: it is not the platform's database "
            f"({platform_database!r}) nor one a restore created; name a new database"
        )
    return True


def restore(
    target: Endpoint,
    repo: Repository,
    backup_id: str,
    target_db: str,
    *,
    force: bool,
    jobs: int = 2,  # pragma: no mutate (restore workers: any count restores the same rows)
    platform_database: str | None = None,
) -> str | None:
    """Restore into `target_db`, never leaving it half-replaced.

    A missing database is created and restored into. One that holds no table
    (the platform's, freshly created with its schemas) is restored into in
    place. One that holds tables is refused unless `force`; then the backup is
    restored into a new database first, checked against the manifest, and only
    then swapped in: the old one is renamed aside (its name is returned), not
    dropped, and a failure at any step leaves it as it was."""
    dump = repo.dump_path(backup_id)
    manifest = repo.load(backup_id)
    if not dump.exists() or checksum(dump) != manifest.sha256:
        raise BackupError(f"backup {backup_id}: the dump is missing or fails its checksum; refusing to restore it")
    _check_origin(manifest, dump)
    if platform_database is not None and target_db == platform_database and manifest.database != platform_database:
        raise BackupError(
            f"backup {backup_id} is of database {manifest.database!r}; refusing to restore it over the "
            f"platform's {platform_database!r}"
        )
    # From the maintenance database: a database cannot be renamed by a session
    # connected to it, and the platform's is the usual target.
    with psycopg.connect(target.conninfo(MAINTENANCE_DB), autocommit=True) as admin:
        exists = _check_target(admin, target_db, platform_database)
        table = _first_table(target, target_db) if exists else None
        if table is not None and not force:
            raise BackupError(
                f"database {target_db!r} is not empty (it has table {table}); refusing to restore over it. "
                "Restore into a new database, or pass --force to replace it (the old one is kept, renamed)."
            )
        if table is None:
            if not exists:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target_db)))
                _mark_restored(admin, target_db, backup_id)
            try:
                _pg_restore(
                    target, dump, target_db, jobs, clean=exists, what=f"restore of {backup_id} into {target_db!r}"
                )
                with psycopg.connect(target.conninfo(target_db)) as conn:
                    _matches_manifest(conn, manifest)
            except BaseException:
                if not exists:  # a database this restore created, half-filled: gone again
                    with contextlib.suppress(psycopg.Error, BackupError):
                        _refuse_if_in_use(admin, target_db)
                        admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(target_db)))
                raise
            return None
        _refuse_if_in_use(admin, target_db)
        stamp = _now().strftime("%Y%m%d%H%M%S")
        staging, aside = _beside(target_db, "restoring", stamp), _beside(target_db, "replaced", stamp)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(staging)))
        _mark_restored(admin, staging, backup_id)
        try:
            _pg_restore(target, dump, staging, jobs, clean=False, what=f"restore of {backup_id} into {staging!r}")
            with psycopg.connect(target.conninfo(staging)) as conn:
                _matches_manifest(conn, manifest)
            _copy_database_grants(admin, target_db, staging)
            _refuse_if_in_use(admin, target_db)
            with admin.transaction():
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(*map(sql.Identifier, (target_db, aside)))
                )
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(*map(sql.Identifier, (staging, target_db)))
                )
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(staging)))
            raise
        return aside


# PostgreSQL cuts a longer name to NAMEDATALEN - 1 bytes, silently: the name
# given back would then not be the database's. Targets are plain ASCII names.
_NAME_BYTES = 63


def _beside(database: str, role: str, stamp: str) -> str:
    """The name of a database kept beside `database`, within PostgreSQL's limit."""
    suffix = f"_{role}_{stamp}"
    return database[: _NAME_BYTES - len(suffix)] + suffix


def _mark_restored(admin: psycopg.Connection[Any], database: str, backup_id: str) -> None:
    admin.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(database), sql.Literal(f"{RESTORED_MARK} from backup {backup_id}")
        )
    )


def _first_table(target: Endpoint, database: str) -> str | None:
    with psycopg.connect(target.conninfo(database)) as conn:
        row = conn.execute(_TABLES + "LIMIT 1").fetchone()
    return str(row[0]) if row else None


def _refuse_if_in_use(
    admin: psycopg.Connection[Any],
    database: str,
    *,
    grace_seconds: float = 3,  # pragma: no mutate (a wait for closed sessions to go: any few seconds will do)
) -> None:
    # A backend outlives its client's disconnect by a moment: connections this
    # tool just closed get that moment to go.
    deadline = time.monotonic() + grace_seconds
    while True:
        rows = admin.execute(
            "SELECT coalesce(nullif(application_name, ''), usename, '?') FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
        if not rows or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if rows:
        users = ", ".join(sorted({str(r[0]) for r in rows}))
        raise BackupError(
            f"database {database!r} has {len(rows)} open connection(s) ({users}); stop what uses it (the API "
            "and the Postgres exporter: docker stop <app>-<stack>-api <app>-<stack>-postgres-exporter; on AWS, "
            'their services scaled to none, docs/aws.md "Restoring") and run the restore again'
        )


def _copy_database_grants(admin: psycopg.Connection[Any], source: str, target: str) -> None:
    """What pg_dump leaves out without --create: the database's own privileges,
    who may connect above all (the platform grants CONNECT per role and revokes
    it from PUBLIC)."""
    admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(target)))
    for grantee, grantable, privileges in admin.execute(_DATABASE_GRANTS, (source,)).fetchall():
        admin.execute(
            sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(", ").join(map(sql.SQL, privileges)),
                sql.Identifier(target),
                sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee),
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
        )


# The server reads its own ACL (names quoted, `=` and `/` in them, grant
# options), not a parser of its text form. A database without an ACL has the
# default one, of which only PUBLIC's part is not the owner's own.
_DATABASE_GRANTS = """
SELECT CASE a.grantee WHEN 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.is_grantable,
       array_agg(a.privilege_type ORDER BY a.privilege_type)
FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
WHERE d.datname = %s AND (d.datacl IS NOT NULL OR a.grantee = 0)
GROUP BY 1, 2 ORDER BY 1, 2
"""


def _pg_restore(target: Endpoint, dump: Path, database: str, jobs: int, *, clean: bool, what: str) -> None:
    options = ["--clean", "--if-exists"] if clean else []
    with target.passfile() as env:
        result = subprocess.run(
            [tool("pg_restore"), "--exit-on-error", *options, f"--jobs={jobs}", "--no-password",
             f"--dbname={database}", str(dump)],
            capture_output=True, env=child_env(env), check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {result.stderr.decode(errors='replace').strip()}")


def prune(repo: Repository, policy: RetentionPolicy) -> list[str]:
    """Delete what the retention policy does not keep; return the deleted ids."""
    manifests = repo.all()
    keep = to_keep(
        [Candidate(m.id, m.created_at, m.verified_at is not None) for m in manifests],
        policy,
    )
    deleted = [m.id for m in manifests if m.id not in keep]
    for backup_id in deleted:
        repo.delete(backup_id)
    return deleted
