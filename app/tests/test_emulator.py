"""The dev stack's AWS emulation, run as its container runs it (python -m
wondernest_emulator on moto's server): the declared resources exist before it
reports ready, behave as SQS, SNS, S3 and SES do for the app, and come back
after a restart; a spec it cannot create stops it with the reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from components.model.app_services import AwsServices, emulated_resources, emulated_values
from components.model.naming import Names
from tests.servers import free_port

pytestmark = pytest.mark.servers

APP = Path(__file__).resolve().parents[1]
NAMES = Names(app="notes", stack="dev")
SERVICES = AwsServices.model_validate(
    {
        "queues": {"jobs": {"maxReceiveCount": 2, "visibilityTimeoutSeconds": 1}, "mail": {}},
        "topics": {"events": {"subscribers": ["jobs", "mail"]}},
        "buckets": ["uploads"],
        "email": {"sender": "no-reply@notes.example.com"},
    }
)
REGION = "us-east-1"
KEYS = {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator"}


class Emulator:
    def __init__(self, tmp: Path, spec: dict[str, Any]) -> None:
        self.port = free_port()
        self.ready = tmp / "ready"
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "EMULATOR_PORT": str(self.port),
            "EMULATOR_READY_FILE": str(self.ready),
            "EMULATED_RESOURCES": json.dumps(spec),
        }
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        # A container restarts with an empty /tmp; here the last run's mark goes first.
        self.ready.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wondernest_emulator"], cwd=APP, env=self.env, text=True, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while not self.ready.exists():
            assert self.process.poll() is None, self.process.communicate()[1]
            assert time.monotonic() < deadline, "the emulator never became ready"
            time.sleep(0.05)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, **KEYS)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    running = Emulator(tmp_path, emulated_resources(SERVICES, NAMES, region=REGION))
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.stop()


def values(emulator: Emulator) -> dict[str, str]:
    return emulated_values(SERVICES, NAMES, endpoint=emulator.endpoint, region=REGION)


def test_a_message_that_keeps_failing_moves_to_the_dead_letter_queue(emulator: Emulator) -> None:
    sqs, found = emulator.client("sqs"), values(emulator)
    queue, dead = found["queues.jobs.url"], found["queues.jobs.deadLetterUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["QueueArn"] == found["queues.jobs.arn"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": f"arn:aws:sqs:{REGION}:123456789012:notes-dev-app-jobs-dlq",
        "maxReceiveCount": 2,
    }
    sqs.send_message(QueueUrl=queue, MessageBody="resize 42")
    for _ in range(2):  # received and never deleted: each time it comes back after the visibility timeout
        assert [m["Body"] for m in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)["Messages"]] == ["resize 42"]
        time.sleep(1.1)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=dead, WaitTimeSeconds=2)["Messages"]] == ["resize 42"]


def test_a_topic_fans_out_to_every_subscribed_queue_raw(emulator: Emulator) -> None:
    sns, sqs, found = emulator.client("sns"), emulator.client("sqs"), values(emulator)
    sns.publish(TopicArn=found["topics.events.arn"], Message='{"note": 7}')
    for queue in ("jobs", "mail"):
        messages = sqs.receive_message(QueueUrl=found[f"queues.{queue}.url"], WaitTimeSeconds=2)["Messages"]
        assert [m["Body"] for m in messages] == ['{"note": 7}']


def test_the_sender_can_send_and_the_bucket_holds_objects(emulator: Emulator) -> None:
    ses, s3, found = emulator.client("ses"), emulator.client("s3"), values(emulator)
    sent = ses.send_email(
        Source=found["email.sender"],
        Destination={"ToAddresses": ["reader@example.org"]},
        Message={"Subject": {"Data": "hello"}, "Body": {"Text": {"Data": "a note"}}},
    )
    assert sent["MessageId"]
    assert ses.get_send_quota()["SentLast24Hours"] == 1
    refused = "MessageRejected"
    with pytest.raises(ses.exceptions.MessageRejected, match=refused):
        ses.send_email(
            Source="someone@elsewhere.example",
            Destination={"ToAddresses": ["reader@example.org"]},
            Message={"Subject": {"Data": "x"}, "Body": {"Text": {"Data": "x"}}},
        )
    s3.put_object(Bucket=found["buckets.uploads.name"], Key="a.txt", Body=b"note")
    assert s3.get_object(Bucket=found["buckets.uploads.name"], Key="a.txt")["Body"].read() == b"note"


def test_a_restart_creates_the_resources_again(emulator: Emulator) -> None:
    assert emulator.stop() == 0
    assert not emulator.process or emulator.process.returncode == 0
    emulator.start()
    urls = emulator.client("sqs").list_queues()["QueueUrls"]
    assert sorted(u.rsplit("/", 1)[1] for u in urls) == [
        "notes-dev-app-jobs",
        "notes-dev-app-jobs-dlq",
        "notes-dev-app-mail",
        "notes-dev-app-mail-dlq",
    ]


def test_a_spec_it_cannot_create_stops_it_and_it_never_reports_ready(tmp_path: Path) -> None:
    spec = emulated_resources(SERVICES, NAMES, region=REGION)
    spec["topics"][0]["subscribers"] = ["notes-dev-nothing"]
    broken = Emulator(tmp_path, spec)
    process = subprocess.run(
        [sys.executable, "-m", "wondernest_emulator"],
        cwd=APP,
        env=broken.env,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert process.returncode == 1
    assert process.stderr == (
        "error: creating the declared resources: ValueError: "
        "topic notes-dev-app-events subscribes notes-dev-nothing, which is no declared queue\n"
    )
    assert not broken.ready.exists()
