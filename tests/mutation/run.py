"""Mutation testing of the code that decides security and data safety.

`make mutation` runs mutmut (pinned in requirements-dev.txt) over each area
below with the tests that judge it, and prints killed and surviving mutants
per module; `make mutation-sample` runs one mutant of every function of each
area, small enough for CI. A mutant is a small change to one line (a comparison
flipped, a constant changed, a call dropped); a test suite that still passes
with it has not checked that line.

mutmut names a module by its path from the directory it runs in, and the
packages under app/ and policies/ are imported by their own names, so each
area runs in a copy of the checkout (`.mutation/<area>/`) with its package
placed at the top. Lines whose mutants cannot change behaviour carry
`# pragma: no mutate` with the reason beside them (docs/testing.md).

    python -m tests.mutation.run [AREA ...] [--sample N] [--module NAME ...] [--jobs N] [--require SHARE]

`--module roles` runs only the mutants of the area's modules of that name
(`components.postgres.roles`): an area of several thousand mutants can be run
a module at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.servers import TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mutation"
SKIP = {"venv", ".git", ".e2e", ".tools", ".mutation", "mutants", "__pycache__", ".pytest_cache", ".mypy_cache",
        ".ruff_cache", ".pulumi-state", "node_modules"}  # fmt: skip
# What mutmut reports, and what counts as a detected mutant.
DETECTED = {"killed", "timeout", "segfault", "suspicious"}


@dataclass(frozen=True)
class Area:
    name: str
    home: str
    """The directory the package lives in, in the checkout ("." for components)."""
    package: str
    files: tuple[str, ...]
    """Paths inside the package."""
    tests: tuple[str, ...]

    def modules(self) -> dict[str, str]:
        """Each module by its own name: `roles` → `components.postgres.roles`."""
        return {Path(path).stem: f"{self.package}.{path.removesuffix('.py').replace('/', '.')}" for path in self.files}


AREAS = (
    Area(
        "api",
        "app",
        "wondernest_api",
        ("security.py", "ratelimit.py", "settings.py"),
        (
            "app/tests/test_api_tokens.py",
            "app/tests/test_api_ratelimit.py",
            "app/tests/test_api_settings.py",
            "app/tests/test_api_auth.py",
        ),
    ),
    Area(
        "policies",
        "policies",
        "wondernest_policies",
        (
            "model.py",
            "docker.py",
            "platform.py",
            "aws.py",
            "aws_network.py",
            "policy_documents.py",
            "credentials.py",
            "secret_values.py",
            "task_roles.py",
            "registry.py",
        ),
        (
            "tests/test_policies.py",
            "tests/test_policies_aws.py",
            "tests/test_policies_iam.py",
            "tests/test_policy_registry.py",
            "tests/test_secret_values.py",
        ),
    ),
    Area(
        "postgres",
        ".",
        "components",
        (
            "postgres/base.py",
            "postgres/roles.py",
            "postgres/schemas.py",
            "postgres/grants.py",
            "postgres/access.py",
            "postgres/extensions.py",
            "postgres/backdoors.py",
            "postgres/withheld.py",
        ),
        (
            "tests/test_postgres_provider.py",
            "tests/test_provider_checks.py",
            "tests/test_postgres_backdoors.py",
            "tests/test_postgres_withheld.py",
            # Rotated roles' passwords are not drift; the admin's password read from its secret.
            "tests/test_alternating_users.py",
            "tests/test_admin_secret.py",
            # The admin connection verified against the stack's CA (verify-full), through a tunnel too.
            "tests/test_tls.py",
        ),
    ),
    Area(
        "backups",
        "app",
        "wondernest_backup",
        ("backup.py", "retention.py", "imports.py"),
        (
            "app/tests/test_backup.py",
            "app/tests/test_backup_retention.py",
            "app/tests/test_backup_service.py",
            "tests/test_existing_data.py",
        ),
    ),
    Area("alerts", ".", "components", ("model/alerts.py",), ("tests/test_alert_rules.py",)),
)


def workspace(area: Area) -> Path:
    """A fresh copy of the checkout with the area's package at the top."""
    place = WORK / area.name
    if place.exists():
        shutil.rmtree(place)
    place.mkdir(parents=True)
    archive = WORK / f"{area.name}.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(ROOT.iterdir()):
            if entry.name not in SKIP:
                tar.add(entry, arcname=entry.name, filter=lambda info: None if _skipped(info.name) else info)
    with tarfile.open(archive) as tar:
        tar.extractall(place, filter="data")
    archive.unlink()
    if area.home != ".":
        shutil.copytree(place / area.home / area.package, place / area.package)
    sources = [f"{area.package}/{path}" for path in area.files]
    copied = sorted(e.name for e in place.iterdir() if e.name not in {area.package, "tests", "pyproject.toml"})
    settings = {
        "source_paths": [area.package],
        "only_mutate": sources,
        "also_copy": copied,
        "pytest_add_cli_args_test_selection": list(area.tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-q"],
    }
    pyproject = place / "pyproject.toml"
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    pyproject.write_text(pyproject.read_text() + "\n[tool.mutmut]\n" + "\n".join(lines) + "\n")
    return place


def _skipped(name: str) -> bool:
    return any(part in SKIP for part in Path(name).parts)


def mutmut(place: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    # Every PostgreSQL the area's tests start is a copy of one cluster made
    # once (tests/servers.py), not an initdb per server of every mutant.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", TEMPLATE: str(place / "pg-template")}
    return subprocess.run(command, cwd=place, env=env, capture_output=True, text=True, check=False)


_RESULT = re.compile(r"^\s*(?P<name>\S+__mutmut_\d+): (?P<status>.+)$")


def statuses(place: Path) -> dict[str, str]:
    listed = mutmut(place, "results", "--all", "true").stdout
    return {m["name"]: m["status"].strip() for m in map(_RESULT.match, listed.splitlines()) if m}


def module_of(mutant: str) -> str:
    """`wondernest_policies.docker.x_rule__mutmut_3` → `wondernest_policies.docker`."""
    return mutant.rsplit(".", 1)[0]


def run_area(area: Area, *, jobs: int, sample: int | None, modules: tuple[str, ...] = ()) -> dict[str, Counter[str]]:
    """With `sample`, only the sample-th mutant of every function: the same
    mutants for the same code, spread over every function of the area. With
    `modules`, only those modules' mutants."""
    started = time.monotonic()
    place = workspace(area)
    (place / "pg-template").mkdir()
    prefixes = [f"{area.modules()[module]}." for module in modules] or [f"{area.package}."]
    suffix = "" if sample is None else f"__mutmut_{sample}"
    names = [f"{prefix}*{suffix or '__mutmut_*'}" for prefix in prefixes] if modules or sample is not None else []
    result = mutmut(place, "run", "--max-children", str(jobs), *names)
    (place / "mutmut-run.log").write_text(result.stdout + result.stderr)
    if result.returncode not in (0, 1):
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"error: mutmut failed on area {area.name} (exit {result.returncode})")
    shutil.rmtree(place / "pg-template", ignore_errors=True)
    found = {
        name: status
        for name, status in statuses(place).items()
        if name.startswith(tuple(prefixes)) and name.endswith(suffix)
    }
    if not found:
        raise SystemExit(f"error: no mutant of area {area.name} was judged; see {place / 'mutmut-run.log'}")
    per_module: dict[str, Counter[str]] = {}
    for name, status in found.items():
        per_module.setdefault(module_of(name), Counter())[status] += 1
    survivors = sorted(name for name, status in found.items() if status not in DETECTED)
    report = place / "survivors.txt"
    report.write_text("".join(mutmut(place, "show", name).stdout + "\n" for name in survivors))
    print(f"\n{area.name}: {len(found)} mutants in {time.monotonic() - started:.0f} s; survivors in {report}")
    return per_module


def table(results: dict[str, dict[str, Counter[str]]]) -> tuple[str, int, int]:
    rows = ["| area | module | mutants | detected | survived | no tests |", "| --- | --- | --- | --- | --- | --- |"]
    total = detected = 0
    for area, modules in results.items():
        for module, counts in sorted(modules.items()):
            n = sum(counts.values())
            d = sum(counts[s] for s in DETECTED)
            rows.append(f"| {area} | {module} | {n} | {d} | {counts['survived']} | {counts['no tests']} |")
            total += n
            detected += d
    return "\n".join(rows), total, detected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation.run", description=__doc__.split("\n")[0])
    parser.add_argument("areas", nargs="*", choices=[a.name for a in AREAS], help="default: every area")
    parser.add_argument("--sample", type=int, default=None, help="only the N-th mutant of every function")
    parser.add_argument("--module", action="append", default=[], help="only this module of the area (repeatable)")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--require", type=float, default=None, help="fail below this share detected (0-1)")
    args = parser.parse_args(argv)
    chosen = [a for a in AREAS if not args.areas or a.name in args.areas]
    for area in chosen:
        unknown = sorted(set(args.module) - set(area.modules()))
        if unknown:
            known = ", ".join(area.modules())
            parser.error(f"area {area.name} has no module {', '.join(unknown)}; its modules: {known}")
    results = {
        area.name: run_area(area, jobs=args.jobs, sample=args.sample, modules=tuple(args.module)) for area in chosen
    }
    text, total, detected = table(results)
    print(f"\n{text}\n\n{detected} of {total} mutants detected ({detected / max(1, total):.1%})")
    if args.require is not None and detected < args.require * total:
        print(f"error: below the required {args.require:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
