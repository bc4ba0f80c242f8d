"""Fixed-window counters in Redis: login attempts per client and per account, registrations per client."""

from __future__ import annotations

import hashlib
import ipaddress

from redis.asyncio import Redis

IPV6_CLIENT_PREFIX = 64


def client_subject(ip: str | None) -> str:
    """What a per-client counter counts: the address, or for IPv6 its /64,
    which one host is routinely handed whole (RFC 6177)."""
    if ip is None:
        return "unknown"
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str = "ratelimit") -> None:
        self._redis = redis
        self._prefix = prefix

    def key(self, kind: str, subject: str) -> str:
        # Keyed by a digest: Redis never holds an email address. The subject is
        # already in its one form (an account id, an address key, a client).
        digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
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
