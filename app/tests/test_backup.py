"""run → verify → restore against a real PostgreSQL, and every way a backup can be bad."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from wondernest_backup.backup import (
    Manifest,
    Repository,
    checksum,
    prune,
    referenced_roles,
    restore,
    run,
    table_of_contents,
    verify,
)
from wondernest_backup.pgtools import BackupError, Endpoint
from wondernest_backup.retention import RetentionPolicy

from tests.servers import PG_BINDIR, PostgresServer, postgres_server, reachable_dir, stand_in_tools

pytestmark = pytest.mark.servers

TABLES = ("core.users", "content.stories", 'analytics."Page Views"')


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        with server.admin("wondernest") as conn:
            conn.execute("CREATE SCHEMA core; CREATE SCHEMA content; CREATE SCHEMA analytics")
            conn.execute(
                "CREATE TABLE core.users AS SELECT g AS id, md5(g::text) AS email FROM generate_series(1, 3000) g"
            )
            conn.execute(
                "CREATE TABLE content.stories AS SELECT g AS id, repeat('once upon a time ', 20) AS body "
                "FROM generate_series(1, 1500) g"
            )
            conn.execute('CREATE TABLE analytics."Page Views" (id serial PRIMARY KEY, at timestamptz DEFAULT now())')
            conn.execute('INSERT INTO analytics."Page Views" (at) SELECT now() FROM generate_series(1, 700)')
        yield server


def endpoint(pg: PostgresServer, database: str = "wondernest") -> Endpoint:
    return Endpoint("127.0.0.1", pg.port, pg.superuser, pg.superuser_password, database, sslmode="disable")


def fingerprint(pg: PostgresServer, database: str) -> dict[str, Any]:
    """Row count and a digest of every row, per table."""
    with pg.admin(database) as conn:
        return {
            table: conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t"
            ).fetchone()
            for table in TABLES
        }


def restored(pg: PostgresServer, tmp_path: Path, target: str) -> tuple[Repository, Manifest]:
    """A backup of the platform's database, restored into `target` (a new database)."""
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    restore(endpoint(pg), repo, manifest.id, target, force=False)
    return repo, manifest


