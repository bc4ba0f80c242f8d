"""The scheduled cycle and its metrics, the off-site copy (against moto's S3
server: a real HTTP endpoint, boto3 unchanged), and the command line."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from wondernest_api.envconfig import SettingsError
from wondernest_backup import service
from wondernest_backup.backup import Repository, verify
from wondernest_backup.offsite import Offsite
from wondernest_backup.service import BackupMetrics, cycle
from wondernest_backup.settings import BackupSettings, load_settings

from tests.api_stack import APP_DIR
from tests.servers import PostgresServer, free_port, postgres_server, stand_in_tools

pytestmark = pytest.mark.servers

BUCKET = "wondernest-backups"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        with server.admin("wondernest") as conn:
            conn.execute("CREATE SCHEMA core")
            conn.execute("CREATE TABLE core.users AS SELECT g AS id FROM generate_series(1, 250) g")
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # Moto keeps its buckets in the process, not the server: a second run in one
    # process (mutmut runs pytest in-process) would find the first run's objects.
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def env(pg: PostgresServer, backup_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(pg.port),
        "DB_NAME": "wondernest",
        "DB_USER": pg.superuser,
        "DB_PASSWORD": pg.superuser_password,
        "DB_SSLMODE": "disable",
        "BACKUP_DIR": str(backup_dir),
        **extra,
    }


def settings(pg: PostgresServer, backup_dir: Path, **extra: str) -> BackupSettings:
    return load_settings(env(pg, backup_dir, **extra))


def failures(metrics: BackupMetrics, stage: str) -> float:
    value = metrics.registry.get_sample_value("backup_failures_total", {"stage": stage})
    return value or 0.0


def test_a_cycle_backs_up_verifies_prunes_and_copies(pg: PostgresServer, s3: Any, tmp_path: Path) -> None:
    cfg = settings(pg, tmp_path, S3_BUCKET=BUCKET, RETENTION_LAST="1", RETENTION_DAILY="0", RETENTION_WEEKLY="0",
                   RETENTION_MONTHLY="0")  # fmt: skip
    repo = Repository(tmp_path)
    metrics = BackupMetrics(repo, offsite_enabled=True)
    offsite = Offsite(s3, BUCKET, "dev")
    assert cycle(cfg, repo, metrics, offsite)
    assert cycle(cfg, repo, metrics, offsite)
    manifests = repo.all()
    assert len(manifests) == 1 and manifests[0].verified_at  # the older one was pruned
    assert offsite.ids() == [manifests[0].id]  # and so was its off-site copy
    assert all(failures(metrics, stage) == 0 for stage in service.STAGES)
    assert metrics.registry.get_sample_value("backup_last_verified_timestamp_seconds") == pytest.approx(
        manifests[0].created_at.timestamp()
    )
    assert (metrics.registry.get_sample_value("backup_last_size_bytes") or 0) > 0
    head = s3.head_object(Bucket=BUCKET, Key=f"dev/{manifests[0].id}.dump")
    assert head["ServerSideEncryption"] == "AES256"


def test_a_restore_works_from_the_off_site_copy(pg: PostgresServer, s3: Any, tmp_path: Path) -> None:
    repo = Repository(tmp_path / "local")
    metrics = BackupMetrics(repo)
    offsite = Offsite(s3, BUCKET, "restore-test")
    assert cycle(settings(pg, tmp_path / "local"), repo, metrics, offsite)
    (backup_id,) = offsite.ids()
    elsewhere = Repository(tmp_path / "elsewhere")  # "the volume is gone"
    offsite.download(elsewhere, backup_id)
    assert verify(elsewhere, backup_id).verified_at


def test_a_failed_backup_is_counted_and_leaves_nothing(pg: PostgresServer, tmp_path: Path) -> None:
    cfg = settings(pg, tmp_path, DB_NAME="missing_database")
    repo = Repository(tmp_path)
    metrics = BackupMetrics(repo)
    assert not cycle(cfg, repo, metrics, None)
    assert failures(metrics, "backup") == 1
    # Nothing that could be mistaken for a backup: only the record of the failure.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "failures.jsonl"]
    assert metrics.registry.get_sample_value("backup_last_success_timestamp_seconds") == 0


def test_a_failed_verification_is_counted_and_nothing_is_copied(
    pg: PostgresServer, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        from wondernest_backup.pgtools import BackupError

        raise BackupError("row counts differ")

    monkeypatch.setattr(service, "verify", broken)
    repo = Repository(tmp_path)
    metrics = BackupMetrics(repo)
    offsite = Offsite(s3, BUCKET, "unverified")
    assert not cycle(settings(pg, tmp_path), repo, metrics, offsite)
    assert failures(metrics, "verify") == 1
    assert offsite.ids() == []
    assert repo.newest_verified() is None


def test_settings_name_every_problem(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"DB_HOST": "db", "BACKUP_SCHEDULE": "every night", "RETENTION_LAST": "0"})
    text = str(caught.value)
    for problem in ("DB_NAME: required", "DB_PASSWORD: required", "BACKUP_SCHEDULE: not a cron expression",
                    "RETENTION_LAST:"):  # fmt: skip
        assert problem in text


def cli(
    environment: dict[str, str], *args: str, file_size_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it; `file_size_limit`: no file it
    writes may grow past that many bytes, as on a volume that fills up."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}

    def limited() -> None:
        if file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, not the process
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "wondernest_backup", *args],
        env={**base, **environment, "PYTHONPATH": str(APP_DIR)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        preexec_fn=limited,
    )


def test_a_run_by_hand_that_fails_counts_where_the_service_reads_it(pg: PostgresServer, tmp_path: Path) -> None:
    serving = BackupMetrics(Repository(tmp_path))
    result = cli({**env(pg, tmp_path), "DB_PORT": str(free_port())}, "run")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: backup failed: database: ")
    assert failures(serving, "backup") == 1
    assert (serving.registry.get_sample_value("backup_last_failure_timestamp_seconds", {"stage": "backup"}) or 0) > 0
    assert failures(serving, "verify") == 0
    missing = cli(env(pg, tmp_path), "verify", "20200101T000000000000Z")
    assert missing.returncode == 1 and missing.stderr.splitlines()[-1].startswith("error: verify failed: no backup")
    assert failures(serving, "verify") == 1


def test_a_dump_that_cannot_be_written_names_the_path_and_leaves_no_dump_running(
    pg: PostgresServer, tmp_path: Path
) -> None:
    """A volume that fills up mid-dump: the error names the stage and the file,
    pg_dump ends with the run (left running, it holds its snapshot and its
    locks on the live database), nothing is left behind, and it is counted."""
    with pg.admin("wondernest") as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS core.filler AS SELECT g, md5(g::text) FROM generate_series(1, 200000) g"
        )
    serving = BackupMetrics(Repository(tmp_path))
    result = cli(env(pg, tmp_path), "run", file_size_limit=256 * 1024)
    assert result.returncode == 1
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"error: backup failed: writing {tmp_path}/") and error.endswith(
        ".dump.partial: File too large"
    )
    with pg.admin("wondernest") as conn:
        dumps = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND datname = 'wondernest'"
        ).fetchone()
        assert dumps == (0,)
        # DDL takes its lock at once: no dump holds one on the table.
        conn.execute("SET lock_timeout = '2s'")
        conn.execute("ALTER TABLE core.filler ADD COLUMN extra int")
        conn.execute("DROP TABLE core.filler")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "failures.jsonl"]
    assert failures(serving, "backup") == 1


def test_the_command_line(pg: PostgresServer, tmp_path: Path) -> None:
    e = env(pg, tmp_path, RESTORE_DB_USER=pg.superuser, RESTORE_DB_PASSWORD=pg.superuser_password)
    assert cli(e, "run").returncode == 0
    unverified = cli(e, "restore", "--latest", "--target-db", "from_cli")
    assert unverified.returncode == 1 and "no verified backup" in unverified.stderr
    assert cli(e, "verify", "--latest").returncode == 0
    listing = cli(e, "list").stdout
    assert "verified" in listing and "UNVERIFIED" not in listing
    assert cli(e, "restore", "--latest", "--target-db", "from_cli").returncode == 0
    again = cli(e, "restore", "--latest", "--target-db", "from_cli")
    assert again.returncode == 1 and "not empty" in again.stderr
    with pg.admin("from_cli") as conn:
        assert conn.execute("SELECT count(*) FROM core.users").fetchone() == (250,)
    no_restorer = cli(env(pg, tmp_path), "restore", "--latest", "--target-db", "other")
    assert no_restorer.returncode == 2 and "RESTORE_DB_USER" in no_restorer.stderr


def test_a_cycle_on_demand_copies_its_backup_and_says_which(pg: PostgresServer, s3: Any, tmp_path: Path) -> None:
    """`cycle` in a directory of its own, as a one-off task on AWS runs it: the
    backup it took, verified and in the bucket, named on standard output."""
    endpoint = s3.meta.endpoint_url
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    e = env(pg, tmp_path, S3_BUCKET=BUCKET, S3_PREFIX="on-demand", S3_ENDPOINT_URL=endpoint, S3_REGION="us-east-1",
            **aws)  # fmt: skip
    result = cli(e, "cycle")
    assert result.returncode == 0, result.stderr
    said = json.loads(result.stdout.splitlines()[-1])
    assert said["verified"] is True and said["copied"] is True
    assert Offsite(s3, BUCKET, "on-demand").ids() == [said["backup"]]


def test_a_cycle_on_demand_that_fails_says_so_and_copies_nothing(pg: PostgresServer, s3: Any, tmp_path: Path) -> None:
    endpoint = s3.meta.endpoint_url
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    e = env(pg, tmp_path, S3_BUCKET=BUCKET, S3_PREFIX="on-demand-failed", S3_ENDPOINT_URL=endpoint,
            S3_REGION="us-east-1", DB_NAME="missing_database", **aws)  # fmt: skip
    result = cli(e, "cycle")
    assert result.returncode == 1
    assert json.loads(result.stdout.splitlines()[-1]) == {"backup": None, "verified": False, "copied": False}
    assert '"stage": "backup"' in result.stdout
    assert Offsite(s3, BUCKET, "on-demand-failed").ids() == []


def test_a_cycle_on_demand_whose_backup_fails_verification_exits_non_zero(pg: PostgresServer, tmp_path: Path) -> None:
    """No bucket: verified is what success takes. A cycle that stops at verify
    (here the verification server cannot be created) keeps its backup
    unverified, and the exit status says so."""

    tools = stand_in_tools(tmp_path / "bin", {"initdb": "echo 'initdb: out of disk' >&2\nexit 1"})
    result = cli({**env(pg, tmp_path / "repo"), "PG_BINDIR": str(tools)}, "cycle")
    said = json.loads(result.stdout.splitlines()[-1])
    assert result.returncode == 1 and said["backup"] is not None and said["verified"] is False
    assert '"stage": "verify"' in result.stdout and "initdb" in result.stdout


def test_a_development_bucket_is_created_on_first_use(pg: PostgresServer, s3: Any, tmp_path: Path) -> None:
    offsite = Offsite(s3, "created-on-demand", "dev", create_bucket=True)
    repo = Repository(tmp_path)
    metrics = BackupMetrics(repo)
    assert cycle(settings(pg, tmp_path), repo, metrics, offsite)
    assert "created-on-demand" in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert len(offsite.ids()) == 1


def test_an_unreachable_database_is_one_error_line(pg: PostgresServer, tmp_path: Path) -> None:
    from tests.servers import free_port

    e = {**env(pg, tmp_path), "DB_PORT": str(free_port())}
    result = cli(e, "run")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "Traceback" not in result.stderr


def test_a_failed_off_site_copy_is_retried_by_the_next_cycle(
    pg: PostgresServer, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository(tmp_path)
    metrics = BackupMetrics(repo, offsite_enabled=True)
    offsite = Offsite(s3, BUCKET, "retry")
    real_upload = offsite.upload

    def unreachable(*_args: Any) -> None:
        raise OSError("could not connect to the endpoint URL")

    monkeypatch.setattr(offsite, "upload", unreachable)
    # No wait between attempts: the retries within a cycle have tests of their own.
    assert not cycle(settings(pg, tmp_path), repo, metrics, offsite, retry_delays=(0.0, 0.0))
    assert failures(metrics, "copy") == 1
    assert metrics.registry.get_sample_value("backup_last_offsite_timestamp_seconds") == 0
    (first,) = repo.all()
    assert first.verified_at and first.copied_at is None
    monkeypatch.setattr(offsite, "upload", real_upload)
    assert cycle(settings(pg, tmp_path), repo, metrics, offsite)
    # The copy that failed went with the next cycle's own.
    assert offsite.ids() == [m.id for m in repo.all()] and len(offsite.ids()) == 2
    assert all(m.copied_at for m in repo.all())
    newest = repo.all()[-1]
    assert metrics.registry.get_sample_value("backup_last_offsite_timestamp_seconds") == pytest.approx(
        newest.created_at.timestamp()
    )
    assert metrics.registry.get_sample_value("backup_offsite_enabled") == 1


def test_a_backup_taken_by_hand_shows_in_the_serving_metrics(pg: PostgresServer, tmp_path: Path) -> None:
    """The serving process reads the repository at each scrape, so `docker exec ... run` counts."""
    serving = BackupMetrics(Repository(tmp_path))
    assert serving.registry.get_sample_value("backup_last_verified_timestamp_seconds") == 0
    by_hand = Repository(tmp_path)  # another process's view of the same volume
    manifest = run_backup(pg, by_hand)
    verify(by_hand, manifest.id)
    assert serving.registry.get_sample_value("backup_last_verified_timestamp_seconds") == pytest.approx(
        manifest.created_at.timestamp()
    )
    assert serving.registry.get_sample_value("backup_offsite_enabled") == 0
    (tmp_path / "20200101T000000000000Z.json").write_text("{broken")
    assert serving.registry.get_sample_value("backup_corrupt_manifests") == 1


def run_backup(pg: PostgresServer, repo: Repository) -> Any:
    from wondernest_backup.backup import run

    return run(settings(pg, repo.root).source(), repo)
