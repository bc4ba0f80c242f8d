"""`serve`: the scheduled cycle (backup → verify → prune → copy off-site) and its metrics."""

from __future__ import annotations

import datetime as dt
import json
import time

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from wondernest_backup.backup import Repository, prune, run, verify
from wondernest_backup.offsite import Offsite
from wondernest_backup.pgtools import BackupError
from wondernest_backup.settings import BackupSettings

STAGES = ("backup", "verify", "prune", "copy")


class BackupMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.last_success = Gauge(
            "backup_last_success_timestamp_seconds", "When the last backup finished", registry=self.registry
        )
        self.last_verified = Gauge(
            "backup_last_verified_timestamp_seconds",
            "When the newest backup proven by a restore was taken",
            registry=self.registry,
        )
        self.duration = Gauge(
            "backup_last_duration_seconds", "How long the last cycle's backup took", registry=self.registry
        )
        self.size = Gauge("backup_last_size_bytes", "Size of the last backup", registry=self.registry)
        self.failures = Counter(
            "backup_failures_total", "Cycles that failed, by the stage that failed", ("stage",), registry=self.registry
        )
        for stage in STAGES:
            self.failures.labels(stage)  # every series exists from the start, at 0

    def observe_repository(self, repo: Repository) -> None:
        """What survives a restart: the newest backup and the newest verified one."""
        manifests = repo.all()
        if manifests:
            newest = manifests[-1]
            self.last_success.set(dt.datetime.fromisoformat(newest.finished_at).timestamp())
            self.size.set(newest.size_bytes)
        verified = repo.newest_verified()
        if verified is not None:
            self.last_verified.set(verified.created_at.timestamp())


def cycle(settings: BackupSettings, repo: Repository, metrics: BackupMetrics, offsite: Offsite | None) -> bool:
    """One scheduled run; True when every stage succeeded. A failure is counted
    under its stage and the cycle stops there: an unverified backup is never
    copied off-site as if it were good."""
    stage = "backup"
    try:
        started = time.monotonic()
        manifest = run(settings.source(), repo)
        metrics.duration.set(time.monotonic() - started)
        metrics.size.set(manifest.size_bytes)
        metrics.last_success.set(time.time())
        stage = "verify"
        verify(repo, manifest.id, jobs=settings.restore_jobs)
        metrics.last_verified.set(manifest.created_at.timestamp())
        stage = "prune"
        deleted = prune(repo, settings.retention())
        stage = "copy"
        if offsite is not None:
            offsite.upload(repo, manifest.id)
            for backup_id in deleted:
                offsite.delete(backup_id)
        return True
    except Exception as exc:
        # Every failure is counted under its stage; none may stop the service.
        metrics.failures.labels(stage).inc()
        detail = str(exc) if isinstance(exc, BackupError) else type(exc).__name__
        print(json.dumps({"level": "error", "msg": "backup cycle failed", "stage": stage, "error": detail}), flush=True)
        return False


def serve(settings: BackupSettings) -> None:
    repo = Repository(settings.backup_dir)
    for backup_id in repo.corrupt():
        # Unreadable, so neither used nor pruned: an operator must look at it.
        print(json.dumps({"level": "error", "msg": "corrupt backup manifest", "backup": backup_id}), flush=True)
    metrics = BackupMetrics()
    metrics.observe_repository(repo)
    offsite = Offsite.from_settings(settings)
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
