"""The AWS services an app declares (`app.awsServices`), made real: queues
with their dead-letter queues, topics with their subscriptions, buckets and an
SES domain identity, all under the platform key; the statements the app's task
role needs on exactly these; and the values the app receives."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.buckets import abort_uploads, expire_noncurrent, private_bucket
from components.aws.iam import policy_document
from components.model.app_services import AwsServices, QueueSpec, dead_letter_name, service_name
from components.model.naming import Names

# Actions a consumer and producer of a queue takes; nothing that changes the queue itself.
QUEUE_ACTIONS = (
    "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
)  # fmt: skip
# Reading what failed, only where the app maps the dead-letter queue's URL.
DEAD_LETTER_ACTIONS = (
    "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
)  # fmt: skip
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
# What the account's identities may do to a topic, each as its IAM policies allow.
TOPIC_ACTIONS = (
    "sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:AddPermission", "sns:RemovePermission",
    "sns:DeleteTopic", "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:Publish",
)  # fmt: skip
SEND_ACTIONS = ("ses:SendEmail", "ses:SendRawEmail")
# SQS's default: a data key serves five minutes of messages before KMS is asked again.
KEY_REUSE_SECONDS = 300
# An app's objects: older versions kept a month, then gone.
NONCURRENT_DAYS = 30
# SES's Easy DKIM: three CNAMEs, each <token>._domainkey.<domain> -> <token>.dkim.amazonses.com.
DKIM_TARGET = "dkim.amazonses.com"


@dataclass(frozen=True)
class AppServicesArgs:
    names: Names
    services: AwsServices
    mapped: frozenset[str]
    """The platform values the app maps: a dead-letter queue is readable only when its URL is."""
    region: str
    key_arn: pulumi.Output[str]
    account_id: pulumi.Output[str]
    account_root: pulumi.Output[str]
    """`arn:<partition>:iam::<account>:root`: in a resource policy, the account's IAM policies decide."""
    access_log_bucket: aws.s3.Bucket
    email_zone_id: str | None
    """A Route 53 zone holding the sender's domain: the DKIM records go there; else they are outputs."""


