"""Access tokens, refresh tokens and key ids, each check on its own: every
refused token differs from an accepted one in exactly one way, and the reason
it is refused is asserted (the message, or the claim it lacks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import datetime
from typing import Any

import jwt
import pytest
from wondernest_api.errors import ApiError
from wondernest_api.security import TokenIssuer, hash_token, key_id, new_refresh_token
from wondernest_api.settings import load_settings

CURRENT, PREVIOUS, NEXT = (f"signing-key-{name}-" + "x" * 32 for name in ("current", "previous", "next"))
ISSUER, AUDIENCE = "wondernest-api", "wondernest-users"
NOW = 1_800_000_000
USER, SESSION = uuid.uuid4(), uuid.uuid4()


def issuer(current: str = CURRENT, previous: str | None = PREVIOUS, next_: str | None = NEXT) -> TokenIssuer:
    env = {
        "DB_HOST": "db",
        "DB_NAME": "wondernest",
        "DB_USER": "app",
        "DB_PASSWORD": "p",
        "REDIS_HOST": "redis",
        "REDIS_USER": "app",
        "REDIS_PASSWORD": "p",
        "JWT_SECRET": current,
        "ACCESS_TOKEN_TTL_SECONDS": "600",
    }
    env |= {"JWT_PREVIOUS_SECRET": previous} if previous else {}
    env |= {"JWT_NEXT_SECRET": next_} if next_ else {}
    return TokenIssuer(load_settings(env))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """One clock for issuing and verifying: `time.time` and PyJWT's own reading
    (`datetime.now(tz=UTC)` in `jwt.api_jwt`), set by the test."""
    now = [float(NOW)]

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> FrozenDatetime:
            return cls.fromtimestamp(now[0], tz)

    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(jwt.api_jwt, "datetime", FrozenDatetime)
    return now


def claims(**override: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(USER),
        "sid": str(SESSION),
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 600,
    }
    return {k: v for k, v in (base | override).items() if v is not None}


def sign(payload: dict[str, Any], key: str = CURRENT, kid: Any = "own") -> str:
    headers = {"kid": key_id(key) if kid == "own" else kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm="HS256", headers=headers)


def raw(header: dict[str, Any], payload: dict[str, Any], key: str = CURRENT) -> str:
    """A token PyJWT would not make (it refuses a kid that is not a string)."""

    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(hmac.new(key.encode(), signing_input.encode(), 'sha256').digest())}"


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWTs and the successor tokens write it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refused(tokens: TokenIssuer, authorization: str | None) -> str:
    """The message a refusal carries, after checking it is a 401 with the challenge."""
    with pytest.raises(ApiError) as caught:
        tokens.verify(authorization)
    error = caught.value
    assert (error.status, error.code) == (401, "unauthorized")
    assert error.headers == {"WWW-Authenticate": 'Bearer realm="wondernest"'}
    return error.message


def test_an_issued_token_carries_exactly_its_claims_and_names_its_key(clock: list[float]) -> None:
    tokens = issuer()
    token = tokens.issue(USER, SESSION)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": key_id(CURRENT)}
    payload = jwt.decode(token, CURRENT, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    jti = payload.pop("jti")
    assert re.fullmatch(r"[0-9a-f]{32}", jti)
    assert payload == claims()
    assert jwt.decode(tokens.issue(USER, SESSION), options={"verify_signature": False})["jti"] != jti
    verified = tokens.verify(f"Bearer {token}")
    assert (verified.user_id, verified.session_id) == (USER, SESSION)


def test_a_key_id_names_the_key_without_revealing_it() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", key_id(CURRENT))
    assert key_id(CURRENT) == hashlib.sha256(b"wondernest kid\0" + CURRENT.encode()).hexdigest()[:16]
    assert key_id(CURRENT) != key_id(NEXT)
    # Not the key's plain digest: a kid is no oracle for a guessed key.
    assert key_id(CURRENT) != hashlib.sha256(CURRENT.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "   ", "Bearer", "Bearer    ", "Basic dXNlcjpwYXNz", "Token abc", "Bearerabc"],
)
def test_no_bearer_token_is_refused_as_missing(clock: list[float], authorization: str | None) -> None:
    assert refused(issuer(), authorization) == "missing bearer token"


def test_the_scheme_is_case_insensitive_and_may_be_followed_by_several_spaces(clock: list[float]) -> None:
    tokens = issuer()
    token = tokens.issue(USER, SESSION)
    # RFC 6750 section 2.1: "Bearer" 1*SP b64token.
    for authorization in (f"Bearer {token}", f"bearer {token}", f"BEARER  {token}", f"  Bearer {token}  "):
        assert tokens.verify(authorization).user_id == USER
    assert refused(tokens, f"Bearer {token} extra") == "invalid or expired token"


def test_the_accepted_forgery_the_refused_cases_differ_from(clock: list[float]) -> None:
    assert issuer().verify(f"Bearer {sign(claims())}").session_id == SESSION


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("wrong issuer", lambda: sign(claims(iss="evil"))),
        ("wrong audience", lambda: sign(claims(aud="someone-else"))),
        ("no issuer", lambda: sign(claims(iss=None))),
        ("no audience", lambda: sign(claims(aud=None))),
        ("no subject", lambda: sign(claims(sub=None))),
        ("no session", lambda: sign(claims(sid=None))),
        ("no expiry", lambda: sign(claims(exp=None))),
        ("no issued-at", lambda: sign(claims(iat=None))),
        ("a subject that is not a string", lambda: sign(claims(sub=int(USER)))),
        ("a session that is not a string", lambda: sign(claims(sid=["x"]))),
        ("a subject that is not a UUID", lambda: sign(claims(sub="alice"))),
        ("not yet valid", lambda: sign(claims(nbf=NOW + 60))),
        ("signed with HS512", lambda: jwt.encode(claims(), CURRENT, algorithm="HS512")),
        ("alg none", lambda: jwt.encode(claims(), key="", algorithm="none")),
        ("a key this server does not hold", lambda: sign(claims(), key="another-key-" + "y" * 32)),
        ("a held key's id on another key's signature", lambda: sign(claims(), key=PREVIOUS, kid=key_id(CURRENT))),
        ("an unknown key id", lambda: sign(claims(), kid="0123456789abcdef")),
        ("a key id that is not a string", lambda: raw({"alg": "HS256", "kid": 7}, claims())),
        ("no key id, and no held key signed it", lambda: sign(claims(), key="another-key-" + "y" * 32, kid=None)),
        ("tampered", lambda: sign(claims())[:-4] + "AAAA"),
        ("not a token", lambda: "not.a.token"),
    ],
)
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the HS512 case's key
def test_each_defect_alone_is_refused(clock: list[float], name: str, token: Any) -> None:
    assert refused(issuer(), f"Bearer {token()}") == "invalid or expired token", name


def test_expiry_allows_five_seconds_of_clock_skew(clock: list[float]) -> None:
    tokens = issuer()
    token = sign(claims())
    clock[0] = NOW + 600 + 4.999
    assert tokens.verify(f"Bearer {token}").user_id == USER
    clock[0] = NOW + 600 + 5
    assert refused(tokens, f"Bearer {token}") == "invalid or expired token"
    # The same skew the other way: a token issued by a clock five seconds ahead.
    clock[0] = NOW - 4.999
    assert tokens.verify(f"Bearer {token}").user_id == USER
    clock[0] = NOW - 5.001
    assert refused(tokens, f"Bearer {token}") == "invalid or expired token"


def test_a_token_is_checked_against_the_key_its_id_names_and_no_other(clock: list[float]) -> None:
    tokens = issuer()
    for key in (CURRENT, PREVIOUS, NEXT):
        assert tokens.verify(f"Bearer {sign(claims(), key=key)}").user_id == USER
    # An expired token under its own key is not retried under the others.
    clock[0] = NOW + 3600
    assert refused(tokens, f"Bearer {sign(claims(), key=PREVIOUS)}") == "invalid or expired token"


def test_a_token_without_key_id_is_tried_under_every_held_key(clock: list[float]) -> None:
    tokens = issuer()
    for key in (CURRENT, PREVIOUS, NEXT):
        assert tokens.verify(f"Bearer {sign(claims(), key=key, kid=None)}").user_id == USER
    # With only the current key held, a token of the previous one is refused.
    alone = issuer(previous=None, next_=None)
    assert alone.verify(f"Bearer {sign(claims(), kid=None)}").user_id == USER
    assert refused(alone, f"Bearer {sign(claims(), key=PREVIOUS, kid=None)}") == "invalid or expired token"
    # Expired under the key that signed it: refused, whichever key it is.
    clock[0] = NOW + 3600
    for key in (CURRENT, PREVIOUS, NEXT):
        assert refused(tokens, f"Bearer {sign(claims(), key=key, kid=None)}") == "invalid or expired token"


def test_the_retired_key_is_no_longer_accepted(clock: list[float]) -> None:
    rotated = issuer(current=NEXT, previous=CURRENT, next_="signing-key-after-" + "x" * 32)
    assert rotated.verify(f"Bearer {sign(claims(), key=CURRENT)}").user_id == USER
    assert refused(rotated, f"Bearer {sign(claims(), key=PREVIOUS)}") == "invalid or expired token"
    assert refused(rotated, f"Bearer {sign(claims(), key=PREVIOUS, kid=None)}") == "invalid or expired token"


def test_successor_refresh_tokens_are_derived_per_key_the_current_first() -> None:
    tokens = issuer()
    first = tokens.successors("refresh-token")
    assert len(first) == 3 and len(set(first)) == 3
    assert tokens.successor("refresh-token") == first[0]
    assert tokens.successors("refresh-token") == first
    assert tokens.successors("another-refresh-token")[0] != first[0]
    for token in first:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    # A server a rotation on (current = this one's next) made this one's third.
    rotated = issuer(current=NEXT, previous=CURRENT, next_="signing-key-after-" + "x" * 32)
    assert rotated.successor("refresh-token") == first[2]
    assert rotated.successors("refresh-token")[1] == first[0]
    # The derivation is a contract between servers of different versions: a
    # retried refresh must find the successor whichever server made it. Keyed
    # apart from the signing key itself.
    successor_key = hmac.new(CURRENT.encode(), b"wondernest refresh successor", "sha256").digest()
    assert first[0] == _hmac_b64(successor_key, b"refresh-token")
    assert first[0] != _hmac_b64(CURRENT.encode(), b"refresh-token")
    # One key held: one successor.
    assert issuer(previous=None, next_=None).successors("refresh-token") == first[:1]


def _hmac_b64(key: bytes, message: bytes) -> str:
    return b64url(hmac.new(key, message, "sha256").digest())


def test_a_refresh_token_is_32_random_bytes_and_the_server_keeps_its_sha256() -> None:
    token, digest = new_refresh_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert digest == hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert new_refresh_token()[0] != token
