"""`make aws-logs SERVICE=...`: an AWS stack's service log, as `make logs`
shows the local one, through `aws logs tail`.

    pulumi stack output --json | python -m components.commands.aws_logs SERVICE [--since 1h] [--follow]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from components.commands.errors import CommandError
from components.commands.stack_outputs import read_outputs

REQUIRED = ("logGroups", "region")


def tail_command(groups: dict[str, str], region: str, service: str, *, since: str, follow: bool) -> list[str]:
    if service not in groups:
        raise CommandError(f"no log group for {service!r}; these have one: {', '.join(sorted(groups))}")
    return [
        "aws", "logs", "tail", groups[service], "--region", region, "--since", since, "--format", "short",
        *(["--follow"] if follow else []),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.commands.aws_logs", description=__doc__.split("\n")[0])
    parser.add_argument("service", nargs="?", help="whose log; without it, the services are listed")
    parser.add_argument("--since", default="1h", help="how far back, as `aws logs tail` reads it (10m, 2h, 1d)")
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--stack", default="the stack", help="named in messages")
    args = parser.parse_args(argv)
    outputs = read_outputs(sys.stdin, REQUIRED, stack=args.stack)
    groups = {str(k): str(v) for k, v in dict(outputs["logGroups"]).items()}
    if args.service is None:
        print("\n".join(f"{service}  {group}" for service, group in sorted(groups.items())))
        return 0
    command = tail_command(groups, str(outputs["region"]), args.service, since=args.since, follow=args.follow)
    if shutil.which("aws") is None:
        raise CommandError("the aws CLI is not on PATH")
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
