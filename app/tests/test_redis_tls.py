"""REDIS_TLS against a real redis-server with TLS on, as ElastiCache's in-transit
encryption runs it: the default user authenticated by a token, the server's
certificate verified against the trusted CAs."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from wondernest_api.settings import load_settings

from tests.servers import REDIS_SERVER, _port_open, _stop, _wait_for, free_port, require_binary

TOKEN = "t" * 32


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[tuple[int, Path]]:
    require_binary(REDIS_SERVER, "redis-server")
    root = Path(tempfile.mkdtemp(prefix="wn-redis-tls-"))
    try:
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
                 "-keyout", "ca.key", "-out", "ca.pem", cwd=root)  # fmt: skip
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                 "-keyout", "server.key", "-out", "server.csr", cwd=root)  # fmt: skip
        (root / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "1", "-extfile", "san.ext", "-out", "server.pem", cwd=root)  # fmt: skip
        port = free_port()
        log = open(root / "server.log", "ab")  # noqa: SIM115 (handed to the child)
        process = subprocess.Popen(
            [
                REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                "--tls-cert-file", str(root / "server.pem"), "--tls-key-file", str(root / "server.key"),
                "--tls-ca-cert-file", str(root / "ca.pem"), "--tls-auth-clients", "no",
                "--requirepass", TOKEN, "--save", "", "--appendonly", "no", "--dir", str(root),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        try:
            _wait_for(lambda: _port_open(port), what="redis-server (TLS)", process=process,
                      log=lambda: (root / "server.log").read_text())  # fmt: skip
            yield port, root / "ca.pem"
        finally:
            _stop(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