class AppServices(pulumi.ComponentResource):
    values: dict[str, pulumi.Output[str]]
    """The platform values (`queues.<name>.url`, ...) as the app receives them."""
    statements: list[dict[str, Any]]
    """What the app's task role may do, on these resources only."""
    dkim_records: pulumi.Output[list[dict[str, str]]] | None
    """The DKIM records to add by hand, when no zone is configured."""

    def __init__(self, name: str, args: AppServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:AppServices", name, None, opts)
        self.values = {}
        self.statements = []
        self.dkim_records = None
        self._args = args
        through: list[str] = []
        queues = {queue: self._queue(queue, spec) for queue, spec in sorted(args.services.queues.items())}
        if queues:
            through.append("sqs")
        topics = {topic: self._topic(topic) for topic in sorted(args.services.topics)}
        if topics:
            through.append("sns")
        for queue, main in queues.items():
            senders = {t: topics[t] for t, spec in args.services.topics.items() if queue in spec.subscribers}
            if senders:
                self._subscriptions(queue, main, senders)
        for bucket in sorted(args.services.buckets):
            self._bucket(bucket)
            through.append("s3")
        if args.services.email is not None:
            self._email()
        if through:
            self.statements.append(
                {
                    "Sid": "UsePlatformKey",
                    "Effect": "Allow",
                    "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                    "Resource": args.key_arn,
                    "Condition": {
                        "StringEquals": {
                            "kms:ViaService": [f"{s}.{args.region}.amazonaws.com" for s in dict.fromkeys(through)]
                        }
                    },
                }
            )
        self.register_outputs({"values": self.values})

    def _queue(self, queue: str, spec: QueueSpec) -> aws.sqs.Queue:
        """The queue and its dead-letter queue, which takes back only its own queue's failures."""
        args, child = self._args, pulumi.ResourceOptions(parent=self)
        dead = aws.sqs.Queue(
            f"queue-{queue}-dlq",
            name=dead_letter_name(args.names, queue),
            message_retention_seconds=spec.dead_letter_retention_seconds,
            kms_master_key_id=args.key_arn,
            kms_data_key_reuse_period_seconds=KEY_REUSE_SECONDS,
            opts=child,
        )
        main = aws.sqs.Queue(
            f"queue-{queue}",
            name=service_name(args.names, queue),
            visibility_timeout_seconds=spec.visibility_timeout_seconds,
            message_retention_seconds=spec.retention_seconds,
            redrive_policy=pulumi.Output.json_dumps(
                {"deadLetterTargetArn": dead.arn, "maxReceiveCount": spec.max_receive_count}
            ),
            kms_master_key_id=args.key_arn,
            kms_data_key_reuse_period_seconds=KEY_REUSE_SECONDS,
            opts=child,
        )
        aws.sqs.RedriveAllowPolicy(
            f"queue-{queue}-dlq",
            queue_url=dead.id,
            redrive_allow_policy=pulumi.Output.json_dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [main.arn]}
            ),
            opts=pulumi.ResourceOptions(parent=dead),
        )
        self.values[f"queues.{queue}.url"] = main.url
        self.values[f"queues.{queue}.arn"] = main.arn
        self.values[f"queues.{queue}.deadLetterUrl"] = dead.url
        self.statements.append({"Effect": "Allow", "Action": list(QUEUE_ACTIONS), "Resource": main.arn})
        if f"queues.{queue}.deadLetterUrl" in args.mapped:
            self.statements.append({"Effect": "Allow", "Action": list(DEAD_LETTER_ACTIONS), "Resource": dead.arn})
        return main

    def _topic(self, topic: str) -> aws.sns.Topic:
        args = self._args
        sns_topic = aws.sns.Topic(
            f"topic-{topic}",
            name=service_name(args.names, topic),
            kms_master_key_id=args.key_arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # In place of SNS's default policy, which lets any identity of the
        # account subscribe an endpoint or grant another account access: the
        # account's own IAM policies decide (the task role may only publish),
        # and nothing reaches the topic over plain HTTP.
        aws.sns.TopicPolicy(
            f"topic-{topic}",
            arn=sns_topic.arn,
            policy=policy_document(
                [
                    {
                        "Sid": "AccountPoliciesDecide",
                        "Effect": "Allow",
                        "Principal": {"AWS": args.account_root},
                        "Action": list(TOPIC_ACTIONS),
                        "Resource": sns_topic.arn,
                    },
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "sns:Publish",
                        "Resource": sns_topic.arn,
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                ]
            ),
            opts=pulumi.ResourceOptions(parent=sns_topic),
        )
        self.values[f"topics.{topic}.arn"] = sns_topic.arn
        self.statements.append({"Effect": "Allow", "Action": "sns:Publish", "Resource": sns_topic.arn})
        return sns_topic

    def _subscriptions(self, queue: str, main: aws.sqs.Queue, topics: Mapping[str, aws.sns.Topic]) -> None:
        """A raw subscription of the queue to each topic, and the queue's one
        policy: these topics, and nothing else, may send to it."""
        policy = aws.sqs.QueuePolicy(
            f"queue-{queue}-senders",
            queue_url=main.id,
            policy=policy_document(
                [
                    {
                        "Sid": f"{_sid(topic)}Delivers",
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": main.arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": sns_topic.arn}},
                    }
                    for topic, sns_topic in sorted(topics.items())
                ]
            ),
            opts=pulumi.ResourceOptions(parent=main),
        )
        for topic, sns_topic in sorted(topics.items()):
            aws.sns.TopicSubscription(
                f"topic-{topic}-to-{queue}",
                topic=sns_topic.arn,
                protocol="sqs",
                endpoint=main.arn,
                raw_message_delivery=True,
                # Until the queue's policy lets the topic send, deliveries would be refused.
                opts=pulumi.ResourceOptions(parent=sns_topic, depends_on=[policy]),
            )

    def _bucket(self, bucket: str) -> None:
        """Private, versioned, under the platform key, logged; the name qualified by the account (names are global)."""
        args = self._args
        private = private_bucket(
            f"bucket-{bucket}",
            bucket_name=pulumi.Output.concat(service_name(args.names, bucket), "-", args.account_id),
            kms_key_arn=args.key_arn,
            lifecycle=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="noncurrent",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=expire_noncurrent(NONCURRENT_DAYS),
                    abort_incomplete_multipart_upload=abort_uploads(),
                )
            ],
            access_log_bucket=args.access_log_bucket,
            parent=self,
        )
        arn = private.bucket.arn
        self.values[f"buckets.{bucket}.name"] = private.bucket.bucket
        self.statements += [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": arn},
            {"Effect": "Allow", "Action": list(OBJECT_ACTIONS), "Resource": arn.apply(lambda a: f"{a}/*")},
        ]

    def _email(self) -> None:
        """The sender's domain as an SES identity signed with Easy DKIM; the
        task may send from that one address only."""
        args, child = self._args, pulumi.ResourceOptions(parent=self)
        email = args.services.email
        assert email is not None
        identity = aws.sesv2.EmailIdentity(
            "email-identity",
            email_identity=email.domain,
            dkim_signing_attributes=aws.sesv2.EmailIdentityDkimSigningAttributesArgs(
                next_signing_key_length="RSA_2048_BIT"
            ),
            opts=child,
        )
        tokens = identity.dkim_signing_attributes.apply(_tokens)
        if args.email_zone_id is not None:
            # Easy DKIM always issues three tokens.
            for n in range(3):
                token = tokens.apply(functools.partial(_nth, n))
                aws.route53.Record(
                    f"email-dkim-{n + 1}",
                    zone_id=args.email_zone_id,
                    name=pulumi.Output.concat(token, "._domainkey.", email.domain),
                    type="CNAME",
                    records=[pulumi.Output.concat(token, f".{DKIM_TARGET}")],
                    ttl=1800,
                    opts=pulumi.ResourceOptions(parent=identity),
                )
        else:
            self.dkim_records = tokens.apply(
                lambda ts: [
                    {"name": f"{t}._domainkey.{email.domain}", "type": "CNAME", "value": f"{t}.{DKIM_TARGET}"}
                    for t in ts
                ]
            )
        self.values["email.sender"] = pulumi.Output.from_input(email.sender)
        self.statements.append(
            {
                "Effect": "Allow",
                "Action": list(SEND_ACTIONS),
                "Resource": identity.arn,
                "Condition": {"StringEquals": {"ses:FromAddress": email.sender}},
            }
        )


def _tokens(attributes: aws.sesv2.outputs.EmailIdentityDkimSigningAttributes | None) -> list[str]:
    return [] if attributes is None else list(attributes.tokens or [])


def _nth(n: int, tokens: list[str]) -> str:
    return tokens[n]


def _sid(name: str) -> str:
    """A statement id from a service name: letters and digits only."""
    return "".join(part.capitalize() for part in name.split("-"))
