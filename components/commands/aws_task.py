"""A one-off task of an AWS stack's task definition, as the operator commands
run it: in the private subnets with no public IP and no ECS Exec, one
container's command overridden, and waited for until ECS says it stopped."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from components.commands.aws_cli import AwsError, aws
from components.commands.errors import CommandError


def call(args: Sequence[str], region: str) -> Any:
    try:
        return aws(region, *args)
    except AwsError as exc:
        raise CommandError(f"{exc}") from None


def run_task_arguments(task: dict[str, Any], container: str, command: Sequence[str], *, started_by: str) -> list[str]:
    """`aws ecs run-task` for `task` (a stack output: cluster, taskDefinition,
    subnets, securityGroup) with `container` running `command`."""
    network = {
        "awsvpcConfiguration": {
            "subnets": list(task["subnets"]),
            "securityGroups": [task["securityGroup"]],
            "assignPublicIp": "DISABLED",
        }
    }
    overrides = {"containerOverrides": [{"name": container, "command": list(command)}]}
    return [
        "ecs", "run-task", "--cluster", str(task["cluster"]), "--task-definition", str(task["taskDefinition"]),
        "--launch-type", "FARGATE", "--platform-version", "1.4.0", "--started-by", started_by,
        "--network-configuration", json.dumps(network), "--overrides", json.dumps(overrides),
    ]  # fmt: skip


# A restore of a large database takes hours; `aws ecs wait tasks-stopped` gives
# up after ten minutes while the task goes on, so the task is polled instead.
POLL_SECONDS = 15
MAX_HOURS = 12


def wait_stopped(
    cluster: str, arn: str, region: str, *, what: str, poll_seconds: float = POLL_SECONDS
) -> dict[str, Any]:
    """The task once ECS says it stopped, its state printed as it changes."""
    deadline = time.monotonic() + MAX_HOURS * 3600
    last = ""
    while True:
        described = call(["ecs", "describe-tasks", "--cluster", cluster, "--tasks", arn], region)
        [found] = described["tasks"]
        status = str(found.get("lastStatus"))
        if status != last:
            print(f"{what} task {status.lower()}", flush=True)
            last = status
        if status == "STOPPED":
            return dict(found)
        if time.monotonic() > deadline:
            raise CommandError(f"the {what} task {arn} is still {status} after {MAX_HOURS} h; it goes on running")
        time.sleep(poll_seconds)


def run_and_wait(
    task: dict[str, Any], container: str, command: Sequence[str], *, what: str, poll_seconds: float = POLL_SECONDS
) -> tuple[int | None, str]:
    """The task run once and waited for: the container's exit code, and the
    reason ECS gives when it is not 0."""
    region = str(task["region"])
    started = call(run_task_arguments(task, container, command, started_by=f"make-aws-{what}"), region)
    if started.get("failures") or not started.get("tasks"):
        raise CommandError(f"the {what} task did not start: {started.get('failures')}")
    arn = str(started["tasks"][0]["taskArn"])
    print(f"{what} task {arn} started; waiting for it to stop (its log: the backups log group)", flush=True)
    stopped = wait_stopped(str(task["cluster"]), arn, region, what=what, poll_seconds=poll_seconds)
    [found] = [c for c in stopped["containers"] if c["name"] == container]
    code = found.get("exitCode")
    reason = found.get("reason") or stopped.get("stoppedReason") or "see the task's log"
    return (int(code) if code is not None else None), str(reason)


def backup_ids(bucket: str, prefix: str, region: str) -> list[str]:
    """The backups in the bucket under `prefix`, oldest first: those with a
    manifest (the CLI follows the listing's pages itself)."""
    found = call(["s3api", "list-objects-v2", "--bucket", bucket, "--prefix", f"{prefix}/"], region)
    names = [str(o["Key"]).rsplit("/", 1)[-1] for o in found.get("Contents") or []]
    return sorted(name.removesuffix(".json") for name in names if name.endswith(".json"))
