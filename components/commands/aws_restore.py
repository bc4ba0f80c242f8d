"""`make aws-restore`: a dump from an AWS stack's backups bucket restored into
RDS by a one-off task of the restore task definition, waited for.

    pulumi stack output --json | python -m components.commands.aws_restore [ID --target-db DB [--force]]

Without an id it lists the dumps in the bucket. With one, it starts the task
(the backup image, as the RDS master user, in the private subnets), waits for
it to stop; a task that fails ends the command with `error: the restore task
stopped with exit code N: …` and exit status 1. The restore itself is
`wondernest_backup restore --from-s3`: a database holding tables is refused
unless --force, and then the old one is kept, renamed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from components.commands.aws_task import backup_ids, run_and_wait
from components.commands.errors import CommandError
from components.commands.stack_outputs import read_outputs

REQUIRED = ("restoreTask", "backupBucket")


def listing(outputs: dict[str, Any]) -> list[str]:
    task = outputs["restoreTask"]
    return backup_ids(str(outputs["backupBucket"]), str(task["prefix"]), str(task["region"]))


def restore(outputs: dict[str, Any], backup_id: str, target_db: str, *, force: bool) -> int:
    task = outputs["restoreTask"]
    available = listing(outputs)
    if backup_id not in available:
        raise CommandError(
            f"no backup {backup_id!r} in s3://{outputs['backupBucket']}/{task['prefix']}/; "
            f"these exist: {', '.join(available) or 'none'}"
        )
    command = ["python", "-m", "wondernest_backup", "restore", backup_id, "--from-s3", "--target-db", target_db]
    code, reason = run_and_wait(task, "restore", [*command, *(["--force"] if force else [])], what="restore")
    if code == 0:
        print(f"restored backup {backup_id} into {target_db!r}")
        return 0
    raise CommandError(f"the restore task stopped with exit code {code}: {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.commands.aws_restore", description=__doc__.split("\n")[0]
    )
    parser.add_argument("id", nargs="?", help="the backup to restore; without it, the backups are listed")
    parser.add_argument("--target-db", help="created if missing; refused if it holds tables, unless --force")
    parser.add_argument("--force", action="store_true", help="replace a database that holds tables (kept, renamed)")
    parser.add_argument("--stack", default="the stack", help="named in messages")
    args = parser.parse_args(argv)
    outputs = read_outputs(sys.stdin, REQUIRED, stack=args.stack)
    if args.id is None:
        print("\n".join(listing(outputs)) or "no backups in the bucket yet")
        return 0
    if not args.target_db:
        parser.error("name the database to restore into: --target-db (make aws-restore TARGET=...)")
    return restore(outputs, args.id, args.target_db, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
