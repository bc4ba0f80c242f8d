"""Opens the SSM port-forward to the prod database through the admin bastion.

`make tunnel STACK=prod ...` pipes `pulumi stack output --json` in; this prints
the `aws ssm start-session` command line, which the recipe's shell then runs (the
same `aws` it checked for), forwarding 127.0.0.1:<port> to the RDS endpoint until
interrupted. Point `aws.dbAdminHost`/`dbAdminPort` at the same
local address and `pulumi up` reaches the database through it.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

from components.commands.errors import CommandError
from components.commands.stack_outputs import read_outputs

DEFAULT_LOCAL_PORT = 15432


def session_command(outputs: dict[str, Any], local_port: int) -> list[str]:
    bastion = outputs.get("adminBastionId")
    if not bastion:
        raise CommandError("this stack has no admin bastion; set wondernest:aws.adminBastion true and run pulumi up")
    host, port = str(outputs["postgresEndpoint"]).rsplit(":", 1)
    parameters = {"host": [host], "portNumber": [port], "localPortNumber": [str(local_port)]}
    return [
        "aws",
        "ssm",
        "start-session",
        "--target",
        str(bastion),
        "--document-name",
        "AWS-StartPortForwardingSessionToRemoteHost",
        "--parameters",
        json.dumps(parameters, separators=(",", ":")),
    ]


def main() -> None:
    """`python3 -m components.commands.tunnel [PORT [STACK]]`, outputs on stdin."""
    if len(sys.argv) > 1 and not sys.argv[1].isdigit():
        raise CommandError(f"{sys.argv[1]!r} is not a port number (make tunnel TUNNEL_PORT=15432)")
    local_port = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_LOCAL_PORT
    stack = f"stack {sys.argv[2]!r}" if len(sys.argv) > 2 else "the stack"
    command = session_command(read_outputs(sys.stdin, ("postgresEndpoint",), stack=stack), local_port)
    sys.stdout.write(shlex.join(command) + "\n")


if __name__ == "__main__":
    main()
