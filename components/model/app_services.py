"""The AWS services an app asks the platform for (the contract's
`awsServices`): buckets, queues (each with a dead-letter queue), topics (with
queues subscribed to them) and an email sender. The app receives what it needs
of them (a queue's URL, a topic's ARN, a bucket's name, the sender) under the
names it chooses in `platformEnvironment`, and the AWS SDK's own settings
beside them.

Locally one emulator (moto's server) serves them all, with the declared
resources created in it before it reports healthy (`emulated_resources`); on
AWS `components/aws/app_services.py` makes them, under the names
`service_name` gives both targets."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, model_validator

from components.model.config_types import ConfigModel
from components.model.naming import Names

# The app's resources are named `<app>-<stack>-app-<name>`: a namespace of
# their own, so no declaration can take a platform resource's name (a bucket
# `backups` is not the dumps bucket, a topic `alerts-page` not the pager's).
# With the longest `<app>-<stack>` the config allows and the account id a
# bucket name carries, 22 characters keep S3's 63; SQS allows 80 with `-dlq`.
APP_NAMESPACE = "app-"
SERVICE_NAME_MAX = 22
NAME_RE = rf"^[a-z][a-z0-9-]{{0,{SERVICE_NAME_MAX - 2}}}[a-z0-9]$"
ServiceName = Annotated[str, Field(pattern=NAME_RE)]
DEAD_LETTER_SUFFIX = "-dlq"
DAY = 86_400
# The address form SES sends from; the domain is what is verified.
_SENDER = r"^[A-Za-z0-9._%+-]+@(?P<domain>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)$"

SERVICE_VALUE = re.compile(
    r"^(?:queues\.(?P<queue>[a-z0-9-]+)\.(?:url|arn|deadLetterUrl)"
    r"|topics\.(?P<topic>[a-z0-9-]+)\.arn"
    r"|buckets\.(?P<bucket>[a-z0-9-]+)\.name"
    r"|(?P<email>email\.sender))$"
)
"""The platform values the declared services give: e.g. `queues.jobs.url`."""


class QueueSpec(ConfigModel):
    max_receive_count: int = Field(5, ge=1, le=1000)
    """Receives of a message before it moves to the queue's dead-letter queue."""
    visibility_timeout_seconds: int = Field(30, ge=0, le=12 * 3600)
    retention_seconds: int = Field(4 * DAY, ge=60, le=14 * DAY)
    dead_letter_retention_seconds: int = Field(14 * DAY, ge=60, le=14 * DAY)
    """Longer than the queue's: a message that failed must outlive the one it was."""

    @model_validator(mode="after")
    def _dead_letters_outlive_messages(self) -> QueueSpec:
        if self.dead_letter_retention_seconds < self.retention_seconds:
            raise ValueError(
                f"deadLetterRetentionSeconds: {self.dead_letter_retention_seconds} is shorter than "
                f"retentionSeconds ({self.retention_seconds}); a failed message would expire before it could be read"
            )
        return self


class TopicSpec(ConfigModel):
    subscribers: tuple[ServiceName, ...] = ()
    """Queues of `awsServices.queues` that receive every message published (raw delivery)."""


class EmailSpec(ConfigModel):
    sender: Annotated[str, Field(pattern=_SENDER)]
    """The From address; its domain is the identity verified (with DKIM on AWS)."""

    @property
    def domain(self) -> str:
        match = re.match(_SENDER, self.sender)
        assert match is not None
        return match["domain"]


