"""`make aws-backup`: a logical backup of an AWS stack now, by a one-off task
of the backups task definition running one scheduled cycle, waited for.

    pulumi stack output --json | python -m components.commands.aws_backup

The task dumps the database as the backup role, proves the dump by restoring
it into a throwaway server, and copies it to the backups bucket, exactly as
the service does at each slot; it exits 0 only when all of that held. The new
backup is named from the bucket, where `make aws-restore` finds it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from components.commands.aws_task import backup_ids, run_and_wait
from components.commands.errors import CommandError
from components.commands.stack_outputs import read_outputs

REQUIRED = ("backupTask", "backupBucket")
COMMAND = ("python", "-m", "wondernest_backup", "cycle")


def backup(outputs: dict[str, Any]) -> int:
    task = outputs["backupTask"]
    bucket, prefix, region = str(outputs["backupBucket"]), str(task["prefix"]), str(task["region"])
    before = set(backup_ids(bucket, prefix, region))
    code, reason = run_and_wait(task, "backups", COMMAND, what="backup")
    if code != 0:
        raise CommandError(f"the backup task stopped with exit code {code}: {reason}")
    new = [i for i in backup_ids(bucket, prefix, region) if i not in before]
    if not new:
        raise CommandError(f"the backup task succeeded but s3://{bucket}/{prefix}/ holds no new backup")
    print(f"backup {new[-1]} taken, verified by a restore and copied to s3://{bucket}/{prefix}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.commands.aws_backup", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--stack", default="the stack", help="named in messages")
    args = parser.parse_args(argv)
    return backup(read_outputs(sys.stdin, REQUIRED, stack=args.stack))


if __name__ == "__main__":
    sys.exit(main())
