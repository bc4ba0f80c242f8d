"""`make status`: every container the local stack declares, as Docker has it.

Reads the state (`pulumi stack export` on stdin) for what was declared and
asks the Docker CLI how each container is: a service must be running and,
where it has a healthcheck, healthy; a job (run once by `pulumi up`) must
have exited 0. A container stopped by hand, gone, or unhealthy is named, and
the command exits 1. `pulumi up` compares inputs, so it never notices such a
container by itself; `make up` refreshes first, and the provider starts or
re-creates it.

    pulumi stack export --stack dev | python -m components.commands.status
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.commands.errors import CommandError

CONTAINER = "docker:index/container:Container"


@dataclass(frozen=True)
class Declared:
    name: str
    job: bool
    """Run to its end by `pulumi up` (`attach`, not `mustRun`), not a service."""


@dataclass(frozen=True)
class Seen:
    name: str
    state: str
    """What Docker says, or `missing`."""
    health: str
    problem: str | None


def declared(export: Mapping[str, Any]) -> list[Declared]:
    """The containers in a `pulumi stack export` document."""
    resources = (export.get("deployment") or {}).get("resources") or []
    found = []
    for resource in resources:
        if resource.get("type") != CONTAINER:
            continue
        inputs = resource.get("inputs") or {}
        name = (resource.get("outputs") or {}).get("name") or inputs.get("name")
        if name:
            found.append(Declared(str(name), inputs.get("attach") is True and inputs.get("mustRun") is False))
    return sorted(found, key=lambda d: d.name)


def inspect(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`docker inspect` of those that exist (it names the others on stderr)."""
    if not names:
        return {}
    result = subprocess.run(["docker", "inspect", *names], capture_output=True, text=True, check=False)
    try:
        found = json.loads(result.stdout or "[]")
    except ValueError:
        raise CommandError(f"docker inspect answered: {(result.stderr or result.stdout).strip()}") from None
    if result.returncode != 0 and not found and "No such" not in result.stderr:
        raise CommandError(f"docker inspect failed: {result.stderr.strip()}")
    return {str(c["Name"]).lstrip("/"): c for c in found}


def judge(container: Declared, found: Mapping[str, Any] | None) -> Seen:
    if found is None:
        return Seen(container.name, "missing", "-", "declared but not there: `make up` re-creates it")
    state = found["State"]
    status = str(state.get("Status"))
    health = str((state.get("Health") or {}).get("Status") or "-")
    if container.job:
        code = state.get("ExitCode")
        if status == "running":
            return Seen(container.name, status, health, None)
        problem = None if status == "exited" and code == 0 else f"the job ended {status}, exit code {code}"
        return Seen(container.name, f"{status} ({code})", health, problem)
    if status != "running":
        return Seen(container.name, status, health, f"{status}, not running: `make up` starts it")
    if health not in ("healthy", "-"):
        return Seen(container.name, status, health, f"running but {health}: see `make logs SERVICE=...`")
    return Seen(container.name, status, health, None)


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    try:
        export = json.load(sys.stdin)
    except ValueError:
        raise CommandError("no stack state on stdin (`pulumi stack export`): has `make up` run yet?") from None
    containers = declared(export)
    if not containers:
        raise CommandError("the stack declares no container: has `make up` run yet?")
    found = inspect([c.name for c in containers])
    seen = [judge(c, found.get(c.name)) for c in containers]
    width = max(len(s.name) for s in seen)
    print(f"{'container':{width}}  {'state':16}  {'health':10}  problem")
    for s in seen:
        print(f"{s.name:{width}}  {s.state:16}  {s.health:10}  {s.problem or ''}".rstrip())
    problems = [s for s in seen if s.problem]
    if problems:
        print(f"{len(problems)} of {len(seen)} containers not as declared: {', '.join(s.name for s in problems)}")
        return 1
    print(f"all {len(seen)} containers as declared")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
