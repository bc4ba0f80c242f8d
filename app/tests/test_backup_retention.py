"""The retention policy: property-tested, and over a simulated year of nightly backups."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from wondernest_backup.retention import Candidate, RetentionPolicy, to_keep

START = dt.datetime(2026, 1, 1, 2, 0, tzinfo=dt.UTC)

backups = st.lists(
    st.builds(
        Candidate,
        id=st.uuids().map(str),
        created_at=st.integers(min_value=0, max_value=400 * 24 * 60).map(lambda m: START + dt.timedelta(minutes=m)),
        verified=st.booleans(),
    ),
    max_size=120,
    unique_by=lambda c: c.id,
)
policies = st.builds(
    RetentionPolicy,
    last=st.integers(0, 10),
    daily=st.integers(0, 20),
    weekly=st.integers(0, 10),
    monthly=st.integers(0, 15),
)


@settings(max_examples=300, deadline=None)
@given(backups, policies)
def test_the_newest_verified_backup_is_never_deleted(candidates: list[Candidate], policy: RetentionPolicy) -> None:
    kept = to_keep(candidates, policy)
    verified = [c for c in candidates if c.verified]
    if verified:
        assert max(verified, key=lambda c: c.created_at).id in kept


@settings(max_examples=300, deadline=None)
@given(backups, policies)
def test_never_more_than_the_policy_says(candidates: list[Candidate], policy: RetentionPolicy) -> None:
    kept = to_keep(candidates, policy)
    assert kept <= {c.id for c in candidates}
    assert len(kept) <= policy.ceiling


@settings(max_examples=200, deadline=None)
@given(backups, policies)
def test_the_newest_backups_are_kept(candidates: list[Candidate], policy: RetentionPolicy) -> None:
    kept = to_keep(candidates, policy)
    newest = sorted(candidates, key=lambda c: c.created_at, reverse=True)[: policy.last]
    assert {c.id for c in newest} <= kept


def test_a_simulated_year_of_nightly_backups() -> None:
    nightly = [Candidate(f"b{day:03d}", START + dt.timedelta(days=day), verified=day % 10 != 3) for day in range(365)]
    policy = RetentionPolicy(last=7, daily=14, weekly=8, monthly=12)
    kept = sorted(to_keep(nightly, policy))
    # The last 14 days (covering the last 7 too), one per week for 8 weeks
    # (6 of them older than the daily window), one per month for 12 months.
    days_kept = {int(k[1:]) for k in kept}
    assert set(range(351, 365)) <= days_kept
    assert len({(START + dt.timedelta(days=d)).isocalendar()[:2] for d in days_kept}) >= 8
    months = {(START + dt.timedelta(days=d)).month for d in days_kept}
    assert months == set(range(1, 13))
    assert len(kept) <= policy.ceiling
    # Daily, older weekly, older monthly: a month whose newest night failed
    # verification keeps the night before, which may be that week's pick too.
    assert set(kept) == readme_rule(nightly, policy) and len(kept) == 29


def test_an_unverified_backup_does_not_take_a_verified_ones_slot() -> None:
    day = START.replace(hour=0)
    older_verified = Candidate("verified", day + dt.timedelta(hours=1), verified=True)
    newer_unverified = Candidate("unverified", day + dt.timedelta(hours=5), verified=False)
    kept = to_keep([older_verified, newer_unverified], RetentionPolicy(last=0, daily=1, weekly=0, monthly=0))
    assert kept == {"verified"}


def readme_rule(candidates: list[Candidate], policy: RetentionPolicy) -> set[str]:
    """The README's rule, written out plainly: the newest `last`; then for each
    of the newest `daily` days, `weekly` ISO weeks and `monthly` months that
    have a backup, that period's newest verified backup, or its newest when
    none is verified; and the newest verified backup overall."""
    ordered = sorted(candidates, key=lambda c: c.created_at, reverse=True)
    kept = {c.id for c in ordered[: policy.last]}
    periods = (
        (lambda c: c.created_at.date(), policy.daily),
        (lambda c: tuple(c.created_at.isocalendar()[:2]), policy.weekly),
        (lambda c: (c.created_at.year, c.created_at.month), policy.monthly),
    )
    for period, count in periods:
        newest_first: list[object] = []
        for c in ordered:
            if period(c) not in newest_first:
                newest_first.append(period(c))
        for key in newest_first[:count]:
            members = [c for c in ordered if period(c) == key]
            kept.add(next((c for c in members if c.verified), members[0]).id)
    verified = [c for c in ordered if c.verified]
    if verified:
        kept.add(verified[0].id)
    return kept


@settings(max_examples=300, deadline=None)
@given(backups, policies)
def test_the_policy_keeps_exactly_what_the_readme_says(candidates: list[Candidate], policy: RetentionPolicy) -> None:
    assert to_keep(candidates, policy) == readme_rule(candidates, policy)


def test_a_week_keeps_its_verified_backup_over_a_newer_unverified_one() -> None:
    monday, friday = START + dt.timedelta(days=4), START + dt.timedelta(days=8)  # 2026-01-05, 2026-01-09
    assert monday.isocalendar()[:2] == friday.isocalendar()[:2]
    verified = Candidate("monday", monday, verified=True)
    unverified = Candidate("friday", friday, verified=False)
    for policy in (
        RetentionPolicy(last=0, daily=0, weekly=1, monthly=0),
        RetentionPolicy(last=0, daily=0, weekly=0, monthly=1),
    ):
        assert to_keep([verified, unverified], policy) == {"monday"}
