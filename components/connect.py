"""Turns `pulumi stack output --json --show-secrets` into libpq environment lines.

`make psql ROLE=app` evaluates these lines in the shell that starts psql, so the
password goes from Pulumi's state to psql's environment without ever being an
argument on a command line or a line in the shell history. A stack with its own
CA (the local one) is connected to with `verify-full`: the CA is written to a
file in the given directory, since libpq reads it from a file.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from components.stack_outputs import reachable, read_outputs, role_login

REQUIRED = ("postgresEndpoint", "postgresDatabase", "roles", "secrets")
REDIS_REQUIRED = ("redisEndpoint", "redisUser", "caCertificate", "secrets")


def libpq_env(outputs: dict[str, Any], role: str, ca_file: str | None = None) -> dict[str, str]:
    host, port = reachable(str(outputs["postgresEndpoint"]))
    try:
        user, _secret, password = role_login(outputs, role)
    except KeyError:
        raise SystemExit(
            f"error: unknown role {role!r}; choose superuser or one of {sorted(outputs['roles'])}"
        ) from None
    if not password:
        # The AWS stacks keep the master password in RDS's own secret, not in the outputs.
        raise SystemExit(
            f"error: this stack's outputs hold no password for {role}; read it from where the stack keeps it"
        )
    return {
        "PGHOST": host,
        "PGPORT": str(port),
        "PGUSER": user,
        "PGPASSWORD": password,
        "PGDATABASE": str(outputs["postgresDatabase"]),
        **({} if ca_file is None else {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": ca_file}),
    }


def write_ca(outputs: dict[str, Any], directory: Path, stack: str) -> str | None:
    """The stack's CA as a file libpq can read, if the stack has one."""
    pem = outputs.get("caCertificate")
    if not pem:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stack}-ca.crt"
    path.write_text(str(pem))
    return str(path)


def redis_env(outputs: dict[str, Any], ca_file: str | None) -> dict[str, str]:
    """redis-cli's settings as the app's ACL user; the password in REDISCLI_AUTH,
    which redis-cli reads instead of an -a argument."""
    if not outputs.get("redisEndpoint") or ca_file is None:
        raise SystemExit(
            "error: this stack's outputs hold no local Redis endpoint: make redis-cli is the local stack's"
        )
    host, port = reachable(str(outputs["redisEndpoint"]))
    password = str((outputs.get("secrets") or {}).get("redis_app", ""))
    if not password:
        raise SystemExit("error: this stack's outputs hold no password for the Redis app user (secrets.redis_app)")
    return {
        "REDIS_HOST": host,
        "REDIS_PORT": str(port),
        "REDIS_USER": str(outputs["redisUser"]),
        "REDIS_CACERT": ca_file,
        "REDISCLI_AUTH": password,
    }


def main() -> None:
    """`python3 -m components.connect ROLE|redis [STACK [CA_DIR]]`, outputs on stdin."""
    role = sys.argv[1] if len(sys.argv) > 1 else "app"
    stack = f"stack {sys.argv[2]!r}" if len(sys.argv) > 2 else "the stack"
    outputs = read_outputs(sys.stdin, REDIS_REQUIRED if role == "redis" else REQUIRED, stack=stack)
    ca_dir = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(".pulumi-state")
    ca_file = write_ca(outputs, ca_dir, sys.argv[2] if len(sys.argv) > 2 else "stack")
    env = redis_env(outputs, ca_file) if role == "redis" else libpq_env(outputs, role, ca_file)
    sys.stdout.write("".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items()))


if __name__ == "__main__":
    main()
