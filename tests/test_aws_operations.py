"""`make aws-restore`, `make aws-backup` and `make aws-logs`: the task
definitions and outputs they use in the prod graph, and the one-off tasks
started, waited for and judged, and the log read, with a fake `aws` CLI."""

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
    return box.run_module("components.commands.aws_restore", *args, stdin=json.dumps(OUTPUTS))


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
    from components.commands import aws_task

    answers = iter(["PROVISIONING", "RUNNING", "RUNNING", "RUNNING", "STOPPED"])
    calls: list[list[str]] = []

    def fake(args: Any, region: str) -> dict[str, Any]:
        calls.append(list(args))
        status = next(answers)
        containers = [{"name": "restore", "exitCode": 0}] if status == "STOPPED" else [{"name": "restore"}]
        return {"tasks": [{"lastStatus": status, "containers": containers}]}

    monkeypatch.setattr(aws_task, "call", fake)
    stopped = aws_task.wait_stopped("c", "arn:task", "eu-west-1", what="restore", poll_seconds=0)
    assert stopped["lastStatus"] == "STOPPED" and len(calls) == 5


def test_the_backup_task_is_the_services_own_and_the_logs_are_named(prod: Evaluation) -> None:
    """`backupTask` runs the backups service's task definition (its role may
    write the bucket; the restore task's may not), where the service runs."""
    [service] = [s for s in prod.of_type(SERVICE) if s.inputs["name"] == "wondernest-prod-backups"]
    [definition] = [d for d in prod.of_type(TASK_DEF) if d.inputs["family"] == "wondernest-prod-backups"]
    backup, restore = prod.outputs["backupTask"], prod.outputs["restoreTask"]
    assert backup["taskDefinition"] == definition.inputs["family"]
    network = service.inputs["networkConfiguration"]
    assert backup["subnets"] == network["subnets"] and [backup["securityGroup"]] == network["securityGroups"]
    assert {k: v for k, v in backup.items() if k != "taskDefinition"} == {
        k: v for k, v in restore.items() if k != "taskDefinition"
    }
    names = {g.inputs["name"] for g in prod.of_type("aws:cloudwatch/logGroup:LogGroup")}
    groups = prod.outputs["logGroups"]
    assert set(groups.values()) == {n for n in names if n.startswith(("/wondernest/prod/", "aws-waf-logs-"))}
    assert groups["api"] == "/wondernest/prod/api" and prod.outputs["region"] == "eu-west-1"


BACKUP_OUTPUTS = {
    "backupBucket": "wondernest-prod-backups-123456789012",
    "backupTask": {**OUTPUTS["restoreTask"], "taskDefinition": "wondernest-prod-backups"},  # type: ignore[dict-item]
}
NEW = "20261205T120000000000Z"


def fake_backup_aws(box: FakeCommands, exit_code: int, *, lands: bool = True) -> None:
    """The bucket holds BACKUP; once the task has run (and `lands`), NEW too."""
    before = {"Contents": [{"Key": f"wondernest/prod/{BACKUP}.json"}]}
    after = {
        "Contents": [
            *before["Contents"],
            {"Key": f"wondernest/prod/{NEW}.dump"},
            {"Key": f"wondernest/prod/{NEW}.json"},
        ]
    }
    started = {"tasks": [{"taskArn": "arn:aws:ecs:eu-west-1:1:task/c/abc"}], "failures": []}
    stopped = {
        "tasks": [{"lastStatus": "STOPPED", "containers": [
            {"name": "collector", "exitCode": 143}, {"name": "backups", "exitCode": exit_code, "reason": None},
        ]}]
    }  # fmt: skip
    ran = box.bin / "ran"
    landed = f'[ -e "{ran}" ] && {"true" if lands else "false"}'
    box.tool(
        "aws",
        f"""case "$1 $2" in
  "s3api list-objects-v2") if {landed}; then echo '{json.dumps(after)}'; else echo '{json.dumps(before)}'; fi ;;
  "ecs run-task") touch "{ran}"; echo '{json.dumps(started)}' ;;
  "ecs describe-tasks") echo '{json.dumps(stopped)}' ;;
esac""",
    )


