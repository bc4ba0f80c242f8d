"""What the API's framework, middleware, metrics and logging cost, measured.

Serves the API and the bare-Starlette baseline (bench/baseline.py) the same way
(uvicorn, one worker, uvloop + httptools, the same pool settings, the same
Postgres and Redis), loads both with the same wrk command in the same run,
alternating A/B for several rounds, and prints requests/s, p99 and the ratio
app/baseline (median of the rounds) for `/health` and `/api/users/me`.

    python app/bench/benchmark.py [--duration 10] [--connections 32] [--rounds 3]

Needs: postgresql-15, redis-server and wrk (Debian packages), run from the
repository root with the project venv.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "app")]


from tests.api_stack import api_env, cli_env, migrate_platform, platform, rendered_acl  # noqa: E402
from tests.servers import PostgresServer, RedisServer, free_port, postgres_server, redis_server  # noqa: E402

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Result:
    rps: float
    p99_ms: float


def environment(pg: PostgresServer, rd: RedisServer) -> dict[str, str]:
    """The test harness's API settings, with a fixed-size pool for both servers."""
    return cli_env(api_env(pg, rd, DB_POOL_MIN="10", DB_POOL_MAX="10"))


def pinned(cpu: int) -> list[str]:
    # Server on one core, load generator on the other: they do not steal from each other.
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


@contextlib.contextmanager
def serve(command: list[str], env: dict[str, str], port: int, *, pin: bool = True) -> Iterator[str]:
    with tempfile.NamedTemporaryFile(prefix="wn-bench-", suffix=".log") as log:
        process = subprocess.Popen(
            [*(pinned(0) if pin else []), *command], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command} did not start:\n{Path(log.name).read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def wrk(url: str, *, duration: int, connections: int, token: str | None) -> Result:
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    out = subprocess.run(
        [*pinned(1), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *header, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx responses from {url}:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    if rps is None or p99 is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return Result(float(rps.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (apt-get install wrk)")

    with (
        postgres_server() as pg,
        redis_server(acl=rendered_acl(), maxmemory_bytes=64 * 1024 * 1024, eviction_policy="allkeys-lru") as rd,
    ):
        platform(pg)
        env = environment(pg, rd)
        migrate_platform(pg)
        app_port, base_port = free_port(), free_port()
        uvicorn_flags = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--host", "127.0.0.1"]
        with (
            serve(
                [sys.executable, "-m", "wondernest_api", "serve"],
                {**env, "HOST": "127.0.0.1", "PORT": str(app_port)},
                app_port,
            ) as app_url,
            serve(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.baseline:app",
                    "--app-dir",
                    str(ROOT / "app"),
                    *uvicorn_flags,
                    "--port",
                    str(base_port),
                ],
                env,
                base_port,
            ) as base_url,
        ):
            account = {"email": "bench@example.com", "password": "benchmark password"}
            httpx.post(f"{app_url}/auth/register", json=account).raise_for_status()
            login = httpx.post(f"{app_url}/auth/login", json=account)
            login.raise_for_status()
            token = login.json()["accessToken"]

            print(
                f"wrk: 1 thread, {args.connections} connections, {args.duration}s per run, "
                f"{args.rounds} alternating rounds; server pinned to CPU 0, wrk to CPU 1\n"
            )
            print(f"{'endpoint':<16}{'target':<10}{'req/s':>10}{'p99 ms':>10}")
            for path, auth in (("/health", None), ("/api/users/me", token)):
                # Warm both (connections, Postgres' buffers, CPU caches) before measuring.
                for url in (app_url, base_url):
                    wrk(f"{url}{path}", duration=2, connections=args.connections, token=auth)
                runs: dict[str, list[Result]] = {"app": [], "baseline": []}
                for _ in range(args.rounds):
                    for name, url in (("app", app_url), ("baseline", base_url)):
                        runs[name].append(
                            wrk(
                                f"{url}{path}",
                                duration=args.duration,
                                connections=args.connections,
                                token=auth,
                            )
                        )
                median = {
                    name: Result(
                        statistics.median(r.rps for r in results),
                        statistics.median(r.p99_ms for r in results),
                    )
                    for name, results in runs.items()
                }
                for name in ("app", "baseline"):
                    print(f"{path:<16}{name:<10}{median[name].rps:>10.0f}{median[name].p99_ms:>10.2f}")
                # Each round's app and baseline runs are back to back, under the same
                # machine conditions: the median of the paired ratios is the figure.
                paired = [a.rps / b.rps for a, b in zip(runs["app"], runs["baseline"], strict=True)]
                p99_paired = [a.p99_ms / b.p99_ms for a, b in zip(runs["app"], runs["baseline"], strict=True)]
                print(
                    f"{path:<16}{'ratio':<10}{statistics.median(paired):>9.2f}x{statistics.median(p99_paired):>9.2f}x"
                    f"   (app/baseline; rounds {min(paired):.2f}-{max(paired):.2f})\n"
                )


if __name__ == "__main__":
    main()
