"""`make aws-restore`: a dump from an AWS stack's backups bucket restored into
RDS by a one-off task of the restore task definition, waited for.

    pulumi stack output --json | python -m components.aws_restore [ID --target-db DB [--force]]

Without an id it lists the dumps in the bucket. With one, it starts the task
(the backup image, as the RDS master user, in the private subnets), waits for
it to stop and exits with its exit code. The restore itself is
`wondernest_backup restore --from-s3`: a database holding tables is refused
unless --force, and then the old one is kept, renamed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from components.aws_cli import AwsError, aws
from components.stack_outputs import read_outputs

REQUIRED = ("restoreTask", "backupBucket")


def _aws(args: Sequence[str], region: str) -> Any:
    try:
        return aws(region, *args)
    except AwsError as exc:
        raise SystemExit(f"error: {exc}") from None


def listing(outputs: dict[str, Any]) -> list[str]:
    task = outputs["restoreTask"]
    found = _aws(
        ["s3api", "list-objects-v2", "--bucket", str(outputs["backupBucket"]), "--prefix", f"{task['prefix']}/"],
        task["region"],
    )
    names = [str(o["Key"]).rsplit("/", 1)[-1] for o in found.get("Contents") or []]
    return sorted(name.removesuffix(".json") for name in names if name.endswith(".json"))


def run_task_arguments(outputs: dict[str, Any], backup_id: str, target_db: str, *, force: bool) -> list[str]:
    task = outputs["restoreTask"]
    command = ["python", "-m", "wondernest_backup", "restore", backup_id, "--from-s3", "--target-db", target_db]
    network = {
        "awsvpcConfiguration": {
            "subnets": list(task["subnets"]),
            "securityGroups": [task["securityGroup"]],
            "assignPublicIp": "DISABLED",
        }
    }
    overrides = {"containerOverrides": [{"name": "restore", "command": [*command, *(["--force"] if force else [])]}]}
    return [
        "ecs", "run-task", "--cluster", str(task["cluster"]), "--task-definition", str(task["taskDefinition"]),
        "--launch-type", "FARGATE", "--platform-version", "1.4.0", "--started-by", "make-aws-restore",
        "--network-configuration", json.dumps(network), "--overrides", json.dumps(overrides),
    ]  # fmt: skip


# A restore of a large database takes hours; `aws ecs wait tasks-stopped` gives
# up after ten minutes while the task goes on, so the task is polled instead.
POLL_SECONDS = 15
MAX_HOURS = 12


def wait_stopped(cluster: str, arn: str, region: str, *, poll_seconds: float = POLL_SECONDS) -> dict[str, Any]:
    """The task once ECS says it stopped, its state printed as it changes."""
    deadline = time.monotonic() + MAX_HOURS * 3600
    last = ""
    while True:
        described = _aws(["ecs", "describe-tasks", "--cluster", cluster, "--tasks", arn], region)
        [found] = described["tasks"]
        status = str(found.get("lastStatus"))
        if status != last:
            print(f"restore task {status.lower()}", flush=True)
            last = status
        if status == "STOPPED":
            return dict(found)
        if time.monotonic() > deadline:
            raise SystemExit(f"error: the restore task {arn} is still {status} after {MAX_HOURS} h; it goes on running")
        time.sleep(poll_seconds)


def restore(outputs: dict[str, Any], backup_id: str, target_db: str, *, force: bool) -> int:
    task = outputs["restoreTask"]
    region = str(task["region"])
    available = listing(outputs)
    if backup_id not in available:
        raise SystemExit(
            f"error: no backup {backup_id!r} in s3://{outputs['backupBucket']}/{task['prefix']}/; "
            f"these exist: {', '.join(available) or 'none'}"
        )
    started = _aws(run_task_arguments(outputs, backup_id, target_db, force=force), region)
    if started.get("failures") or not started.get("tasks"):
        raise SystemExit(f"error: the restore task did not start: {started.get('failures')}")
    arn = str(started["tasks"][0]["taskArn"])
    print(f"restore task {arn} started; waiting for it to stop (its log: the backups log group)", flush=True)
    stopped = wait_stopped(str(task["cluster"]), arn, region)
    [container] = [c for c in stopped["containers"] if c["name"] == "restore"]
    code = container.get("exitCode")
    if code == 0:
        print(f"restored backup {backup_id} into {target_db!r}")
        return 0
    reason = container.get("reason") or stopped.get("stoppedReason") or "see the task's log"
    print(f"error: the restore task stopped with exit code {code}: {reason}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.aws_restore", description=__doc__.split("\n")[0])
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
