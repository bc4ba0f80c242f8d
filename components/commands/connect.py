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

from components.commands.errors import CommandError
from components.commands.stack_outputs import reachable, read_outputs, role_login

REQUIRED = ("postgresEndpoint", "postgresDatabase", "roles", "secrets")
REDIS_REQUIRED = ("redisEndpoint", "redisUser", "caCertificate", "secrets")


def libpq_env(outputs: dict[str, Any], role: str, ca_file: str | None = None) -> dict[str, str]:
    host, port = reachable(str(outputs["postgresEndpoint"]))
    try:
        user, _secret, password = role_login(outputs, role)
    except KeyError:
        raise CommandError(f"unknown role {role!r}; choose superuser or one of {sorted(outputs['roles'])}") from None
    if not password:
        # The AWS stacks keep the master password in RDS's own secret, not in the outputs.
        raise CommandError(f"this stack's outputs hold no password for {role}; read it from where the stack keeps it")
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
        raise CommandError("this stack's outputs hold no local Redis endpoint: make redis-cli is the local stack's")
    host, port = reachable(str(outputs["redisEndpoint"]))
    password = str((outputs.get("secrets") or {}).get("redis_app", ""))
    if not password:
        raise CommandError("this stack's outputs hold no password for the Redis app user (secrets.redis_app)")
    return {
        "REDIS_HOST": host,
        "REDIS_PORT": str(port),
        "REDIS_USER": str(outputs["redisUser"]),
        "REDIS_CACERT": ca_file,
        "REDISCLI_AUTH": password,
    }


# The API run from the checkout beside the stack's own: other ports than the
# container's published 8080 (and its metrics port).
CHECKOUT_PORT = 8081
CHECKOUT_METRICS_PORT = 9103


def app_env(outputs: dict[str, Any], ca_file: str | None, secrets_dir: Path) -> dict[str, str]:
    """The bundled API's settings to run it from the checkout against the local
    stack's Postgres and Redis, as the app role and the app's Redis user: the
    secrets as files (`*_FILE`) in a directory only the user can read."""
    if ca_file is None or not outputs.get("redisEndpoint"):
        raise CommandError("this stack's outputs hold no local Postgres and Redis: make app-env is the local stack's")
    secrets = outputs.get("secrets") or {}
    wanted = {"db-password": "postgres_app", "redis-password": "redis_app", "jwt-secret": "jwt_signing_key"}
    missing = [key for key in wanted.values() if not secrets.get(key)]
    if missing:
        raise CommandError(f"this stack's outputs lack secrets.{', secrets.'.join(missing)}: run make up first")
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    files = {}
    for file, key in wanted.items():
        path = secrets_dir / file
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(str(secrets[key]))
        files[file] = str(path)
    db_host, db_port = reachable(str(outputs["postgresEndpoint"]))
    redis_host, redis_port = reachable(str(outputs["redisEndpoint"]))
    return {
        "DB_HOST": db_host,
        "DB_PORT": str(db_port),
        "DB_NAME": str(outputs["postgresDatabase"]),
        "DB_USER": str(outputs["roles"]["app"]),
        "DB_PASSWORD_FILE": files["db-password"],
        "DB_SSLMODE": "verify-full",
        "DB_SSLROOTCERT": ca_file,
        "REDIS_HOST": redis_host,
        "REDIS_PORT": str(redis_port),
        "REDIS_USER": str(outputs["redisUser"]),
        "REDIS_PASSWORD_FILE": files["redis-password"],
        "REDIS_TLS": "true",
        "REDIS_CA_FILE": ca_file,
        "JWT_SECRET_FILE": files["jwt-secret"],
        "PORT": str(CHECKOUT_PORT),
        "METRICS_PORT": str(CHECKOUT_METRICS_PORT),
    }


def main() -> None:
    """`python3 -m components.commands.connect ROLE|redis|app-env [STACK [STATE_DIR]]`, outputs on stdin."""
    role = sys.argv[1] if len(sys.argv) > 1 else "app"
    name = sys.argv[2] if len(sys.argv) > 2 else "stack"
    stack = f"stack {sys.argv[2]!r}" if len(sys.argv) > 2 else "the stack"
    required = {"redis": REDIS_REQUIRED, "app-env": (*REQUIRED, *REDIS_REQUIRED)}.get(role, REQUIRED)
    outputs = read_outputs(sys.stdin, tuple(dict.fromkeys(required)), stack=stack)
    ca_dir = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(".pulumi-state")
    ca_file = write_ca(outputs, ca_dir, name)
    if role == "redis":
        env = redis_env(outputs, ca_file)
    elif role == "app-env":
        env = app_env(outputs, ca_file, ca_dir / f"{name}-app-secrets")
    else:
        env = libpq_env(outputs, role, ca_file)
    sys.stdout.write("".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items()))


if __name__ == "__main__":
    main()
