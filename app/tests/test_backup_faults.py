"""The backup tool under faults, against a real PostgreSQL: manifests of the
wrong shape, two commands at once, damage found after verification, an
off-site service that fails, and the command line's own edges (Ctrl-C, a
path where an id belongs, a checkout's umask, a server that cannot be made)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wondernest_backup.backup import Repository, run, verify
from wondernest_backup.offsite import Offsite
from wondernest_backup.pgtools import bindir
from wondernest_backup.service import BackupMetrics, cycle, retry_offsite, reverify, sync_offsite

from tests.api_stack import APP_DIR
from tests.servers import PostgresServer, postgres_server, reachable_dir, stand_in_tools

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        with server.admin("wondernest") as conn:
            conn.execute("CREATE SCHEMA core")
            conn.execute("CREATE TABLE core.users AS SELECT g AS id FROM generate_series(1, 300) g")
        yield server


@pytest.fixture
def tools() -> Iterator[Path]:
    """A directory for stand-in PostgreSQL tools."""
    with reachable_dir("wn-tools-") as path:
        yield path


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """A TMPDIR of the test's own, where the tool's work directories go: what
    other runs on the machine leave in /tmp is theirs, not this test's."""
    with reachable_dir("wn-tmp-") as path:
        yield path


def env(pg: PostgresServer, backup_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "DB_HOST": "127.0.0.1", "DB_PORT": str(pg.port), "DB_NAME": "wondernest", "DB_USER": pg.superuser,
        "DB_PASSWORD": pg.superuser_password, "DB_SSLMODE": "disable", "BACKUP_DIR": str(backup_dir), **extra,
    }  # fmt: skip


