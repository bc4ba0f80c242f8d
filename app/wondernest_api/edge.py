"""What every HTTP request passes through, as one pure ASGI middleware.

Request id, body-size limit, security headers, metrics and the request log
happen here in a single wrapper: Starlette's BaseHTTPMiddleware (and a stack of
separate middlewares) costs more per request than the work they do.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wondernest_api.errors import ApiError, error_body
from wondernest_api.jsonlog import JsonLog
from wondernest_api.requestlog import RequestLog

_INCOMING_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE = "unmatched"

# Every header costs the server a validation pass per response; these are the
# ones a JSON API needs. Responses carrying tokens add `Cache-Control: no-store`.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
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
        requests: RequestLog,
        log: JsonLog,
        routes: Iterable[str],
        max_body_bytes: int,
        liveness: tuple[str, bytes] | None = None,
    ) -> None:
        self.app = app
        self.requests = requests
        self.log = log
        # Every route is a fixed path, so the template is the path itself; anything
        # else is one label value, which keeps scanners from exploding cardinality.
        self.routes = frozenset(routes)
        self.max_body_bytes = max_body_bytes
        # (path, body): the liveness answer, constant bytes. Probes send no
        # Origin, and for them it is answered here, with the headers, the log
        # line and the metrics every request gets, without the router and the
        # exception layers, which were most of its cost. A browser's request
        # (with an Origin) goes through the app and its CORS handling.
        self.liveness = liveness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        # One pass over the request headers for everything this layer needs.
        request_id = ""
        declared_length = 0
        has_body = False
        has_origin = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _INCOMING_ID.match(value):
                    request_id = value.decode()
            elif name == b"content-length":
                has_body = True
                declared_length = int(value) if value.isdigit() else 0
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"origin":
                has_origin = True
        if not request_id:
            request_id = f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = request_id
        path: str = scope["path"]
        route = path if path in self.routes else UNMATCHED_ROUTE
        extra_headers = [*SECURITY_HEADERS, (b"x-request-id", request_id.encode())]
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), *extra_headers]
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
            if (
                self.liveness is not None
                and path == self.liveness[0]
                and not has_origin
                and scope["method"] in ("GET", "HEAD")
            ):
                await _respond(send_with_headers, 200, self.liveness[1])
            elif declared_length > limit:
                too_large = PayloadTooLarge(limit)
                await _respond(send_with_headers, 413, error_body(too_large.code, too_large.message, request_id))
            else:
                # A request that declares no body needs no counting receive.
                await self.app(scope, limited_receive if has_body else receive, send_with_headers)
        except Exception as exc:
            self.log.error("unhandled error", requestId=request_id, route=route, error=type(exc).__name__)
            if not started:
                await _respond(
                    send_with_headers, 500, error_body("internal_error", "internal server error", request_id)
                )
        finally:
            self.requests.record(request_id, scope["method"], route, status, perf_counter() - start)


# A random per-process prefix and a counter: unique across containers without a
# urandom syscall per request (uuid4 cost more than the rest of this module).
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
