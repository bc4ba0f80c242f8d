"""Password hashing, access tokens and refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import bcrypt
import jwt

from wondernest_api.errors import ApiError
from wondernest_api.settings import Settings

ALGORITHM = "HS256"
# One message for every token refused: which check failed is no business of the sender's.
INVALID_TOKEN = "invalid or expired token"  # noqa: S105 (a message, not a credential)


def _prehash(password: str) -> bytes:
    # bcrypt reads at most 72 bytes; passwords may be 128 characters (up to 512
    # bytes of UTF-8). A SHA-256 digest, base64-encoded to avoid NUL bytes,
    # keeps every character significant.
    return base64.b64encode(hashlib.sha256(password.encode()).digest())


def hash_password(password: str, rounds: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode()


def verify_password(password: str, hashed: str) -> bool:
    return bcrypt.checkpw(_prehash(password), hashed.encode())


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID


def key_id(key: str) -> str:
    """A signing key's `kid`: a digest that names the key without revealing it."""
    return hashlib.sha256(b"wondernest kid\0" + key.encode()).hexdigest()[:16]


class TokenIssuer:
    """Signs with the current key, naming it by `kid`; verifies with whichever of
    the current, previous and next keys the token names."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.jwt_secret.get_secret_value()
        self._kid = key_id(self._key)
        # The current key first: what a token without `kid` (from before keys
        # were named) is tried against first, and what successors are made with.
        accepted = [settings.jwt_secret, settings.jwt_previous_secret, settings.jwt_next_secret]
        self._keys = {key_id(k): k for k in (s.get_secret_value() for s in accepted if s is not None)}
        # Successor refresh tokens: keyed apart from the access tokens' signatures,
        # one key per accepted signing key, so a server a rotation apart finds
        # the successor another server made.
        self._successor_keys = [
            hmac.new(k.encode(), b"wondernest refresh successor", hashlib.sha256).digest() for k in self._keys.values()
        ]
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.ttl = settings.access_token_ttl_seconds

    def issue(self, user_id: uuid.UUID, session_id: uuid.UUID) -> str:
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})

    def successor(self, refresh_token: str) -> str:
        """The refresh token a rotation of this one hands out: derived, so a retry
        of the same rotation within its grace window gets the same token back,
        and unguessable without the server's key."""
        return self.successors(refresh_token)[0]

    def successors(self, refresh_token: str) -> list[str]:
        """What any server holding one of this server's keys as its current
        would have handed out: the current key's first."""
        return [
            base64.urlsafe_b64encode(hmac.new(key, refresh_token.encode(), hashlib.sha256).digest())
            .rstrip(b"=")
            .decode()
            for key in self._successor_keys
        ]

    def verify(self, authorization: str | None) -> AccessClaims:
        # The scheme is case-insensitive (RFC 9110 section 11.1); the token is not.
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("missing bearer token")
        try:
            kid = jwt.get_unverified_header(token.strip()).get("kid")
            if kid is None:
                # From before keys were named: signed with one that is now any of the three.
                candidates = list(self._keys.values())
            elif isinstance(kid, str) and kid in self._keys:
                candidates = [self._keys[kid]]
            else:
                raise _unauthorized(INVALID_TOKEN)  # signed with a key this server does not hold
            claims = self._decode(token.strip(), candidates)
            subject, session = claims["sub"], claims["sid"]
            if not isinstance(subject, str) or not isinstance(session, str):
                raise _unauthorized(INVALID_TOKEN)
            return AccessClaims(uuid.UUID(subject), uuid.UUID(session))
        except (jwt.PyJWTError, ValueError):
            raise _unauthorized(INVALID_TOKEN) from None

    def _decode(self, token: str, keys: list[str]) -> dict[str, Any]:
        for key in keys[:-1]:
            try:
                return self._decode_with(token, key)
            except jwt.InvalidSignatureError:
                continue
        return self._decode_with(token, keys[-1])

    def _decode_with(self, token: str, key: str) -> dict[str, Any]:
        return dict(
            jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "sid"]},
                leeway=5,
            )
        )


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="wondernest"'})


def new_refresh_token() -> tuple[str, str]:
    """A token for the client and the only form the server keeps: its SHA-256."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
