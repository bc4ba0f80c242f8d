"""What password hashing allows: login and registration throughput under
concurrency, at the production bcrypt cost, for several HASH_CONCURRENCY bounds.

For each bound the API is served as in production (uvicorn, one worker,
BCRYPT_ROUNDS 12) against one throwaway Postgres and Redis; `--clients`
concurrent clients log in (or register new accounts) for `--duration` seconds
while one more client asks /health, so the table shows what a burst of logins
does to every other request. Rate limits are raised out of the way.

    python app/bench/login_benchmark.py [--bounds 1,2,3,4] [--clients 8] [--duration 10]

Needs postgresql-15 and redis-server (Debian packages), run from the repository
root with the project venv.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "app")]

from bench.benchmark import environment, serve  # noqa: E402
from tests.api_stack import migrate_platform, platform, rendered_acl  # noqa: E402
from tests.servers import free_port, postgres_server, redis_server  # noqa: E402

PASSWORD = "benchmark password 0123"  # noqa: S105 (throwaway accounts on a throwaway server)


@dataclass
class Load:
    done: int
    seconds: float
    latencies: list[float]
    health: list[float]

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    def p(self, q: float, values: list[float] | None = None) -> float:
        data = sorted(values if values is not None else self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")


async def load(url: str, path: str, bodies: Iterator[dict[str, str]], clients: int, duration: float) -> Load:
    latencies: list[float] = []
    health: list[float] = []
    queue = bodies
    stop = time.monotonic() + duration
    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while time.monotonic() < stop:
                body = next(queue)
                start = time.perf_counter()
                response = await client.post(path, json=body)
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text}")
                latencies.append(time.perf_counter() - start)

        async def prober() -> None:
            while time.monotonic() < stop:
                start = time.perf_counter()
                (await client.get("/health")).raise_for_status()
                health.append(time.perf_counter() - start)
                await asyncio.sleep(0.05)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)), prober())
        return Load(len(latencies), time.monotonic() - started, latencies, health)


async def register_all(url: str, accounts: list[dict[str, str]]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        semaphore = asyncio.Semaphore(8)

        async def one(account: dict[str, str]) -> None:
            async with semaphore:
                (await client.post("/auth/register", json=account)).raise_for_status()

        await asyncio.gather(*(one(a) for a in accounts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bounds", default="1,2,3,4", help="HASH_CONCURRENCY values to compare")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    bounds = [int(b) for b in args.bounds.split(",")]
    limits = {
        "BCRYPT_ROUNDS": "12",
        **{f"{kind}_LIMIT": "1000000" for kind in ("LOGIN_IP", "LOGIN_ACCOUNT", "REGISTER_IP")},
    }
    print(
        f"bcrypt cost 12, {os.cpu_count()} CPUs, {args.clients} clients plus one /health prober, "
        f"{args.duration:.0f} s per load\n"
    )
    print(f"{'bound':>5}  {'load':<9}{'per s':>7}{'p50 ms':>9}{'p99 ms':>9}{'/health p99 ms':>16}")
    with (
        postgres_server() as pg,
        redis_server(acl=rendered_acl(), maxmemory_bytes=64 * 1024 * 1024, eviction_policy="allkeys-lru") as rd,
    ):
        platform(pg)
        migrate_platform(pg)
        env = environment(pg, rd)
        for bound in bounds:
            port = free_port()
            settings = {**env, **limits, "HASH_CONCURRENCY": str(bound), "HOST": "127.0.0.1", "PORT": str(port)}
            # Not pinned to one CPU: the hashes run in threads, one per core at best.
            with serve([sys.executable, "-m", "wondernest_api", "serve"], settings, port, pin=False) as url:
                accounts = [{"email": f"b{bound}-{i}@example.com", "password": PASSWORD} for i in range(args.clients)]
                asyncio.run(register_all(url, accounts))
                logins = asyncio.run(load(url, "/auth/login", itertools.cycle(accounts), args.clients, args.duration))
                fresh = ({"email": f"r{bound}-{i}@example.com", "password": PASSWORD} for i in itertools.count())
                signups = asyncio.run(load(url, "/auth/register", fresh, args.clients, args.duration))
            for name, result in (("login", logins), ("register", signups)):
                print(
                    f"{bound:>5}  {name:<9}{result.rate:>7.1f}{result.p(0.5):>9.0f}{result.p(0.99):>9.0f}"
                    f"{result.p(0.99, result.health):>16.1f}"
                )


if __name__ == "__main__":
    main()
