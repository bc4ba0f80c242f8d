"""What proving a backup costs, on a small and a large database in one run.

Against one throwaway PostgreSQL 15, per size: the tool's `run` + `verify` as
the service's cycle runs them (dump, checksum, restore into a throwaway server
started during the dump, row counts) against plain `pg_dump -Fc` +
`pg_restore` of the same database into a new database, printed as a ratio; and
the tool's `restore` with parallel jobs against a single job.

    python app/bench/backup_benchmark.py [--sizes-mb 50,500] [--jobs 2]

Needs postgresql-15 (Debian package), run from the repository root with the
project venv.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from wondernest_backup.backup import Repository, restore, run, verify  # noqa: E402
from wondernest_backup.pgtools import EarlyServer, Endpoint, child_env, tool  # noqa: E402

from tests.servers import PostgresServer, postgres_server  # noqa: E402

ROW_BYTES = 200


def timed(label: str, action: object) -> float:
    assert callable(action)
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    print(f"  {label:<48}{elapsed:>8.1f} s", flush=True)
    return elapsed


@dataclass(frozen=True)
class Measured:
    size_mb: float
    tool: float
    plain: float
    parallel: float
    single: float


def measure(pg: PostgresServer, scratch: Path, size_mb: int, jobs: int) -> Measured:
    """Build a database of about `size_mb` and time both ways of proving it, in this run."""
    source = Endpoint("127.0.0.1", pg.port, pg.superuser, pg.superuser_password, "wondernest", sslmode="disable")
    rows = size_mb * 1024 * 1024 // ROW_BYTES
    with pg.admin("postgres") as conn:
        for database in ("wondernest", "plain_restore", "parallel_restore", "single_restore"):
            conn.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.execute("CREATE DATABASE wondernest")
    with pg.admin("wondernest") as conn:
        conn.execute("CREATE SCHEMA core; CREATE SCHEMA audit")
        # Four tables: parallel restore has something to parallelise.
        for schema, table, share in (("core", "events", 4), ("core", "sessions", 2), ("audit", "log", 1),
                                     ("audit", "trail", 1)):  # fmt: skip
            conn.execute(
                f"CREATE TABLE {schema}.{table} AS SELECT g AS id, now() AS at, "
                f"md5(g::text) || repeat('x', {ROW_BYTES - 60}) AS payload "
                f"FROM generate_series(1, {rows * share // 8}) g"
            )
            conn.execute(f"ALTER TABLE {schema}.{table} ADD PRIMARY KEY (id)")
        size = conn.execute("SELECT pg_database_size('wondernest')").fetchone()
    actual_mb = (size[0] if size else 0) / 1024 / 1024
    print(f"\ndatabase: {actual_mb:.0f} MB in 4 tables; restore jobs: {jobs}")

    repo = Repository(scratch / f"repo-{size_mb}")
    holder: dict[str, str] = {}

    def cycle() -> None:
        # As the service's cycle does it: the verification server starts during the dump.
        early = EarlyServer()
        try:
            holder["id"] = run(source, repo).id
            verify(repo, holder["id"], jobs=jobs, server=early)
        finally:
            early.close()

    print("the tool")
    t_tool = timed("run + verify, as the service's cycle runs them", cycle)
    timed("verify alone (a new verification server)", lambda: verify(repo, holder["id"], jobs=jobs))

    plain = scratch / f"plain-{size_mb}.dump"
    print("plain pg_dump / pg_restore")
    with source.passfile() as env:
        dump_command = [tool("pg_dump"), "--format=custom", "--compress=6", "--no-password",
                        "--dbname=wondernest", f"--file={plain}"]  # fmt: skip
        t_dump = timed("pg_dump -Fc -Z6", lambda: subprocess.run(dump_command, check=True, env=child_env(env)))
        with pg.admin() as conn:
            conn.execute("CREATE DATABASE plain_restore")
        restore_command = [tool("pg_restore"), f"--jobs={jobs}", "--no-password",
                           "--dbname=plain_restore", str(plain)]  # fmt: skip
        t_restore = timed(
            f"pg_restore -j{jobs} into a new database",
            lambda: subprocess.run(restore_command, check=True, env=child_env(env)),
        )
    print("restore, parallel against single")
    t_parallel = timed(
        f"restore --jobs {jobs}",
        lambda: restore(source, repo, holder["id"], "parallel_restore", force=False, jobs=jobs),
    )
    t_single = timed(
        "restore --jobs 1", lambda: restore(source, repo, holder["id"], "single_restore", force=False, jobs=1)
    )
    return Measured(actual_mb, t_tool, t_dump + t_restore, t_parallel, t_single)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", default="50,500", help="comma-separated database sizes (default: 50,500)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel restore jobs (default: 2, for a 2-core machine)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes_mb.split(",")]
    with postgres_server(memory_bytes=2 * 1024**3) as pg, tempfile.TemporaryDirectory() as scratch:
        results = [measure(pg, Path(scratch), size, args.jobs) for size in sizes]
    print()
    parallel = f"restore -j{args.jobs} / -j1"
    print(f"{'database':>9}  {'run + verify':>12}  {'dump + restore':>14}  {'ratio':>6}  {parallel:>17}")
    for m in results:
        print(
            f"{m.size_mb:>6.0f} MB  {m.tool:>10.1f} s  {m.plain:>12.1f} s  {m.tool / m.plain:>5.2f}x  "
            f"{m.parallel / m.single:>16.2f}x"
        )
    print("target: run + verify at most 1.3x dump + restore at every size")


if __name__ == "__main__":
    main()
