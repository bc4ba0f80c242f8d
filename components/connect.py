"""Turns `pulumi stack output --json --show-secrets` into libpq environment lines.

`make psql ROLE=app` evaluates these lines in the shell that starts psql, so the
password goes from Pulumi's state to psql's environment without ever being an
argument on a command line or a line in the shell history.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any


def libpq_env(outputs: dict[str, Any], role: str) -> dict[str, str]:
    host, port = str(outputs["postgresEndpoint"]).rsplit(":", 1)
    secrets = outputs["secrets"]
    if role == "superuser":
        user, password = "postgres", secrets["postgres_superuser"]
    elif role in outputs["roles"]:
        user, password = outputs["roles"][role], secrets[f"postgres_{role}"]
    else:
        raise SystemExit(f"unknown role {role!r}; choose superuser or one of {sorted(outputs['roles'])}")
    return {
        "PGHOST": host if host != "0.0.0.0" else "127.0.0.1",  # noqa: S104 (reading, not binding)
        "PGPORT": port,
        "PGUSER": user,
        "PGPASSWORD": password,
        "PGDATABASE": str(outputs["postgresDatabase"]),
    }


def main() -> None:
    env = libpq_env(json.load(sys.stdin), sys.argv[1] if len(sys.argv) > 1 else "app")
    sys.stdout.write("".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items()))


if __name__ == "__main__":
    main()
