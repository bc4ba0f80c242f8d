"""One JSON object per line on stdout.

Written straight to the stream rather than through `logging`: the request log
runs on every request, and the stdlib machinery costs more than the request.
Callers pass only fields they have vetted; secrets and tokens are never among them.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import orjson

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLog:
    def __init__(self, stream: IO[str] | None = None, level: str = "info") -> None:
        self._stream = stream or sys.stdout
        self._threshold = _LEVELS[level]

    def emit(self, level: str, message: str, **fields: Any) -> None:
        if _LEVELS[level] < self._threshold:
            return
        record = {"ts": round(time.time(), 3), "level": level, "msg": message, **fields}
        self._stream.write(orjson.dumps(record, default=str).decode() + "\n")
        self._stream.flush()

    def info(self, message: str, **fields: Any) -> None:
        self.emit("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.emit("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.emit("error", message, **fields)


log = JsonLog()
