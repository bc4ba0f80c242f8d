"""When backups run, and how old the newest proven one may get before it is an alarm."""

from __future__ import annotations

import datetime as dt
import itertools

from apscheduler.triggers.cron import CronTrigger

# A verification restores the whole database; on a large one that takes a while.
MARGIN_SECONDS = 30 * 60
METRICS_PORT = 9200
# Where the backup image keeps its dumps (and, under it, its scratch space).
BACKUP_DIR = "/backups"


def schedule_period_seconds(cron: str) -> int:
    """The longest gap between two runs of the schedule over the next eight days."""
    trigger = CronTrigger.from_crontab(cron, timezone="UTC")
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday: weekly schedules see a whole week
    fires: list[dt.datetime] = []
    previous = None
    now = start
    while now < start + dt.timedelta(days=8) and len(fires) < 10_000:
        nxt = trigger.get_next_fire_time(previous, now)
        if nxt is None:
            break
        fires.append(nxt)
        previous, now = nxt, nxt + dt.timedelta(seconds=1)
    if len(fires) < 2:
        raise ValueError(f"schedule {cron!r} fires fewer than twice in eight days")
    return int(max((b - a).total_seconds() for a, b in itertools.pairwise(fires)))


def max_backup_age_seconds(cron: str) -> int:
    """1.1 x the schedule period, plus a margin for the backup and its verification."""
    return int(1.1 * schedule_period_seconds(cron)) + MARGIN_SECONDS
