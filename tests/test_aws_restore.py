"""`make aws-restore`: the restore task definition in the prod graph, and the
one-off task started, waited for and judged, with a fake `aws` CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fake_commands import FakeCommands
from tests.harness import Evaluation, evaluate
from tests.test_stack_prod import CERT, SERVICE, TASK_DEF, by_name, prod_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prod() -> Evaluation:
    return evaluate(prod_config({"domainName": "api.example.com", "certificateArn": CERT}), stack="prod")


def test_the_restore_task_runs_as_the_master_user_and_only_reads_the_bucket(prod: Evaluation) -> None:
    [task] = [d for d in prod.of_type(TASK_DEF) if d.inputs["family"] == "wondernest-prod-restore"]
    [container] = json.loads(task.inputs["containerDefinitions"])
    assert container["name"] == "restore"
    # Unless the operator says otherwise, it only lists.
    assert container["command"] == ["python", "-m", "wondernest_backup", "list"]
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    master = prod.outputs["postgresMasterSecretArn"]
    assert secrets["RESTORE_DB_USER"] == f"{master}:username::"
    assert secrets["RESTORE_DB_PASSWORD"] == f"{master}:password::"
    assert not any("PASSWORD" in e["name"] for e in container["environment"])
    policies = by_name(prod, "aws:iam/rolePolicy:RolePolicy")
    readable = json.loads(policies["restore-task-role"]["policy"])["Statement"]
    assert {a for s in readable for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} == {
        "s3:ListBucket",
        "s3:GetObject",
        "kms:Decrypt",
    }
    execution = json.loads(policies["restore-execution-role"]["policy"])["Statement"]
    [reads] = [s for s in execution if s["Action"] == "secretsmanager:GetSecretValue"]
    assert master in reads["Resource"] and len(reads["Resource"]) == 2
    # No service runs it.
    assert not [s for s in prod.of_type(SERVICE) if "restore" in str(s.inputs.get("taskDefinition"))]
    restore = prod.outputs["restoreTask"]
    assert restore["taskDefinition"] == task.inputs["family"] and restore["region"] == "eu-west-1"
    assert restore["prefix"] == "wondernest/prod"


OUTPUTS = {
    "backupBucket": "wondernest-prod-backups-123456789012",
    "restoreTask": {
        "cluster": "wondernest-prod-cluster",
        "taskDefinition": "wondernest-prod-restore",
        "subnets": ["subnet-a", "subnet-b"],
        "securityGroup": "sg-backup",
        "prefix": "wondernest/prod",
        "region": "eu-west-1",
    },
}
BACKUP = "20261205T030000123456Z"


def fake_aws(box: FakeCommands, exit_code: int) -> None:
    listing = {"Contents": [{"Key": f"wondernest/prod/{BACKUP}.dump"}, {"Key": f"wondernest/prod/{BACKUP}.json"}]}
    started = {"tasks": [{"taskArn": "arn:aws:ecs:eu-west-1:1:task/c/abc"}], "failures": []}
    stopped = {
        "tasks": [{"lastStatus": "STOPPED", "containers": [{"name": "restore", "exitCode": exit_code, "reason": None}]}]
    }
    box.tool(
        "aws",
        f"""case "$1 $2" in
  "s3api list-objects-v2") echo '{json.dumps(listing)}' ;;
  "ecs run-task") echo '{json.dumps(started)}' ;;
  "ecs describe-tasks") echo '{json.dumps(stopped)}' ;;
esac""",
    )


def restore(box: FakeCommands, *args: str) -> subprocess.CompletedProcess[str]:
    return box.run_module("components.aws_restore", *args, stdin=json.dumps(OUTPUTS))


def test_the_backups_are_listed_without_an_id(tmp_path: Path) -> None:
    box = FakeCommands(tmp_path)
    fake_aws(box, 0)
    result = restore(box)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [BACKUP]
    assert not any("run-task" in call for call in box.called())


def test_a_restore_runs_one_task_in_the_private_subnets_and_waits_for_it(tmp_path: Path) -> None:
    box = FakeCommands(tmp_path)
    fake_aws(box, 0)
    result = restore(box, BACKUP, "--target-db", "wondernest_restored")
    assert result.returncode == 0, result.stderr
    assert "restored backup 20261205T030000123456Z into 'wondernest_restored'" in result.stdout
    [run] = [call for call in box.called() if call.startswith("aws ecs run-task")]
    assert "--cluster wondernest-prod-cluster --task-definition wondernest-prod-restore --launch-type FARGATE" in run
    assert '"assignPublicIp": "DISABLED"' in run and '"subnets": ["subnet-a", "subnet-b"]' in run
    overrides: dict[str, Any] = json.loads(run.split("--overrides ", 1)[1].split(" --region")[0])
    assert overrides["containerOverrides"][0]["command"] == [
        "python", "-m", "wondernest_backup", "restore", BACKUP, "--from-s3", "--target-db", "wondernest_restored",
    ]  # fmt: skip
    # Polled, not `aws ecs wait`, which gives up after ten minutes while the restore goes on.
    assert not any(call.startswith("aws ecs wait") for call in box.called())
    assert any(call.startswith("aws ecs describe-tasks") for call in box.called())


def test_an_unknown_backup_starts_nothing_and_a_failed_task_fails(tmp_path: Path) -> None:
    box = FakeCommands(tmp_path)
    fake_aws(box, 1)
    unknown = restore(box, "20200101T000000000000Z", "--target-db", "x")
    assert unknown.returncode != 0 and f"these exist: {BACKUP}" in unknown.stderr
    assert not any("run-task" in call for call in box.called())
    failed = restore(box, BACKUP, "--target-db", "wondernest", "--force")
    assert failed.returncode == 1 and "stopped with exit code 1" in failed.stderr
    [run] = [call for call in box.called() if call.startswith("aws ecs run-task")]
    assert '"--force"' in run
    missing = restore(box, BACKUP)
    assert missing.returncode == 2 and "--target-db" in missing.stderr


def test_a_long_restore_is_waited_for_past_the_cli_waiters_ten_minutes(tmp_path: Path, monkeypatch: Any) -> None:
    """describe-tasks answers RUNNING for a while, then STOPPED: the wait follows it."""
    from components import aws_restore

    answers = iter(["PROVISIONING", "RUNNING", "RUNNING", "RUNNING", "STOPPED"])
    calls: list[list[str]] = []

    def fake(args: Any, region: str) -> dict[str, Any]:
        calls.append(list(args))
        status = next(answers)
        containers = [{"name": "restore", "exitCode": 0}] if status == "STOPPED" else [{"name": "restore"}]
        return {"tasks": [{"lastStatus": status, "containers": containers}]}

    monkeypatch.setattr(aws_restore, "_aws", fake)
    stopped = aws_restore.wait_stopped("c", "arn:task", "eu-west-1", poll_seconds=0)
    assert stopped["lastStatus"] == "STOPPED" and len(calls) == 5
