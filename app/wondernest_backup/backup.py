"""run, verify, restore: a backup is a pg_dump file plus a manifest that says
what it must contain, and it is good only once a restore has shown it does."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from wondernest_backup.pgtools import BackupError, Endpoint, child_env, throwaway_server, tool
from wondernest_backup.retention import Candidate, RetentionPolicy, to_keep

# pg_dump 15 compresses custom-format archives with gzip only (zstd and lz4
# arrived in 16); level 6 is its default balance of size and speed.
COMPRESSION = "gzip:6"
CHUNK = 1 << 20

_TABLES = """
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition
ORDER BY 1
"""


@dataclass
class Manifest:
    id: str
    database: str
    server_version: str
    compression: str
    size_bytes: int
    sha256: str
    started_at: str
    finished_at: str
    tables: dict[str, int]
    verified_at: str | None = None
    verification: dict[str, Any] = field(default_factory=dict)

    @property
    def created_at(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.started_at)


class Repository:
    """Backups in a directory: `<id>.dump` and `<id>.json`. A backup exists once
    its manifest does; the manifest is written last, by rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def dump_path(self, backup_id: str) -> Path:
        return self.root / f"{backup_id}.dump"

    def manifest_path(self, backup_id: str) -> Path:
        return self.root / f"{backup_id}.json"

    def load(self, backup_id: str) -> Manifest:
        path = self.manifest_path(backup_id)
        if not path.exists():
            raise BackupError(f"no backup {backup_id!r} in {self.root}")
        return Manifest(**json.loads(path.read_text()))

    def save(self, manifest: Manifest) -> None:
        tmp = self.manifest_path(manifest.id).with_suffix(".json.partial")
        tmp.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
        tmp.replace(self.manifest_path(manifest.id))

    def all(self) -> list[Manifest]:
        manifests = [self.load(p.stem) for p in self.root.glob("*.json")]
        return sorted(manifests, key=lambda m: m.started_at)

    def delete(self, backup_id: str) -> None:
        # Manifest first: a half-deleted backup is then invisible, never a dump without a manifest.
        self.manifest_path(backup_id).unlink(missing_ok=True)
        self.dump_path(backup_id).unlink(missing_ok=True)

    def newest_verified(self) -> Manifest | None:
        verified = [m for m in self.all() if m.verified_at]
        return verified[-1] if verified else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run(source: Endpoint, repo: Repository, *, now: dt.datetime | None = None) -> Manifest:
    """Dump `source` into the repository. The row counts in the manifest and the
    dump come from one exported snapshot, so they describe the same instant."""
    started = now or _now()
    backup_id = started.strftime("%Y%m%dT%H%M%S%fZ")
    partial = repo.dump_path(backup_id).with_suffix(".dump.partial")
    digest = hashlib.sha256()
    size = 0
    try:
        with psycopg.connect(source.conninfo()) as conn:
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
    except BaseException:
        # A failed backup leaves nothing behind that could be mistaken for one.
        partial.unlink(missing_ok=True)
        repo.dump_path(backup_id).unlink(missing_ok=True)
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


def verify(repo: Repository, backup_id: str, *, jobs: int = 2) -> Manifest:
    """Checksum, then a full restore into a throwaway server, then every table's
    row count against the manifest. Anything short of that is a failure."""
    manifest = repo.load(backup_id)
    dump = repo.dump_path(backup_id)
    if not dump.exists():
        raise BackupError(f"backup {backup_id}: the dump file is missing")
    actual = checksum(dump)
    if actual != manifest.sha256:
        raise BackupError(
            f"backup {backup_id}: checksum mismatch (file {actual[:12]}, manifest {manifest.sha256[:12]})"
        )
    started = _now()
    with throwaway_server() as scratch:
        with psycopg.connect(scratch.conninfo(), autocommit=True) as conn:
            # A fresh cluster already has an empty `postgres` database: a dump of
            # that one restores into it rather than into a second one.
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (manifest.database,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(manifest.database)))
        with scratch.passfile() as env:
            result = subprocess.run(
                [tool("pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges", f"--jobs={jobs}",
                 "--no-password", f"--dbname={manifest.database}", str(dump)],
                capture_output=True, env=child_env(env), check=False,
            )  # fmt: skip
        if result.returncode != 0:
            raise BackupError(f"backup {backup_id}: restore failed: {result.stderr.decode(errors='replace').strip()}")
        with psycopg.connect(scratch.conninfo(manifest.database)) as conn:
            found = {}
            for table in manifest.tables:
                schema, name = _split(table)
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
                found[table] = int(row[0]) if row else 0
    mismatched = {t: (manifest.tables[t], found.get(t)) for t in manifest.tables if found.get(t) != manifest.tables[t]}
    if mismatched:
        raise BackupError(f"backup {backup_id}: row counts differ after restore (expected, found): {mismatched}")
    manifest.verified_at = _now().isoformat()
    manifest.verification = {
        "restored_into": "throwaway server",
        "tables": len(found),
        "rows": sum(found.values()),
        "seconds": round((_now() - started).total_seconds(), 3),
    }
    repo.save(manifest)
    return manifest


def restore(target: Endpoint, repo: Repository, backup_id: str, target_db: str, *, force: bool, jobs: int = 2) -> None:
    """Restore into `target_db`: created when missing; an existing database
    that holds tables is refused unless `force`, and then cleaned first."""
    dump = repo.dump_path(backup_id)
    manifest = repo.load(backup_id)
    if checksum(dump) != manifest.sha256:
        raise BackupError(f"backup {backup_id}: checksum mismatch; refusing to restore it")
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target_db,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target_db)))
    if exists:
        with psycopg.connect(target.conninfo(target_db)) as conn:
            row = conn.execute(_TABLES.replace("ORDER BY 1", "LIMIT 1")).fetchone()
        if row is not None and not force:
            raise BackupError(
                f"database {target_db!r} is not empty (it has table {row[0]}); refusing to restore over it. "
                "Restore into a new database, or pass --force to replace its contents."
            )
    clean = ["--clean", "--if-exists"] if exists else []
    with target.passfile() as env:
        result = subprocess.run(
            [tool("pg_restore"), "--exit-on-error", *clean, f"--jobs={jobs}", "--no-password",
             f"--dbname={target_db}", str(dump)],
            capture_output=True, env=child_env(env), check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise BackupError(
            f"restore of {backup_id} into {target_db!r} failed: {result.stderr.decode(errors='replace').strip()}"
        )


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
