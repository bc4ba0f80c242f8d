"""The AWS services an app declares (`app.awsServices`): refused at config time
with the key named when wrong, and on the dev stack served by the emulator, with
what the app needs under the names it chose."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.local.api import AWS_CREDENTIALS_FILE, EMULATOR_CREDENTIALS
from components.model.app_services import AwsServices, emulated_resources, emulated_values
from components.model.naming import Names
from tests.harness import CONTAINER_TYPE, Evaluation, evaluate, stack_config, unwrap
from tests.policy_analyzer import policy_analyzer
from tests.test_app_contract import NOTES, envs, problems
from tests.test_policy_analyzer import full, graph, named

SERVICES: dict[str, Any] = {
    "queues": {"jobs": {"maxReceiveCount": 3, "visibilityTimeoutSeconds": 5}, "mail": {}},
    "topics": {"events": {"subscribers": ["jobs", "mail"]}},
    "buckets": ["uploads"],
    "email": {"sender": "no-reply@notes.example.com"},
}
MAPPING = {
    "NOTES_JOBS_QUEUE": "queues.jobs.url",
    "NOTES_JOBS_DLQ": "queues.jobs.deadLetterUrl",
    "NOTES_EVENTS_TOPIC": "topics.events.arn",
    "NOTES_UPLOADS_BUCKET": "buckets.uploads.name",
    "NOTES_MAIL_FROM": "email.sender",
}
NAMES = Names(app="wondernest", stack="dev")


def notes_with_services(services: dict[str, Any] = SERVICES, **mapping: str) -> dict[str, Any]:
    return {
        **NOTES,
        "awsServices": services,
        "platformEnvironment": {**NOTES["platformEnvironment"], **MAPPING, **mapping},
    }


@pytest.fixture(scope="module")
def dev() -> Evaluation:
    # Without devTools.s3: the services alone bring the emulator up.
    return evaluate(stack_config({"app": notes_with_services(), "devTools": {"enabled": False, "s3": False}}))


def test_the_app_gets_each_mapped_value_and_the_sdks_settings(dev: Evaluation) -> None:
    env = envs(dev, "api")
    assert {name: env[name] for name in MAPPING} == {
        "NOTES_JOBS_QUEUE": "http://dev-s3:4566/123456789012/wondernest-dev-app-jobs",
        "NOTES_JOBS_DLQ": "http://dev-s3:4566/123456789012/wondernest-dev-app-jobs-dlq",
        "NOTES_EVENTS_TOPIC": "arn:aws:sns:us-east-1:123456789012:wondernest-dev-app-events",
        "NOTES_UPLOADS_BUCKET": "wondernest-dev-app-uploads",
        "NOTES_MAIL_FROM": "no-reply@notes.example.com",
    }
    assert {k: v for k, v in env.items() if k.startswith("AWS_")} == {
        "AWS_ENDPOINT_URL": "http://dev-s3:4566",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": AWS_CREDENTIALS_FILE,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    uploads = {u["file"]: u for u in unwrap(dev.named(CONTAINER_TYPE, "api").inputs["uploads"])}
    assert uploads[AWS_CREDENTIALS_FILE]["content"] == EMULATOR_CREDENTIALS


def test_the_emulator_runs_for_the_services_and_the_app_waits_for_it(dev: Evaluation) -> None:
    emulator = dev.named(CONTAINER_TYPE, "dev-s3")
    spec = json.loads(envs(dev, "dev-s3")["EMULATED_RESOURCES"])
    assert spec == emulated_resources(AwsServices.model_validate(SERVICES), NAMES, region="us-east-1")
    assert spec["queues"][0] == {
        "name": "wondernest-dev-app-jobs",
        "deadLetter": "wondernest-dev-app-jobs-dlq",
        "maxReceiveCount": 3,
        "visibilityTimeout": 5,
        "retention": 4 * 86400,
        "deadLetterRetention": 14 * 86400,
    }
    assert spec["topics"] == [
        {"name": "wondernest-dev-app-events", "subscribers": ["wondernest-dev-app-jobs", "wondernest-dev-app-mail"]}
    ]
    assert spec["emailDomains"] == ["notes.example.com"]
    assert emulator.options["urn"] in dev.named(CONTAINER_TYPE, "api").options["dependencies"]
    # Only the backend network: the host reaches it through nothing.
    assert [n["name"] for n in unwrap(emulator.inputs["networksAdvanced"])] == ["wondernest-dev-backend"]
    assert "ports" not in emulator.inputs or not emulator.inputs["ports"]


def test_without_services_or_s3_there_is_no_emulator_and_no_aws_settings() -> None:
    ev = evaluate(stack_config({"app": NOTES, "devTools": {"enabled": False, "s3": False}}))
    assert not [d for d in ev.of_type(CONTAINER_TYPE) if d.name == "dev-s3"]
    assert not [k for k in envs(ev, "api") if k.startswith("AWS_")]


def test_the_values_name_what_the_emulator_creates() -> None:
    services = AwsServices.model_validate(SERVICES)
    values = emulated_values(services, NAMES, endpoint="http://dev-s3:4566", region="us-east-1")
    assert set(values) == services.values()
    created = emulated_resources(services, NAMES, region="us-east-1")
    queue_names = {q["name"] for q in created["queues"]} | {q["deadLetter"] for q in created["queues"]}
    assert {v.rsplit("/", 1)[1] for k, v in values.items() if k.endswith("rl")} <= queue_names
    assert {v.rsplit(":", 1)[1] for k, v in values.items() if k.startswith("topics.")} == {
        t["name"] for t in created["topics"]
    }


@pytest.mark.parametrize(
    ("services", "mapping", "expected"),
    [
        (
            {"queues": {"Jobs": {}}},
            {},
            "wondernest:app.awsServices.queues.Jobs.[key] = 'Jobs': String should match pattern",
        ),
        (
            {"queues": {"jobs-dlq": {}}},
            {},
            "app.awsServices.queues.jobs-dlq = {...}: a name ending in -dlq is its dead-letter queue's",
        ),
        ({"queues": {"jobs": {"maxReceiveCount": 0}}}, {}, "queues.jobs.maxReceiveCount = 0: Input should be greater"),
        (
            {"queues": {"jobs": {"retentionSeconds": 86400, "deadLetterRetentionSeconds": 3600}}},
            {},
            "queues.jobs.deadLetterRetentionSeconds = 3600: 3600 is shorter than retentionSeconds (86400)",
        ),
        (
            {"queues": {"jobs": {"visibilityTimeoutSeconds": 43201}}},
            {},
            "queues.jobs.visibilityTimeoutSeconds = 43201: Input should be less than or equal to 43200",
        ),
        (
            {"topics": {"events": {"subscribers": ["jobs"]}}},
            {},
            "app.awsServices.topics.events.subscribers = ['jobs']: 'jobs' is not a queue of awsServices.queues",
        ),
        ({"buckets": ["up", "up"]}, {}, "app.awsServices.buckets = ['up', 'up']: a bucket is named twice"),
        ({"email": {"sender": "not an address"}}, {}, "app.awsServices.email.sender = 'not an address'"),
        ({}, {"Q": "queues.jobs.url"}, "app.platformEnvironment.Q = 'queues.jobs.url': queues.jobs.url names no queue"),
        ({}, {"T": "topics.news.arn"}, "T = 'topics.news.arn': topics.news.arn names no topic 'news'"),
        (
            {},
            {"M": "email.sender"},
            "app.platformEnvironment.M = 'email.sender': email.sender with no awsServices.email",
        ),
        ({}, {"Q": "queues.jobs.name"}, "app.platformEnvironment.Q = 'queues.jobs.name': not a platform value"),
    ],
)
def test_bad_services_are_refused_with_the_key_named(
    services: dict[str, Any], mapping: dict[str, str], expected: str
) -> None:
    app = {**NOTES, "awsServices": services, "platformEnvironment": {**NOTES["platformEnvironment"], **mapping}}
    found = problems(stack_config({"app": app}))
    assert any(expected in problem for problem in found), found


def test_the_bundled_api_declares_none() -> None:
    found = problems(stack_config({"app": {"awsServices": {"buckets": ["uploads"]}}}))
    assert (
        "wondernest:app.awsServices = {...}: the bundled API uses none; declare them for an app.image or app.build"
        in found
    )


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_the_services_add_nothing_the_pack_refuses(preview: bool) -> None:
    """The notes app has no metrics, which the pack reports with or without
    services; the emulator, the app's AWS settings and its credentials file
    add no report of their own."""
    found = []
    for app in (NOTES, notes_with_services()):
        config = stack_config({"app": app})
        with policy_analyzer(stack="dev", project="wondernest", config=full(config), dry_run=preview) as analyzer:
            found.append(named(analyzer.analyze(graph(config, "dev", preview=preview))))
    assert found[0] == found[1] == {"monitoring-every-service-scraped": ["api"]}
