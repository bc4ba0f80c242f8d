"""Checks a running stack from its outputs, either target:

    pulumi stack output --json --show-secrets | python -m components.commands.verify dev
    python -m components.commands.verify prod --outputs prod.json --postgres-via 127.0.0.1:15432 --ca-file rds.pem

It replaces the guide's health-check, validate-setup and `run-app --check-only`:
the API's readiness (and, with --auth, a register/login/me/logout round trip),
every Prometheus target up and rule healthy, the Watchdog at Alertmanager,
Grafana's health, a restore-verified backup within the alert's limit, each
Postgres role logging in, every role, schema, grant and extension exactly as
declared, and the Redis app user. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from components.commands.check_config import StackFileError, check
from components.commands.errors import CommandError
from components.commands.stack_outputs import read_outputs
from components.commands.verify import data, services
from components.commands.verify.access import (
    Access,
    SigV4,
    aws_credentials,
    endpoint,
    local_credentials,
    workspace_region,
)
from components.commands.verify.report import as_json, table
from components.commands.verify.results import CheckFailed, Probe, run_all
from components.model.backups import max_backup_age_seconds
from components.model.database import database_spec
from components.model.naming import Names

REQUIRED = ("apiUrl", "prometheusUrl", "alertmanagerUrl", "grafanaUrl", "postgresEndpoint", "postgresDatabase", "roles")


def probes(access: Access) -> list[Probe]:
    found = [
        Probe("api", "ready", partial(services.api_ready, access)),
        Probe("api", "auth round trip", partial(services.api_auth_round_trip, access)),
        Probe("prometheus", "targets up", partial(services.targets_up, access)),
        Probe("prometheus", "rules healthy", partial(services.rules_healthy, access)),
        Probe("prometheus", "no page firing", partial(services.no_page_firing, access)),
        Probe("alertmanager", "Watchdog delivered", partial(services.watchdog_delivered, access)),
        Probe("grafana", "health", partial(services.grafana_healthy, access)),
        Probe("backups", "verified backup fresh", partial(services.backup_fresh, access)),
    ]
    found += [
        Probe("postgres", f"{key} logs in", partial(data.role_logs_in, access, key))
        for key in sorted(access.outputs["roles"])
    ]
    found += [
        Probe("postgres", f"{kind} as declared", partial(data.objects_as_declared, access, kind))
        for kind in data.OBJECT_KINDS
    ]
    found.append(Probe("redis", "app user", partial(data.redis_app_user, access)))
    return found


def _host_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:15432")
    return value


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m components.commands.verify", description=__doc__.split("\n")[0])
    parser.add_argument("stack", help="the stack the outputs are from; its Pulumi.<stack>.yaml says what to expect")
    parser.add_argument("--outputs", default="-", help="`pulumi stack output --json --show-secrets` (default: stdin)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds each check may take (default 10)")
    parser.add_argument(
        "--auth", action="store_true", help="also log in, read and log out with the stack's verify account"
    )
    parser.add_argument(
        "--postgres-via", metavar="HOST:PORT", type=_host_port, help="reach the database through a tunnel (AWS)"
    )
    parser.add_argument("--ca-file", help="the CA bundle the AWS database's certificate chains to")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project directory (default: here)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


@contextlib.contextmanager
def _ca_file(outputs: dict[str, Any], given: str | None) -> Iterator[str | None]:
    """The local stack's own CA as a file for libpq and redis-py, removed afterwards."""
    pem = outputs.get("caCertificate")
    if given is not None or not pem:
        yield given
        return
    with tempfile.NamedTemporaryFile("w", suffix=".pem", prefix="verify-ca-") as handle:
        handle.write(str(pem))
        handle.flush()
        yield handle.name


def _access(args: argparse.Namespace, outputs: dict[str, Any], ca_file: str | None) -> Access:
    try:
        cfg, problems, _ = check(args.root, args.stack)
    except StackFileError as exc:
        raise CommandError(f"{exc}") from None
    if cfg is None:
        raise CommandError(f"Pulumi.{args.stack}.yaml is not valid: {'; '.join(problems) or 'encrypted values'}")
    names = Names(app=cfg.app_name, stack=args.stack)
    common: dict[str, Any] = {
        "outputs": outputs,
        "backup_max_age_seconds": max_backup_age_seconds(cfg.backups.schedule),
        "timeout": args.timeout,
        "ca_file": ca_file,
        "auth_round_trip": args.auth,
        "app": cfg.app,
    }
    if cfg.target == "aws":
        try:
            region = workspace_region(str(outputs["prometheusUrl"]))
        except CheckFailed as exc:
            raise CommandError(f"the outputs of {args.stack!r} are not an AWS stack's: {exc}") from None
        return Access(
            target="aws",
            spec=database_spec(names, cfg.postgres.schemas).with_alternating_users(),
            admin_is_superuser=False,
            credentials=aws_credentials(outputs, args.timeout),
            postgres=None if args.postgres_via is None else endpoint(outputs["postgresEndpoint"], args.postgres_via),
            redis=None,
            http_auth=SigV4(region),
            **common,
        )
    return Access(
        target="docker",
        spec=database_spec(names, cfg.postgres.schemas),
        admin_is_superuser=True,
        credentials=local_credentials(outputs),
        postgres=endpoint(outputs["postgresEndpoint"]),
        redis=endpoint(outputs["redisEndpoint"]) if outputs.get("redisEndpoint") else None,
        **common,
    )


def _read(path: str, stack: str) -> dict[str, Any]:
    if path == "-":
        return read_outputs(sys.stdin, REQUIRED, stack=f"stack {stack!r}")
    try:
        with open(path, encoding="utf-8") as stream:
            return read_outputs(stream, REQUIRED, stack=f"stack {stack!r}")
    except OSError as exc:
        raise CommandError(f"cannot read the outputs from {path}: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    outputs = _read(args.outputs, args.stack)
    with _ca_file(outputs, args.ca_file) as ca_file:
        access = _access(args, outputs, ca_file)
        results = run_all(probes(access), args.timeout)
    if args.json:
        sys.stdout.write(as_json(results))
    else:
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        sys.stdout.write(table(results, colour=colour))
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
