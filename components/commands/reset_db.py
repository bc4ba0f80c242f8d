"""`make reset-db`: the local stack's database emptied and rebuilt through the
stack, after a backup proven by a restore.

    python -m components.commands.reset_db dev [--yes]

1. Reads the stack's outputs and state with the Pulumi CLI (the caller sets the
   backend and passphrase, as `make` does) and asks for the database's name
   to be typed, unless `--yes`.
2. Takes a backup with the backups service and verifies it by restoring it:
   if either fails, nothing has changed.
3. Stops the API, drops the database (its sessions ended) and creates it
   again, empty, as the image created it.
4. Refreshes the stack's in-database objects (schemas, grants, the database's
   access, extensions), which the refresh finds gone, and `pulumi up` on them
   alone puts them back; the roles live in the cluster and stay.
5. Runs the migrations job again, then starts the API.

Only the database the stack's config and outputs both name is touched. After
the drop, a failure prints the verified backup to restore from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from components.commands.check_config import StackFileError, check
from components.commands.errors import CommandError
from components.commands.stack_outputs import reachable, role_login
from components.model.naming import Names
from components.postgres.provider import connect

IN_DATABASE = tuple(
    f"pulumi-python:dynamic/postgres:{kind}" for kind in ("Schema", "SchemaGrant", "DatabaseAccess", "Extension")
)
"""The stack's objects that live inside the database, and so go with it."""


def _run(command: Sequence[str], what: str, *, show: bool = False) -> str:
    """A command's output; on failure, what failed and its last line of error."""
    if show:
        print(f"+ {' '.join(command)}", flush=True)
    result = subprocess.run(list(command), capture_output=not show, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()
        raise CommandError(f"{what} failed (exit {result.returncode}){': ' + detail[-1] if detail else ''}")
    return result.stdout or ""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise CommandError(f"{what} did not answer with JSON") from None


def in_database_urns(export: dict[str, Any]) -> list[str]:
    resources = (export.get("deployment") or {}).get("resources") or []
    return sorted(str(r["urn"]) for r in resources if r.get("type") in IN_DATABASE)


def recreate(outputs: dict[str, Any], database: str) -> None:
    """DROP and CREATE as the superuser, over verify-full to the stack's CA."""
    host, port = reachable(str(outputs["postgresEndpoint"]))
    user, _secret, password = role_login(outputs, "superuser")
    admin = {"host": host, "port": port, "user": user, "password": password, "database": "postgres"}
    with connect({**admin, "sslmode": "verify-full", "ca_pem": outputs["caCertificate"], "wait_seconds": 0}) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _wait_healthy(container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = _run(
            ["docker", "inspect", "--format", "{{.State.Health.Status}}", container], f"inspecting {container}"
        )
        if state.strip() == "healthy":
            return
        if time.monotonic() > deadline:
            raise CommandError(f"{container} is {state.strip()} after {timeout:.0f} s: see make logs SERVICE=api")
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.commands.reset_db", description=__doc__.split("\n")[0])
    parser.add_argument("stack", help="the local stack, e.g. dev")
    parser.add_argument("--yes", action="store_true", help="do not ask for the database's name (make reset-db FORCE=1)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project directory (default: here)")
    args = parser.parse_args(argv)
    stack = args.stack
    try:
        cfg, problems, _ = check(args.root, stack)
    except StackFileError as exc:
        raise CommandError(str(exc)) from None
    if cfg is None:
        raise CommandError(f"Pulumi.{stack}.yaml is not valid: {'; '.join(problems) or 'encrypted values'}")
    if cfg.target != "docker":
        raise CommandError(
            f"{stack} is an AWS stack: its database is restored with make aws-restore or a point-in-time "
            'restore (docs/aws.md, "Restoring")'
        )
    names = Names(app=cfg.app_name, stack=stack)
    database = names.database
    prefix = names.resource("")

    outputs = _json(
        _run(["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack], "reading the outputs"),
        "pulumi stack output",
    )
    missing = [k for k in ("postgresEndpoint", "postgresDatabase", "caCertificate", "secrets") if k not in outputs]
    if missing or not role_login(outputs, "superuser")[2]:
        raise CommandError(
            f"the outputs of {stack} lack {', '.join(missing) or 'secrets.postgres_superuser'}: run make up first"
        )
    if outputs["postgresDatabase"] != database:
        raise CommandError(
            f"the stack's outputs name database {outputs['postgresDatabase']!r}, its config {database!r}: "
            "run make up first; nothing changed"
        )
    urns = in_database_urns(
        _json(_run(["pulumi", "stack", "export", "--stack", stack], "reading the state"), "pulumi stack export")
    )
    if not urns:
        raise CommandError(f"the state of {stack} holds no schemas or grants: run make up first; nothing changed")

    print(f"This drops database {database!r} of stack {stack!r} with everything in it, after a verified backup,")
    print("then rebuilds its schemas, grants and tables through the stack. The roles and the other services stay.")
    if not args.yes:
        try:
            answer = input(f"Type the database's name ({database}) to go on: ")
        except EOFError:
            answer = ""
        if answer.strip() != database:
            raise CommandError("not confirmed; nothing changed")

    backups = f"{prefix}backups"
    tool = ["docker", "exec", backups, "python", "-m", "wondernest_backup"]
    try:
        backup = _json(_run([*tool, "run"], "the backup before the reset"), "the backup")["backup"]
        _run([*tool, "verify", str(backup)], f"verifying backup {backup}")
    except CommandError as exc:
        raise CommandError(f"{exc.message}; nothing changed") from None
    print(f"backup {backup}: taken and verified by a restore", flush=True)

    api = f"{prefix}api"
    _run(["docker", "stop", api], f"stopping {api}", show=True)
    try:
        recreate(outputs, database)
        print(f"database {database!r}: dropped and created again, empty", flush=True)
        targets = [arg for urn in urns for arg in ("--target", urn)]
        policies = ["--policy-pack", "policies", "--policy-pack-config", f"policies/config/{stack}.json"]
        _run(["pulumi", "refresh", "--yes", "--stack", stack, *targets], "refreshing the database's objects", show=True)
        _run(
            ["pulumi", "up", "--yes", "--stack", stack, *targets, *policies],
            "re-creating the database's objects",
            show=True,
        )
        _run(["docker", "start", "--attach", f"{prefix}migrations"], "the migrations", show=True)
        # Still inside: an API that does not come back must not lose the backup's name either.
        _run(["docker", "start", api], f"starting {api}", show=True)
        _wait_healthy(api)
    except (CommandError, psycopg.Error) as exc:
        message = exc.message if isinstance(exc, CommandError) else f"database: {exc}"
        raise CommandError(
            f"{message}\nThe API may be stopped. What the database held is backup {backup}: once `make up` has "
            f"run, restore it into {database!r} as docs/runbooks.md (Restoring) shows, with `restore {backup} "
            f"--target-db {database} --force`."
        ) from None
    print(f"done: {database!r} is empty and migrated; what it held is in backup {backup}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
