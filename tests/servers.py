"""Throwaway PostgreSQL and Redis servers on free loopback ports, in temp dirs.

They read the exact text the stack renders for its containers; only what must
differ on a test machine (port, data dir, socket dir, listen address) is passed
on the command line, which overrides the file without editing it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from components.model import postgres_conf, redis_conf
from components.model.tls import ServerTls

PG_BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
LOOPBACK = IPv4Network("127.0.0.1/32")


# The test being set up (conftest.py); None outside pytest, e.g. in the benchmarks.
current_test: pytest.Item | None = None


def require_binary(path: str | Path, package: str) -> None:
    """Skip without the binary, unless the run demands real servers (CI does).

    A test that starts a server must carry the `servers` marker, so that
    `pytest -m "not servers"` (make test-fast) is exactly the tests that start none.
    """
    if current_test is not None and current_test.get_closest_marker("servers") is None:
        pytest.fail(f"{current_test.nodeid} starts {Path(path).name} but is not marked `servers`")
    if Path(path).exists():
        return
    message = f"{path} not found (Debian package {package})"
    if os.environ.get("REQUIRE_SERVERS") == "1":
        pytest.fail(f"REQUIRE_SERVERS=1 but {message}")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# postgres refuses to run as root; CI and these machines run tests as root.
# Dropping to the postgres user in the child itself (not through runuser) keeps
# the server the direct child, so signals reach it unchanged.
PG_OS_USER = "postgres" if os.geteuid() == 0 else None


def _to_postgres(path: Path) -> None:
    """Hand `path` to the account the server runs as, when that is not ours."""
    if PG_OS_USER is not None:
        entry = pwd.getpwnam(PG_OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@contextlib.contextmanager
def reachable_dir(prefix: str) -> Iterator[Path]:
    """A directory that the `postgres` account, which a server (or the backup
    tool's verification server) drops to when run as root, can reach: pytest's
    own temporary directories are their owner's alone. Removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path)


def stand_in_tools(place: Path, scripts: Mapping[str, str]) -> Path:
    """`place` made a PG_BINDIR: PostgreSQL's own tools, those named in
    `scripts` replaced by shell scripts running that body."""
    place.mkdir(mode=0o755, exist_ok=True)
    for tool in PG_BINDIR.iterdir():
        if tool.name not in scripts:
            (place / tool.name).symlink_to(tool)
    for name, body in scripts.items():
        (place / name).write_text(f"#!/bin/sh\n{body}\n")
        (place / name).chmod(0o755)
    return place


@dataclass
class PostgresServer:
    port: int
    root: Path
    superuser: str
    superuser_password: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    ca: Path | None = None
    """With TLS on: the CA that signed the server's certificate; clients verify it."""

    def start(self) -> None:
        with open(self.root / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A standby's libpq looks for a client certificate under $HOME: the postgres user's own.
                env={**os.environ, "HOME": str(self.root)},
                user=PG_OS_USER,
                group=PG_OS_USER,
            )
        _wait_for(lambda: _pg_ready(self), what="postgres", process=self.process, log=self.log)

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT is the "fast" shutdown: it does not wait for clients (a pool
            # holding connections) to leave, as SIGTERM's "smart" shutdown does.
            _stop(self.process, signal.SIGINT)
            self.process = None

    def discard(self) -> None:
        """Stop at once, for a server whose directory is removed next: the
        immediate shutdown (SIGQUIT) skips the checkpoint nobody will read."""
        if self.process is not None:
            _stop(self.process, signal.SIGQUIT)
            self.process = None

    def dsn(self, *, user: str | None = None, password: str | None = None, dbname: str = "postgres") -> str:
        verified = {} if self.ca is None else {"sslmode": "verify-full", "sslrootcert": str(self.ca)}
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1",
            port=self.port,
            user=user or self.superuser,
            password=password if password is not None else self.superuser_password,
            dbname=dbname,
            connect_timeout=5,
            **verified,
        )

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.dsn(dbname=dbname), autocommit=True)

    def admin_connection(self, database: str) -> dict[str, object]:
        """The provider's `connection` property, as the stack would pass it."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.superuser,
            "password": self.superuser_password,
            "database": database,
            **(
                {"sslmode": "disable"} if self.ca is None else {"sslmode": "verify-full", "ca_pem": self.ca.read_text()}
            ),
            "wait_seconds": 5,
        }

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text() if path.exists() else ""


@contextlib.contextmanager
def postgres_server(
    *,
    database: str = "wondernest",
    memory_bytes: int = 1024**3,
    max_connections: int = 100,
    slow_query_ms: int = 500,
    tls: bool = False,
) -> Iterator[PostgresServer]:
    """A server with the rendered config and `database` created, as the image's
    entrypoint creates POSTGRES_DB. With `tls`, as the local stack runs it:
    TLS only, with a certificate for 127.0.0.1 from a throwaway CA."""
    require_binary(PG_BINDIR / "postgres", "postgresql-15")
    root = Path(tempfile.mkdtemp(prefix="wn-pg-"))
    try:
        _to_postgres(root)
        password = _new_cluster(root / "data")
        tuning = postgres_conf.tune(memory_bytes, max_connections)
        server_tls = None
        if tls:
            ca, cert, key = tls_files(root)
            server_tls = ServerTls(str(cert), str(key), str(ca))
            key.chmod(0o600)
            _to_postgres(key)
        (root / "postgresql.conf").write_text(
            postgres_conf.render_postgresql_conf(
                tuning, slow_query_ms=slow_query_ms, hba_file=str(root / "pg_hba.conf"), tls=server_tls
            )
        )
        (root / "pg_hba.conf").write_text(
            postgres_conf.render_pg_hba_conf(
                database=database, admin_role="postgres", client_networks=[LOOPBACK], tls=tls
            )
        )
        port = free_port()
        command = [
            str(PG_BINDIR / "postgres"),
            "-D",
            str(root / "data"),
            "-c",
            f"config_file={root / 'postgresql.conf'}",
            "-c",
            f"port={port}",
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={root}",
        ]
        server = PostgresServer(port, root, "postgres", password, command, ca=root / "ca.pem" if tls else None)
        server.start()
        with server.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        yield server
    finally:
        with contextlib.suppress(NameError):
            server.discard()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres_standby(primary: PostgresServer) -> Iterator[PostgresServer]:
    """A hot standby streaming from `primary`, as an RDS read replica runs: a
    base backup of it, then WAL replay, on a port of its own, with the
    primary's configuration and certificate."""
    with primary.admin() as conn:
        hba = primary.root / "pg_hba.conf"
        kind = "hostssl" if primary.ca is not None else "host   "
        hba.write_text(hba.read_text() + f"{kind} replication {primary.superuser} 127.0.0.1/32 scram-sha-256\n")
        conn.execute("SELECT pg_reload_conf()")
    root = Path(tempfile.mkdtemp(prefix="wn-pg-standby-"))
    _to_postgres(root)
    try:
        subprocess.run(
            [
                str(PG_BINDIR / "pg_basebackup"),
                "-d",
                primary.dsn(),
                "-D",
                str(root / "data"),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(root)},
            user=PG_OS_USER,
            group=PG_OS_USER,
        )
        port = free_port()
        own = {"port": f"port={port}", "unix_socket_directories": f"unix_socket_directories={root}"}
        command = [primary.command[0], "-D", str(root / "data")] + [
            own.get(arg.split("=", 1)[0], arg) for arg in primary.command[3:]
        ]
        standby = PostgresServer(port, root, primary.superuser, primary.superuser_password, command, ca=primary.ca)
        standby.start()
        yield standby
    finally:
        with contextlib.suppress(NameError):
            standby.discard()
        shutil.rmtree(root, ignore_errors=True)


