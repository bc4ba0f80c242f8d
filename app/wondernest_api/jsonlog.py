"""One JSON object per line on stdout.

Written straight to a buffered stream rather than through `logging`: the
request log runs on every request, and the stdlib machinery plus a write
syscall per line cost more than the request itself. Other lines are flushed
at once; request lines are written in batches (see requestlog.py). Callers pass only fields they have
vetted: secrets and tokens are never among them.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import orjson

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_LINE = orjson.OPT_APPEND_NEWLINE


class JsonLog:
    def __init__(self, stream: IO[bytes] | None = None, level: str = "info") -> None:
        # A writer of our own on fd 1: PYTHONUNBUFFERED (set in the image for the
        # stdlib loggers) would otherwise turn every line into a syscall.
        self._out = stream or open(sys.stdout.fileno(), "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115
        self._threshold = _LEVELS[level]

    def emit(self, level: str, message: str, **fields: Any) -> None:
        if _LEVELS[level] < self._threshold:
            return
        record = {"ts": round(time.time(), 3), "level": level, "msg": message, **fields}
        self._out.write(orjson.dumps(record, default=str, option=_LINE))
        if level != "debug":
            self._out.flush()

    def set_level(self, level: str) -> None:
        self._threshold = _LEVELS[level]

    def request(self, request_id: str, method: str, route: str, status: int, duration_ms: float) -> None:
        """The per-request line (at info), unflushed: RequestLog flushes each batch."""
        if self._threshold > _LEVELS["info"]:
            return
        self._out.write(
            orjson.dumps(
                {
                    "ts": round(time.time(), 3),
                    "level": "info",
                    "msg": "request",
                    "requestId": request_id,
                    "method": method,
                    "route": route,
                    "status": status,
                    "durationMs": duration_ms,
                },
                option=_LINE,
            )
        )

    def info(self, message: str, **fields: Any) -> None:
        self.emit("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.emit("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.emit("error", message, **fields)

    def flush(self) -> None:
        self._out.flush()


log = JsonLog()
