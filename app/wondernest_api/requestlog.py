"""The per-request record: a log line and the request metrics, written in batches.

The edge appends one tuple per request; every fraction of a second (and before
each /metrics scrape, and at shutdown) the batch is turned into JSON lines and
counter updates in one tight loop. Done inline, the same work cost several
times more per request, interleaved with the server's own code.
"""

from __future__ import annotations

import asyncio

from wondernest_api.jsonlog import JsonLog
from wondernest_api.metrics import Metrics

DRAIN_INTERVAL_SECONDS = 0.025
# Beyond this many waiting records the request that adds one drains them itself,
# so neither memory nor the delay of a log line grows without bound.
MAX_PENDING = 1024


class RequestLog:
    def __init__(self, metrics: Metrics, log: JsonLog) -> None:
        self._metrics = metrics
        self._log = log
        self._pending: list[tuple[str, str, str, int, float]] = []

    def record(self, request_id: str, method: str, route: str, status: int, seconds: float) -> None:
        self._pending.append((request_id, method, route, status, seconds))
        if len(self._pending) >= MAX_PENDING:
            self.drain()

    def drain(self) -> None:
        batch, self._pending = self._pending, []
        observe, write = self._metrics.observe_request, self._log.request
        for request_id, method, route, status, seconds in batch:
            observe(method, route, status, seconds)
            write(request_id, method, route, status, round(seconds * 1000, 3))
        self._log.flush()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(DRAIN_INTERVAL_SECONDS)
            self.drain()
