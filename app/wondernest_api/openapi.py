"""The OpenAPI 3.1 document, generated from the payload models the handlers use."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from wondernest_api import __version__
from wondernest_api.payloads import (
    ActivityView,
    ErrorBody,
    Liveness,
    LoginRequest,
    Readiness,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    UserView,
)

_MODELS: tuple[type[BaseModel], ...] = (
    ActivityView,
    ErrorBody,
    Liveness,
    LoginRequest,
    Readiness,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    UserView,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _content(ErrorBody)}


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    body: type[BaseModel] | None = None,
    secured: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _content(body)}
        operation["responses"] = {
            **responses,
            "400": _error("The body is not a JSON object"),
            "413": _error("The body is too large"),
            "415": _error("The body is not sent as application/json"),
            "422": _error("The body failed validation"),
        }
    if secured:
        operation["security"] = [{"bearer": []}]
    return operation


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "serialization") for m in _MODELS], ref_template="#/components/schemas/{model}"
    )
    unavailable = _error("A dependency (database or Redis) is unavailable")
    return {
        "openapi": "3.1.0",
        "info": {"title": "WonderNest API", "version": __version__},
        "paths": {
            "/health": {
                "get": _operation(
                    "Liveness: the process serves requests",
                    {"200": {"description": "Alive", "content": _content(Liveness)}},
                )
            },
            "/health/ready": {
                "get": _operation(
                    "Readiness: Postgres and Redis answer",
                    {
                        "200": {"description": "Ready", "content": _content(Readiness)},
                        "503": {"description": "A dependency is down", "content": _content(Readiness)},
                    },
                )
            },
            "/auth/register": {
                "post": _operation(
                    "Create an account",
                    {
                        "201": {"description": "Created", "content": _content(UserView)},
                        "409": _error("The email is taken"),
                        "429": {
                            **_error("Too many registrations from this client"),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                        "503": unavailable,
                    },
                    body=RegisterRequest,
                )
            },
            "/auth/login": {
                "post": _operation(
                    "Exchange credentials for an access and a refresh token",
                    {
                        "200": {"description": "Signed in", "content": _content(TokenPair)},
                        "401": _error("Wrong email or password"),
                        "429": {
                            **_error("Too many attempts"),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                        "503": unavailable,
                    },
                    body=LoginRequest,
                )
            },
            "/auth/refresh": {
                "post": _operation(
                    "Rotate a refresh token",
                    {
                        "200": {"description": "New tokens", "content": _content(TokenPair)},
                        "401": _error("Invalid, expired, revoked or reused refresh token"),
                        "503": unavailable,
                    },
                    body=RefreshRequest,
                )
            },
            "/auth/logout": {
                "post": _operation(
                    "End the session a refresh token belongs to",
                    {"204": {"description": "Signed out"}, "503": unavailable},
                    body=RefreshRequest,
                )
            },
            "/api/users/me": {
                "get": _operation(
                    "The signed-in account",
                    {
                        "200": {"description": "The account", "content": _content(UserView)},
                        "401": _error("Missing, invalid or expired access token"),
                        "503": unavailable,
                    },
                    secured=True,
                )
            },
            "/api/users/me/activity": {
                "get": _operation(
                    "The signed-in account's recent events, newest first (at most 50); read from a replica where "
                    "there is one, so the newest may be missing for as long as the replicas lag",
                    {
                        "200": {"description": "The events", "content": _content(ActivityView)},
                        "401": _error("Missing, invalid or expired access token"),
                        "503": unavailable,
                    },
                    secured=True,
                )
            },
        },
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
