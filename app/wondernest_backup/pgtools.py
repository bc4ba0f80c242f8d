"""PostgreSQL client and server binaries, driven without passwords on any command line."""

from __future__ import annotations

import codecs
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo


class BackupError(Exception):
    """A backup, verification or restore that did not succeed; the message says why."""


# Everything a run leaves on disk besides the repository (password files, the
# verification server) lives under one directory named for its process, so a
# later run can tell a dead run's leftovers from a live run's files.
WORK_PREFIX = "wn-backup-"


def work_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"{WORK_PREFIX}{os.getpid()}"
    path.mkdir(exist_ok=True)
    # Others may pass through (a verification server run as `postgres` reaches
    # its own directory inside) but not list it; the files in it are 0600.
    path.chmod(0o711)
    return path


def remove_work_dir() -> None:
    """This process's work directory, once it is done: what is left in /tmp
    after a run is then only ever an interrupted run's."""
    shutil.rmtree(Path(tempfile.gettempdir()) / f"{WORK_PREFIX}{os.getpid()}", ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and not ours to clean up
    return True


def _stop_orphan_server(data_dir: Path) -> None:
    """A verification server whose run was killed keeps running on its own."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if str(data_dir).encode() not in cmdline:
        return  # the pid was reused by something else
    os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the data is thrown away anyway
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def clean_orphans() -> list[str]:
    """Removes what runs that were killed left behind: password files, and
    verification servers (stopped first) with their data. Returns what it removed."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        pid = path.name.removeprefix(WORK_PREFIX)
        if not pid.isdigit() or int(pid) == os.getpid() or alive(int(pid)):
            continue
        for scratch in path.glob("wn-verify-*"):
            _stop_orphan_server(scratch / "data")
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str
    password: str
    database: str
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    """The CA file the server's certificate is verified against."""

    def conninfo(self, database: str | None = None) -> str:
        verified = {} if self.sslrootcert is None else {"sslrootcert": self.sslrootcert}
        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            sslmode=self.sslmode,
            connect_timeout=10,
            application_name="wondernest-backup",
            **verified,
        )

    @contextlib.contextmanager
    def passfile(self) -> Iterator[dict[str, str]]:
        """libpq settings for a child process: the password in a 0600 file that
        lives only as long as the child, never in its argv."""
        fd, path = tempfile.mkstemp(prefix="pgpass-", dir=work_dir())
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
                **({} if self.sslrootcert is None else {"PGSSLROOTCERT": self.sslrootcert}),
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


# PostgreSQL's encodings whose names Python's codecs do not know as such.
_PYTHON_NAMES = {
    "KOI8R": "koi8_r",
    "KOI8U": "koi8_u",
    **{f"WIN{page}": f"cp{page}" for page in (866, 874, 1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258)},
}


def script_encoding(script: bytes) -> str:
    """PostgreSQL's name of the encoding a dump's script is written in (its
    `SET client_encoding`, the database's own unless pg_dump was told another)."""
    found = re.search(rb"^SET client_encoding = '([A-Z0-9_]+)';$", script, re.MULTILINE)
    return found.group(1).decode() if found else "UTF8"


def codec_of(encoding: str) -> str:
    """Python's codec for a PostgreSQL encoding: a LATIN1 database's names are
    LATIN1 bytes. SQL_ASCII (bytes kept as they came) and an encoding Python
    lacks are read as UTF-8, what does not decode replaced."""
    try:
        return codecs.lookup(_PYTHON_NAMES.get(encoding, encoding)).name
    except LookupError:
        return "utf-8"


def script_codec(script: bytes) -> str:
    return codec_of(script_encoding(script))


def archive_encoding(dump: Path) -> str:
    """The encoding of a custom-format archive's names and text. `pg_restore
    --list` does not print it; the script of no entry at all (an empty
    `--use-list`) is only its header, which sets it, and reads no data."""
    with tempfile.NamedTemporaryFile("w", prefix="none-", suffix=".list", dir=work_dir()) as nothing:
        result = subprocess.run(
            [tool("pg_restore"), "--file=-", f"--use-list={nothing.name}", str(dump)],
            capture_output=True, env=child_env({}), check=False,
        )  # fmt: skip
    return script_encoding(result.stdout) if result.returncode == 0 else "UTF8"


@contextlib.contextmanager
def throwaway_server() -> Iterator[Endpoint]:
    """A private PostgreSQL started from scratch in a temp dir, reachable only
    through a Unix socket in that dir, removed afterwards: verification never
    touches the live server."""
    root = Path(tempfile.mkdtemp(prefix="wn-verify-", dir=work_dir()))
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
        # --no-sync: flushing a cluster that is deleted afterwards buys nothing.
        initdb = subprocess.run(
            [tool("initdb"), "-D", str(root / "data"), "-U", "verifier", f"--pwfile={root / 'pwfile'}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=False, capture_output=True, env=child_env({}), user=os_user, group=os_user,
        )  # fmt: skip
        if initdb.returncode != 0:
            output = (initdb.stderr or initdb.stdout).decode(errors="replace").strip()
            raise BackupError(f"the verification server could not be created (initdb in {root}): {output}")
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
                time.sleep(0.02)
        yield endpoint
    finally:
        if process is not None and process.poll() is None:
            # Immediate shutdown (SIGQUIT): no checkpoint for data about to be deleted.
            process.send_signal(signal.SIGQUIT)
            process.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


class EarlyServer:
    """A throwaway server whose initdb and start-up run in a thread while the
    caller does something else (the dump it is about to verify): on a small
    database they cost as much as the restore itself. One use; `close` always
    (again is harmless)."""

    def __init__(self) -> None:
        self._closed = False
        self._context = throwaway_server()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-server")
        self._ready = self._executor.submit(self._context.__enter__)

    @contextlib.contextmanager
    def use(self) -> Iterator[Endpoint]:
        yield self._ready.result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._ready.result()
        except Exception:  # noqa: S110 (a server that never started has removed its own files)
            pass
        else:
            self._context.__exit__(None, None, None)
        finally:
            self._executor.shutdown(wait=True)
