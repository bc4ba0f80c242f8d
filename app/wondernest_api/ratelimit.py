"""Fixed-window counters in Redis: login attempts per client and per account, registrations per client."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str = "ratelimit") -> None:
        self._redis = redis
        self._prefix = prefix

    def key(self, kind: str, subject: str) -> str:
        # Accounts are keyed by a digest: Redis never holds the email address.
        digest = hashlib.sha256(subject.lower().encode()).hexdigest()[:32]
        return f"{self._prefix}:{kind}:{digest}"

    async def hit(self, key: str, limit: int, window_seconds: int) -> int | None:
        """Count one event; the seconds until the window resets if it is over the limit."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, window_seconds, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        return max(int(ttl), 1) if int(count) > limit else None

    async def reset(self, key: str) -> None:
        await self._redis.delete(key)
