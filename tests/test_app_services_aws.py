"""The app's AWS services on the aws target: the resources under the
platform key, what the app's task role may do with them (and nothing else),
the values the app receives, and the pack passing the graph both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.aws.app_services import DEAD_LETTER_ACTIONS, OBJECT_ACTIONS, QUEUE_ACTIONS, SEND_ACTIONS
from components.model.app_services import SERVICE_NAME_MAX, AwsServices, dead_letter_name, service_name
from components.model.naming import AWS_NAME_LIMITS, Names
from tests.aws_mocks import ACCOUNT, REGION
from tests.harness import Evaluation, evaluate, unwrap
from tests.policy_analyzer import policy_analyzer
from tests.test_app_contract import NOTES, notes_prod, problems, task_containers
from tests.test_app_services import MAPPING, SERVICES, notes_with_services
from tests.test_policy_analyzer import full, graph, named

QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
REDRIVE_ALLOW = "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy"
TOPIC = "aws:sns/topic:Topic"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"
RECORD = "aws:route53/record:Record"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
KEY = "aws:kms/key:Key"
KEY_ARN_PREFIX = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/"
ZONE = "Z0123456789ABCDEFGHIJ"


def sqs_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:wondernest-prod-app-{name}"


def sqs_url(name: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/wondernest-prod-app-{name}"


TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:wondernest-prod-app-events"
BUCKET = f"wondernest-prod-app-uploads-{ACCOUNT}"
IDENTITY_ARN = f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/notes.example.com"


def prod_with(
    services: dict[str, Any] = SERVICES, aws: dict[str, Any] | None = None, mapping: dict[str, str] | None = None
) -> Evaluation:
    """Prod running the notes app with these services, mapped as MAPPING maps them (or as given)."""
    chosen = MAPPING if mapping is None else mapping
    config = notes_prod(awsServices=services, platformEnvironment={**NOTES["platformEnvironment"], **chosen})
    config["aws"] = {**config["aws"], **(aws or {})}
    return evaluate(config, stack="prod")


@pytest.fixture(scope="module")
def prod() -> Evaluation:
    return prod_with()


def statements(ev: Evaluation, name: str) -> list[dict[str, Any]]:
    return list(json.loads(ev.named(ROLE_POLICY, name).inputs["policy"])["Statement"])


def test_each_queue_and_its_dead_letter_queue_under_the_platform_key(prod: Evaluation) -> None:
    queues = {q.name: q.inputs for q in prod.of_type(QUEUE)}
    assert sorted(queues) == ["queue-jobs", "queue-jobs-dlq", "queue-mail", "queue-mail-dlq"]
    for inputs in queues.values():
        assert inputs["kmsMasterKeyId"].startswith(KEY_ARN_PREFIX)
        assert inputs["kmsDataKeyReusePeriodSeconds"] == 300
    jobs = queues["queue-jobs"]
    assert jobs["name"] == "wondernest-prod-app-jobs"
    assert (jobs["visibilityTimeoutSeconds"], jobs["messageRetentionSeconds"]) == (5, 4 * 86400)
    assert json.loads(jobs["redrivePolicy"]) == {"deadLetterTargetArn": sqs_arn("jobs-dlq"), "maxReceiveCount": 3}
    assert queues["queue-jobs-dlq"]["messageRetentionSeconds"] == 14 * 86400
    assert "redrivePolicy" not in queues["queue-jobs-dlq"]
    # A dead-letter queue takes back its own queue's failures only.
    allow = prod.named(REDRIVE_ALLOW, "queue-jobs-dlq").inputs
    assert allow["queueUrl"] == sqs_url("jobs-dlq")
    assert json.loads(allow["redriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [sqs_arn("jobs")],
    }


def test_a_topic_delivers_raw_to_each_subscriber_and_only_it_may_send_there(prod: Evaluation) -> None:
    assert prod.named(TOPIC, "topic-events").inputs["kmsMasterKeyId"].startswith(KEY_ARN_PREFIX)
    subscriptions = {s.name: s for s in prod.of_type(SUBSCRIPTION) if s.name.startswith("topic-")}
    assert sorted(subscriptions) == ["topic-events-to-jobs", "topic-events-to-mail"]
    for queue in ("jobs", "mail"):
        subscription = subscriptions[f"topic-events-to-{queue}"]
        assert {k: subscription.inputs[k] for k in ("topic", "protocol", "endpoint", "rawMessageDelivery")} == {
            "topic": TOPIC_ARN,
            "protocol": "sqs",
            "endpoint": sqs_arn(queue),
            "rawMessageDelivery": True,
        }
        policy = prod.named(QUEUE_POLICY, f"queue-{queue}-senders")
        assert policy.inputs["queueUrl"] == sqs_url(queue)
        assert json.loads(policy.inputs["policy"])["Statement"] == [
            {
                "Sid": "EventsDelivers",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": sqs_arn(queue),
                "Condition": {"ArnEquals": {"aws:SourceArn": TOPIC_ARN}},
            }
        ]
        # Deliveries would be refused until the policy is in place.
        assert policy.options["urn"] in subscription.options["dependencies"]


def test_a_queue_two_topics_deliver_to_has_one_policy_naming_both() -> None:
    services = {
        "queues": {"jobs": {}},
        "topics": {"events": {"subscribers": ["jobs"]}, "audit": {"subscribers": ["jobs"]}},
    }
    ev = prod_with(services, mapping={})
    [policy] = ev.of_type(QUEUE_POLICY)
    sources = [s["Condition"]["ArnEquals"]["aws:SourceArn"] for s in json.loads(policy.inputs["policy"])["Statement"]]
    assert sources == [f"arn:aws:sns:{REGION}:{ACCOUNT}:wondernest-prod-app-{t}" for t in ("audit", "events")]


def test_a_bucket_is_private_encrypted_versioned_and_logged(prod: Evaluation) -> None:
    by_type = {d.typ.rsplit(":", 1)[1]: d.inputs for d in prod.declared if d.name == "bucket-uploads"}
    assert by_type["Bucket"]["bucket"] == BUCKET
    assert by_type["BucketPublicAccessBlock"] | {"bucket": None} == {
        "bucket": None,
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    assert by_type["BucketOwnershipControls"]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    assert by_type["BucketVersioning"]["versioningConfiguration"] == {"status": "Enabled"}
    [rule] = by_type["BucketServerSideEncryptionConfiguration"]["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith(KEY_ARN_PREFIX)
    assert by_type["BucketLogging"]["targetPrefix"] == "s3-access/bucket-uploads/"
    assert by_type["BucketLogging"]["targetBucket"].startswith("wondernest-prod-alb-logs-")
    [lifecycle] = by_type["BucketLifecycleConfiguration"]["rules"]
    assert lifecycle["noncurrentVersionExpiration"] == {"noncurrentDays": 30}
    denied = json.loads(by_type["BucketPolicy"]["policy"])["Statement"][0]
    assert denied["Effect"] == "Deny" and denied["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_sender_domain_is_signed_with_dkim_and_its_records_are_outputs_without_a_zone(prod: Evaluation) -> None:
    identity = prod.named(IDENTITY, "email-identity").inputs
    assert identity["emailIdentity"] == "notes.example.com"
    assert identity["dkimSigningAttributes"] == {"nextSigningKeyLength": "RSA_2048_BIT"}
    assert not [r for r in prod.of_type(RECORD) if r.name.startswith("email-dkim")]
    records = prod.outputs["emailDkimRecords"]
    assert len(records) == 3
    for record in records:
        token = record["name"].split(".", 1)[0]
        assert record == {
            "name": f"{token}._domainkey.notes.example.com",
            "type": "CNAME",
            "value": f"{token}.dkim.amazonses.com",
        }


def test_with_a_zone_the_dkim_records_are_written_there() -> None:
    ev = prod_with(aws={"emailHostedZoneId": ZONE})
    records = sorted(
        (r.inputs["name"], r.inputs["records"][0]) for r in ev.of_type(RECORD) if r.name.startswith("email-dkim")
    )
    assert len(records) == 3
    for name, target in records:
        token = name.split(".", 1)[0]
        assert (name, target) == (f"{token}._domainkey.notes.example.com", f"{token}.dkim.amazonses.com")
    assert all(r.inputs["zoneId"] == ZONE and r.inputs["type"] == "CNAME" for r in ev.of_type(RECORD))
    assert "emailDkimRecords" not in ev.outputs


def test_the_task_role_may_do_exactly_what_the_contract_declares_on_exactly_those(prod: Evaluation) -> None:
    found = statements(prod, "api-task-role")
    key = found[-1]
    assert key["Resource"].startswith(KEY_ARN_PREFIX)
    assert found[:-1] == [
        {"Effect": "Allow", "Action": list(QUEUE_ACTIONS), "Resource": sqs_arn("jobs")},
        # The jobs' dead-letter URL is mapped, so its queue may be read; the mail's is not.
        {"Effect": "Allow", "Action": list(DEAD_LETTER_ACTIONS), "Resource": sqs_arn("jobs-dlq")},
        {"Effect": "Allow", "Action": list(QUEUE_ACTIONS), "Resource": sqs_arn("mail")},
        {"Effect": "Allow", "Action": "sns:Publish", "Resource": TOPIC_ARN},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}"},
        {"Effect": "Allow", "Action": list(OBJECT_ACTIONS), "Resource": f"arn:aws:s3:::{BUCKET}/*"},
        {
            "Effect": "Allow",
            "Action": list(SEND_ACTIONS),
            "Resource": IDENTITY_ARN,
            "Condition": {"StringEquals": {"ses:FromAddress": "no-reply@notes.example.com"}},
        },
    ]
    assert key == {
        "Sid": "UsePlatformKey",
        "Effect": "Allow",
        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
        "Resource": key["Resource"],
        "Condition": {
            "StringEquals": {"kms:ViaService": [f"{s}.{REGION}.amazonaws.com" for s in ("sqs", "sns", "s3")]}
        },
    }
    [task] = [d for d in prod.of_type("aws:ecs/taskDefinition:TaskDefinition") if d.inputs["family"].endswith("-api")]
    assert task.inputs["taskRoleArn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/api-task-role")


def test_an_app_with_only_a_bucket_gets_only_the_bucket_and_s3s_use_of_the_key() -> None:
    ev = prod_with({"buckets": ["uploads"]}, mapping={"NOTES_UPLOADS_BUCKET": "buckets.uploads.name"})
    found = statements(ev, "api-task-role")
    assert [s["Action"] for s in found] == [
        "s3:ListBucket",
        list(OBJECT_ACTIONS),
        ["kms:GenerateDataKey", "kms:Decrypt"],
    ]
    assert found[-1]["Condition"]["StringEquals"]["kms:ViaService"] == [f"s3.{REGION}.amazonaws.com"]
    assert not ev.of_type(QUEUE) and not [t for t in ev.of_type(TOPIC) if t.name.startswith("topic-")]
    # Nothing for queues in the key's policy either.
    policy = json.loads(ev.named(KEY, "key").inputs["policy"])
    via = next(s for s in policy["Statement"] if s["Sid"] == "UseThroughServices")["Condition"]["StringEquals"]
    assert f"sqs.{REGION}.amazonaws.com" not in via["kms:ViaService"]
    assert "TopicsDeliverToQueues" not in [s["Sid"] for s in policy["Statement"]]


def test_the_key_lets_sqs_use_it_and_sns_deliver_into_the_queues_for_this_account(prod: Evaluation) -> None:
    policy = json.loads(prod.named(KEY, "key").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert f"sqs.{REGION}.amazonaws.com" in by_sid["UseThroughServices"]["Condition"]["StringEquals"]["kms:ViaService"]
    assert by_sid["TopicsDeliverToQueues"] == {
        "Sid": "TopicsDeliverToQueues",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}, "ArnEquals": {"aws:SourceArn": [TOPIC_ARN]}},
    }


def test_the_app_receives_each_mapped_value_as_aws_gives_it(prod: Evaluation) -> None:
    api = task_containers(prod)["api"]
    env = {e["name"]: e["value"] for e in api["environment"]}
    assert {name: env[name] for name in MAPPING} == {
        "NOTES_JOBS_QUEUE": sqs_url("jobs"),
        "NOTES_JOBS_DLQ": sqs_url("jobs-dlq"),
        "NOTES_EVENTS_TOPIC": TOPIC_ARN,
        "NOTES_UPLOADS_BUCKET": BUCKET,
        "NOTES_MAIL_FROM": "no-reply@notes.example.com",
    }
    # The SDKs find the region and the task role's credentials on their own on Fargate.
    assert not [name for name in env if name.startswith("AWS_")]


PACK_CONFIG = {
    "all": "mandatory",
    "aws-ecs-task-hardened": {
        "nonSecretEnvironment": [
            "NOTES_GREETING", "NOTES_LISTEN_PORT", "NOTES_PG_HOST", "NOTES_PG_PORT", "NOTES_PG_DATABASE",
            "NOTES_PG_SSLMODE", "NOTES_PG_CA", "NOTES_CACHE_HOST", "NOTES_CACHE_PORT", "NOTES_CACHE_USER",
            "NOTES_CACHE_TLS", *MAPPING,
        ]
    },
}  # fmt: skip


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_the_graph_with_services_passes_the_pack(preview: bool, tmp_path: Path) -> None:
    """Through the analyzer as the engine drives it, with the pack config a
    stack of this app would carry (its plain variable names)."""
    config_file = tmp_path / "prod.json"
    config_file.write_text(json.dumps(PACK_CONFIG))
    config = notes_prod(awsServices=SERVICES, platformEnvironment=notes_with_services()["platformEnvironment"])
    with policy_analyzer(
        stack="prod", project="wondernest", config=full(config), dry_run=preview, policy_config=config_file
    ) as analyzer:
        assert named(analyzer.analyze(graph(config, "prod", preview=preview))) == {}


def test_the_values_in_the_task_are_plain_settings_not_secrets(prod: Evaluation) -> None:
    api = task_containers(prod)["api"]
    assert not {s["name"] for s in api.get("secrets", [])} & set(MAPPING)
    assert unwrap(prod.outputs["secretArns"]).keys() >= {"jwt-signing-key"}


def test_the_longest_names_the_config_allows_fit_awss_limits() -> None:
    """The stack's own limits (AWS_NAME_LIMITS) bound `<app>-<stack>`; with the
    longest service name, a bucket (with the account id) and a dead-letter
    queue still fit S3's 63 characters and SQS's 80."""
    longest = min(limit.limit - len(limit.suffix) for limit in AWS_NAME_LIMITS)
    names = Names("a" * (longest - 2), "b")
    assert len(names.resource("")) - 1 == longest
    service = "c" * SERVICE_NAME_MAX
    assert AwsServices.model_validate({"buckets": [service]}).buckets == (service,)
    with pytest.raises(ValueError, match="should match pattern"):
        AwsServices.model_validate({"buckets": [service + "c"]})
    assert len(f"{service_name(names, service)}-{ACCOUNT}") == 63
    assert len(dead_letter_name(names, service)) <= 80


def physical_names(ev: Evaluation) -> dict[tuple[str, str], list[str]]:
    """(kind, physical name) → the resources that would take it."""
    kinds = {"aws:s3/bucket:Bucket": "bucket", TOPIC: "topic", QUEUE: "queue"}
    found: dict[tuple[str, str], list[str]] = {}
    for d in ev.declared:
        if d.typ in kinds:
            name = d.inputs.get("bucket") or d.inputs.get("name")
            found.setdefault((kinds[d.typ], str(name)), []).append(d.name)
    return found


def test_an_app_cannot_take_a_platform_resources_name() -> None:
    """The dumps bucket is `<app>-<stack>-backups-<account>` and the pager's
    topic `<app>-<stack>-alerts-page`: the app's of the same names live in
    their own namespace."""
    ev = prod_with({"buckets": ["backups", "alb-logs"], "topics": {"alerts-page": {}}}, mapping={})
    taken = {key: names for key, names in physical_names(ev).items() if len(names) > 1}
    assert taken == {}
    assert ("topic", "wondernest-prod-app-alerts-page") in physical_names(ev)
    platform = physical_names(prod_with({}, mapping={}))
    assert not [name for _, name in platform if name.startswith("wondernest-prod-app-")]


def test_a_zone_for_dkim_records_without_an_email_sender_is_refused() -> None:
    config = notes_prod()
    config["aws"] = {**config["aws"], "emailHostedZoneId": ZONE}
    assert (
        f"wondernest:aws.emailHostedZoneId = {ZONE!r}: holds the DKIM records of app.awsServices.email, which is unset"
        in problems(config, stack="prod")
    )


def test_a_topic_is_administered_only_as_the_accounts_policies_allow(prod: Evaluation) -> None:
    """In place of SNS's default policy, under which any identity of the account
    may subscribe an endpoint of its own or grant another account access."""
    policy = json.loads(prod.named("aws:sns/topicPolicy:TopicPolicy", "topic-events").inputs["policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["AccountPoliciesDecide", "DenyInsecureTransport"]
    owner, insecure = policy["Statement"]
    assert owner["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"} and owner["Resource"] == TOPIC_ARN
    assert insecure["Effect"] == "Deny" and insecure["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_apps_role_reaching_what_another_component_declares_is_refused(tmp_path: Path) -> None:
    """Through the analyzer, with the engine's URNs: the dumps bucket is the
    backups', not the app's, though the same stack declares it."""
    config_file = tmp_path / "prod.json"
    config_file.write_text(json.dumps(PACK_CONFIG))
    config = notes_prod(awsServices=SERVICES, platformEnvironment=notes_with_services()["platformEnvironment"])
    resources = graph(config, "prod", preview=False)
    dumps = next(r for r in resources if r.type == "aws:s3/bucket:Bucket" and r.name == "dumps").state["arn"]

    def read_dumps(props: dict[str, Any]) -> dict[str, Any]:
        document = json.loads(props["policy"])
        document["Statement"].append({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{dumps}/*"})
        return {**props, "policy": json.dumps(document)}

    mutated = [r.changed(read_dumps) if r.type == ROLE_POLICY and r.name == "api-task-role" else r for r in resources]
    with policy_analyzer(
        stack="prod", project="wondernest", config=full(config), dry_run=False, policy_config=config_file
    ) as analyzer:
        assert named(analyzer.analyze(mutated)) == {"aws-task-role-scoped": ["api-task-role"]}