def cli(environment: dict[str, str], *args: str, umask: int = 0o022) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.Popen(
        [sys.executable, "-m", "wondernest_backup", *args],
        env={**base, **environment, "PYTHONPATH": str(APP_DIR)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        umask=umask,
        # A run started in the background inherits SIGINT ignored, and Python keeps
        # it so: the interrupt tests need the command's own handling of it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def done(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def settings_for(pg: PostgresServer, backup_dir: Path, **extra: str) -> Any:
    from wondernest_backup.settings import load_settings

    return load_settings(env(pg, backup_dir, **extra))


def test_a_manifest_of_the_wrong_shape_is_corrupt_everywhere_and_nothing_crashes(
    pg: PostgresServer, tmp_path: Path
) -> None:
    repo = Repository(tmp_path)
    good = run(settings_for(pg, tmp_path).source(), repo)
    bad_id = "20200101T000000000000Z"
    document = json.loads(repo.manifest_path(good.id).read_text())
    (tmp_path / f"{bad_id}.json").write_text(json.dumps({**document, "id": bad_id, "size_bytes": "large"}))
    (tmp_path / f"{bad_id}.dump").write_bytes(b"kept")
    code, out, _ = done(cli(env(pg, tmp_path), "list"))
    assert code == 0 and f"{bad_id}  CORRUPT MANIFEST" in out and good.id in out
    code, out, _ = done(cli(env(pg, tmp_path, RETENTION_LAST="1", RETENTION_DAILY="0", RETENTION_WEEKLY="0",
                               RETENTION_MONTHLY="0"), "prune"))  # fmt: skip
    assert code == 0 and json.loads(out) == {"deleted": []}
    assert (tmp_path / f"{bad_id}.dump").exists()
    metrics = BackupMetrics(repo)
    assert metrics.registry.get_sample_value("backup_corrupt_manifests") == 1
    assert metrics.registry.get_sample_value("backup_last_size_bytes") == good.size_bytes
    assert repo.corrupt() == [bad_id]


def test_one_command_changes_a_backup_directory_at_a_time(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    with repo.changing(wait=False):
        code, _, err = done(cli(env(pg, tmp_path), "prune"))
    assert code == 1
    assert "is changing the backups in" in err.splitlines()[-1]
    code, _, _ = done(cli(env(pg, tmp_path), "prune"))
    assert code == 0


def test_damage_after_verification_is_found_by_the_next_cycles_proof(pg: PostgresServer, tmp_path: Path) -> None:
    settings = settings_for(pg, tmp_path)
    repo = Repository(tmp_path)
    older = verify(repo, run(settings.source(), repo).id)
    newer = verify(repo, run(settings.source(), repo).id)
    dump = repo.dump_path(older.id)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))  # the disk rots under a backup already proved
    assert reverify(repo, settings, None, skip={newer.id}) is False
    assert repo.load(older.id).verified_at is None
    assert repo.load(newer.id).verified_at == newer.verified_at
    assert repo.failures()["reverify"][0] == 1
    _, out, _ = done(cli(env(pg, tmp_path), "list"))
    assert f"{older.id}" in out and "UNVERIFIED (verification failed" in out
    metrics = BackupMetrics(repo)
    proved = metrics.registry.get_sample_value("backup_oldest_verification_timestamp_seconds")
    assert proved is not None and proved > 0


class FlakyS3:
    """An S3 client failing the first `failures` calls of each kind."""

    def __init__(self, failures: int) -> None:
        self.failures = {"upload_file": failures, "delete_object": failures}
        self.objects: dict[str, bytes] = {}

    def _maybe_fail(self, kind: str) -> None:
        if self.failures[kind] > 0:
            self.failures[kind] -= 1
            raise OSError("could not connect to the endpoint URL: http://s3.invalid/")

    def upload_file(self, path: str, _bucket: str, key: str, ExtraArgs: Any) -> None:
        self._maybe_fail("upload_file")
        self.objects[key] = Path(path).read_bytes()

    def delete_object(self, Bucket: str, Key: str) -> None:
        self._maybe_fail("delete_object")
        self.objects.pop(Key, None)


def test_an_off_site_copy_that_fails_is_retried_within_the_cycle(pg: PostgresServer, tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    s3 = FlakyS3(failures=2)
    offsite = Offsite(s3, "bucket", "p")
    assert cycle(settings_for(pg, tmp_path), repo, BackupMetrics(repo), offsite, retry_delays=(0.0, 0.0))
    (manifest,) = repo.all()
    assert manifest.copied_at and f"p/{manifest.id}.dump" in s3.objects
    assert "copy" not in repo.failures()


def test_what_the_cycle_could_not_copy_or_delete_off_site_is_retried_between_cycles(
    pg: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Repository(tmp_path)
    settings = settings_for(pg, tmp_path, RETENTION_LAST="1", RETENTION_DAILY="0", RETENTION_WEEKLY="0",
                            RETENTION_MONTHLY="0")  # fmt: skip
    s3 = FlakyS3(failures=0)
    offsite = Offsite(s3, "bucket", "p")
    assert cycle(settings, repo, BackupMetrics(repo), offsite, retry_delays=())
    (first,) = repo.all()
    s3.failures = {"upload_file": 1, "delete_object": 1}
    # The next cycle prunes the first backup and cannot delete it off-site, nor copy the second.
    assert not cycle(settings, repo, BackupMetrics(repo), offsite, retry_delays=())
    (second,) = repo.all()
    assert second.copied_at is None and f"p/{first.id}.dump" in s3.objects
    detail = json.loads((tmp_path / "failures.jsonl").read_text().splitlines()[-1])["detail"]
    assert f"copying {repo.dump_path(second.id)} off-site: could not connect to the endpoint URL" in detail
    assert "could not connect" in capsys.readouterr().out
    retry_offsite(repo, offsite)
    assert repo.load(second.id).copied_at and f"p/{second.id}.dump" in s3.objects
    sync_offsite(repo, offsite, retry_delays=())  # the deletion, now that the service answers
    assert f"p/{first.id}.dump" not in s3.objects and f"p/{first.id}.json" not in s3.objects


def test_ctrl_c_is_one_error_line(pg: PostgresServer, tmp_path: Path, tools: Path) -> None:
    with pg.admin("wondernest") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS core.bulk AS SELECT g, md5(g::text) FROM generate_series(1, 400000) g")
    repo = Repository(tmp_path)
    manifest = run(settings_for(pg, tmp_path).source(), repo)
    # PostgreSQL's tools, pg_restore held two seconds before it starts: the
    # interrupt lands within the restore however fast the machine.
    started = tmp_path / "restore-started"
    stand_in_tools(tools, {"pg_restore": f'touch "{started}"\nsleep 2\nexec "{bindir()}/pg_restore" "$@"'})
    process = cli(env(pg, tmp_path, PG_BINDIR=str(tools)), "verify", manifest.id)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists(), "the restore never started"
    process.send_signal(signal.SIGINT)
    code, _, err = done(process)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted; what it left behind is removed by the next command"
    assert "Traceback" not in err


@pytest.mark.parametrize("given", ["../../etc/passwd", "/backups/20261205T030000123456Z.json", "latest"])
def test_a_path_where_a_backup_id_belongs_is_refused(pg: PostgresServer, tmp_path: Path, given: str) -> None:
    code, _, err = done(cli(env(pg, tmp_path), "verify", given))
    assert code == 1
    assert (
        err.splitlines()[-1]
        == f"error: verify failed: {given!r} is not a backup id (like 20261205T030000123456Z); `list` shows them"
    )


def test_dumps_are_for_their_owner_only_whatever_the_umask(pg: PostgresServer, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    code, out, err = done(cli(env(pg, backups), "run", umask=0o022))
    assert code == 0, err
    backup_id = json.loads(out)["backup"]
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    for name in (f"{backup_id}.dump", f"{backup_id}.json"):
        assert stat.S_IMODE((backups / name).stat().st_mode) == 0o600, name


def test_a_clean_run_leaves_nothing_for_the_next_to_remove(
    pg: PostgresServer, tmp_path: Path, private_tmp: Path
) -> None:
    environment = env(pg, tmp_path, TMPDIR=str(private_tmp))
    code, out, _ = done(cli(environment, "run"))
    assert code == 0
    code, _, err = done(cli(environment, "verify", json.loads(out)["backup"]))
    assert code == 0
    assert list(private_tmp.iterdir()) == []
    code, _, err = done(cli(environment, "prune"))
    assert code == 0 and "removed what interrupted runs left behind" not in err


def test_a_verification_server_that_cannot_be_made_is_one_error_line(
    pg: PostgresServer, tmp_path: Path, tools: Path
) -> None:
    stand_in_tools(
        tools, {"initdb": "echo 'initdb: error: could not create directory: No space left on device' >&2\nexit 1"}
    )
    backups = tmp_path / "backups"
    code, out, _ = done(cli(env(pg, backups, PG_BINDIR=str(tools)), "run"))
    assert code == 0
    code, _, err = done(cli(env(pg, backups, PG_BINDIR=str(tools)), "verify", json.loads(out)["backup"]))
    assert code == 1 and "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith("error: verify failed: the verification server could not be created (initdb in ")
    assert line.endswith("No space left on device")
