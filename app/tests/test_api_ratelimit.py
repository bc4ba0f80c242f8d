"""The rate limiter's counters on a real Redis: what a key holds, when a window
starts and ends, what a client is told to wait, and that a count and its expiry
are written together."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
from redis.asyncio import Redis
from wondernest_api.ratelimit import RateLimiter, client_subject

from tests.servers import RedisServer, redis_server

pytestmark = pytest.mark.servers

T = TypeVar("T")
# redis-py types every reply of its sync client as `Awaitable | Any`.
Admin = Any


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    # A server of its own, its default user unrestricted: the test reads
    # INFO and sets expiries the app's user could not.
    with redis_server(
        acl="user default on nopass ~* &* +@all\n", maxmemory_bytes=16 * 1024 * 1024, eviction_policy="noeviction"
    ) as r:
        yield r


@pytest.fixture
def admin(server: RedisServer) -> Iterator[Admin]:
    client = redis.Redis(host="127.0.0.1", port=server.port)
    client.flushall()
    yield client
    client.close()


def limited(server: RedisServer, use: Callable[[RateLimiter], Awaitable[T]]) -> T:
    async def run() -> T:
        client = Redis(host="127.0.0.1", port=server.port)
        try:
            return await use(RateLimiter(client))
        finally:
            await client.aclose()

    # A loop of its own, never made the thread's current one: asyncio.run would
    # leave the thread without one for the tests that follow.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


def test_a_key_names_the_kind_and_a_digest_never_the_subject(server: RedisServer, admin: Admin) -> None:
    subject = "alice@example.com"

    async def use(limiter: RateLimiter) -> str:
        key = limiter.key("login-account", subject)
        await limiter.hit(key, 5, 60)
        return key

    key = limited(server, use)
    assert key == f"ratelimit:login-account:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"
    stored = [k.decode() for k in admin.keys("*")]
    assert stored == [key] and not any(subject in k for k in stored)
    assert re.fullmatch(r"ratelimit:login-account:[0-9a-f]{32}", stored[0])
    assert RateLimiter(Redis()).key("login-account", "Alice@example.com") != key


def test_the_event_past_the_limit_is_told_how_long_the_window_has_left(server: RedisServer, admin: Admin) -> None:
    async def use(limiter: RateLimiter) -> list[int | None]:
        return [await limiter.hit("ratelimit:t:a", 3, 60) for _ in range(5)]

    answers = limited(server, use)
    assert answers[:3] == [None, None, None]
    assert answers[3] is not None and 59 <= answers[3] <= 60 and answers[4] is not None
    assert admin.get("ratelimit:t:a") == b"5"


def test_the_window_starts_at_the_first_event_and_later_events_do_not_extend_it(
    server: RedisServer, admin: Admin
) -> None:
    async def hit(limiter: RateLimiter) -> int | None:
        return await limiter.hit("ratelimit:t:b", 1, 60)

    assert limited(server, hit) is None
    assert admin.ttl("ratelimit:t:b") == 60
    # The window has run down to 3 s: the events in it neither restart nor extend it.
    admin.pexpire("ratelimit:t:b", 3000)
    assert limited(server, hit) == 3
    assert limited(server, hit) == 3
    assert 0 < admin.pttl("ratelimit:t:b") <= 3000


def test_a_window_in_its_last_half_second_still_asks_for_a_second(server: RedisServer, admin: Admin) -> None:
    # TTL rounds to the nearest second: 0 for the last half second, which as a
    # Retry-After would invite an immediate retry.
    admin.set("ratelimit:t:c", 1, px=300)

    async def hit(limiter: RateLimiter) -> int | None:
        return await limiter.hit("ratelimit:t:c", 1, 60)

    assert limited(server, hit) == 1


def test_the_count_and_its_expiry_are_written_in_one_transaction(server: RedisServer, admin: Admin) -> None:
    # A count written without its expiry (a connection lost between the two)
    # would lock a client out for good.
    def calls(command: str) -> int:
        return int(admin.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))

    before = {c: calls(c) for c in ("multi", "exec", "incrby", "expire")}

    async def hit(limiter: RateLimiter) -> int | None:
        return await limiter.hit("ratelimit:t:d", 1, 60)

    limited(server, hit)
    assert {c: calls(c) - before[c] for c in before} == {"multi": 1, "exec": 1, "incrby": 1, "expire": 1}


def test_reset_clears_the_count(server: RedisServer, admin: Admin) -> None:
    async def use(limiter: RateLimiter) -> list[int | None]:
        first = [await limiter.hit("ratelimit:t:e", 1, 60) for _ in range(2)]
        await limiter.reset("ratelimit:t:e")
        return [*first, await limiter.hit("ratelimit:t:e", 1, 60)]

    assert limited(server, use)[1:] == [60, None]
    assert admin.get("ratelimit:t:e") == b"1"


@pytest.mark.parametrize(
    ("address", "subject"),
    [
        (None, "unknown"),
        ("192.0.2.10", "192.0.2.10"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ],
)
def test_a_client_is_its_address_or_its_ipv6_64(address: str | None, subject: str) -> None:
    assert client_subject(address) == subject
