"""What proving a backup costs, measured on a database of at least 500 MB.

In one run, against one throwaway PostgreSQL 15: the tool's `run` + `verify`
(dump, checksum, restore into a throwaway server, row counts) against plain
`pg_dump -Fc` + `pg_restore` of the same database into a new database, printed
as a ratio; and the tool's `restore` with parallel jobs against a single job.

    python app/bench/backup_benchmark.py [--size-mb 500] [--jobs 2]

Needs postgresql-15 (Debian package), run from the repository root with the
project venv.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from wondernest_backup.backup import Repository, restore, run, verify  # noqa: E402
from wondernest_backup.pgtools import Endpoint, child_env, tool  # noqa: E402

from tests.servers import postgres_server  # noqa: E402

ROW_BYTES = 200


def timed(label: str, action: object) -> float:
    assert callable(action)
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    print(f"  {label:<48}{elapsed:>8.1f} s", flush=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2, help="parallel restore jobs (default: 2, for a 2-core machine)")
    args = parser.parse_args()
    with postgres_server(memory_bytes=2 * 1024**3) as pg, tempfile.TemporaryDirectory() as scratch:
        source = Endpoint("127.0.0.1", pg.port, pg.superuser, pg.superuser_password, "wondernest", sslmode="disable")
        rows = args.size_mb * 1024 * 1024 // ROW_BYTES
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
        size_mb = (size[0] if size else 0) / 1024 / 1024
        print(f"database: {size_mb:.0f} MB in 4 tables; restore jobs: {args.jobs}\n")

        repo = Repository(Path(scratch) / "repo")
        holder: dict[str, str] = {}

        def tool_run() -> None:
            holder["id"] = run(source, repo).id

        print("the tool")
        t_run = timed("run (snapshot counts + pg_dump -Fc, gzip 6)", tool_run)
        t_verify = timed(
            "verify (checksum + restore into throwaway + counts)", lambda: verify(repo, holder["id"], jobs=args.jobs)
        )

        plain = Path(scratch) / "plain.dump"
        print("plain pg_dump / pg_restore")
        with source.passfile() as env:
            dump_command = [tool("pg_dump"), "--format=custom", "--compress=6", "--no-password",
                            "--dbname=wondernest", f"--file={plain}"]  # fmt: skip
            t_dump = timed("pg_dump -Fc -Z6", lambda: subprocess.run(dump_command, check=True, env=child_env(env)))
            with pg.admin() as conn:
                conn.execute("CREATE DATABASE plain_restore")
            restore_command = [tool("pg_restore"), f"--jobs={args.jobs}", "--no-password",
                               "--dbname=plain_restore", str(plain)]  # fmt: skip
            t_restore = timed(
                f"pg_restore -j{args.jobs} into a new database",
                lambda: subprocess.run(restore_command, check=True, env=child_env(env)),
            )
        print("restore, parallel against single")
        t_parallel = timed(
            f"restore --jobs {args.jobs}",
            lambda: restore(source, repo, holder["id"], "parallel_restore", force=False, jobs=args.jobs),
        )
        t_single = timed(
            "restore --jobs 1", lambda: restore(source, repo, holder["id"], "single_restore", force=False, jobs=1)
        )
        print()
        print(f"run + verify          {t_run + t_verify:8.1f} s")
        print(f"pg_dump + pg_restore  {t_dump + t_restore:8.1f} s")
        print(f"ratio                 {(t_run + t_verify) / (t_dump + t_restore):8.2f}x   (target <= 1.3x)")
        print(
            f"restore jobs={args.jobs} / jobs=1: {t_parallel:.1f} s / {t_single:.1f} s = {t_parallel / t_single:.2f}x"
        )


if __name__ == "__main__":
    main()