def test_a_backup_runs_one_cycle_of_the_backups_task_and_names_what_it_took(tmp_path: Path) -> None:
    box = FakeCommands(tmp_path)
    fake_backup_aws(box, 0)
    result = box.run_module("components.commands.aws_backup", stdin=json.dumps(BACKUP_OUTPUTS))
    assert result.returncode == 0, result.stderr
    assert f"backup {NEW} taken, verified by a restore and copied" in result.stdout
    [run] = [call for call in box.called() if call.startswith("aws ecs run-task")]
    assert "--task-definition wondernest-prod-backups" in run and '"assignPublicIp": "DISABLED"' in run
    overrides: dict[str, Any] = json.loads(run.split("--overrides ", 1)[1].split(" --region")[0])
    assert overrides == {
        "containerOverrides": [{"name": "backups", "command": ["python", "-m", "wondernest_backup", "cycle"]}]
    }


def test_a_backup_task_that_fails_or_lands_nothing_fails(tmp_path: Path) -> None:
    (tmp_path / "failed").mkdir()
    (tmp_path / "nothing").mkdir()
    failed = FakeCommands(tmp_path / "failed")
    fake_backup_aws(failed, 1)
    result = failed.run_module("components.commands.aws_backup", stdin=json.dumps(BACKUP_OUTPUTS))
    assert result.returncode == 1 and "the backup task stopped with exit code 1" in result.stderr
    nothing = FakeCommands(tmp_path / "nothing")
    fake_backup_aws(nothing, 0, lands=False)
    result = nothing.run_module("components.commands.aws_backup", stdin=json.dumps(BACKUP_OUTPUTS))
    assert result.returncode == 1 and "holds no new backup" in result.stderr
    missing = nothing.run_module("components.commands.aws_backup", stdin=json.dumps({"backupBucket": "b"}))
    assert missing.returncode != 0 and "lack backupTask" in missing.stderr


LOG_OUTPUTS = {
    "region": "eu-west-1",
    "logGroups": {"api": "/wondernest/prod/api", "backups": "/wondernest/prod/backups"},
}


def test_a_services_log_is_tailed_from_its_group(tmp_path: Path) -> None:
    box = FakeCommands(tmp_path)
    box.tool("aws", "echo 'a log line'")
    result = box.run_module("components.commands.aws_logs", "api", "--since", "2h", stdin=json.dumps(LOG_OUTPUTS))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a log line\n"
    assert box.called() == ["aws logs tail /wondernest/prod/api --region eu-west-1 --since 2h --format short"]
    followed = box.run_module("components.commands.aws_logs", "backups", "--follow", stdin=json.dumps(LOG_OUTPUTS))
    assert followed.returncode == 0 and box.called()[-1].endswith("--since 1h --format short --follow")
    listed = box.run_module("components.commands.aws_logs", stdin=json.dumps(LOG_OUTPUTS))
    assert listed.stdout.splitlines() == ["api  /wondernest/prod/api", "backups  /wondernest/prod/backups"]
    unknown = box.run_module("components.commands.aws_logs", "grafana", stdin=json.dumps(LOG_OUTPUTS))
    assert unknown.returncode != 0 and "these have one: api, backups" in unknown.stderr
    assert len(box.called()) == 2


def test_every_log_the_docs_name_exists() -> None:
    """`make aws-logs ... SERVICE=x` in the runbooks and the AWS guide names a group the stack has."""
    import re

    from components.aws.tasks import LOG_GROUPS

    docs = [ROOT / "docs" / "runbooks.md", ROOT / "docs" / "aws.md"]
    named = {m for d in docs for m in re.findall(r"aws-logs[^`]*?SERVICE=([a-z-]+)", d.read_text().replace("\n", " "))}
    listed = {m for d in docs for m in re.findall(r"SERVICE=<([a-z|-]+)>", d.read_text())}
    named |= {s for group in listed for s in group.split("|")}
    assert named and named <= {*LOG_GROUPS, "waf"}, named - {*LOG_GROUPS, "waf"}
    assert "redis-engine" in named and "exporters" in named
