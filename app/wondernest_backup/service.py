"""`serve`: the scheduled cycle (backup → verify → prune → copy off-site) and its metrics."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from functools import partial

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
STAGES = ("backup", "verify", "prune", "copy", "reverify", "restore")
# Seconds between the attempts of an off-site copy within a cycle, backing off.
COPY_RETRY_DELAYS = (5.0, 30.0, 120.0)


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
        yield _gauge(
            "backup_oldest_verification_timestamp_seconds",
            "When the verified backup proved longest ago was last restored (each cycle proves some again)",
            min(dt.datetime.fromisoformat(str(m.verified_at)).timestamp() for m in verified) if verified else 0,
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


def cycle(
    settings: BackupSettings,
    repo: Repository,
    metrics: BackupMetrics,
    offsite: Offsite | None,
    *,
    retry_delays: Sequence[float] = COPY_RETRY_DELAYS,
) -> bool:
    """One scheduled run; True when every stage succeeded. A failure is counted
    under its stage and the cycle stops there: an unverified backup is never
    copied off-site as if it were good. One cycle or command at a time changes
    the directory."""
    stage = "backup"
    with repo.changing(wait=True):
        # The verification server comes up while the dump runs.
        early = EarlyServer()
        try:
            started = time.monotonic()
            manifest = run(settings.source(), repo)
            metrics.duration.set(time.monotonic() - started)
            stage = "verify"
            roles = server_roles(settings.source())
            verify(repo, manifest.id, jobs=settings.restore_jobs, platform_roles=roles, server=early)
            early.close()
            stage = "prune"
            deleted = prune(repo, settings.retention())
            if offsite is not None:
                stage = "copy"
                _pend_deletions(repo, deleted)
                sync_offsite(repo, offsite, retry_delays=retry_delays)
            stage = "reverify"
            return reverify(repo, settings, roles, skip={manifest.id})
        except Exception as exc:
            # Every failure is counted under its stage; none may stop the service.
            _failed(repo, stage, exc)
            return False
        finally:
            early.close()


def _failed(repo: Repository, stage: str, exc: BaseException) -> None:
    detail = str(exc) if isinstance(exc, (BackupError, OSError)) else f"{type(exc).__name__}: {exc}"
    repo.record_failure(stage, detail)
    print(json.dumps({"level": "error", "msg": "backup stage failed", "stage": stage, "error": detail}), flush=True)


def reverify(repo: Repository, settings: BackupSettings, roles: set[str] | None, *, skip: Collection[str]) -> bool:
    """Damage after verification stays invisible unless the backup is proved
    again: within a time budget, the verified backups proved longest ago are
    restored again, oldest proof first, so every kept one comes round. One that
    fails loses its mark and is counted; True when none failed."""
    budget_ends = time.monotonic() + settings.reverify_budget_seconds
    candidates = sorted((m for m in repo.all() if m.verified_at and m.id not in skip), key=lambda m: str(m.verified_at))
    ok = True
    for manifest in candidates:
        if time.monotonic() >= budget_ends:
            break
        try:
            verify(repo, manifest.id, jobs=settings.restore_jobs, platform_roles=roles)
        except BackupError as exc:
            _failed(repo, "reverify", exc)
            ok = False
    return ok


PENDING_DELETIONS = "offsite-pending-deletions.json"


def _pend_deletions(repo: Repository, backup_ids: Iterable[str]) -> None:
    path = repo.root / PENDING_DELETIONS
    pending = set(_pending_deletions(repo)) | set(backup_ids)
    path.write_text(json.dumps(sorted(pending)))


def _pending_deletions(repo: Repository) -> list[str]:
    try:
        return [str(i) for i in json.loads((repo.root / PENDING_DELETIONS).read_text())]
    except (FileNotFoundError, ValueError):
        return []


def _with_retries(action: Callable[[], None], what: str, delays: Sequence[float]) -> None:
    """`action`, tried again after each delay (backing off), then given up on."""
    for attempt, delay in enumerate([*delays, None]):
        try:
            action()
            return
        except Exception as exc:
            if delay is None:
                raise BackupError(f"{what}: {exc}") from exc
            note: dict[str, object] = {"level": "warning", "msg": "off-site copy failed, retrying", "what": what}
            note.update(attempt=attempt + 1, retry_in_seconds=delay, error=str(exc))
            print(json.dumps(note), flush=True)
            time.sleep(delay)


def sync_offsite(repo: Repository, offsite: Offsite, *, retry_delays: Sequence[float] = COPY_RETRY_DELAYS) -> None:
    """Copy every kept, verified backup not copied yet, oldest first, and delete
    there what was pruned here: each tried again with back-off, and whatever
    still fails stays pending for the next attempt (`serve` makes one every
    few minutes while anything is pending)."""
    for manifest in repo.all():
        if manifest.verified_at and not manifest.copied_at:
            source = repo.dump_path(manifest.id)
            _with_retries(partial(offsite.upload, repo, manifest.id), f"copying {source} off-site", retry_delays)
            manifest.copied_at = dt.datetime.now(dt.UTC).isoformat()
            repo.save(manifest)
    for backup_id in _pending_deletions(repo):
        _with_retries(partial(offsite.delete, backup_id), f"deleting backup {backup_id} off-site", retry_delays)
        remaining = [i for i in _pending_deletions(repo) if i != backup_id]
        (repo.root / PENDING_DELETIONS).write_text(json.dumps(remaining))


def offsite_pending(repo: Repository) -> bool:
    return bool(_pending_deletions(repo)) or any(m.verified_at and not m.copied_at for m in repo.all())


def retry_offsite(repo: Repository, offsite: Offsite) -> None:
    """Between cycles: what the last one could not copy or delete off-site."""
    if not offsite_pending(repo):
        return
    try:
        with repo.changing(wait=False):
            sync_offsite(repo, offsite)
    except BackupError as exc:
        if "is changing the backups" not in str(exc):
            _failed(repo, "copy", exc)


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
    if offsite is not None:
        scheduler.add_job(retry_offsite, "interval", minutes=settings.offsite_retry_minutes, args=(repo, offsite),
                          max_instances=1, coalesce=True)  # fmt: skip
    scheduler.add_job(
        cycle,
        CronTrigger.from_crontab(settings.backup_schedule, timezone="UTC"),
        args=(settings, repo, metrics, offsite),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
    )
    scheduler.start()