class AwsServices(ConfigModel):
    queues: dict[ServiceName, QueueSpec] = Field(default_factory=dict)
    topics: dict[ServiceName, TopicSpec] = Field(default_factory=dict)
    buckets: tuple[ServiceName, ...] = ()
    email: EmailSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AwsServices:
        problems = [
            f"queues.{name}: a name ending in {DEAD_LETTER_SUFFIX} is its dead-letter queue's; choose another"
            for name in self.queues
            if name.endswith(DEAD_LETTER_SUFFIX)
        ]
        for topic, spec in self.topics.items():
            problems += [
                f"topics.{topic}.subscribers: {queue!r} is not a queue of awsServices.queues"
                for queue in spec.subscribers
                if queue not in self.queues
            ]
            if len(set(spec.subscribers)) != len(spec.subscribers):
                problems.append(f"topics.{topic}.subscribers: a queue is named twice")
        if len(set(self.buckets)) != len(self.buckets):
            problems.append("buckets: a bucket is named twice")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def declared(self) -> bool:
        return bool(self.queues or self.topics or self.buckets or self.email)

    def values(self) -> frozenset[str]:
        """Every platform value the declared services give."""
        return frozenset(
            [f"queues.{q}.{part}" for q in self.queues for part in ("url", "arn", "deadLetterUrl")]
            + [f"topics.{t}.arn" for t in self.topics]
            + [f"buckets.{b}.name" for b in self.buckets]
            + (["email.sender"] if self.email is not None else [])
        )

    def undeclared(self, value: str) -> str | None:
        """Why a service value names nothing declared; None when it does."""
        match = SERVICE_VALUE.match(value)
        if match is None or value in self.values():
            return None
        if match["email"]:
            return "email.sender with no awsServices.email"
        kind, name = next((k, match[k]) for k in ("queue", "topic", "bucket") if match[k])
        return f"{value} names no {kind} {name!r} of awsServices.{kind}s"


def service_name(names: Names, name: str) -> str:
    """A declared service's physical name (a bucket's before the account id on AWS)."""
    return names.resource(f"{APP_NAMESPACE}{name}")


def dead_letter_name(names: Names, queue: str) -> str:
    return service_name(names, f"{queue}{DEAD_LETTER_SUFFIX}")


EMULATOR_ACCOUNT = "123456789012"
"""The account moto's server answers as: every emulated ARN names it."""


def emulated_values(services: AwsServices, names: Names, *, endpoint: str, region: str) -> dict[str, str]:
    """The service values as the emulator gives them: moto builds a queue's URL
    from the host it was asked on and its ARNs from its fixed account."""
    values: dict[str, str] = {}
    for queue in services.queues:
        name = service_name(names, queue)
        values[f"queues.{queue}.url"] = f"{endpoint}/{EMULATOR_ACCOUNT}/{name}"
        values[f"queues.{queue}.arn"] = f"arn:aws:sqs:{region}:{EMULATOR_ACCOUNT}:{name}"
        values[f"queues.{queue}.deadLetterUrl"] = f"{endpoint}/{EMULATOR_ACCOUNT}/{dead_letter_name(names, queue)}"
    for topic in services.topics:
        values[f"topics.{topic}.arn"] = f"arn:aws:sns:{region}:{EMULATOR_ACCOUNT}:{service_name(names, topic)}"
    for bucket in services.buckets:
        values[f"buckets.{bucket}.name"] = service_name(names, bucket)
    if services.email is not None:
        values["email.sender"] = services.email.sender
    return values


def emulated_resources(services: AwsServices, names: Names, *, region: str) -> dict[str, Any]:
    """What the emulator creates at start (app/wondernest_emulator reads it)."""
    return {
        "region": region,
        "queues": [
            {
                "name": service_name(names, queue),
                "deadLetter": dead_letter_name(names, queue),
                "maxReceiveCount": spec.max_receive_count,
                "visibilityTimeout": spec.visibility_timeout_seconds,
                "retention": spec.retention_seconds,
                "deadLetterRetention": spec.dead_letter_retention_seconds,
            }
            for queue, spec in sorted(services.queues.items())
        ],
        "topics": [
            {"name": service_name(names, topic), "subscribers": [service_name(names, q) for q in spec.subscribers]}
            for topic, spec in sorted(services.topics.items())
        ],
        "buckets": [service_name(names, bucket) for bucket in sorted(services.buckets)],
        "emailDomains": [] if services.email is None else [services.email.domain],
    }
