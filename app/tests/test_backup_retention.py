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
    assert len(kept) == 14 + 6 + 10  # daily, older weekly, older monthly: nothing twice


def test_an_unverified_backup_does_not_take_a_verified_ones_slot() -> None:
    day = START.replace(hour=0)
    older_verified = Candidate("verified", day + dt.timedelta(hours=1), verified=True)
    newer_unverified = Candidate("unverified", day + dt.timedelta(hours=5), verified=False)
    kept = to_keep([older_verified, newer_unverified], RetentionPolicy(last=0, daily=1, weekly=0, monthly=0))
    assert kept == {"verified"}
