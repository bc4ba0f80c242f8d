"""Password hashing as a bounded queue: a few hashes at once (each takes a core
for its whole cost), a bounded line waiting for them, and a bounded wait.

Under a flood of logins or registrations an unbounded line only grows: every
request waits longer than its client will, the hashes are computed anyway and
their results thrown away, and registrations whose clients had given up are
committed. Here a request beyond the line, or one that waited too long, is
answered 503 with Retry-After at once, and one whose client has gone is
dropped before its hash is computed."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable


class Overloaded(Exception):
    """The line is full, or the wait ran out: try again after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ClientGone(Exception):
    """The client closed the connection: nobody will read the answer."""


class HashQueue:
    def __init__(self, concurrency: int, max_waiting: int, max_wait_seconds: float) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._max_waiting = max_waiting
        self._max_wait = max_wait_seconds
        self.waiting = 0

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self._max_wait))

    @contextlib.asynccontextmanager
    async def slot(self, disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[None]:
        """A hashing slot, or Overloaded; ClientGone when the client left while waiting."""
        if self._slots.locked() and self.waiting >= self._max_waiting:
            raise Overloaded("queue_full", self.retry_after)
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self._max_wait)
        except TimeoutError:
            raise Overloaded("queue_wait", self.retry_after) from None
        finally:
            self.waiting -= 1
        try:
            if await disconnected():
                raise ClientGone
            yield
        finally:
            self._slots.release()
