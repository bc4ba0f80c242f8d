"""Opens the SSM port-forward to the prod database through the admin bastion.

`make tunnel STACK=prod ...` pipes `pulumi stack output --json` in; this replaces
itself with `aws ssm start-session`, which forwards 127.0.0.1:<port> to the RDS
endpoint until interrupted. Point `aws.dbAdminHost`/`dbAdminPort` at the same
local address and `pulumi up` reaches the database through it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

DEFAULT_LOCAL_PORT = 15432


def session_command(outputs: dict[str, Any], local_port: int) -> list[str]:
    bastion = outputs.get("adminBastionId")
    if not bastion:
        raise SystemExit("this stack has no admin bastion; set wondernest:aws.adminBastion true and run pulumi up")
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
    local_port = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_LOCAL_PORT
    command = session_command(json.load(sys.stdin), local_port)
    os.execvp(command[0], command)  # noqa: S606 (a fixed argument list, no shell)


if __name__ == "__main__":
    main()
