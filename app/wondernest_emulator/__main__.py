"""Serve S3, SQS, SNS and SES on one port (moto's server), create the declared
resources in it, then mark it ready.

moto keeps everything in memory, so every start creates them again: a restart
of the container loses messages and objects, never the resources an app
needs. The resources come as JSON in EMULATED_RESOURCES (see
components/model/app_services.py, emulated_resources):

    {"region": "us-east-1",
     "queues": [{"name", "deadLetter", "maxReceiveCount", "visibilityTimeout", "retention", "deadLetterRetention"}],
     "topics": [{"name", "subscribers": [queue names]}],
     "buckets": [names], "emailDomains": [domains]}
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

PORT = int(os.environ.get("EMULATOR_PORT", "4566"))
READY = Path(os.environ.get("EMULATOR_READY_FILE", "/tmp/emulator-ready"))  # noqa: S108 (a tmpfs of the container)
# moto accepts any credentials; boto3 needs some to sign with.
CREDENTIALS = {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator"}


def create(spec: dict[str, Any], endpoint: str) -> None:
    region = str(spec.get("region", "us-east-1"))

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name=region, **CREDENTIALS)

    sqs, sns, s3, ses = client("sqs"), client("sns"), client("s3"), client("ses")
    arns: dict[str, str] = {}
    urls: dict[str, str] = {}
    for queue in spec.get("queues", []):
        dead = sqs.create_queue(
            QueueName=queue["deadLetter"], Attributes={"MessageRetentionPeriod": str(queue["deadLetterRetention"])}
        )["QueueUrl"]
        dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = {"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(queue["maxReceiveCount"])}
        url = sqs.create_queue(
            QueueName=queue["name"],
            Attributes={
                "VisibilityTimeout": str(queue["visibilityTimeout"]),
                "MessageRetentionPeriod": str(queue["retention"]),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        urls[queue["name"]] = url
        arns[queue["name"]] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    for topic in spec.get("topics", []):
        topic_arn = sns.create_topic(Name=topic["name"])["TopicArn"]
        for queue_name in topic.get("subscribers", []):
            if queue_name not in arns:
                raise ValueError(f"topic {topic['name']} subscribes {queue_name}, which is no declared queue")
            sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=arns[queue_name],
                Attributes={"RawMessageDelivery": "true"},
                ReturnSubscriptionArn=True,
            )
    for bucket in spec.get("buckets", []):
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    for domain in spec.get("emailDomains", []):
        ses.verify_domain_identity(Domain=domain)


def main() -> int:
    spec = json.loads(os.environ.get("EMULATED_RESOURCES") or "{}")
    READY.unlink(missing_ok=True)
    # Blocked before the server's threads start, so that they inherit it and
    # only sigwait below takes the stop signal.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    # One line per request would bury what matters in the container's log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=PORT, verbose=False)  # noqa: S104 (its network's only)
    server.start()
    try:
        create(spec, f"http://127.0.0.1:{PORT}")
    except Exception as exc:
        # Whatever failed, the container stops with it named: never healthy without the resources.
        print(f"error: creating the declared resources: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        server.stop()
        return 1
    READY.write_text("ready\n")
    print(f"serving S3, SQS, SNS and SES on :{PORT}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
