"""`make bench-stack`: what the dev stack costs on a real Docker engine, the
one `make e2e` starts (root; README, "What the local stack costs").

    python -m tests.e2e.bench_stack [--load-seconds 60] [--settle-seconds 60]

It builds the stand-ins and the project's images, applies the dev stack once
(images built), then on a clean engine with the images kept:
- the size each project image adds on top of its base image (the stand-in
  bases differ from the upstream ones, so only the added layers compare);
- the time from the start of an apply to every container healthy;
- each container's memory as `docker stats` shows it, at idle and after the
  API has served authenticated requests from wrk for --load-seconds, against
  its limit, and the stack's total;
- the time of a re-apply that changes nothing.
Each figure is printed beside its target. Nothing is timed against a
threshold inside a test: the figures come from this one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import httpx

from components.commands.check_config import check
from components.commands.stack_outputs import reachable
from tests.e2e import standins
from tests.e2e.applier import State
from tests.e2e.engine import Engine, own_engine
from tests.e2e.stack_apply import apply

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024**2
GIB = 1024**3
# The targets the figures are judged against.
TARGETS = {
    "backup image added": 400 * MIB,
    "api image added": 120 * MIB,
    "stack idle": 1.2 * GIB,
    "container share of limit": 0.60,
    "apply to healthy": 60.0,
    "no-change re-apply": 10.0,
}
PROJECT_TARGETS = {"runtime": "api", "backup": "backup", "dev-s3": "dev-s3"}


@dataclass(frozen=True)
class Memory:
    used: float
    limit: float


UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": GIB, "TiB": 1024**4, "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def parse_size(text: str) -> float:
    """`docker stats`' MemUsage halves: "12.5MiB", "1GiB", "0B"."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]+)\s*", text)
    if not match or match[2] not in UNITS:
        raise ValueError(f"not a docker stats size: {text!r}")
    return float(match[1]) * UNITS[match[2]]


def memory(engine: Engine) -> dict[str, Memory]:
    """Each running container's memory as `docker stats --no-stream` (and so
    `make stats`) shows it: the cgroup's usage less its inactive page cache."""
    result = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"],
        env=engine.env,
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, Memory] = {}
    for line in result.stdout.splitlines():
        name, usage = line.split("\t")
        used, limit = usage.split(" / ")
        found[name] = Memory(parse_size(used), parse_size(limit))
    return found


class Highest:
    """Each container's highest `docker stats` figure, sampled in a thread from
    the apply through the load: the first backup cycle (a dump, and its
    restore into a throwaway server) runs in that span, as do the load's peaks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(subprocess.CalledProcessError, ValueError):
                for name, m in memory(self.engine).items():
                    self.seen[name] = max(self.seen.get(name, 0.0), m.used)

    def __enter__(self) -> Highest:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_healthy(engine: Engine, timeout: float = 300) -> None:
    """Every container running, and each with a healthcheck healthy; a
    one-shot job (the migrations) exited 0."""
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for container in engine.client.containers.list(all=True):
            state = container.attrs["State"]
            if state["Status"] == "exited" and state["ExitCode"] == 0:
                continue
            health = state.get("Health")
            if state["Status"] != "running" or (health is not None and health["Status"] != "healthy"):
                pending.append(f"{container.name}: {health['Status'] if health else state['Status']}")
        if not pending:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"error: not healthy after {timeout:.0f} s: {', '.join(pending)}")
        time.sleep(0.5)
        for container in engine.client.containers.list(all=True):
            container.reload()


def clean(engine: Engine) -> None:
    """A machine with the images built and nothing else: what `make up` finds
    on a developer's laptop after `make destroy-all`."""
    for container in engine.client.containers.list(all=True):
        container.remove(force=True, v=True)
    engine.client.networks.prune()
    for volume in engine.client.volumes.list():
        volume.remove(force=True)


def added_size(engine: Engine, image: str, base: str) -> tuple[int, int]:
    """The image's size and what it adds on top of `base`, whose layers it shares."""
    size = int(engine.client.images.get(image).attrs["Size"])
    return size, size - int(engine.client.images.get(base).attrs["Size"])


def project_images(run_resources: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """The images the stack builds from app/Dockerfile, by what they hold."""
    found = {}
    for typ, inputs in run_resources:
        if typ == "docker:index/image:Image":
            target = (inputs.get("build") or {}).get("target")
            if target in PROJECT_TARGETS:
                found[PROJECT_TARGETS[target]] = str(inputs["imageName"])
    return found


def api_token(api_url: str) -> str:
    email = f"bench-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    registered = httpx.post(f"{api_url}/auth/register", json={"email": email, "password": password}, timeout=30)
    if registered.status_code != 201:
        raise SystemExit(f"error: registering the load's user: {registered.status_code} {registered.text}")
    login = httpx.post(f"{api_url}/auth/login", json={"email": email, "password": password}, timeout=30)
    if login.status_code != 200:
        raise SystemExit(f"error: signing the load's user in: {login.status_code} {login.text}")
    return str(login.json()["accessToken"])


def load(api_url: str, seconds: int, connections: int) -> str:
    """wrk against an authenticated route (token checked, session read from
    Postgres): the API, its pool and the database all work."""
    token = api_token(api_url)
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("error: wrk is not installed (apt-get install wrk)")
    result = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}",
         f"{api_url}/api/users/me"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout


