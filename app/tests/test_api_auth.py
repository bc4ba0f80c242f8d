"""Register → login → me → refresh → logout, and every way each step says no."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import psycopg
import pytest
from conftest import ClientFactory
from starlette.testclient import TestClient

from tests.api_stack import JWT_SECRET
from tests.servers import PostgresServer

pytestmark = pytest.mark.servers

PASSWORD = "correct horse battery"
CLIENT_IP = "192.0.2.10"
"""The address the `client` fixture connects from."""


def email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def register(client: TestClient, address: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/auth/register", json={"email": address, "password": password})
    assert response.status_code == 201, response.text
    return dict(response.json())


def login(client: TestClient, address: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/auth/login", json={"email": address, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


def me(client: TestClient, token: str) -> Any:
    return client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["requestId"] == response.headers["x-request-id"]


def test_the_whole_flow(client: TestClient, db: PostgresServer) -> None:
    address = email()
    created = register(client, address)
    assert created["email"] == address and uuid.UUID(created["id"])

    tokens = login(client, address)
    assert tokens["tokenType"] == "Bearer" and tokens["expiresIn"] == 3600
    profile = me(client, tokens["accessToken"])
    assert profile.status_code == 200
    assert profile.json()["id"] == created["id"] and profile.json()["lastLoginAt"]

    rotated = client.post("/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert rotated.status_code == 200
    fresh = rotated.json()
    assert fresh["refreshToken"] != tokens["refreshToken"]
    assert me(client, fresh["accessToken"]).status_code == 200

    assert client.post("/auth/logout", json={"refreshToken": fresh["refreshToken"]}).status_code == 204
    assert_error(
        client.post("/auth/refresh", json={"refreshToken": fresh["refreshToken"]}),
        401,
        "invalid_refresh_token",
    )

    with db.admin("wondernest") as conn:
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit.activity_logs a JOIN core.users u ON u.id = a.user_id "
                "WHERE u.email = %s ORDER BY a.id",
                (address,),
            ).fetchall()
        ]
        stored = conn.execute(
            "SELECT s.token_hash FROM core.user_sessions s JOIN core.users u ON u.id = s.user_id WHERE u.email = %s",
            (address,),
        ).fetchall()
    assert actions == ["user.registered", "user.login", "user.logout"]
    assert stored and all(len(h) == 64 for (h,) in stored)
    assert tokens["refreshToken"] not in {h for (h,) in stored}


def test_passwords_are_bcrypt_hashes(client: TestClient, db: PostgresServer) -> None:
    address = email()
    register(client, address)
    with db.admin("wondernest") as conn:
        row = conn.execute("SELECT password_hash FROM core.users WHERE email = %s", (address,)).fetchone()
    assert row is not None
    stored = str(row[0])
    assert stored.startswith("$2b$04$") and PASSWORD not in stored


def test_a_long_password_keeps_every_character_significant(client: TestClient) -> None:
    address, long_password = email(), "x" * 100 + "A"
    register(client, address, long_password)
    assert client.post("/auth/login", json={"email": address, "password": "x" * 100 + "B"}).status_code == 401
    login(client, address, long_password)


def test_duplicate_email_is_409_whatever_its_case(client: TestClient) -> None:
    address = email()
    register(client, address)
    assert_error(
        client.post("/auth/register", json={"email": address.upper(), "password": PASSWORD}),
        409,
        "email_taken",
    )


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, 422, "validation_failed"),
        ({"email": "a@example.com", "password": "short"}, 422, "validation_failed"),
        ({"email": "a@example.com", "password": "x" * 129}, 422, "validation_failed"),
        ({"email": "a@example.com"}, 422, "validation_failed"),
        ({"email": "a@example.com", "password": PASSWORD, "admin": True}, 422, "validation_failed"),
        ([1, 2, 3], 400, "malformed_body"),
    ],
)
def test_bad_registrations_are_refused_with_json(client: TestClient, body: Any, status: int, code: str) -> None:
    response = client.post("/auth/register", json=body)
    assert_error(response, status, code)
    if status == 422:
        assert response.json()["error"]["details"]


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post("/auth/login", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 400, "malformed_body")


def test_wrong_password_and_unknown_email_look_alike(client: TestClient) -> None:
    address = email()
    register(client, address)
    wrong = client.post("/auth/login", json={"email": address, "password": "wrong password"})
    unknown = client.post("/auth/login", json={"email": email(), "password": PASSWORD})
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


def _forge(claims_override: dict[str, Any], key: str = JWT_SECRET) -> str:
    now = int(time.time())
    claims = {
        "iss": "wondernest-api",
        "aud": "wondernest-users",
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
    }
    claims.update(claims_override)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="HS256")


def test_bad_access_tokens_are_401(client: TestClient) -> None:
    address = email()
    register(client, address)
    good = login(client, address)["accessToken"]
    live = jwt.decode(good, options={"verify_signature": False})
    # Every forgery names the live session: each is refused for its one defect,
    # never by the session lookup (a stolen token of a live session).
    own = {"sub": live["sub"], "sid": live["sid"]}
    header, payload, signature = good.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    cases = {
        "tampered": tampered,
        "expired": _forge({**own, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}),
        "wrong audience": _forge({**own, "aud": "someone-else"}),
        "wrong issuer": _forge({**own, "iss": "evil"}),
        "wrong key": _forge(own, key="another-key-that-is-long-enough-000"),
        "no session claim": _forge({**own, "sid": None}),
        "no expiry": _forge({**own, "exp": None}),
        "alg none": jwt.encode(own, key="", algorithm="none"),
        "a key id the server does not hold": jwt.encode(
            {**jwt.decode(_forge(own), options={"verify_signature": False})},
            JWT_SECRET,
            algorithm="HS256",
            headers={"kid": "0123456789abcdef"},
        ),
    }
    assert me(client, good).status_code == 200
    # The same forgery without a defect is accepted: the cases differ from it in one claim each.
    assert me(client, _forge(own)).status_code == 200
    for name, token in cases.items():
        response = me(client, token)
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert_error(client.get("/api/users/me"), 401, "unauthorized")


def test_tokens_survive_a_key_rotation_while_old_and_new_servers_serve_side_by_side(
    make_client: ClientFactory,
) -> None:
    """Keys k0..k3. Before the rotation a server signs with k1 and accepts k0
    and k2 too; after it, k2 signs and k1, k3 are accepted. During the rolling
    deploy each server accepts what the other signs; k0 is retired."""
    k0, k1, k2, k3 = (f"signing-key-{i}-" + "x" * 32 for i in range(4))
    old = make_client(JWT_PREVIOUS_SECRET=k0, JWT_SECRET=k1, JWT_NEXT_SECRET=k2)
    new = make_client(JWT_PREVIOUS_SECRET=k1, JWT_SECRET=k2, JWT_NEXT_SECRET=k3)
    address = email()
    register(old, address)
    from_old, from_new = login(old, address)["accessToken"], login(new, address)["accessToken"]
    assert jwt.get_unverified_header(from_old)["kid"] != jwt.get_unverified_header(from_new)["kid"]
    for server in (old, new):
        assert me(server, from_old).status_code == 200 and me(server, from_new).status_code == 200
    # A token from before keys were named (no kid), signed with what is now the previous key.
    legacy = jwt.encode(jwt.decode(from_old, options={"verify_signature": False}), k1, algorithm="HS256")
    assert "kid" not in jwt.get_unverified_header(legacy)
    assert me(new, legacy).status_code == 200
    # A refresh retried on the other server within the grace window gets the same pair, not a reuse alarm.
    refresh = login(old, address)["refreshToken"]
    first = old.post("/auth/refresh", json={"refreshToken": refresh})
    again = new.post("/auth/refresh", json={"refreshToken": refresh})
    assert first.status_code == again.status_code == 200, again.text
    assert first.json()["refreshToken"] == again.json()["refreshToken"]
    # A server one rotation further on no longer accepts what the old one signed.
    later = make_client(JWT_PREVIOUS_SECRET=k2, JWT_SECRET=k3, JWT_NEXT_SECRET="signing-key-4-" + "x" * 32)
    assert me(later, from_new).status_code == 200
    assert_error(me(later, from_old), 401, "unauthorized")


def test_a_reused_refresh_token_revokes_the_session(make_client: ClientFactory) -> None:
    client = make_client(REFRESH_REUSE_GRACE_SECONDS="0")
    address = email()
    register(client, address)
    first = login(client, address)["refreshToken"]
    second = client.post("/auth/refresh", json={"refreshToken": first}).json()["refreshToken"]
    # The old token comes back (a thief replaying it): refused, and the chain ends.
    reuse = client.post("/auth/refresh", json={"refreshToken": first})
    assert_error(reuse, 401, "invalid_refresh_token")
    assert "reused" in reuse.json()["error"]["message"]
    assert_error(client.post("/auth/refresh", json={"refreshToken": second}), 401, "invalid_refresh_token")


def test_an_expired_refresh_token_is_refused(client: TestClient, db: PostgresServer) -> None:
    address = email()
    register(client, address)
    token = login(client, address)["refreshToken"]
    with db.admin("wondernest") as conn:
        conn.execute(
            "UPDATE core.user_sessions SET expires_at = now() - interval '1 second' "
            "WHERE user_id = (SELECT id FROM core.users WHERE email = %s)",
            (address,),
        )
    assert_error(client.post("/auth/refresh", json={"refreshToken": token}), 401, "invalid_refresh_token")


def test_logout_answers_the_same_for_unknown_tokens(client: TestClient) -> None:
    assert client.post("/auth/logout", json={"refreshToken": "A" * 43}).status_code == 204


def test_login_is_rate_limited_per_account(make_client: ClientFactory) -> None:
    client = make_client(ip="192.0.2.50", LOGIN_ACCOUNT_LIMIT="3")
    address = email()
    register(client, address)
    for _ in range(3):
        assert client.post("/auth/login", json={"email": address, "password": "nope nope"}).status_code == 401
    limited = client.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert_error(limited, 429, "too_many_attempts")
    assert 0 < int(limited.headers["retry-after"]) <= 900
    # Another account from the same client is unaffected.
    other = email()
    register(client, other)
    login(client, other)


def test_login_is_rate_limited_per_client(make_client: ClientFactory) -> None:
    client = make_client(ip="192.0.2.51", LOGIN_IP_LIMIT="4", LOGIN_IP_WINDOW_SECONDS="60")
    address = email()
    register(client, address)
    for _ in range(4):
        login(client, address)
    limited = client.post("/auth/login", json={"email": address, "password": PASSWORD})
    assert_error(limited, 429, "too_many_attempts")
    assert 0 < int(limited.headers["retry-after"]) <= 60
    # A different client address has its own budget.
    login(make_client(ip="192.0.2.52", LOGIN_IP_LIMIT="4"), address)


def test_a_deleted_account_cannot_use_its_token(client: TestClient, db: PostgresServer) -> None:
    address = email()
    register(client, address)
    token = login(client, address)["accessToken"]
    with db.admin("wondernest") as conn:
        conn.execute("DELETE FROM core.users WHERE email = %s", (address,))
    assert_error(me(client, token), 401, "unauthorized")


def test_the_app_role_cannot_escape_its_schemas(db: PostgresServer) -> None:
    from tests.api_stack import NAMES
    from tests.platform_db import PASSWORDS

    dsn = db.dsn(user=NAMES.app_role, password=PASSWORDS["app"], dbname="wondernest")
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE public.sneaky (id int)")


def test_a_body_not_sent_as_json_is_415(client: TestClient) -> None:
    body = b'{"email": "x@example.com", "password": "long enough"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post("/auth/register", content=body, headers=headers)
        assert_error(response, 415, "unsupported_media_type")
    # Parameters and case do not matter.
    address = email()
    accepted = client.post(
        "/auth/register",
        content=f'{{"email": "{address}", "password": "{PASSWORD}"}}'.encode(),
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert accepted.status_code == 201, accepted.text


def test_the_bearer_scheme_is_case_insensitive(client: TestClient) -> None:
    address = email()
    register(client, address)
    token = login(client, address)["accessToken"]
    for scheme in ("bearer", "BEARER", "Bearer"):
        response = client.get("/api/users/me", headers={"Authorization": f"{scheme} {token}"})
        assert response.status_code == 200, scheme
    assert_error(client.get("/api/users/me", headers={"Authorization": f"Basic {token}"}), 401, "unauthorized")


def test_logout_ends_the_sessions_access_tokens(client: TestClient) -> None:
    address = email()
    register(client, address)
    pair = login(client, address)
    other = login(client, address)  # another device: its own session
    assert me(client, pair["accessToken"]).status_code == 200
    assert client.post("/auth/logout", json={"refreshToken": pair["refreshToken"]}).status_code == 204
    assert_error(me(client, pair["accessToken"]), 401, "unauthorized")
    assert me(client, other["accessToken"]).status_code == 200


def test_a_reused_refresh_token_ends_every_access_token_of_the_chain(make_client: ClientFactory) -> None:
    client = make_client(REFRESH_REUSE_GRACE_SECONDS="0")
    address = email()
    register(client, address)
    first = login(client, address)
    second = client.post("/auth/refresh", json={"refreshToken": first["refreshToken"]}).json()
    assert me(client, first["accessToken"]).status_code == 200
    assert me(client, second["accessToken"]).status_code == 200
    client.post("/auth/refresh", json={"refreshToken": first["refreshToken"]})  # the replay
    assert_error(me(client, first["accessToken"]), 401, "unauthorized")
    assert_error(me(client, second["accessToken"]), 401, "unauthorized")


def test_failed_logins_are_audited_with_the_client_address(make_client: ClientFactory, db: PostgresServer) -> None:
    client = make_client(ip="198.51.100.7")
    address = email()
    register(client, address)
    assert client.post("/auth/login", json={"email": address, "password": "wrong one"}).status_code == 401
    unknown = email()
    assert client.post("/auth/login", json={"email": unknown, "password": "wrong one"}).status_code == 401
    with db.admin("wondernest") as conn:
        rows = conn.execute(
            "SELECT a.user_id IS NOT NULL, host(a.ip_address) FROM audit.activity_logs a "
            "LEFT JOIN core.users u ON u.id = a.user_id "
            "WHERE a.action = 'user.login_failed' AND (u.email = %s OR a.user_id IS NULL) "
            "AND a.ip_address = '198.51.100.7' ORDER BY a.created_at",
            (address,),
        ).fetchall()
    # The known account's failure names it; the unknown email's names nobody.
    assert (True, "198.51.100.7") in rows and (False, "198.51.100.7") in rows


def test_registration_is_rate_limited_per_client(make_client: ClientFactory) -> None:
    client = make_client(ip="192.0.2.60", REGISTER_IP_LIMIT="2", REGISTER_IP_WINDOW_SECONDS="3600")
    register(client, email())
    register(client, email())
    limited = client.post("/auth/register", json={"email": email(), "password": PASSWORD})
    assert_error(limited, 429, "too_many_attempts")
    assert 0 < int(limited.headers["retry-after"]) <= 3600
    register(make_client(ip="192.0.2.61", REGISTER_IP_LIMIT="2"), email())


def activity(client: TestClient, token: str) -> Any:
    return client.get("/api/users/me/activity", headers={"Authorization": f"Bearer {token}"})


def test_the_account_reads_its_own_recent_events_newest_first(client: TestClient, db: PostgresServer) -> None:
    address, other = email(), email()
    created = register(client, address)
    register(client, other)
    login(client, other)
    failed = client.post("/auth/login", json={"email": address, "password": "not the password"})
    assert failed.status_code == 401
    tokens = login(client, address)

    response = activity(client, tokens["accessToken"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    items = response.json()["items"]
    assert [item["action"] for item in items] == ["user.login", "user.login_failed", "user.registered"]
    assert all(set(item) == {"action", "at", "ip"} for item in items)
    assert {item["ip"] for item in items} == {CLIENT_IP}
    assert items[0]["at"] >= items[1]["at"] >= items[2]["at"]

    # At most the newest 50, whatever the trail holds.
    with db.admin("wondernest") as conn:
        conn.execute(
            "INSERT INTO audit.activity_logs (user_id, action) SELECT %s, 'test.event' FROM generate_series(1, 60)",
            (created["id"],),
        )
    items = activity(client, tokens["accessToken"]).json()["items"]
    assert len(items) == 50 and {item["action"] for item in items} == {"test.event"}


def test_activity_needs_a_live_session(client: TestClient) -> None:
    assert_error(client.get("/api/users/me/activity"), 401, "unauthorized")
    address = email()
    register(client, address)
    tokens = login(client, address)
    assert client.post("/auth/logout", json={"refreshToken": tokens["refreshToken"]}).status_code == 204
    assert_error(activity(client, tokens["accessToken"]), 401, "unauthorized")
