"""What every HTTP request passes through, as one pure ASGI middleware.

Request id, body-size limit, security headers, metrics and the request log
happen here in a single wrapper: Starlette's BaseHTTPMiddleware (and a stack of
separate middlewares) costs more per request than the work they do.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wondernest_api.errors import ApiError, error_body
from wondernest_api.jsonlog import JsonLog
from wondernest_api.metrics import Metrics

_INCOMING_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE = "unmatched"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class PayloadTooLarge(ApiError):
    """Raised from `receive`, inside the app, so the app's own error handling
    answers it; a declared Content-Length over the limit is refused before that."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"request body exceeds {limit} bytes")


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        log: JsonLog,
        routes: Iterable[str],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log
        # Every route is a fixed path, so the template is the path itself; anything
        # else is one label value, which keeps scanners from exploding cardinality.
        self.routes = frozenset(routes)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        route = path if path in self.routes else UNMATCHED_ROUTE
        method: str = scope["method"]
        extra_headers = (*SECURITY_HEADERS, (b"x-request-id", request_id.encode()))
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message = {**message, "headers": [*message.get("headers", ()), *extra_headers]}
            await send(message)

        limit = self.max_body_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        try:
            if _declared_length(scope) > limit:
                too_large = PayloadTooLarge(limit)
                await _respond(
                    send_with_headers, 413, error_body(too_large.code, too_large.message, request_id)
                )
            else:
                await self.app(scope, limited_receive, send_with_headers)
        except Exception as exc:
            self.log.error("unhandled error", requestId=request_id, route=route, error=type(exc).__name__)
            if not started:
                await _respond(
                    send_with_headers, 500, error_body("internal_error", "internal server error", request_id)
                )
        finally:
            elapsed = perf_counter() - start
            self.metrics.observe_request(method, route, status, elapsed)
            self.log.info(
                "request",
                requestId=request_id,
                method=method,
                route=route,
                status=status,
                durationMs=round(elapsed * 1000, 3),
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _INCOMING_ID.match(value):
                return str(value.decode())
            break
    return uuid.uuid4().hex


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
