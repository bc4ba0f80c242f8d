"""Turns `pulumi stack output --json --show-secrets` into libpq environment lines.

`make psql ROLE=app` evaluates these lines in the shell that starts psql, so the
password goes from Pulumi's state to psql's environment without ever being an
argument on a command line or a line in the shell history.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from components.stack_outputs import read_outputs

REQUIRED = ("postgresEndpoint", "postgresDatabase", "roles", "secrets")


def libpq_env(outputs: dict[str, Any], role: str) -> dict[str, str]:
    host, port = str(outputs["postgresEndpoint"]).rsplit(":", 1)
    secrets = outputs["secrets"]
    if role == "superuser":
        user, secret = "postgres", "postgres_superuser"
    elif role in outputs["roles"]:
        user, secret = outputs["roles"][role], f"postgres_{role}"
    else:
        raise SystemExit(f"error: unknown role {role!r}; choose superuser or one of {sorted(outputs['roles'])}")
    if secret not in secrets:
        # The AWS stacks keep the master password in RDS's own secret, not in the outputs.
        raise SystemExit(
            f"error: this stack's outputs hold no password for {role}; read it from where the stack keeps it"
        )
    password = secrets[secret]
    return {
        "PGHOST": host if host != "0.0.0.0" else "127.0.0.1",  # noqa: S104 (reading, not binding)
        "PGPORT": port,
        "PGUSER": user,
        "PGPASSWORD": password,
        "PGDATABASE": str(outputs["postgresDatabase"]),
    }


def main() -> None:
    """`python3 -m components.connect ROLE [STACK]`, outputs on stdin."""
    role = sys.argv[1] if len(sys.argv) > 1 else "app"
    stack = f"stack {sys.argv[2]!r}" if len(sys.argv) > 2 else "the stack"
    env = libpq_env(read_outputs(sys.stdin, REQUIRED, stack=stack), role)
    sys.stdout.write("".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items()))


if __name__ == "__main__":
    main()
