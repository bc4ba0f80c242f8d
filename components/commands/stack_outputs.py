"""Reads `pulumi stack output --json` from a pipe, for the make recipes that need it.

Standard library only, so the recipes run with the machine's python3. Missing or
unreadable outputs stop the recipe with one line that says what to do, never a
traceback and never a half-configured command run anyway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import IO, Any

from components.commands.errors import CommandError


def read_outputs(stream: IO[str], required: Sequence[str], *, stack: str = "the stack") -> dict[str, Any]:
    text = stream.read()
    if not text.strip():
        raise CommandError(f"no outputs from {stack}: has `make up` run for it yet?")
    try:
        outputs = json.loads(text)
    except ValueError:
        raise CommandError(f"the outputs of {stack} are not JSON; pipe `pulumi stack output --json` in") from None
    if not isinstance(outputs, dict) or not outputs:
        raise CommandError(f"{stack} has no outputs: run `make up` first")
    missing = [key for key in required if key not in outputs]
    if missing:
        raise CommandError(
            f"the outputs of {stack} lack {', '.join(missing)}: run `make up` (or `pulumi up`) with this checkout first"
        )
    return outputs


def reachable(address: str) -> tuple[str, int]:
    """`host:port` from an output, as a client on this machine reaches it: a
    wildcard bind is reached on loopback."""
    host, port = address.rsplit(":", 1)
    if host in ("0.0.0.0", "::", "[::]"):  # noqa: S104 (reading an address, not binding one)
        host = "127.0.0.1"
    return host, int(port)


def role_login(outputs: Mapping[str, Any], role: str) -> tuple[str, str, str]:
    """The Postgres user of `role` (`superuser`, or a key of the `roles` output),
    the key of its password in the `secrets` output (which the local stack's
    outputs hold), and that password, or "" when they do not. KeyError for a
    role the stack does not have."""
    if role == "superuser":
        user, secret = "postgres", "postgres_superuser"
    else:
        user, secret = str(outputs["roles"][role]), f"postgres_{role}"
    return user, secret, str((outputs.get("secrets") or {}).get(secret, ""))
