"""uvicorn's httptools protocol with a bound on each request's head.

httptools accumulates a header's name and value until the header ends and
hands uvicorn every header of a request, with no limit on either: a client
sending one endless header, or thousands of them, makes the server hold all of
it. Here the bytes of a request's head (request line and headers) are counted
as they arrive, before the parser buffers them, and so are the headers: past
either bound the request is answered 431 with the API's JSON error body and
the connection closed.
"""

from __future__ import annotations

from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_END = b"\r\n\r\n"


class HeadTooLarge(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _refusal(status: int, reason: bytes, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message, "requestId": None}})
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 32 * 1024
    max_headers = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._reading_head = True

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            end = data.find(HEAD_END)
            # Only what belongs to the head counts: a body may share the chunk.
            self._head_bytes += len(data) if end < 0 else end + len(HEAD_END)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(f"the request line and headers exceed {self.max_head_bytes} bytes")
                return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, HeadTooLarge):
                self._refuse(cause.message)
                return
            self._bad_request()
        except httptools.HttpParserError:
            self._bad_request()
        except httptools.HttpParserUpgrade:
            # As uvicorn's own protocol: the API has no WebSocket route to upgrade to.
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.max_headers:
            raise HeadTooLarge(f"the request has more than {self.max_headers} headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next request on this connection starts a new head.
        self._head_bytes = 0
        self._reading_head = True

    def _refuse(self, message: str) -> None:
        self.logger.warning("Refused a request head: %s", message)
        self.transport.write(
            _refusal(431, b"Request Header Fields Too Large", "request_header_fields_too_large", message)
        )
        self.transport.close()

    def _bad_request(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self.transport.write(_refusal(400, b"Bad Request", "bad_request", "invalid HTTP request"))
        self.transport.close()


def bounded_protocol(*, max_head_bytes: int, max_headers: int) -> type[BoundedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with these bounds."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "max_headers": max_headers},
    )
