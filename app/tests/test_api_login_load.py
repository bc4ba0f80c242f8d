"""Logins under concurrency, against the real process: a burst does not starve the
database pool, and concurrent guesses at one account check no more passwords
than the account's limit allows."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from wondernest_api.security import hash_password

from tests.api_stack import ApiProcess, start_api
from tests.servers import PostgresServer, RedisServer

pytestmark = pytest.mark.servers

PASSWORD = "correct horse battery"
BURST = 16


def _accounts(pg: PostgresServer, count: int, rounds: int) -> list[str]:
    """Accounts inserted directly, sharing one hash: registering them through the
    API would cost a full hash each."""
    hashed = hash_password(PASSWORD, rounds)
    emails = [f"load-{uuid.uuid4().hex[:12]}@example.com" for _ in range(count)]
    with pg.admin("wondernest") as conn:
        for address in emails:
            conn.execute("INSERT INTO core.users (email, password_hash) VALUES (%s, %s)", (address, hashed))
    return emails


def _burst(url: str, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    def post(body: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{url}/auth/login", json=body, timeout=60)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


@pytest.fixture
def one_connection(servers: tuple[PostgresServer, RedisServer]) -> Iterator[ApiProcess]:
    """One pool connection and the production hashing cost: a login that held the
    connection while hashing would make the next wait a whole hash (about 0.25 s),
    and the burst would outlast the pool's 3-second wait."""
    pg, rd = servers
    api = start_api(pg, rd, DB_POOL_MIN="1", DB_POOL_MAX="1", BCRYPT_ROUNDS="12", LOGIN_IP_LIMIT="1000")
    yield api
    api.stop()


def test_a_burst_of_logins_does_not_starve_the_pool(
    servers: tuple[PostgresServer, RedisServer], one_connection: ApiProcess
) -> None:
    pg, _ = servers
    emails = _accounts(pg, BURST, rounds=12)
    responses = _burst(one_connection.url, [{"email": e, "password": PASSWORD} for e in emails])
    assert Counter(r.status_code for r in responses) == {200: BURST}, [r.text for r in responses if r.is_error]
    assert httpx.get(f"{one_connection.url}/health/ready", timeout=10).status_code == 200


def test_concurrent_guesses_check_no_more_passwords_than_the_limit(
    servers: tuple[PostgresServer, RedisServer],
) -> None:
    pg, rd = servers
    limit = 5
    api = start_api(pg, rd, BCRYPT_ROUNDS="10", LOGIN_ACCOUNT_LIMIT=str(limit), LOGIN_IP_LIMIT="1000")
    try:
        [address] = _accounts(pg, 1, rounds=10)
        responses = _burst(api.url, [{"email": address, "password": f"guess {i}"} for i in range(BURST)])
    finally:
        api.stop()
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {401: limit, 429: BURST - limit}, statuses
    with pg.admin("wondernest") as conn:
        row = conn.execute(
            "SELECT count(*) FROM audit.activity_logs a JOIN core.users u ON u.id = a.user_id "
            "WHERE u.email = %s AND a.action = 'user.login_failed'",
            (address,),
        ).fetchone()
    assert row is not None and row[0] == limit
