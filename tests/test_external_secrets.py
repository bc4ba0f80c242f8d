"""An app's external secrets (`app.externalSecrets`, valued in `appSecrets`):
refused at config time when incomplete, never echoed, and delivered like the
platform's own secrets: a file locally, a secret reference on AWS."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from wondernest_policies.credentials import UNROTATED_SECRETS

from components.config import ConfigError, parse_config
from components.credentials import external_secrets
from tests.aws_mocks import ACCOUNT, REGION
from tests.harness import CONTAINER_TYPE, SECRET_SIG, Evaluation, evaluate, stack_config, unwrap
from tests.policy_analyzer import policy_analyzer
from tests.test_app_contract import NOTES, envs, notes_prod, task_containers
from tests.test_policy_analyzer import full, graph, named

VALUE = "SG.k3Y-from-the-mail-provider"
SECRET = "aws:secretsmanager/secret:Secret"
VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def with_secret(**app: Any) -> dict[str, Any]:
    return {
        **NOTES,
        "externalSecrets": ["mail-key"],
        "platformEnvironment": {**NOTES["platformEnvironment"], "NOTES_MAIL_KEY": "secrets.mail-key"},
        **app,
    }


def problems(config: dict[str, Any], secret_keys: tuple[str, ...] = ("wondernest:appSecrets",)) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config, secret_keys, stack="dev")
    return caught.value.problems


@pytest.mark.parametrize(
    ("app", "values", "expected"),
    [
        (
            with_secret(),
            {},
            "wondernest:appSecrets.mail-key = [secret]: not set; "
            "pulumi config set --secret --path 'appSecrets.mail-key' <value>",
        ),
        (
            with_secret(),
            {"mail-key": VALUE, "sms-key": VALUE},
            "wondernest:appSecrets.sms-key = [secret]: no secret of app.externalSecrets; remove it or declare it there",
        ),
        (with_secret(), {"mail-key": ""}, "wondernest:appSecrets.mail-key = [secret]: empty"),
        (with_secret(), {"mail-key": " \t "}, "wondernest:appSecrets.mail-key = [secret]: empty"),
        (
            with_secret(),
            {"mail-key": f"{VALUE}\n"},
            "wondernest:appSecrets.mail-key = [secret]: begins or ends with white space (a newline pasted with it?)",
        ),
        (
            with_secret(externalSecrets=["mail-key", "mail-key"]),
            {"mail-key": VALUE},
            "app.externalSecrets = ['mail-key', 'mail-key']: a secret is named twice",
        ),
        (
            with_secret(externalSecrets=["mail-key", "sms-key"]),
            {"mail-key": VALUE, "sms-key": VALUE},
            "'sms-key' is delivered by no platformEnvironment variable (map secrets.sms-key)",
        ),
        (
            with_secret(platformEnvironment={**NOTES["platformEnvironment"], "NOTES_MAIL_KEY": "secrets.mail"}),
            {"mail-key": VALUE},
            "app.platformEnvironment.NOTES_MAIL_KEY = 'secrets.mail': secrets.mail names no secret of externalSecrets",
        ),
        (
            with_secret(
                platformEnvironment={
                    **NOTES["platformEnvironment"],
                    "NOTES_MAIL_KEY": "secrets.mail-key",
                    "NOTES_MAIL_KEY_AGAIN": "secrets.mail-key",
                }
            ),
            {"mail-key": VALUE},
            "NOTES_MAIL_KEY_AGAIN = 'secrets.mail-key': secrets.mail-key is already delivered as NOTES_MAIL_KEY",
        ),
        (
            {"externalSecrets": ["mail-key"]},
            {"mail-key": VALUE},
            "wondernest:app.externalSecrets = ['mail-key']: the bundled API reads none",
        ),
        (with_secret(externalSecrets=["Mail_Key"]), {"Mail_Key": VALUE}, "app.externalSecrets.0 = 'Mail_Key'"),
    ],
)
def test_bad_external_secrets_are_refused_with_the_key_named(
    app: dict[str, Any], values: dict[str, str], expected: str
) -> None:
    found = problems(stack_config({"app": app, "appSecrets": values}))
    assert any(expected in problem for problem in found), found
    assert not any(VALUE in problem for problem in found)


def test_values_set_without_secret_are_refused_and_not_echoed() -> None:
    found = problems(stack_config({"app": with_secret(), "appSecrets": {"mail-key": VALUE}}), secret_keys=())
    assert found == [
        "wondernest:appSecrets: set without --secret, so the stack file holds it in plain text; set each value "
        "again with pulumi config set --secret --path 'appSecrets.<name>' <value>"
    ]


@pytest.fixture(scope="module")
def dev() -> Evaluation:
    return evaluate(stack_config({"app": with_secret(), "appSecrets": {"mail-key": VALUE}}), secret_keys=["appSecrets"])


def test_locally_it_is_a_file_of_the_apps_named_by_its_variable(dev: Evaluation) -> None:
    env = envs(dev, "api")
    assert env["NOTES_MAIL_KEY_FILE"] == "/run/secrets/external-mail-key"
    assert "NOTES_MAIL_KEY" not in env
    assert VALUE not in json.dumps(dev.named(CONTAINER_TYPE, "api").inputs["envs"])
    uploads = {u["file"]: u for u in unwrap(dev.named(CONTAINER_TYPE, "api").inputs["uploads"])}
    upload = uploads["/run/secrets/external-mail-key"]
    assert (upload["content"], upload["permissions"]) == (VALUE, "0400")


def test_each_value_is_a_secret_from_the_moment_the_program_reads_it() -> None:
    cfg = parse_config(
        stack_config({"app": with_secret(), "appSecrets": {"mail-key": VALUE}}), ["wondernest:appSecrets"]
    )

    async def secret() -> bool:
        values = external_secrets(cfg)
        assert list(values) == ["mail-key"]
        return await values["mail-key"].is_secret()

    assert asyncio.run(secret())
    assert "SecretStr" in repr(cfg.app_secrets) and VALUE not in repr(cfg)


@pytest.fixture(scope="module")
def prod() -> tuple[Evaluation, dict[str, Any]]:
    config = notes_prod(**{k: v for k, v in with_secret().items() if k not in NOTES or k == "platformEnvironment"})
    config["appSecrets"] = {"mail-key": VALUE}
    return evaluate(config, stack="prod", secret_keys=["appSecrets"]), config


def test_on_aws_it_is_a_secret_of_its_own_read_by_reference(prod: tuple[Evaluation, dict[str, Any]]) -> None:
    ev, _ = prod
    secret = ev.named(SECRET, "external-mail-key").inputs
    assert secret["name"] == "wondernest/prod/external-mail-key"
    assert secret["kmsKeyId"].startswith(f"arn:aws:kms:{REGION}:{ACCOUNT}:key/")
    version = ev.named(VERSION, "external-mail-key").inputs
    assert SECRET_SIG in version["secretString"] and unwrap(version["secretString"]) == VALUE
    api = task_containers(ev)["api"]
    [reference] = [s for s in api["secrets"] if s["name"] == "NOTES_MAIL_KEY"]
    arn = reference["valueFrom"].split(":::", 1)[0]
    assert arn.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:wondernest/prod/external-mail-key-")
    # Pinned to the version: a new value is a new version, a new task definition, and a rolling deploy.
    assert reference["valueFrom"].count(":::") == 1 and not reference["valueFrom"].endswith(":::")
    assert VALUE not in json.dumps(task_containers(ev))
    readable = [
        r
        for s in json.loads(ev.named(ROLE_POLICY, "api-execution-role").inputs["policy"])["Statement"]
        if s["Action"] == "secretsmanager:GetSecretValue"
        for r in s["Resource"]
    ]
    assert arn in readable


@pytest.mark.parametrize("excused", [False, True], ids=["refused", "excused"])
def test_the_pack_asks_for_its_rotation_or_the_reason_there_is_none(
    prod: tuple[Evaluation, dict[str, Any]], excused: bool, tmp_path: Path
) -> None:
    _, config = prod
    pack: dict[str, Any] = {"all": "mandatory"}
    if excused:
        reasons = {**UNROTATED_SECRETS, "external-mail-key": "issued by the mail provider; rotated there"}
        pack["aws-secrets-rotate"] = {"unrotatedSecrets": reasons}
    (tmp_path / "prod.json").write_text(json.dumps(pack))
    with policy_analyzer(
        stack="prod", project="wondernest", config=full(config), dry_run=False, policy_config=tmp_path / "prod.json"
    ) as analyzer:
        found = named(analyzer.analyze(graph(config, "prod", preview=False, secret_keys=["appSecrets"])))
    assert found.get("aws-secrets-rotate") == (None if excused else ["external-mail-key"])
