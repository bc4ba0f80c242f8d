"""Request and response bodies; their JSON Schemas feed the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

Password = Annotated[str, Field(min_length=8, max_length=128)]
RefreshToken = Annotated[str, StringConstraints(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _encodable(cls, value: object) -> object:
        # JSON may carry lone surrogates ("\ud800"), which no UTF-8 consumer
        # (Postgres, the password hash) accepts: refuse them here, as a 422.
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode text") from None
        return value


class RegisterRequest(_Body):
    email: Annotated[EmailStr, Field(max_length=320)]
    password: Password


class LoginRequest(_Body):
    # Not validated as an address: a login only ever fails as "incorrect", so it
    # reveals nothing about which addresses the API would accept.
    email: Annotated[str, Field(min_length=1, max_length=320, pattern=r"^[^\x00-\x1f\x7f]+$")]
    password: Annotated[str, Field(min_length=1, max_length=128)]


def login_address(typed: str) -> str:
    """The address as registration stored it: pydantic's EmailStr form (the
    domain normalised, the local part NFC) when it is one, else as typed."""
    try:
        return validate_email(typed)[1]
    except PydanticCustomError:
        return typed


class RefreshRequest(_Body):
    refreshToken: RefreshToken


class UserView(BaseModel):
    id: uuid.UUID
    email: str
    createdAt: dt.datetime
    lastLoginAt: dt.datetime | None = None


class ActivityItem(BaseModel):
    action: str
    at: dt.datetime
    ip: str | None = None


class ActivityView(BaseModel):
    """The account's recent events, newest first. Read from a replica where
    there is one: the newest may be missing for as long as the replicas lag."""

    items: list[ActivityItem]


class TokenPair(BaseModel):
    accessToken: str
    tokenType: Literal["Bearer"] = "Bearer"
    expiresIn: int
    refreshToken: str


class ServiceHealth(BaseModel):
    status: Literal["UP", "DOWN"]
    responseTime: float  # milliseconds
    details: dict[str, str | int | float | None] | None = None


class Readiness(BaseModel):
    status: Literal["UP", "DEGRADED", "DOWN"]
    timestamp: dt.datetime
    services: dict[str, ServiceHealth]


class Liveness(BaseModel):
    status: Literal["UP"]


class ErrorDetail(BaseModel):
    code: str
    message: str
    requestId: str | None
    details: list[dict[str, str]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