TEMPLATE = "WN_PG_TEMPLATE"
"""A directory for one initdb'd cluster that every server of the run copies
(tests/servers_guard.py makes one per run; the mutation runner one per area):
copying takes a tenth of what initdb takes."""


def _new_cluster(data: Path) -> str:
    """A fresh cluster in `data`, its superuser `postgres` with a password only
    this run knows; the password is returned."""
    template = os.environ.get(TEMPLATE)
    if not template:
        return _initdb(data)
    place = Path(template)
    with open(place / "lock", "a") as lock:
        # Two processes of one run (the mutation runner's workers) may start
        # their first server at once: one makes the template, the other waits.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (place / "password").exists():
            _to_postgres(place)
            (place / "password").write_text(_initdb(place / "data"))
    subprocess.run(["cp", "-a", str(place / "data"), str(data)], check=True, capture_output=True)
    return (place / "password").read_text()


def _initdb(data: Path) -> str:
    """A cluster in `data` whose superuser `postgres` has a new password, returned."""
    password = "test-superuser-" + os.urandom(8).hex()
    with tempfile.NamedTemporaryFile("w", prefix="wn-pg-pw-", dir=data.parent) as pwfile:
        pwfile.write(password + "\n")
        pwfile.flush()
        os.chmod(pwfile.name, 0o644)
        subprocess.run(
            [
                str(PG_BINDIR / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                f"--pwfile={pwfile.name}",
                "--auth=scram-sha-256",
                "--data-checksums",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            check=True,
            capture_output=True,
            user=PG_OS_USER,
            group=PG_OS_USER,
        )
    return password


def _pg_ready(server: PostgresServer) -> bool:
    try:
        with psycopg.connect(server.dsn(), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@dataclass
class RedisServer:
    port: int
    root: Path
    process: subprocess.Popen[bytes]
    ca: Path | None = None
    """With TLS on: the CA that signed the server's certificate."""

    def restart(self) -> None:
        """Kill without a final save, then start again on the same files."""
        self.process.kill()
        self.process.wait()
        self.process = _start_redis(self.root, self.port, tls=self.ca is not None)

    def stop(self) -> None:
        _stop(self.process)

    def start(self) -> None:
        self.process = _start_redis(self.root, self.port, tls=self.ca is not None)


def _start_redis(root: Path, port: int, *, tls: bool = False) -> subprocess.Popen[bytes]:
    log = open(root / "server.log", "ab")  # noqa: SIM115 (handed to the child)
    # The rendered file's port, on a free one: TLS-only keeps the plaintext port off.
    ports = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    process = subprocess.Popen(
        [
            REDIS_SERVER,
            str(root / "redis.conf"),
            *ports,
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    _wait_for(
        lambda: _port_open(port),
        what="redis-server",
        process=process,
        log=lambda: (root / "server.log").read_text(),
    )
    return process


@contextlib.contextmanager
def redis_server(
    *, acl: str, maxmemory_bytes: int, eviction_policy: redis_conf.EvictionPolicy, tls: bool = False
) -> Iterator[RedisServer]:
    """With `tls`, as the local stack runs it: TLS only, a certificate for 127.0.0.1 from a throwaway CA."""
    require_binary(REDIS_SERVER, "redis-server")
    root = Path(tempfile.mkdtemp(prefix="wn-redis-"))
    (root / "data").mkdir()
    (root / "users.acl").write_text(acl)
    server_tls = None
    if tls:
        ca, cert, key = tls_files(root)
        server_tls = ServerTls(str(cert), str(key), str(ca))
    (root / "redis.conf").write_text(
        redis_conf.render_redis_conf(
            maxmemory_bytes=maxmemory_bytes,
            eviction_policy=eviction_policy,
            aclfile=str(root / "users.acl"),
            data_dir=str(root / "data"),
            tls=server_tls,
        )
    )
    server = RedisServer(free_port(), root, None, ca=root / "ca.pem" if tls else None)  # type: ignore[arg-type]
    try:
        server.process = _start_redis(root, server.port, tls=tls)
        yield server
    finally:
        if server.process is not None:
            _stop(server.process)
        shutil.rmtree(root, ignore_errors=True)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(ready: object, *, what: str, process: subprocess.Popen[bytes], log: object, timeout: float = 30) -> None:
    assert callable(ready) and callable(log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout}s:\n{log()}")


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tls_files(root: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    # A name of its own: in a bundle of several, a client picks the CA by name.
    ca_name = name(f"wondernest test CA {root.name}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = root / "ca.pem", root / "server.pem", root / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@contextlib.contextmanager
def redis_tls_server(*, token: str) -> Iterator[tuple[int, Path]]:
    """redis-server as ElastiCache runs it with in-transit encryption: TLS only,
    the default user authenticated by a token. Yields the port and the CA to trust."""
    require_binary(REDIS_SERVER, "redis-server")
    root = Path(tempfile.mkdtemp(prefix="wn-redis-tls-"))
    try:
        ca, cert, key = tls_files(root)
        port = free_port()
        log = open(root / "server.log", "ab")  # noqa: SIM115 (handed to the child)
        process = subprocess.Popen(
            [
                REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                "--tls-auth-clients", "no", "--requirepass", token,
                "--save", "", "--appendonly", "no", "--dir", str(root), "--daemonize", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        try:
            _wait_for(
                lambda: _port_open(port),
                what="redis-server (TLS)",
                process=process,
                log=lambda: (root / "server.log").read_text(),
            )
            yield port, ca
        finally:
            _stop(process)
    finally:
        shutil.rmtree(root, ignore_errors=True)


PROMETHEUS = "/usr/bin/prometheus"


@contextlib.contextmanager
def prometheus_server(rules: str, *, evaluation_interval: str = "1s") -> Iterator[str]:
    """A real Prometheus evaluating `rules` (a rule file's text) on a free
    loopback port, scraping nothing; yields its base URL."""
    require_binary(PROMETHEUS, "prometheus")
    root = Path(tempfile.mkdtemp(prefix="wn-prom-"))
    port = free_port()
    (root / "rules.yml").write_text(rules)
    (root / "prometheus.yml").write_text(
        f"global:\n  evaluation_interval: {evaluation_interval}\nrule_files:\n  - {root / 'rules.yml'}\n"
    )
    log = root / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(lambda: _port_open(port), what="prometheus", process=process, log=log.read_text)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
        shutil.rmtree(root, ignore_errors=True)
