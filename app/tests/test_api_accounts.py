"""One account, one key, one guess budget: addresses are found by the database's
own normal form whatever case or compatibility form is typed; the login counter
is the account's; refreshes of deactivated accounts end, a retried rotation gets
its own answer back, and the edges that used to answer 500 or echo the Host
header answer 4xx with JSON."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import jwt
import pytest
from conftest import ClientFactory
from starlette.testclient import TestClient
from test_api_auth import PASSWORD, assert_error, login, me, register

from tests.api_stack import JWT_SECRET
from tests.servers import PostgresServer

pytestmark = pytest.mark.servers


def local_part() -> str:
    return f"jane{uuid.uuid4().hex[:10]}"


def fullwidth(text: str) -> str:
    """The same letters as Unicode's fullwidth forms (NFKC maps them back)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_an_address_typed_in_another_case_or_form_reaches_the_same_account(client: TestClient) -> None:
    name = local_part()
    registered = register(client, f"{name.capitalize()}@Example.COM")
    for typed in (f"{name}@example.com", f"{name.upper()}@EXAMPLE.COM", f"{fullwidth(name)}@example.com"):
        pair = login(client, typed)
        assert me(client, pair["accessToken"]).json()["id"] == registered["id"], typed


def test_a_look_alike_address_is_the_same_account(client: TestClient) -> None:
    name = local_part()
    register(client, f"{name}@example.com")
    again = client.post("/auth/register", json={"email": f"{fullwidth(name)}@example.com", "password": PASSWORD})
    assert_error(again, 409, "email_taken")


def test_every_spelling_of_an_address_shares_one_guess_budget(make_client: ClientFactory) -> None:
    client = make_client(ip="192.0.2.70", LOGIN_ACCOUNT_LIMIT="3")
    name = local_part()
    register(client, f"{name}@example.com")
    spellings = [f"{name.upper()}@example.com", f"{fullwidth(name)}@example.com", f"{name}@EXAMPLE.com"]
    for typed in spellings:
        wrong = client.post("/auth/login", json={"email": typed, "password": "not the one"})
        assert_error(wrong, 401, "invalid_credentials")
    # The budget is spent for the account, however the next guess spells it:
    # even the right password waits.
    right = client.post("/auth/login", json={"email": f"{name}@example.com", "password": PASSWORD})
    assert_error(right, 429, "too_many_attempts")


def test_ipv6_clients_of_one_64_share_a_budget(make_client: ClientFactory) -> None:
    first = make_client(ip="2001:db8:7:1::10", LOGIN_IP_LIMIT="2")
    second = make_client(ip="2001:db8:7:1:ffff::2", LOGIN_IP_LIMIT="2")
    elsewhere = make_client(ip="2001:db8:7:2::10", LOGIN_IP_LIMIT="2")
    for client in (first, second):
        assert client.post("/auth/login", json={"email": "x@example.com", "password": "whatever"}).status_code == 401
    assert_error(first.post("/auth/login", json={"email": "x@example.com", "password": "x"}), 429, "too_many_attempts")
    assert elsewhere.post("/auth/login", json={"email": "x@example.com", "password": "whatever"}).status_code == 401


def test_a_deactivated_account_cannot_refresh(client: TestClient, db: PostgresServer) -> None:
    address = f"{local_part()}@example.com"
    register(client, address)
    pair = login(client, address)
    with db.admin("wondernest") as conn:
        conn.execute("UPDATE core.users SET is_active = false WHERE email = %s", (address,))
    assert_error(
        client.post("/auth/refresh", json={"refreshToken": pair["refreshToken"]}), 401, "invalid_refresh_token"
    )
    with db.admin("wondernest") as conn:
        conn.execute("UPDATE core.users SET is_active = true WHERE email = %s", (address,))
    # Its sessions ended with the refusal: reactivated, it signs in again.
    assert_error(
        client.post("/auth/refresh", json={"refreshToken": pair["refreshToken"]}), 401, "invalid_refresh_token"
    )


def test_the_same_refresh_token_sent_twice_at_once_gets_one_new_pair(client: TestClient) -> None:
    address = f"{local_part()}@example.com"
    register(client, address)
    token = login(client, address)["refreshToken"]
    answers: list[Any] = []

    def refresh() -> None:
        answers.append(client.post("/auth/refresh", json={"refreshToken": token}))

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    first, second = (a.json() for a in answers)
    assert first["refreshToken"] == second["refreshToken"]
    # Both access tokens work: they name the one new session.
    assert me(client, first["accessToken"]).status_code == me(client, second["accessToken"]).status_code == 200
    # The new token rotates once; the old one, its successor used, is a theft.
    third = client.post("/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert third.status_code == 200
    stolen = client.post("/auth/refresh", json={"refreshToken": token})
    assert_error(stolen, 401, "invalid_refresh_token")
    assert_error(client.post("/auth/refresh", json={"refreshToken": third.json()["refreshToken"]}), 401,
                 "invalid_refresh_token")  # fmt: skip


def test_after_the_grace_window_a_retried_token_is_a_theft(make_client: ClientFactory) -> None:
    client = make_client(REFRESH_REUSE_GRACE_SECONDS="1")
    address = f"{local_part()}@example.com"
    register(client, address)
    token = login(client, address)["refreshToken"]
    new = client.post("/auth/refresh", json={"refreshToken": token}).json()["refreshToken"]
    assert client.post("/auth/refresh", json={"refreshToken": token}).json()["refreshToken"] == new
    time.sleep(1.5)
    assert_error(client.post("/auth/refresh", json={"refreshToken": token}), 401, "invalid_refresh_token")
    assert_error(client.post("/auth/refresh", json={"refreshToken": new}), 401, "invalid_refresh_token")


def test_a_token_whose_session_claim_is_not_a_string_is_401(client: TestClient) -> None:
    now = int(time.time())
    for sid in (123, ["x"], {"a": 1}, "not-a-uuid"):
        claims = {"iss": "wondernest-api", "aud": "wondernest-users", "sub": str(uuid.uuid4()), "sid": sid,
                  "iat": now, "nbf": now, "exp": now + 600}  # fmt: skip
        token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        assert_error(me(client, token), 401, "unauthorized")


def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_host_header(client: TestClient) -> None:
    for path in ("/health/", "/auth/login/", "/api/users/me/"):
        response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert_error(response, 404, "not_found")
        assert "location" not in response.headers
