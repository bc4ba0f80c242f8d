"""Which backups to keep: a pure function, so it can be reasoned about and property-tested."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    id: str
    created_at: dt.datetime
    verified: bool


@dataclass(frozen=True)
class RetentionPolicy:
    last: int = 7
    """The newest N backups, whatever their age."""
    daily: int = 14
    """The newest backup of each of the last N days that have one."""
    weekly: int = 8
    monthly: int = 12

    @property
    def ceiling(self) -> int:
        """The most a prune ever keeps: every slot, plus the newest verified backup."""
        return self.last + self.daily + self.weekly + self.monthly + 1


def _best_per(backups: list[Candidate], key: Callable[[Candidate], Hashable], count: int) -> set[str]:
    """One backup for each of the newest `count` buckets (a day, a week, a
    month): its newest verified backup, or its newest when none is verified.
    The keys are chronological, so ordering by key orders the buckets."""
    ranked = sorted(backups, key=lambda b: (key(b), b.verified, b.created_at), reverse=True)
    kept: set[str] = set()
    seen: set[Hashable] = set()
    for backup in ranked:
        bucket = key(backup)
        if bucket in seen:
            continue
        if len(seen) == count:
            break
        seen.add(bucket)
        kept.add(backup.id)
    return kept


def to_keep(backups: Iterable[Candidate], policy: RetentionPolicy) -> set[str]:
    """The ids a prune keeps. Everything else may be deleted.

    Verified backups fill the daily/weekly/monthly slots before unverified ones,
    and the newest verified backup is always kept, so a prune can never leave the
    platform without a backup that is known to restore.
    """
    ordered = sorted(backups, key=lambda b: b.created_at, reverse=True)
    kept = {b.id for b in ordered[: policy.last]}
    kept |= _best_per(ordered, lambda b: b.created_at.date(), policy.daily)
    kept |= _best_per(ordered, lambda b: tuple(b.created_at.isocalendar()[:2]), policy.weekly)
    kept |= _best_per(ordered, lambda b: (b.created_at.year, b.created_at.month), policy.monthly)
    newest_verified = next((b for b in ordered if b.verified), None)
    if newest_verified is not None:
        kept.add(newest_verified.id)
    return kept
