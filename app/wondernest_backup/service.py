"""`serve`: the scheduled cycle (backup → verify → prune → copy off-site) and its metrics."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wondernest_backup.backup import Repository, prune, run, server_roles, verify
from wondernest_backup.offsite import Offsite
from wondernest_backup.pgtools import BackupError, EarlyServer
from wondernest_backup.settings import BackupSettings

# The cycle's stages, and what else a command run by hand does.
STAGES = ("backup", "verify", "prune", "copy", "restore")


class RepositoryCollector(Collector):
    """What the repository holds, read at each scrape: a backup taken or
    verified by hand (`docker exec ... run`) shows at once, and a restart
    loses nothing."""

    def __init__(self, repo: Repository, offsite_enabled: bool) -> None:
        self.repo = repo
        self.offsite_enabled = offsite_enabled

    def collect(self) -> Iterator[Metric]:
        failures = self.repo.failures()
        counted = CounterMetricFamily(
            "backup_failures",
            "Failed stages, by the stage: the service's cycles and commands run by hand alike",
            labels=("stage",),
        )
        last = GaugeMetricFamily(
            "backup_last_failure_timestamp_seconds", "When a stage last failed, by the stage", labels=("stage",)
        )
        for stage in sorted({*STAGES, *failures}):
            count, at = failures.get(stage, (0, 0.0))
            counted.add_metric([stage], count)
            last.add_metric([stage], at)
        yield counted
        yield last
        manifests, corrupt = self.repo.scan()
        newest = manifests[-1] if manifests else None
        verified = [m for m in manifests if m.verified_at]
        copied = [m for m in verified if m.copied_at]
        yield _gauge(
            "backup_last_success_timestamp_seconds",
            "When the newest backup finished",
            dt.datetime.fromisoformat(newest.finished_at).timestamp() if newest else 0,
        )
        yield _gauge("backup_last_size_bytes", "Size of the newest backup", newest.size_bytes if newest else 0)
        yield _gauge(
            "backup_last_verified_timestamp_seconds",
            "When the newest backup proven by a restore was taken",
            verified[-1].created_at.timestamp() if verified else 0,
        )
        yield _gauge(
            "backup_last_offsite_timestamp_seconds",
            "When the newest verified backup with an off-site copy was taken",
            copied[-1].created_at.timestamp() if copied else 0,
        )
        yield _gauge("backup_offsite_enabled", "1 when backups are copied off-site", int(self.offsite_enabled))
        yield _gauge("backup_corrupt_manifests", "Manifests that cannot be read", len(corrupt))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class BackupMetrics:
    def __init__(self, repo: Repository, *, offsite_enabled: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(RepositoryCollector(repo, offsite_enabled))
        self.duration = Gauge(
            "backup_last_duration_seconds", "How long the last cycle's backup took", registry=self.registry
        )


def cycle(settings: BackupSettings, repo: Repository, metrics: BackupMetrics, offsite: Offsite | None) -> bool:
    """One scheduled run; True when every stage succeeded. A failure is counted
    under its stage and the cycle stops there: an unverified backup is never
    copied off-site as if it were good."""
    stage = "backup"
    # The verification server comes up while the dump runs.
    early = EarlyServer()
    try:
        started = time.monotonic()
        manifest = run(settings.source(), repo)
        metrics.duration.set(time.monotonic() - started)
        stage = "verify"
        verify(
            repo,
            manifest.id,
            jobs=settings.restore_jobs,
            platform_roles=server_roles(settings.source()),
            server=early,
        )
        early.close()
        stage = "prune"
        deleted = prune(repo, settings.retention())
        stage = "copy"
        if offsite is not None:
            copy_pending(repo, offsite)
            for backup_id in deleted:
                offsite.delete(backup_id)
        return True
    except Exception as exc:
        # Every failure is counted under its stage; none may stop the service.
        detail = str(exc) if isinstance(exc, (BackupError, OSError)) else f"{type(exc).__name__}: {exc}"
        repo.record_failure(stage, detail)
        print(json.dumps({"level": "error", "msg": "backup cycle failed", "stage": stage, "error": detail}), flush=True)
        return False
    finally:
        early.close()


def copy_pending(repo: Repository, offsite: Offsite) -> list[str]:
    """Copies every kept, verified backup not copied yet, oldest first: a copy
    that failed in an earlier cycle is retried in the next. Returns the ids copied."""
    copied = []
    for manifest in repo.all():
        if manifest.verified_at and not manifest.copied_at:
            offsite.upload(repo, manifest.id)
            manifest.copied_at = dt.datetime.now(dt.UTC).isoformat()
            repo.save(manifest)
            copied.append(manifest.id)
    return copied


def serve(settings: BackupSettings) -> None:
    repo = Repository(settings.backup_dir)
    for backup_id in repo.corrupt():
        # Unreadable, so neither used nor pruned: an operator must look at it.
        print(json.dumps({"level": "error", "msg": "corrupt backup manifest", "backup": backup_id}), flush=True)
    offsite = Offsite.from_settings(settings)
    metrics = BackupMetrics(repo, offsite_enabled=offsite is not None)
    start_http_server(settings.metrics_port, registry=metrics.registry)
    if repo.newest_verified() is None:
        # A fresh volume has no proven backup: make one now, not at the next slot.
        cycle(settings, repo, metrics, offsite)
    scheduler = BlockingScheduler(timezone="UTC")
    scheduler.add_job(
        cycle,
        CronTrigger.from_crontab(settings.backup_schedule, timezone="UTC"),
        args=(settings, repo, metrics, offsite),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )
    scheduler.start()
