"""The baseline the API is measured against: bare Starlette doing the same work.

`/health` returns the same bytes; `/api/users/me` does the same JWT
verification (the API's own TokenIssuer) and the same query (the API's own
store function) through an identically configured pool. What is missing is
exactly what the measurement is about: the API's edge middleware (request id,
security headers, body limit, metrics, request log), its error handling and
its response models.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from wondernest_api import store
from wondernest_api.db import create_pool
from wondernest_api.security import TokenIssuer
from wondernest_api.settings import load_settings

settings = load_settings()
tokens = TokenIssuer(settings)
pool = create_pool(settings)


async def health(_request: Request) -> Response:
    return Response(b'{"status":"UP"}', media_type="application/json")


async def me(request: Request) -> Response:
    claims = tokens.verify(request.headers.get("authorization"))
    async with pool.connection() as conn:
        user = await store.user_in_session(conn, claims.user_id, claims.session_id)
    assert user is not None
    body = {
        "id": str(user.id),
        "email": user.email,
        "createdAt": user.created_at.isoformat(),
        "lastLoginAt": user.last_login_at.isoformat() if user.last_login_at else None,
    }
    return Response(orjson.dumps(body), media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    await pool.open(wait=True)
    yield
    await pool.close()


app = Starlette(routes=[Route("/health", health), Route("/api/users/me", me)], lifespan=lifespan)