def test_run_verify_restore_round_trip(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    assert manifest.tables == {'analytics."Page Views"': 700, "content.stories": 1500, "core.users": 3000}
    assert manifest.size_bytes == repo.dump_path(manifest.id).stat().st_size > 0
    assert manifest.sha256 == checksum(repo.dump_path(manifest.id))
    assert manifest.server_version.startswith("15.")
    assert manifest.verified_at is None

    before = time.monotonic()
    verified = verify(repo, manifest.id)
    took = time.monotonic() - before
    assert verified.verified_at is not None
    seconds = verified.verification.pop("seconds")
    assert verified.verification == {"restored_into": "throwaway server", "tables": 3, "rows": 5200}
    assert isinstance(seconds, float) and 0 < seconds <= took and seconds == round(seconds, 3)
    assert repo.load(manifest.id).verified_at == verified.verified_at

    restore(endpoint(pg), repo, manifest.id, "wondernest_restored", force=False)
    assert fingerprint(pg, "wondernest_restored") == fingerprint(pg, "wondernest")


WRAPPED = ("pg_dump", "pg_restore", "initdb", "postgres")


@pytest.fixture
def recording_bindir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """PG_BINDIR with each tool behind a script that writes down the
    environment it was started with, then runs the real one. Where `postgres`
    (who runs initdb and the server, as root) can reach it."""
    with reachable_dir("wn-bindir-") as place:
        (place / "env").mkdir()
        (place / "env").chmod(0o777)
        scripts = {tool: f'env > "{place}/env/{tool}.$$"\nexec "{PG_BINDIR / tool}" "$@"' for tool in WRAPPED}
        monkeypatch.setenv("PG_BINDIR", str(stand_in_tools(place / "bin", scripts)))
        yield place / "env"


def test_no_tool_is_handed_the_environment_of_the_process_that_runs_it(
    pg: PostgresServer, tmp_path: Path, recording_bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every PostgreSQL tool a backup, a verification, a restore or an
    import runs gets the few settings it needs and the password in a file:
    never another secret of the process (nor PGPASSWORD, which it would use)."""
    from wondernest_backup.imports import toc

    monkeypatch.setenv("WONDERNEST_SOME_SECRET", "canary-secret")
    monkeypatch.setenv("PGPASSWORD", "canary-password")
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    verify(repo, manifest.id)
    restore(endpoint(pg), repo, manifest.id, "unleaked", force=False)
    toc(repo.dump_path(manifest.id))
    started = {tool: 0 for tool in WRAPPED}
    for record in recording_bindir.iterdir():
        started[record.name.split(".")[0]] += 1
        seen = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
        assert "canary" not in record.read_text(), record.name
        assert set(seen) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "PWD", "PGPASSFILE", "PGHOST", "PGPORT",
                             "PGUSER", "PGSSLMODE", "PGSSLROOTCERT", "PGCONNECT_TIMEOUT"}, record.name  # fmt: skip
    # A dump; its table of contents, roles and restore in a throwaway server; a restore; the import's listing.
    assert started["pg_dump"] == 1 and started["pg_restore"] >= 4
    assert started["initdb"] == 1 and started["postgres"] == 1


def test_a_dump_read_in_many_chunks_is_measured_and_hashed_whole(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wondernest_backup import backup

    monkeypatch.setattr(backup, "CHUNK", 4096)
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    dump = repo.dump_path(manifest.id)
    assert dump.stat().st_size > 10 * 4096
    assert (manifest.size_bytes, manifest.sha256) == (
        dump.stat().st_size,
        hashlib.sha256(dump.read_bytes()).hexdigest(),
    )


def test_a_failing_pg_dump_is_named_with_its_message_and_leaves_nothing(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its message kept whatever its bytes (a locale's, not UTF-8)."""
    bindir = stand_in_tools(
        tmp_path / "bin", {"pg_dump": "printf 'pg_dump: error: connexion perdue \\351\\n' >&2\nexit 1"}
    )
    monkeypatch.setenv("PG_BINDIR", str(bindir))
    repo = Repository(tmp_path / "repo")
    failure = "pg_dump failed: pg_dump: error: connexion perdue \ufffd"
    with pytest.raises(BackupError, match=f"^{re.escape(failure)}$"):
        run(endpoint(pg), repo)
    assert list((tmp_path / "repo").glob("*")) == []


def test_a_full_volume_names_the_file_it_could_not_write_and_leaves_nothing(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/dev/full where the dump is written, then where its manifest is: each
    failure names its file and the reason, pg_dump ends with the run (left
    running, it holds its snapshot and locks on the live database), and no
    dump is left to be taken for a backup."""
    from wondernest_backup import backup

    # More than the pipe holds past the first chunk: pg_dump is still writing when the write fails.
    monkeypatch.setattr(backup, "CHUNK", 64 * 1024)
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE bulky")
    with pg.admin("bulky") as conn:
        conn.execute("CREATE TABLE filler AS SELECT g, md5(g::text) FROM generate_series(1, 100000) g")
    now = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    backup_id = now.strftime("%Y%m%dT%H%M%S%fZ")
    repo = Repository(tmp_path)
    partial = repo.partial_path(backup_id)
    partial.symlink_to("/dev/full")
    with pytest.raises(BackupError, match=f"^{re.escape(f'writing {partial}: No space left on device')}$"):
        run(endpoint(pg, "bulky"), repo, now=now)
    assert list(tmp_path.iterdir()) == []
    with pg.admin() as conn:
        running = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'"
        deadline = time.monotonic() + 10
        while conn.execute(running).fetchone() != (0,) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert conn.execute(running).fetchone() == (0,)
    # The dump written whole, its manifest not.
    manifest = repo.manifest_partial_path(backup_id)
    manifest.symlink_to("/dev/full")
    with pytest.raises(BackupError, match=f"^{re.escape(f'writing {manifest}: No space left on device')}$"):
        run(endpoint(pg, "bulky"), repo, now=now)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_verification_that_cannot_be_recorded_still_says_why_it_failed(
    pg: PostgresServer, tmp_path: Path
) -> None:
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    dump = repo.dump_path(manifest.id)
    dump.write_bytes(dump.read_bytes()[:-1])
    partial = repo.manifest_partial_path(manifest.id)
    partial.symlink_to("/dev/full")
    mismatch = f"backup {manifest.id}: checksum mismatch (file {checksum(dump)[:12]}, manifest {manifest.sha256[:12]})"
    unrecorded = (
        f"{mismatch}; the failure is not recorded: writing {partial}: No space left on device, so its manifest "
        "still reads as before"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(unrecorded)}$"):
        verify(repo, manifest.id)


def test_pg_restores_messages_are_kept_whatever_their_bytes(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A locale's messages, not UTF-8 (\\351 is LATIN1's é): each stage that
    runs pg_restore names its failure with the message, the byte UTF-8
    cannot read replaced, instead of failing to read it."""
    repo = Repository(tmp_path / "repo")
    manifest = run(endpoint(pg), repo)
    dump = repo.dump_path(manifest.id)
    message = "pg_restore: erreur : \ufffdchec de la lecture"
    stages: list[tuple[str, Callable[[], object], str]] = [
        ("--list", lambda: table_of_contents(dump), f"{dump.name}: not a readable pg_dump archive: {message}"),
        (
            "--schema-only",
            lambda: referenced_roles(dump),
            f"{dump.name}: its table of contents is unreadable: {message}",
        ),
        ("--exit-on-error", lambda: verify(repo, manifest.id), f"backup {manifest.id}: restore failed: {message}"),
    ]
    # The verification's server runs as `postgres`, which must reach the tools.
    with reachable_dir("wn-bindir-") as place:
        for flag, stage, failure in stages:
            fails = (
                f'case "$*" in *{flag}*) printf "pg_restore: erreur : \\351chec de la lecture\\n" >&2; exit 1;; esac\n'
                f'exec "{PG_BINDIR / "pg_restore"}" "$@"'
            )
            monkeypatch.setenv("PG_BINDIR", str(stand_in_tools(place / flag.strip("-"), {"pg_restore": fails})))
            with pytest.raises(BackupError, match=f"^{re.escape(failure)}\\Z"):
                stage()


def test_a_truncated_dump_fails_verification(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    dump = repo.dump_path(manifest.id)
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    mismatch = f"backup {manifest.id}: checksum mismatch (file {checksum(dump)[:12]}, manifest {manifest.sha256[:12]})"
    with pytest.raises(BackupError, match=f"^{re.escape(mismatch)}$"):
        verify(repo, manifest.id)
    assert repo.load(manifest.id).verified_at is None
    dump.unlink()
    with pytest.raises(BackupError, match=f"^backup {manifest.id}: the dump file is missing$"):
        verify(repo, manifest.id)
    assert repo.load(manifest.id).verification["error"] == f"backup {manifest.id}: the dump file is missing"


def test_flipped_bytes_fail_verification_even_with_a_matching_checksum(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    dump = repo.dump_path(manifest.id)
    data = bytearray(dump.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0xFF
    dump.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=r"checksum mismatch"):
        verify(repo, manifest.id)
    # Corruption that happened before hashing (the checksum agrees with the bad
    # file) is caught by the restore itself.
    manifest.sha256 = checksum(dump)
    repo.save(manifest)
    with pytest.raises(BackupError, match=r"restore failed|row counts differ"):
        verify(repo, manifest.id)
    assert repo.load(manifest.id).verified_at is None


def test_a_restore_that_fails_after_every_row_is_in_fails_verification(pg: PostgresServer, tmp_path: Path) -> None:
    """pg_restore's own exit status decides, even when every table and row came
    back: here an index on a function that reads a table by an unqualified name
    fails in the post-data step, where pg_dump's empty search_path applies."""
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE indexed")
    with pg.admin("indexed") as conn:
        conn.execute("CREATE TABLE public.weights AS SELECT 1 AS w")
        conn.execute("CREATE TABLE public.items AS SELECT g AS id FROM generate_series(1, 50) g")
        conn.execute(
            "CREATE FUNCTION public.weighted(int) RETURNS int LANGUAGE sql IMMUTABLE "
            "AS 'SELECT $1 * (SELECT w FROM weights)'"
        )
        conn.execute("CREATE INDEX items_weighted ON public.items (public.weighted(id))")
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg, "indexed"), repo)
    assert manifest.tables == {"public.items": 50, "public.weights": 1}
    with pytest.raises(BackupError, match=r"restore failed: .*relation \"weights\" does not exist"):
        verify(repo, manifest.id)
    assert repo.load(manifest.id).verified_at is None


def test_a_dump_that_restores_cleanly_but_lacks_rows_fails_verification(pg: PostgresServer, tmp_path: Path) -> None:
    """A dump whose checksum is right and whose restore succeeds, taken when a
    table held fewer rows than the manifest records: only the row counts tell."""
    repo = Repository(tmp_path / "full")
    manifest = run(endpoint(pg), repo)
    with pg.admin("wondernest") as conn:
        conn.execute("DELETE FROM core.users WHERE id > 2990")
    try:
        fewer = run(endpoint(pg), Repository(tmp_path / "fewer"))
    finally:
        with pg.admin("wondernest") as conn:
            conn.execute("INSERT INTO core.users SELECT g, md5(g::text) FROM generate_series(2991, 3000) g")
    dump = repo.dump_path(manifest.id)
    dump.write_bytes(Repository(tmp_path / "fewer").dump_path(fewer.id).read_bytes())
    manifest.sha256 = checksum(dump)
    repo.save(manifest)
    with pytest.raises(BackupError, match=r"row counts differ after restore .*'core.users': \(3000, 2990\)"):
        verify(repo, manifest.id)
    assert repo.load(manifest.id).verified_at is None


def test_restore_refuses_a_non_empty_target_unless_forced(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    restore(endpoint(pg), repo, manifest.id, "occupied", force=False)  # a database a restore made...
    with pg.admin("occupied") as conn:
        conn.execute("CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (42)")  # ...then written to
    with pytest.raises(BackupError, match=r"'occupied' is not empty \(it has table analytics.\"Page Views\"\)"):
        restore(endpoint(pg), repo, manifest.id, "occupied", force=False)
    with pg.admin("occupied") as conn:
        assert conn.execute("SELECT id FROM keep_me").fetchall() == [(42,)]
    restore(endpoint(pg), repo, manifest.id, "occupied", force=True)
    with pg.admin("occupied") as conn:
        assert conn.execute("SELECT to_regclass('keep_me')").fetchone() == (None,)
    assert fingerprint(pg, "occupied") == fingerprint(pg, "wondernest")


@pytest.mark.parametrize(
    ("target", "made", "message"),
    [
        ("template1", False, "it belongs to the server"),
        ("template0", False, "it belongs to the server"),
        ("postgres", False, "it belongs to the server"),
        ("their_template", True, "it is a template database"),
        ("theirs", True, "it is not the platform's database"),
        ("../etc", False, "is not a plain database name"),
    ],
)
def test_a_restore_never_overwrites_a_database_it_was_not_told_to(
    pg: PostgresServer, tmp_path: Path, target: str, made: bool, message: str
) -> None:
    """Templates (every database created afterwards would hold the platform's
    users and hashes), the server's own, and another application's database:
    refused, forced or not, and left as they were."""
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    if made:
        with pg.admin() as conn:
            conn.execute(f"CREATE DATABASE {target}")
            if target.endswith("template"):
                conn.execute(f"ALTER DATABASE {target} IS_TEMPLATE true")
    for force in (False, True):
        with pytest.raises(BackupError, match=message):
            restore(endpoint(pg), repo, manifest.id, target, force=force, platform_database="wondernest")
    if target != "../etc":
        with pg.admin(target if target != "template0" else "postgres") as conn:
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'core'").fetchone() == (0,)


def test_a_backup_of_another_database_is_not_restored_over_the_platforms(pg: PostgresServer, tmp_path: Path) -> None:
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE elsewhere")
    with pg.admin("elsewhere") as conn:
        conn.execute("CREATE SCHEMA core; CREATE TABLE core.users (id int); INSERT INTO core.users VALUES (1)")
    repo = Repository(tmp_path)
    foreign = run(endpoint(pg, "elsewhere"), repo)
    with pytest.raises(BackupError, match=r"is of database 'elsewhere'; refusing to restore it over the platform's"):
        restore(endpoint(pg), repo, foreign.id, "wondernest", force=True, platform_database="wondernest")
    assert fingerprint(pg, "wondernest")["core.users"][0] == 3000


def test_a_foreign_dump_with_a_forged_manifest_fails_verification(pg: PostgresServer, tmp_path: Path) -> None:
    """Another database's dump put in place of this backup's, its manifest
    forged to match (tables, rows, checksum): the dump's own header names where
    it came from."""
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE lookalike TEMPLATE wondernest")
    repo = Repository(tmp_path / "ours")
    manifest = run(endpoint(pg), repo)
    theirs = Repository(tmp_path / "theirs")
    foreign = run(endpoint(pg, "lookalike"), theirs)
    repo.dump_path(manifest.id).write_bytes(theirs.dump_path(foreign.id).read_bytes())
    forged = manifest.model_copy(update={"sha256": foreign.sha256, "tables": foreign.tables})
    repo.save(forged)
    with pytest.raises(
        BackupError, match=r"the dump was taken from database 'lookalike', its manifest says 'wondernest'"
    ):
        verify(repo, manifest.id)
    with pytest.raises(BackupError, match=r"taken from database 'lookalike'"):
        restore(endpoint(pg), repo, manifest.id, "wondernest", force=True, platform_database="wondernest")


def test_a_failed_dump_leaves_nothing_behind(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    wrong = Endpoint("127.0.0.1", pg.port, pg.superuser, pg.superuser_password, "no_such_database", sslmode="disable")
    with pytest.raises(psycopg.OperationalError):
        run(wrong, repo)
    assert list(tmp_path.iterdir()) == []
    assert repo.all() == []


def test_backup_ids_sort_by_time(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    first = run(endpoint(pg), repo, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    second = run(endpoint(pg), repo, now=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    assert [m.id for m in repo.all()] == [first.id, second.id]
    assert first.id < second.id


def test_the_backup_role_can_take_a_complete_backup(tmp_path: Path) -> None:
    """Read grants on the platform's schemas are enough for pg_dump: no superuser,
    no pg_read_all_data, no write, no CREATEDB."""
    from tests.api_stack import NAMES, platform
    from tests.platform_db import PASSWORDS

    with postgres_server() as server:
        platform(server)
        migrator = Endpoint(
            "127.0.0.1", server.port, NAMES.migrator_role, PASSWORDS["migrator"], "wondernest", sslmode="disable"
        )
        with psycopg.connect(migrator.conninfo()) as conn:
            conn.execute("CREATE TABLE core.accounts AS SELECT g AS id FROM generate_series(1, 42) g")
        backup_role = Endpoint(
            "127.0.0.1", server.port, NAMES.backup_role, PASSWORDS["backup"], "wondernest", sslmode="disable"
        )
        repo = Repository(tmp_path)
        manifest = run(backup_role, repo)
        assert manifest.tables == {"core.accounts": 42}
        # The platform's event trigger (withheld columns) is in the dump; it must
        # belong to a superuser, which the scratch cluster's admin is not.
        assert " EVENT TRIGGER " in table_of_contents(repo.dump_path(manifest.id))
        assert verify(repo, manifest.id).verified_at

    # Disaster recovery: a new server, rebuilt by the platform (roles, empty
    # schemas, grants), gets the backup restored into the application database.
    with postgres_server() as rebuilt:
        platform(rebuilt)
        admin = Endpoint(
            "127.0.0.1", rebuilt.port, rebuilt.superuser, rebuilt.superuser_password, "wondernest", sslmode="disable"
        )
        restore(admin, repo, manifest.id, "wondernest", force=False, platform_database="wondernest")
        app = Endpoint("127.0.0.1", rebuilt.port, NAMES.app_role, PASSWORDS["app"], "wondernest", sslmode="disable")
        with psycopg.connect(app.conninfo()) as conn:
            assert conn.execute("SELECT count(*) FROM core.accounts").fetchone() == (42,)
            conn.execute("INSERT INTO core.accounts VALUES (43)")  # owned by the migrator again, written by the app
        analytics = Endpoint(
            "127.0.0.1", rebuilt.port, NAMES.analytics_role, PASSWORDS["analytics"], "wondernest", sslmode="disable"
        )
        with psycopg.connect(analytics.conninfo()) as conn:
            assert conn.execute("SELECT count(*) FROM core.accounts").fetchone() == (43,)


def test_a_dump_of_the_postgres_database_verifies(pg: PostgresServer, tmp_path: Path) -> None:
    """A fresh cluster has a `postgres` database already: verify restores into it."""
    with pg.admin("postgres") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept AS SELECT g AS id FROM generate_series(1, 40) g")
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg, "postgres"), repo)
    assert manifest.database == "postgres" and manifest.tables == {"public.kept": 40}
    assert verify(repo, manifest.id).verification["rows"] == 40


def _databases(pg: PostgresServer) -> set[str]:
    with pg.admin() as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_a_forced_restore_swaps_in_a_checked_copy_and_keeps_the_old_one(pg: PostgresServer, tmp_path: Path) -> None:
    repo, manifest = restored(pg, tmp_path, "swapped")
    with pg.admin("swapped") as conn:
        # A table the backup does not have, with data, and a role allowed to connect.
        conn.execute("CREATE TABLE public.extra (id int); INSERT INTO extra VALUES (7)")
        conn.execute("DELETE FROM core.users WHERE id > 10")
    with pg.admin() as conn:
        conn.execute("CREATE ROLE swap_reader LOGIN")
        conn.execute("REVOKE ALL ON DATABASE swapped FROM PUBLIC; GRANT CONNECT ON DATABASE swapped TO swap_reader")
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    aside = restore(endpoint(pg), repo, manifest.id, "swapped", force=True)
    assert aside is not None and re.fullmatch(r"swapped_replaced_\d{14}", aside)
    stamp = dt.datetime.strptime(aside.removeprefix("swapped_replaced_"), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    assert started <= stamp <= dt.datetime.now(dt.UTC)
    with pg.admin() as conn:
        comment = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'swapped'"
        )
        assert comment.fetchone() == (f"restored by wondernest_backup from backup {manifest.id}",)
    assert fingerprint(pg, "swapped") == fingerprint(pg, "wondernest")
    with pg.admin("swapped") as conn:
        assert conn.execute("SELECT to_regclass('public.extra')").fetchone() == (None,)
    with pg.admin(aside) as conn:
        assert conn.execute("SELECT id FROM extra").fetchall() == [(7,)]
    with pg.admin() as conn:
        acl = conn.execute("SELECT datacl::text FROM pg_database WHERE datname = 'swapped'").fetchone()
    assert acl is not None and "swap_reader=c/" in str(acl[0]) and "=Tc/" not in str(acl[0])
    assert not [d for d in _databases(pg) if "_restoring_" in d]


def _database_privileges(pg: PostgresServer, database: str) -> list[tuple[str, str, bool]]:
    """Who may do what on the database, besides its owner."""
    with pg.admin() as conn:
        rows = conn.execute(
            "SELECT coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC'), a.privilege_type, a.is_grantable "
            "FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
            "WHERE d.datname = %s AND a.grantee <> d.datdba ORDER BY 1, 2",
            (database,),
        ).fetchall()
    return [(str(grantee), str(privilege), bool(grantable)) for grantee, privilege, grantable in rows]


def test_a_forced_restore_keeps_who_may_use_the_database_whatever_their_names(
    pg: PostgresServer, tmp_path: Path
) -> None:
    """Roles whose names need quoting or hold `=`, a grantor whose name holds
    the letters of privileges (`C`, `T`, `c`), and a grant option: the
    replacement grants exactly what the replaced database did."""
    repo, manifest = restored(pg, tmp_path, "kept")
    with pg.admin() as conn:
        conn.execute(
            """CREATE ROLE "we""ird=reader"; CREATE ROLE "Tc_granter"; CREATE ROLE plain_user;
            REVOKE ALL ON DATABASE kept FROM PUBLIC;
            GRANT CONNECT, TEMPORARY ON DATABASE kept TO "we""ird=reader";
            GRANT CONNECT ON DATABASE kept TO "Tc_granter" WITH GRANT OPTION;
            SET ROLE "Tc_granter"; GRANT CONNECT ON DATABASE kept TO plain_user; RESET ROLE"""
        )
        acl = conn.execute("SELECT datacl::text FROM pg_database WHERE datname = 'kept'").fetchone()
    assert acl is not None and "plain_user=c/Tc_granter" in str(acl[0])
    granted = [
        ('"Tc_granter"', "CONNECT", True),
        ('"we""ird=reader"', "CONNECT", False),
        ('"we""ird=reader"', "TEMPORARY", False),
        ("plain_user", "CONNECT", False),
    ]
    assert _database_privileges(pg, "kept") == granted
    restore(endpoint(pg), repo, manifest.id, "kept", force=True)
    assert _database_privileges(pg, "kept") == granted
    # A database left with the default privileges keeps PUBLIC's.
    restore(endpoint(pg), repo, manifest.id, "defaults", force=False)
    public = [("PUBLIC", "CONNECT", False), ("PUBLIC", "TEMPORARY", False)]
    assert _database_privileges(pg, "defaults") == public
    restore(endpoint(pg), repo, manifest.id, "defaults", force=True)
    assert _database_privileges(pg, "defaults") == public


def test_a_failed_forced_restore_leaves_the_target_as_it_was(pg: PostgresServer, tmp_path: Path) -> None:
    repo, _ = restored(pg, tmp_path, "precious")
    with pg.admin("precious") as conn:
        conn.execute("CREATE TABLE keep_me (id int); INSERT INTO keep_me VALUES (1), (2)")
    before = fingerprint(pg, "precious")
    # A dump the server cannot restore: its tables are owned by a role this server lacks.
    with pg.admin() as conn:
        conn.execute("CREATE ROLE ghost_owner")
    with pg.admin("wondernest") as conn:
        conn.execute("CREATE TABLE public.ghostly (id int); ALTER TABLE public.ghostly OWNER TO ghost_owner")
    try:
        broken = run(endpoint(pg), repo)
    finally:
        with pg.admin("wondernest") as conn:
            conn.execute("DROP TABLE public.ghostly")
        with pg.admin() as conn:
            conn.execute("DROP ROLE ghost_owner")
    failure = (
        rf"^restore of {broken.id} into 'precious_restoring_\d{{14}}' failed: pg_restore: error: "
        r'.*role "ghost_owner" does not exist'
    )
    with pytest.raises(BackupError, match=re.compile(failure, re.DOTALL)):
        restore(endpoint(pg), repo, broken.id, "precious", force=True)
    # Nothing of it was dropped or cleaned: the data tables and the extra one.
    assert fingerprint(pg, "precious") == before
    with pg.admin("precious") as conn:
        assert conn.execute("SELECT id FROM keep_me ORDER BY id").fetchall() == [(1,), (2,)]
    assert not [d for d in _databases(pg) if d.startswith("precious_")]


def test_a_forced_restore_refuses_a_database_in_use(pg: PostgresServer, tmp_path: Path) -> None:
    repo, manifest = restored(pg, tmp_path, "busy")
    with pg.admin("busy") as conn:  # an open connection, as the API's pool would hold
        conn.execute("SET application_name = 'wondernest-api'")
        with pytest.raises(BackupError, match=r"^database 'busy' has 1 open connection\(s\) \(wondernest-api\); stop"):
            restore(endpoint(pg), repo, manifest.id, "busy", force=True)
        with pg.admin("busy") as exporter:
            exporter.execute("SET application_name = 'postgres-exporter'")
            refusal = (
                "database 'busy' has 2 open connection(s) (postgres-exporter, wondernest-api); stop what uses it (the "
                "API and the Postgres exporter: docker stop <app>-<stack>-api <app>-<stack>-postgres-exporter; on "
                'AWS, their services scaled to none, docs/aws.md "Restoring") and run the restore again'
            )
            with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
                restore(endpoint(pg), repo, manifest.id, "busy", force=True)
    assert not [d for d in _databases(pg) if d.startswith("busy_")]


def test_a_restore_reads_the_database_it_restores_into_whatever_database_it_logs_in_to(
    pg: PostgresServer, tmp_path: Path
) -> None:
    """The check for tables, and the check against the manifest, are made in
    the database restored into: logged in to an empty one, a restore still
    refuses a target that holds tables, and checks what it restored."""
    repo, manifest = restored(pg, tmp_path, "filled")
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE empty")
        comment = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'filled'")
        assert comment.fetchone() == (f"restored by wondernest_backup from backup {manifest.id}",)
    refusal = (
        r"^database 'filled' is not empty \(it has table [^;]+\); refusing to restore over it\. Restore into a new "
        r"database, or pass --force to replace it \(the old one is kept, renamed\)\.$"
    )
    with pytest.raises(BackupError, match=refusal):
        restore(endpoint(pg, "empty"), repo, manifest.id, "filled", force=False)
    # Emptied, it is restored into in place, and what was restored is checked there.
    with pg.admin("filled") as conn:
        conn.execute("DROP SCHEMA core CASCADE; DROP SCHEMA content CASCADE; DROP SCHEMA analytics CASCADE")
    assert restore(endpoint(pg, "empty"), repo, manifest.id, "filled", force=False) is None
    assert fingerprint(pg, "filled") == fingerprint(pg, "wondernest")


def test_a_failed_restore_reports_its_own_failure_when_its_new_database_cannot_be_dropped(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that reaches the half-made database as the restore fails
    keeps it from being dropped: the restore's own failure is what is
    reported, and the database (marked as a restore's) is left. One that
    closes within the grace is waited for, and the database dropped."""
    from wondernest_backup import backup

    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    manifest.tables = {**manifest.tables, "core.users": manifest.tables["core.users"] + 1}
    repo.save(manifest)
    check = backup._refuse_if_in_use
    held: list[psycopg.Connection[Any]] = []

    def arriving(target: str, *, before: bool, closing: bool = False) -> Any:
        def arrive() -> None:
            held.append(psycopg.connect(pg.dsn(dbname=target), autocommit=True))
            if closing:
                held[-1].execute("SET idle_session_timeout = '2s'")

        def at_the_check(admin: psycopg.Connection[Any], database: str) -> None:
            if before:
                arrive()
            check(admin, database)
            if not before:
                arrive()

        return at_the_check

    cases = (("held_early", True, False, True), ("held_late", False, False, True), ("closing", True, True, False))
    try:
        for target, before, closing, left in cases:
            monkeypatch.setattr(backup, "_refuse_if_in_use", arriving(target, before=before, closing=closing))
            with pytest.raises(BackupError, match=rf"^backup {manifest.id}: row counts differ after restore"):
                restore(endpoint(pg), repo, manifest.id, target, force=False)
            assert (target in _databases(pg)) is left, target
    finally:
        for conn in held:
            conn.close()


def test_a_dump_missing_or_failing_its_checksum_is_not_restored(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    refusal = f"^backup {manifest.id}: the dump is missing or fails its checksum; refusing to restore it$"
    dump = repo.dump_path(manifest.id)
    dump.write_bytes(dump.read_bytes() + b"\0")
    with pytest.raises(BackupError, match=refusal):
        restore(endpoint(pg), repo, manifest.id, "never", force=False)
    dump.unlink()
    with pytest.raises(BackupError, match=refusal):
        restore(endpoint(pg), repo, manifest.id, "never", force=False)
    assert "never" not in _databases(pg)


def test_a_failed_restore_names_the_error_in_the_dumps_own_encoding(pg: PostgresServer, tmp_path: Path) -> None:
    """pg_restore speaks the dump's encoding: a LATIN1 database's role name
    comes back in LATIN1 bytes, kept (the byte UTF-8 cannot read replaced) in
    the error, and the database the restore created is gone again."""
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE latin ENCODING 'LATIN1' LOCALE 'C' TEMPLATE template0")
    # A role's name is stored as bytes and read in each database's encoding:
    # made from the LATIN1 database, it is one there.
    haunted = 'CREATE ROLE "ghöst"; CREATE TABLE public.haunted (id int); ALTER TABLE public.haunted OWNER TO "ghöst"'
    with pg.admin("latin") as conn:
        conn.execute(haunted.encode("latin-1"))
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg, "latin"), repo)
    with pg.admin("latin") as conn:
        conn.execute('DROP TABLE public.haunted; DROP ROLE "ghöst"'.encode("latin-1"))
    # Its script is in LATIN1 too, and read as such: the role is named as it is, and made to verify it.
    assert referenced_roles(repo.dump_path(manifest.id)) == {"ghöst"}
    assert verify(repo, manifest.id).verified_at
    failure = rf"^restore of {manifest.id} into 'copy' failed: pg_restore: error: .*role \"gh\ufffdst\" does not exist"
    with pytest.raises(BackupError, match=re.compile(failure, re.DOTALL)):
        restore(endpoint(pg), repo, manifest.id, "copy", force=False)
    assert "copy" not in _databases(pg)


def test_a_dump_in_no_declared_encoding_is_read_with_what_does_not_decode_replaced(
    pg: PostgresServer, tmp_path: Path
) -> None:
    """A SQL_ASCII database (which `run` refuses) dumped by hand: its bytes
    follow no encoding, so a role named in LATIN1 bytes comes back with the
    byte UTF-8 cannot read replaced instead of failing the read."""
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE bytes_as_they_came ENCODING 'SQL_ASCII' LOCALE 'C' TEMPLATE template0")
    haunted = 'CREATE ROLE "ghöst"; CREATE TABLE public.haunted (id int); ALTER TABLE public.haunted OWNER TO "ghöst"'
    with pg.admin("bytes_as_they_came") as conn:
        conn.execute(haunted.encode("latin-1"))
    dump = tmp_path / "by-hand.dump"
    try:
        subprocess.run(
            [PG_BINDIR / "pg_dump", "--format=custom", f"--file={dump}", pg.dsn(dbname="bytes_as_they_came")],
            check=True, capture_output=True,
        )  # fmt: skip
    finally:
        with pg.admin("bytes_as_they_came") as conn:
            conn.execute('DROP TABLE public.haunted; DROP ROLE "ghöst"'.encode("latin-1"))
    assert referenced_roles(dump) == {"gh\ufffdst"}


def test_a_restore_refused_for_a_database_in_use_does_nothing_first(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wondernest_backup import backup

    repo, manifest = restored(pg, tmp_path, "early")
    restores: list[str] = []
    monkeypatch.setattr(backup, "_pg_restore", lambda *args, **kwargs: restores.append(args[2]))
    with pg.admin("early"), pytest.raises(BackupError, match=r"^database 'early' has 1 open connection"):
        restore(endpoint(pg), repo, manifest.id, "early", force=True)
    assert restores == []


def test_a_connection_made_while_the_copy_is_restored_refuses_the_swap(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API reconnecting while the replacement is restored: the swap is
    refused, the target stays as it was and the replacement is dropped."""
    from wondernest_backup import backup

    repo, manifest = restored(pg, tmp_path, "reconnected")
    with pg.admin("reconnected") as conn:
        conn.execute("CREATE TABLE public.only_here (id int)")
    before = fingerprint(pg, "reconnected")
    copy = backup._copy_database_grants
    held: list[psycopg.Connection[Any]] = []

    def reconnecting(admin: psycopg.Connection[Any], source: str, target: str) -> None:
        copy(admin, source, target)
        held.append(psycopg.connect(pg.dsn(dbname=source), application_name="wondernest-api"))

    monkeypatch.setattr(backup, "_copy_database_grants", reconnecting)
    try:
        with pytest.raises(BackupError, match=r"^database 'reconnected' has 1 open connection\(s\) \(wondernest-api\)"):
            restore(endpoint(pg), repo, manifest.id, "reconnected", force=True)
    finally:
        for conn in held:
            conn.close()
    assert fingerprint(pg, "reconnected") == before
    with pg.admin("reconnected") as conn:
        assert conn.execute("SELECT to_regclass('public.only_here')").fetchone() == ("only_here",)
    assert not [d for d in _databases(pg) if d.startswith("reconnected_")]


def test_a_failed_swap_reports_its_own_failure_when_the_copy_cannot_be_dropped(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wondernest_backup import backup

    repo, manifest = restored(pg, tmp_path, "stuck")
    manifest.tables = {**manifest.tables, "core.users": manifest.tables["core.users"] + 1}
    repo.save(manifest)
    restore_into = backup._pg_restore
    held: list[psycopg.Connection[Any]] = []

    def visited(target: Endpoint, dump: Path, database: str, *args: Any, **kwargs: Any) -> None:
        restore_into(target, dump, database, *args, **kwargs)
        held.append(psycopg.connect(pg.dsn(dbname=database)))

    monkeypatch.setattr(backup, "_pg_restore", visited)
    try:
        with pytest.raises(BackupError, match=rf"^backup {manifest.id}: row counts differ after restore"):
            restore(endpoint(pg), repo, manifest.id, "stuck", force=True)
        copy = held[0].info.dbname
    finally:
        for conn in held:
            conn.close()
    assert [d for d in _databases(pg) if d.startswith("stuck_")] == [copy]
    with pg.admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(copy)))


def test_the_names_kept_beside_the_longest_database_name_are_the_databases_own(
    pg: PostgresServer, tmp_path: Path
) -> None:
    """PostgreSQL cuts a name to 63 bytes without a word: the replaced
    database's name given back is one that exists."""
    target = "n" * 63
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    restore(endpoint(pg), repo, manifest.id, target, force=False)
    aside = restore(endpoint(pg), repo, manifest.id, target, force=True)
    assert aside is not None and {target, aside} <= _databases(pg)
    assert re.fullmatch(r"n{39}_replaced_\d{14}", aside)
    assert not [d for d in _databases(pg) if "_restoring_" in d]
    with pg.admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(aside)))


def test_a_forced_restore_waits_for_a_connection_that_is_closing(pg: PostgresServer, tmp_path: Path) -> None:
    """A session that ends within the grace (a pool draining as the API
    stops) is waited for, not refused."""
    repo, manifest = restored(pg, tmp_path, "draining")
    with pg.admin("draining") as conn:
        conn.execute("SET application_name = 'draining-api'")
        # The session ends itself two seconds after it is seen in use, within the grace.
        conn.execute("SET idle_session_timeout = '2s'")
        with pg.admin() as admin:
            seen = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'draining-api'"
            ).fetchone()
        assert seen == (1,)
        aside = restore(endpoint(pg), repo, manifest.id, "draining", force=True)
    assert aside is not None and aside.startswith("draining_replaced_")
    assert fingerprint(pg, "draining") == fingerprint(pg, "wondernest")


def test_a_backup_that_fails_a_later_verification_is_no_longer_verified(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    assert verify(repo, manifest.id).verified_at
    assert repo.newest_verified() is not None
    dump = repo.dump_path(manifest.id)
    dump.write_bytes(dump.read_bytes()[:100])
    with pytest.raises(BackupError, match="checksum mismatch"):
        verify(repo, manifest.id)
    failed = repo.load(manifest.id)
    assert failed.verified_at is None and "checksum mismatch" in failed.verification["error"]
    assert set(failed.verification) == {"failed_at", "error"}
    assert dt.datetime.fromisoformat(failed.verification["failed_at"]) >= dt.datetime.fromisoformat(
        str(manifest.created_at)
    )
    assert repo.newest_verified() is None


def test_verification_compares_the_restored_tables_with_the_manifest(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    # A manifest that names a table the dump does not hold (and misses one it does).
    manifest.tables = {**{k: v for k, v in manifest.tables.items() if k != "core.users"}, "core.ghosts": 0}
    repo.save(manifest)
    with pytest.raises(
        BackupError, match=r"restored tables differ \(missing \['core.ghosts'\], unexpected \['core.users'\]\)"
    ):
        verify(repo, manifest.id)


def test_a_corrupt_manifest_is_named_and_skipped(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    good = run(endpoint(pg), repo)
    (tmp_path / "20200101T000000000000Z.json").write_text("{not json")
    assert [m.id for m in repo.all()] == [good.id]
    assert repo.corrupt() == ["20200101T000000000000Z"]
    with pytest.raises(BackupError, match="manifest is unreadable"):
        repo.load("20200101T000000000000Z")


def test_a_manifest_that_does_not_read_is_refused_with_each_reason(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    good = run(endpoint(pg), repo)
    record = json.loads(repo.manifest_path(good.id).read_text())
    other = "20200101T000000000000Z"
    with pytest.raises(BackupError, match=f"^{re.escape(repr('../etc'))} is not a backup id \\(like "):
        repo.load("../etc")
    with pytest.raises(BackupError, match=f"^no backup '{other}' in {re.escape(str(tmp_path))}$"):
        repo.load(other)
    # Another backup's manifest under this one's name.
    repo.manifest_path(other).write_text(json.dumps(record))
    with pytest.raises(
        BackupError, match=f"^backup {other}: its manifest is unreadable \\(it names backup {good.id}\\)$"
    ):
        repo.load(other)
    # Two fields wrong: both named, each by where it is.
    repo.manifest_path(other).write_text(json.dumps({**record, "id": other, "size_bytes": -1, "tables": {"t": "x"}}))
    with pytest.raises(BackupError) as refused:
        repo.load(other)
    assert str(refused.value) == (
        f"backup {other}: its manifest is unreadable (size_bytes: Input should be greater than or equal to 0; "
        "tables.t: Input should be a valid integer)"
    )
    repo.manifest_path(other).write_text("[]")
    with pytest.raises(BackupError, match=f"^backup {other}: its manifest is unreadable \\(document: Input should be "):
        repo.load(other)


def test_an_archive_that_does_not_list_or_names_no_database_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wondernest_backup.backup import dump_database

    torn = tmp_path / "torn.dump"
    torn.write_bytes(b"PGDMP")
    unreadable = (
        "torn.dump: not a readable pg_dump archive: pg_restore: error: could not read from input file: end of file"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(unreadable)}\\Z"):
        table_of_contents(torn)
    unreadable = (
        "torn.dump: its table of contents is unreadable: pg_restore: error: could not read from input file: end of file"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(unreadable)}\\Z"):
        referenced_roles(torn)
    # A listing whose header has no `dbname:` line (a stand-in pg_restore prints one).
    header = stand_in_tools(tmp_path / "bin", {"pg_restore": "printf ';\\n; Archive created at 2026-01-01\\n;\\n'"})
    monkeypatch.setenv("PG_BINDIR", str(header))
    with pytest.raises(
        BackupError, match=r"^torn\.dump: not a readable pg_dump archive: its header names no database$"
    ):
        dump_database(torn)


def test_leftovers_of_killed_runs_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from wondernest_backup.pgtools import WORK_PREFIX, clean_orphans

    repo = Repository(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f"20240101T000000000000Z.{pid}.dump.partial").write_bytes(b"half a dump")
    (tmp_path / "20240101T000000000000Z.dump.partial").write_bytes(b"from an older version")
    # Not a name this tool writes, though one part is a live process's id, or not a number.
    (tmp_path / f"20240101T000000000000Z.{os.getpid()}.partial").write_bytes(b"someone else's")
    (tmp_path / "20240101T000000000000Z.writer.dump.partial").write_bytes(b"someone else's")
    mine = repo.partial_path("20240102T000000000000Z")
    mine.write_bytes(b"being written")
    orphan = Path(tempfile.gettempdir()) / f"{WORK_PREFIX}{pid}"
    (orphan / "wn-verify-x").mkdir(parents=True)
    (orphan / "pgpass-abc").write_text("*:*:*:*:secret\n")
    assert set(repo.clean_partials()) == {
        "20240101T000000000000Z.dump.partial",
        f"20240101T000000000000Z.{pid}.dump.partial",
        f"20240101T000000000000Z.{os.getpid()}.partial",
        "20240101T000000000000Z.writer.dump.partial",
    }
    assert mine.exists()  # a live run's file stays
    assert str(orphan) in clean_orphans()
    assert not orphan.exists()


def test_a_backup_whose_dump_is_gone_can_still_be_deleted(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    repo.dump_path(manifest.id).unlink()
    repo.delete(manifest.id)
    assert repo.all() == [] and not list(tmp_path.glob(f"{manifest.id}*"))


def test_a_backup_directory_is_made_with_its_parents_for_its_owner_alone(tmp_path: Path) -> None:
    Repository(tmp_path / "volume" / "backups")
    assert stat.S_IMODE((tmp_path / "volume" / "backups").stat().st_mode) == 0o700


def test_a_failure_is_recorded_with_its_stage_time_and_reason_for_the_owner_alone(tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    before = dt.datetime.now(dt.UTC)
    repo.record_failure("dump", "connection refused")
    repo.record_failure("dump", "disk full")
    lines = [json.loads(line) for line in repo.failures_path.read_text().splitlines()]
    assert [(e["stage"], e["detail"]) for e in lines] == [("dump", "connection refused"), ("dump", "disk full")]
    assert all(dt.datetime.fromisoformat(e["at"]) >= before for e in lines) and set(lines[0]) == {
        "at",
        "stage",
        "detail",
    }
    # The reasons name hosts and files: readable by the backup's owner only.
    assert stat.S_IMODE(repo.failures_path.stat().st_mode) == 0o600
    assert repo.failures()["dump"][0] == 2


def test_a_database_of_bytes_in_no_encoding_is_refused_with_the_reason(pg: PostgresServer, tmp_path: Path) -> None:
    """SQL_ASCII keeps whatever bytes it is given: no restore could check or
    convert them, so a backup of it is refused, before anything is written."""
    with pg.admin() as conn:
        conn.execute("CREATE DATABASE bytes_kept ENCODING 'SQL_ASCII' LOCALE 'C' TEMPLATE template0")
    with pg.admin("bytes_kept") as conn:
        conn.execute(b"CREATE TABLE public.raw (note text); INSERT INTO public.raw VALUES ('caf\xe9 \xff')")
    refusal = (
        "database 'bytes_kept' is SQL_ASCII: its text is bytes in no declared encoding, which no restore can check "
        "or convert; convert it to UTF8 first"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(refusal)}$"):
        run(endpoint(pg, "bytes_kept"), Repository(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_a_prune_keeps_the_newest_verified_backup_beside_the_newest(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    verified, middle, newest = (run(endpoint(pg), repo) for _ in range(3))
    verify(repo, verified.id)
    assert prune(repo, RetentionPolicy(last=1, daily=0, weekly=0, monthly=0)) == [middle.id]
    assert [m.id for m in repo.all()] == [verified.id, newest.id]
    assert not repo.dump_path(middle.id).exists()


def test_a_line_of_the_failure_record_that_does_not_read_is_skipped_not_the_rest(tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    repo.record_failure("verify", "before")
    with repo.failures_path.open("a") as record:
        record.write('{"stage": "verify"}\nnot json\n')
    repo.record_failure("verify", "after")
    assert repo.failures()["verify"][0] == 2


def test_verification_applies_owners_and_grants_as_a_restore_does(pg: PostgresServer, tmp_path: Path) -> None:
    """A dump naming a role the platform lacks verifies only where roles are not
    checked; against the live server's roles it fails, as its restore would."""
    from wondernest_backup.backup import server_roles

    # A name that needs quoting, with a quote in it; and a grant to everyone, which names no role.
    with pg.admin() as conn:
        conn.execute('CREATE ROLE stranger; CREATE ROLE "On ""Looker"""')
    with pg.admin("wondernest") as conn:
        conn.execute("CREATE TABLE public.foreign_made (id int); ALTER TABLE public.foreign_made OWNER TO stranger")
        conn.execute('GRANT SELECT ON public.foreign_made TO "On ""Looker""", PUBLIC')
        conn.execute(
            'ALTER DEFAULT PRIVILEGES FOR ROLE stranger IN SCHEMA public GRANT SELECT ON TABLES TO "On ""Looker"""'
        )
    repo = Repository(tmp_path)
    try:
        manifest = run(endpoint(pg), repo)
    finally:
        with pg.admin("wondernest") as conn:
            conn.execute("DROP TABLE public.foreign_made")
            conn.execute(
                "ALTER DEFAULT PRIVILEGES FOR ROLE stranger IN SCHEMA public "
                'REVOKE SELECT ON TABLES FROM "On ""Looker"""'
            )
        with pg.admin() as conn:
            conn.execute('DROP ROLE stranger; DROP ROLE "On ""Looker"""')
    dump = repo.dump_path(manifest.id)
    assert referenced_roles(dump) == {"stranger", 'On "Looker"', pg.superuser}
    # In isolation the dump restores, owners and grants applied.
    assert verify(repo, manifest.id).verified_at
    # Against the platform's server it cannot: those roles are gone there.
    foreign = (
        f'backup {manifest.id}: it names roles the server does not have (On "Looker", stranger), '
        "so it could not be restored there"
    )
    with pytest.raises(BackupError, match=f"^{re.escape(foreign)}$"):
        verify(repo, manifest.id, platform_roles=server_roles(endpoint(pg)))
    assert repo.load(manifest.id).verified_at is None
    with pytest.raises(BackupError, match="failed"):
        restore(endpoint(pg), repo, manifest.id, "foreign_target", force=False)
    assert "foreign_target" not in _databases(pg)  # created by the restore, so dropped with it


def test_a_forced_restore_of_the_database_the_tool_connects_to(pg: PostgresServer, tmp_path: Path) -> None:
    """The disaster-recovery case: DB_NAME is the target itself."""
    repo, manifest = restored(pg, tmp_path, "itself")
    with pg.admin("itself") as conn:
        conn.execute("DELETE FROM core.users")
    aside = restore(endpoint(pg, "itself"), repo, manifest.id, "itself", force=True)
    assert aside is not None and fingerprint(pg, "itself") == fingerprint(pg, "wondernest")


def test_a_verification_server_started_during_the_dump_is_used_once_and_removed(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wondernest_backup import backup
    from wondernest_backup.pgtools import EarlyServer, work_dir

    repo = Repository(tmp_path)
    early = EarlyServer()
    manifest = run(endpoint(pg), repo)

    def another_server() -> None:
        raise AssertionError("a second verification server was started")

    with monkeypatch.context() as patched:
        patched.setattr(backup, "throwaway_server", another_server)
        assert verify(repo, manifest.id, server=early).verified_at
    early.close()
    early.close()  # the service's cycle closes it again on its way out: harmless
    assert list(work_dir().glob("wn-verify-*")) == []
    # Never used (the dump failed), it is stopped and removed all the same.
    unused = EarlyServer()
    unused.close()
    assert list(work_dir().glob("wn-verify-*")) == []


def test_a_backup_is_named_and_dated_in_utc_whatever_the_machines_zone(
    pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        manifest = run(endpoint(pg), Repository(tmp_path))
    finally:
        monkeypatch.undo()
        time.tzset()
    named = dt.datetime.strptime(manifest.id, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - named).total_seconds()) < 120
    assert manifest.created_at.utcoffset() == dt.timedelta(0)


def test_a_half_deleted_backup_can_be_deleted(pg: PostgresServer, tmp_path: Path) -> None:
    """Pruning stopped between the manifest and the dump leaves a dump alone: the next prune removes it."""
    repo = Repository(tmp_path)
    manifest = run(endpoint(pg), repo)
    repo.manifest_path(manifest.id).unlink()
    repo.delete(manifest.id)
    assert not repo.dump_path(manifest.id).exists()
