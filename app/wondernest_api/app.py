"""The HTTP API: routes, their handlers, and the app factory.

Starlette rather than FastAPI: the platform asks for near-bare-Starlette speed,
and FastAPI's per-request dependency resolution and response validation cost a
third of it. Payloads are still validated by pydantic models, and the OpenAPI
document is generated from the same models.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import ipaddress
import secrets
from collections.abc import AsyncIterator
from time import perf_counter
from typing import Any, TypeVar

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from psycopg import AsyncConnection, OperationalError
from psycopg.errors import UniqueViolation
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from wondernest_api import store
from wondernest_api.db import create_pool, create_read_pool
from wondernest_api.edge import EdgeMiddleware
from wondernest_api.errors import ApiError, error_response, request_id_of
from wondernest_api.hashing import ClientGone, HashQueue, Overloaded
from wondernest_api.jsonlog import JsonLog, log
from wondernest_api.metrics import Metrics
from wondernest_api.openapi import openapi_document
from wondernest_api.payloads import (
    ActivityItem,
    ActivityView,
    Liveness,
    LoginRequest,
    Readiness,
    RefreshRequest,
    RegisterRequest,
    ServiceHealth,
    TokenPair,
    UserView,
    login_address,
)
from wondernest_api.ratelimit import RateLimiter, client_subject
from wondernest_api.requestlog import RequestLog
from wondernest_api.security import TokenIssuer, hash_password, hash_token, new_refresh_token, verify_password
from wondernest_api.settings import Settings

Body = TypeVar("Body", bound=BaseModel)
JSON = "application/json"
_LIVE = Liveness(status="UP").model_dump_json().encode()


_NO_STORE = (b"cache-control", b"no-store")


def _json(model: BaseModel, status: int = 200, *, private: bool = False) -> Response:
    """`private` marks a body with tokens or account data: no cache may keep it."""
    response = Response(model.model_dump_json().encode(), status_code=status, media_type=JSON)
    if private:
        # Appended as bytes: Starlette would encode a headers mapping anew per response.
        response.raw_headers.append(_NO_STORE)
    return response


class Api:
    def __init__(self, settings: Settings, *, logger: JsonLog = log) -> None:
        self.settings = settings
        self.log = logger
        self.metrics = Metrics()
        self.tokens = TokenIssuer(settings)
        self.pool = create_pool(settings)
        self.read_pool = create_read_pool(settings)
        self.redis = Redis(
            **settings.redis_options(),  # type: ignore[arg-type]
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            health_check_interval=30,
        )
        self.limiter = RateLimiter(self.redis)
        self.hashing = HashQueue(settings.hash_concurrency, settings.hash_queue_max, settings.hash_queue_wait_seconds)
        self.requests = RequestLog(self.metrics, logger)
        self.metrics.watch_pool("primary", self.pool.get_stats)
        if self.read_pool is not None:
            self.metrics.watch_pool("read", self.read_pool.get_stats)
        # Checked against when the email is unknown, so a miss costs what a hit costs.
        self._dummy_hash = hash_password(secrets.token_hex(16), settings.bcrypt_rounds)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # wait=False: the API starts (and reports not ready) while Postgres is down.
        await self.pool.open(wait=False)
        if self.read_pool is not None:
            await self.read_pool.open(wait=False)
        drainer = asyncio.create_task(self.requests.run())
        # Everything imported and built so far lives as long as the process:
        # moved out of the collector's reach, it is not rescanned by every full
        # collection that request garbage triggers.
        gc.collect()
        gc.freeze()
        self.log.info("started", pool_max=self.settings.db_pool_max)
        try:
            yield
        finally:
            await self.pool.close(timeout=self.settings.graceful_shutdown_seconds)
            if self.read_pool is not None:
                await self.read_pool.close(timeout=self.settings.graceful_shutdown_seconds)
            await self.redis.aclose()
            drainer.cancel()
            self.requests.drain()
            self.log.info("stopped")

    # --- plumbing --------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def db(self) -> AsyncIterator[AsyncConnection[Any]]:
        try:
            async with self.pool.connection(timeout=3) as conn:
                yield conn
        except (PoolTimeout, OperationalError):
            raise ApiError(503, "database_unavailable", "the database is unavailable") from None

    @contextlib.asynccontextmanager
    async def db_read(self) -> AsyncIterator[AsyncConnection[Any]]:
        """For reads that may be as old as the replicas' lag; the primary's pool
        without replicas. Nothing that decides access reads here: a session
        revoked on the primary must be refused at once, not after the lag."""
        pool = self.read_pool or self.pool
        try:
            async with pool.connection(timeout=3) as conn:
                yield conn
        except (PoolTimeout, OperationalError):
            raise ApiError(503, "database_unavailable", "the database is unavailable") from None

    @staticmethod
    async def parse(request: Request, model: type[Body]) -> Body:
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != JSON:
            raise ApiError(415, "unsupported_media_type", "the body must be sent as application/json")
        body = await request.body()
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            if any(e["type"] in ("json_invalid", "model_type", "json_type") for e in errors):
                raise ApiError(400, "malformed_body", "the body must be a JSON object") from None
            details = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]} for e in errors]
            raise ApiError(422, "validation_failed", "the request body is invalid", details=details) from None

    @staticmethod
    def client_ip(request: Request) -> str | None:
        host = request.client.host if request.client else None
        if host is None:
            return None
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            return None

    # --- health and metrics ----------------------------------------------------

    async def health(self, _request: Request) -> Response:
        return Response(_LIVE, media_type=JSON)

    async def ready(self, _request: Request) -> Response:
        checks = {"database": self._check_database(self.pool), "redis": self._check_redis()}
        if self.read_pool is not None:
            checks["databaseRead"] = self._check_database(self.read_pool, replica=True)
        services = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
        up = [service.status == "UP" for service in services.values()]
        status = "UP" if all(up) else ("DOWN" if not any(up) else "DEGRADED")
        body = Readiness(status=status, timestamp=dt.datetime.now(dt.UTC), services=services)
        return _json(body, 200 if status == "UP" else 503)

    async def _check_database(self, pool: AsyncConnectionPool[Any], *, replica: bool = False) -> ServiceHealth:
        start = perf_counter()
        try:
            async with pool.connection(timeout=2) as conn:
                cur = await conn.execute("SELECT pg_is_in_recovery()" if replica else "SELECT 1")
                row = await cur.fetchone()
            stats = pool.get_stats()
            details: dict[str, str | int | float | None] = {
                "poolSize": stats.get("pool_size", 0),
                "poolAvailable": stats.get("pool_available", 0),
            }
            if replica:
                # False: no replica answered, and reads go to the primary.
                details["standby"] = "yes" if row and row[0] else "no"
            return ServiceHealth(status="UP", responseTime=_ms(start), details=details)
        except (PoolTimeout, OperationalError) as exc:
            return ServiceHealth(status="DOWN", responseTime=_ms(start), details={"error": type(exc).__name__})

    async def _check_redis(self) -> ServiceHealth:
        start = perf_counter()
        try:
            await asyncio.wait_for(self._ping(), timeout=2)
            return ServiceHealth(status="UP", responseTime=_ms(start))
        except (RedisError, OSError, TimeoutError) as exc:
            return ServiceHealth(status="DOWN", responseTime=_ms(start), details={"error": type(exc).__name__})

    async def _ping(self) -> None:
        await self.redis.ping()  # type: ignore[misc]  # redis-py types ping as sync-or-async

    async def prometheus(self, _request: Request) -> Response:
        self.requests.drain()
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, _request: Request) -> Response:
        return Response(orjson.dumps(openapi_document()), media_type=JSON)

    # --- auth --------------------------------------------------------------------

    async def _limit(
        self, kind: str, subject: str, limit: int, window_seconds: int, *, refusals: Counter, fail_closed: bool = True
    ) -> None:
        """Counts one attempt; 429 over the limit. Without its counters, a login
        stops (503): a password-guessing run would go unchecked. A registration
        goes on: the hashing bound still caps what a flood of them costs."""
        try:
            retry = await self.limiter.hit(self.limiter.key(kind, subject), limit, window_seconds)
        except (RedisError, OSError):
            if not fail_closed:
                return
            refusals.labels("limiter_unavailable").inc()
            raise ApiError(503, "rate_limiter_unavailable", "logins are paused: rate limiting is unavailable") from None
        if retry is not None:
            refusals.labels("rate_limited").inc()
            raise ApiError(429, "too_many_attempts", "too many attempts", headers={"Retry-After": str(retry)})

    @contextlib.asynccontextmanager
    async def _hashing(self, request: Request) -> AsyncIterator[None]:
        """A slot of the bounded hashing queue, or the request is answered
        without the work: 503 with Retry-After, or dropped if its client left."""
        try:
            async with self.hashing.slot(request.is_disconnected):
                yield
        except Overloaded as exc:
            self.metrics.shed.labels(exc.reason).inc()
            raise ApiError(
                503, "overloaded", "too many password checks waiting; try again shortly",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None  # fmt: skip
        except ClientGone:
            raise self._gone() from None

    def _gone(self) -> ApiError:
        self.metrics.shed.labels("client_gone").inc()
        return ApiError(499, "client_closed_request", "the client closed the connection")

    async def _still_there(self, request: Request) -> None:
        """Before committing what a client will never hear about."""
        if await request.is_disconnected():
            raise self._gone()

    async def _hash(self, password: str, request: Request) -> str:
        async with self._hashing(request):
            return await asyncio.to_thread(hash_password, password, self.settings.bcrypt_rounds)

    async def _verify(self, password: str, hashed: str, request: Request) -> bool:
        async with self._hashing(request):
            return await asyncio.to_thread(verify_password, password, hashed)

    async def register(self, request: Request) -> Response:
        payload = await self.parse(request, RegisterRequest)
        s = self.settings
        await self._limit("register-client", client_subject(self.client_ip(request)), s.register_ip_limit,
                          s.register_ip_window_seconds, refusals=self.metrics.registration_refusals,
                          fail_closed=False)  # fmt: skip
        hashed = await self._hash(payload.password, request)
        await self._still_there(request)
        async with self.db() as conn:
            try:
                async with conn.transaction():
                    user = await store.create_user(conn, payload.email, hashed)
                    await store.audit(conn, "user.registered", user_id=user.id, ip=self.client_ip(request))
            except UniqueViolation:
                raise ApiError(409, "email_taken", "an account with this email already exists") from None
        self.metrics.registrations.inc()
        return _json(UserView(id=user.id, email=user.email, createdAt=user.created_at), 201, private=True)

    async def login(self, request: Request) -> Response:
        payload = await self.parse(request, LoginRequest)
        s = self.settings
        ip = self.client_ip(request)
        failures = self.metrics.login_failures
        await self._limit("login-client", client_subject(ip), s.login_ip_limit, s.login_ip_window_seconds,
                          refusals=failures)  # fmt: skip
        async with self.db() as conn:
            email_key, user = await store.account_for_login(conn, login_address(payload.email))
        # Every attempt is counted before its password is checked, in one atomic
        # increment: concurrent guesses cannot all pass a check made before any
        # of them failed. The count is the account's, however its address was
        # typed; an address with no account counts under its key. A success
        # clears it.
        account = str(user.id) if user is not None else email_key
        await self._limit("login-account", account, s.login_account_limit, s.login_account_window_seconds,
                          refusals=failures)  # fmt: skip
        account_key = self.limiter.key("login-account", account)

        # No connection is held while hashing: a burst of logins would otherwise
        # hold the pool for the hash's whole cost and starve every other request.
        hashed = user.password_hash if user is not None else self._dummy_hash
        valid = await self._verify(payload.password, hashed, request)
        if user is None or not valid or not user.is_active:
            self.metrics.login_failures.labels("bad_credentials").inc()
            async with self.db() as conn:
                await store.audit(conn, "user.login_failed", user_id=user.id if user else None, ip=ip)
            raise ApiError(401, "invalid_credentials", "email or password is incorrect")
        await self._still_there(request)
        token, token_hash = new_refresh_token()
        async with self.db() as conn, conn.transaction():
            session_id = await store.create_session(
                conn,
                user_id=user.id,
                family_id=None,
                token_hash=token_hash,
                ttl_seconds=s.refresh_token_ttl_seconds,
                ip=ip,
                user_agent=request.headers.get("user-agent"),
            )
            await store.record_login(conn, user.id)
            await store.audit(conn, "user.login", user_id=user.id, ip=ip)
        with contextlib.suppress(RedisError, OSError):
            await self.limiter.reset(account_key)
        return _json(self._pair(user.id, session_id, token), private=True)

    def _pair(self, user_id: Any, session_id: Any, refresh_token: str) -> TokenPair:
        return TokenPair(
            accessToken=self.tokens.issue(user_id, session_id),
            expiresIn=self.tokens.ttl,
            refreshToken=refresh_token,
        )

    async def refresh(self, request: Request) -> Response:
        payload = await self.parse(request, RefreshRequest)
        ip = self.client_ip(request)
        reused = False
        now = dt.datetime.now(dt.UTC)
        async with self.db() as conn, conn.transaction():
            session = await store.session_for_update(conn, hash_token(payload.refreshToken))
            if session is None or session.revoked_at is not None:
                pass
            elif not session.user_active:
                # A deactivated account keeps no session it could refresh.
                await store.revoke_family(conn, session.family_id)
            elif session.rotated_at is not None:
                retry = await self._same_rotation(conn, session, payload.refreshToken, now)
                if retry is not None:
                    return retry
                # An already-rotated token came back after its grace: it was
                # copied. End the whole chain, for the thief and the owner alike.
                await store.revoke_family(conn, session.family_id)
                await store.audit(conn, "session.token_reuse", user_id=session.user_id, ip=ip)
                reused = True
            elif session.expires_at > now:
                await store.mark_rotated(conn, session.id)
                token = self.tokens.successor(payload.refreshToken)
                new_id = await store.create_session(
                    conn,
                    user_id=session.user_id,
                    family_id=session.family_id,
                    token_hash=hash_token(token),
                    ttl_seconds=self.settings.refresh_token_ttl_seconds,
                    ip=ip,
                    user_agent=request.headers.get("user-agent"),
                )
                return _json(self._pair(session.user_id, new_id, token), private=True)
        message = "refresh token reused; the session has been revoked" if reused else "invalid refresh token"
        raise ApiError(401, "invalid_refresh_token", message)

    async def _same_rotation(
        self, conn: Any, session: store.Session, refresh_token: str, now: dt.datetime
    ) -> Response | None:
        """A token rotated moments ago and sent again (a retry after a lost
        answer, two tabs at once) gets the pair its rotation produced, as long
        as that successor is still unused."""
        assert session.rotated_at is not None
        if now - session.rotated_at > dt.timedelta(seconds=self.settings.refresh_reuse_grace_seconds):
            return None
        # The successor the rotating server made, whichever of this server's
        # keys was its current (old and new servers serve side by side after a
        # key rotation).
        for token in self.tokens.successors(refresh_token):
            successor = await store.session_for_update(conn, hash_token(token))
            if successor is not None:
                break
        if (
            successor is None
            or successor.family_id != session.family_id
            or successor.rotated_at is not None
            or successor.revoked_at is not None
            or successor.expires_at <= now
        ):
            return None
        return _json(self._pair(successor.user_id, successor.id, token), private=True)

    async def logout(self, request: Request) -> Response:
        payload = await self.parse(request, RefreshRequest)
        async with self.db() as conn, conn.transaction():
            session = await store.session_for_update(conn, hash_token(payload.refreshToken))
            if session is not None:
                await store.revoke_family(conn, session.family_id)
                await store.audit(conn, "user.logout", user_id=session.user_id, ip=self.client_ip(request))
        # The same answer whether or not the token existed: logout reveals nothing.
        return Response(status_code=204)

    async def _signed_in(self, request: Request) -> store.User:
        """The account of the request's access token, while its session lasts.
        Read on the primary: a session revoked there ends at once, never after
        a replica's lag."""
        claims = self.tokens.verify(request.headers.get("authorization"))
        async with self.db() as conn:
            user = await store.user_in_session(conn, claims.user_id, claims.session_id)
        if user is None or not user.is_active:
            raise ApiError(
                401, "unauthorized", "the session has ended or the account no longer exists",
                headers={"WWW-Authenticate": 'Bearer realm="wondernest"'},
            )  # fmt: skip
        return user

    async def me(self, request: Request) -> Response:
        user = await self._signed_in(request)
        # The row's own types, read from the database: nothing to validate again.
        view = UserView.model_construct(
            id=user.id, email=user.email, createdAt=user.created_at, lastLoginAt=user.last_login_at
        )
        return _json(view, private=True)

    async def activity(self, request: Request) -> Response:
        user = await self._signed_in(request)
        # History may lag: read where the replicas serve, off the primary.
        async with self.db_read() as conn:
            events = await store.recent_activity(conn, user.id)
        items = [ActivityItem.model_construct(action=e.action, at=e.at, ip=e.ip) for e in events]
        return _json(ActivityView.model_construct(items=items), private=True)

    # --- errors ------------------------------------------------------------------

    async def on_api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(
            exc.status,
            exc.code,
            exc.message,
            request_id_of(request),
            headers=exc.headers,
            details=exc.details,
        )

    async def on_http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(
            exc.status_code, code, str(exc.detail), request_id_of(request), headers=dict(exc.headers or {})
        )

    async def on_unexpected(self, request: Request, exc: Exception) -> Response:
        self.log.error("unhandled error", requestId=request_id_of(request), error=type(exc).__name__)
        return error_response(500, "internal_error", "internal server error", request_id_of(request))

    def routes(self) -> list[Route]:
        # The most requested first: the router tries each route's pattern in
        # turn, and the authenticated reads were paying for every other one.
        return [
            Route("/api/users/me", self.me, methods=["GET"]),
            Route("/api/users/me/activity", self.activity, methods=["GET"]),
            Route("/auth/refresh", self.refresh, methods=["POST"]),
            Route("/auth/login", self.login, methods=["POST"]),
            Route("/health/ready", self.ready, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/auth/register", self.register, methods=["POST"]),
            Route("/auth/logout", self.logout, methods=["POST"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
        ]


def _ms(start: float) -> float:
    return round((perf_counter() - start) * 1000, 3)


class ByListener:
    """Sends each connection to the app of the listener it arrived on: the
    metrics listener serves /metrics and nothing else, the public one never
    serves it. One server, one event loop and one shutdown for both."""

    def __init__(self, public: ASGIApp, metrics: ASGIApp, metrics_port: int) -> None:
        self.public = public
        self.metrics = metrics
        self.metrics_port = metrics_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server is not None and server[1] == self.metrics_port:
            await self.metrics(scope, receive, send)
        else:
            await self.public(scope, receive, send)


def create_app(settings: Settings, *, logger: JsonLog = log) -> tuple[ASGIApp, Api]:
    api = Api(settings, logger=logger)
    routes = api.routes()
    api.metrics.declare_routes(
        (method, route.path) for route in routes for method in sorted(route.methods or ()) if method != "HEAD"
    )
    starlette = Starlette(
        routes=routes,
        lifespan=api.lifespan,
        exception_handlers={
            ApiError: api.on_api_error,
            HTTPException: api.on_http_error,
            Exception: api.on_unexpected,
        },
    )
    # Starlette answers `/health/` with a redirect built from the Host header:
    # an absolute URL any client can point elsewhere. Every route is exact.
    starlette.router.redirect_slashes = False
    inner: ASGIApp = starlette
    if settings.cors_allowed_origins:
        inner = CORSMiddleware(
            starlette,
            allow_origins=list(settings.cors_allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
            expose_headers=["X-Request-Id", "Retry-After"],
            max_age=600,
        )
    public = EdgeMiddleware(
        inner,
        requests=api.requests,
        log=logger,
        routes=[route.path for route in routes],
        max_body_bytes=settings.max_body_bytes,
        liveness=("/health", _LIVE),
    )
    metrics = Starlette(
        routes=[Route("/metrics", api.prometheus, methods=["GET"])],
        exception_handlers={HTTPException: api.on_http_error, Exception: api.on_unexpected},
    )
    # The public app's lifespan opens and closes the pools; the metrics app has none.
    return ByListener(public, metrics, settings.metrics_port), api