def judged(figure: float, target: float, text: str) -> str:
    return f"{text:<58} {'ok' if figure <= target else 'OVER'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.bench_stack", description=__doc__.split("\n")[0])
    parser.add_argument("--load-seconds", type=int, default=60)
    parser.add_argument("--settle-seconds", type=int, default=60, help="after healthy, before the idle reading")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    config, problems, _ = check(ROOT, "dev")
    if config is None:
        raise SystemExit(f"error: the dev stack's config: {problems}")
    with own_engine() as engine:
        standins.build_all(engine, config)
        print("first apply (builds the project's images) ...", flush=True)
        first = apply(engine, State(), quiet=True)
        wait_healthy(engine)
        images = project_images([(d.typ, d.inputs) for d in first.mocks.declared])
        base = standins.python_base()
        sizes = {name: added_size(engine, ref, base) for name, ref in images.items()}

        clean(engine)
        state = State()
        with Highest(engine) as highest:
            started = time.monotonic()
            run = apply(engine, state, quiet=True)
            applied = time.monotonic() - started
            wait_healthy(engine)
            healthy = time.monotonic() - started
            api_url = "http://{}:{}".format(*reachable(str(run.outputs["apiUrl"]).removeprefix("http://")))
            time.sleep(args.settle_seconds)
            idle = memory(engine)
            wrk_output = load(api_url, args.load_seconds, args.connections)
            loaded = memory(engine)

        started = time.monotonic()
        again = apply(engine, state, quiet=True)
        reapply = time.monotonic() - started
        changed = [f"{s.op} {s.name}" for s in again.steps if s.op not in {"same", "skip"}]

    figures = report(sizes, idle, loaded, highest.seen, applied, healthy, reapply, changed, wrk_output, base)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def report(
    sizes: dict[str, tuple[int, int]],
    idle: dict[str, Memory],
    loaded: dict[str, Memory],
    highest: dict[str, float],
    applied: float,
    healthy: float,
    reapply: float,
    changed: list[str],
    wrk_output: str,
    base: str,
) -> dict[str, Any]:
    print(f"\nimages: added on top of {base} (the stand-in base), and in all")
    for name, (size, added) in sorted(sizes.items()):
        line = f"  {name:<10} adds {added / MIB:7.1f} MiB  ({size / MIB:6.1f} MiB in all)"
        target = TARGETS.get(f"{name} image added")
        print(judged(added, target, line) + f" (target <= {target / MIB:.0f} MiB)" if target else line)
    print(f"  {'total':<10} adds {sum(a for _, a in sizes.values()) / MIB:7.1f} MiB")

    print("\nmemory (docker stats: usage less inactive page cache): idle, after the load, highest seen; of its limit")
    share = TARGETS["container share of limit"]
    for name in sorted(idle):
        i, after = idle[name], loaded.get(name, idle[name])
        top = max(highest.get(name, 0.0), i.used, after.used)
        line = (
            f"  {name:<32} {i.used / MIB:6.1f} {after.used / MIB:6.1f} {top / MIB:6.1f} MiB "
            f"of {i.limit / MIB:5.0f} ({top / i.limit:4.0%})"
        )
        print(judged(top / i.limit, share, line) + f" (target <= {share:.0%})")
    total_idle = sum(m.used for m in idle.values())
    total_loaded = sum(m.used for m in loaded.values())
    print(
        judged(
            total_idle,
            TARGETS["stack idle"],
            f"  {'stack':<34} {total_idle / MIB:7.1f} -> {total_loaded / MIB:7.1f} MiB",
        )
        + f" (target at idle <= {TARGETS['stack idle'] / GIB:.1f} GiB)"
    )
    requests = re.search(r"Requests/sec:\s*([0-9.]+)", wrk_output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", wrk_output)
    print(f"  the load: wrk, {requests[1] if requests else '?'} requests/s, {non_2xx[1] if non_2xx else 0} not 2xx")

    print("\ntimes")
    print(judged(healthy, TARGETS["apply to healthy"], f"  apply to every container healthy {healthy:6.1f} s")
          + f" (the apply itself {applied:.1f} s; target <= {TARGETS['apply to healthy']:.0f} s)")  # fmt: skip
    print(judged(reapply, TARGETS["no-change re-apply"], f"  no-change re-apply {reapply:6.1f} s")
          + f" (target <= {TARGETS['no-change re-apply']:.0f} s)")  # fmt: skip
    if changed:
        print(f"  the re-apply changed: {', '.join(changed)}")
    return {
        "images": {n: {"size": s, "added": a} for n, (s, a) in sizes.items()},
        "memory": {
            n: {
                "idle": idle[n].used,
                "loaded": loaded.get(n, idle[n]).used,
                "highest": highest.get(n, 0.0),
                "limit": idle[n].limit,
            }
            for n in idle
        },
        "applyToHealthySeconds": healthy,
        "applySeconds": applied,
        "reapplySeconds": reapply,
        "reapplyChanged": changed,
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except docker.errors.DockerException as exc:
        sys.exit(f"error: {exc}")
