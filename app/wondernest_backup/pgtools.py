"""PostgreSQL client and server binaries, driven without passwords on any command line."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo


class BackupError(Exception):
    """A backup, verification or restore that did not succeed; the message says why."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str
    password: str
    database: str
    sslmode: str = "prefer"

    def conninfo(self, database: str | None = None) -> str:
        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            sslmode=self.sslmode,
            connect_timeout=10,
            application_name="wondernest-backup",
        )

    @contextlib.contextmanager
    def passfile(self) -> Iterator[dict[str, str]]:
        """libpq settings for a child process: the password in a 0600 file that
        lives only as long as the child, never in its argv."""
        fd, path = tempfile.mkstemp(prefix="pgpass-")
        try:
            with os.fdopen(fd, "w") as fh:
                escaped = self.password.replace("\\", "\\\\").replace(":", "\\:")
                fh.write(f"*:*:*:*:{escaped}\n")
            yield {
                "PGHOST": self.host,
                "PGPORT": str(self.port),
                "PGUSER": self.user,
                "PGPASSFILE": path,
                "PGSSLMODE": self.sslmode,
                "PGCONNECT_TIMEOUT": "10",
            }
        finally:
            os.unlink(path)


def bindir() -> Path:
    return Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))


def tool(name: str) -> str:
    path = bindir() / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise BackupError(f"{name} not found in {bindir()} or on PATH")
        return found
    return str(path)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "HOME")}
    return {**keep, **extra}


@contextlib.contextmanager
def throwaway_server() -> Iterator[Endpoint]:
    """A private PostgreSQL started from scratch in a temp dir, reachable only
    through a Unix socket in that dir, removed afterwards: verification never
    touches the live server."""
    root = Path(tempfile.mkdtemp(prefix="wn-verify-"))
    password = secrets.token_urlsafe(24)
    process: subprocess.Popen[bytes] | None = None
    # postgres refuses to run as root; run as root (an operator's shell), the
    # server drops to the postgres account. In the image the tool is never root.
    os_user = "postgres" if os.geteuid() == 0 else None
    try:
        (root / "pwfile").write_text(password + "\n")
        if os_user is not None:
            entry = pwd.getpwnam(os_user)
            for path in (root, root / "pwfile"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [tool("initdb"), "-D", str(root / "data"), "-U", "verifier", f"--pwfile={root / 'pwfile'}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"],
            check=True, capture_output=True, env=child_env({}), user=os_user, group=os_user,
        )  # fmt: skip
        with open(root / "server.log", "wb") as log:
            process = subprocess.Popen(
                [tool("postgres"), "-D", str(root / "data"), "-c", "listen_addresses=",
                 "-c", f"unix_socket_directories={root}", "-c", "port=5432",
                 # Durability buys nothing for a database that is thrown away.
                 "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"],
                stdout=log, stderr=subprocess.STDOUT, env=child_env({}), user=os_user, group=os_user,
            )  # fmt: skip
        endpoint = Endpoint(str(root), 5432, "verifier", password, "postgres", sslmode="disable")
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise BackupError(f"the verification server did not start:\n{(root / 'server.log').read_text()}")
            try:
                with psycopg.connect(endpoint.conninfo()):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise BackupError("the verification server did not become ready") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
