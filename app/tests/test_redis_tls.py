"""REDIS_TLS against a real redis-server with TLS on, as ElastiCache's in-transit
encryption runs it: the default user authenticated by a token, the server's
certificate verified against the trusted CAs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from wondernest_api.settings import load_settings

from tests.servers import redis_tls_server

pytestmark = pytest.mark.servers

TOKEN = "t" * 32


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[tuple[int, Path]]:
    with redis_tls_server(token=TOKEN) as server:
        yield server


def _client(port: int, *, tls: bool) -> redis.Redis:
    settings = load_settings(
        {
            "DB_HOST": "127.0.0.1",
            "DB_NAME": "wondernest",
            "DB_USER": "wondernest_app",
            "DB_PASSWORD": "unused",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(port),
            "REDIS_USER": "default",
            "REDIS_PASSWORD": TOKEN,
            "REDIS_TLS": "true" if tls else "false",
            "JWT_SECRET": "j" * 40,
        }
    )
    return redis.Redis(**settings.redis_options(), socket_timeout=3, socket_connect_timeout=3)  # type: ignore[arg-type]


def test_tls_with_the_token_as_the_default_users_password(
    tls_redis: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca = tls_redis
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    client = _client(port, tls=True)
    assert client.ping() is True
    assert client.acl_whoami() == "default"


def test_an_untrusted_certificate_is_refused(tls_redis: tuple[int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    port, _ca = tls_redis
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        _client(port, tls=True).ping()


def test_plaintext_is_refused_by_a_tls_port(tls_redis: tuple[int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    port, ca = tls_redis
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with pytest.raises(redis.ConnectionError):
        _client(port, tls=False).ping()
