"""Another project from this one: the config namespace is the project's name,
`pulumi new` asks for what the template declares, and the schemas come from
config. Under the mock runtime and with check_config on a renamed copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.config import ConfigError, PlatformConfig, parse_config
from components.model.database import SCHEMAS
from tests.harness import CONTAINER_TYPE, declared_by, evaluate, stack_config

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_TYPE = "pulumi-python:dynamic/postgres:Schema"
GRANT_TYPE = "pulumi-python:dynamic/postgres:SchemaGrant"


def test_a_renamed_project_reads_its_own_namespace() -> None:
    ev = evaluate({**stack_config(), "appName": "acme"}, project="acme")
    assert ev.outputs["roles"]["app"] == "acme_app"
    assert ev.outputs["postgresDatabase"] == "acme"
    names = {d.inputs.get("name") for d in ev.of_type(CONTAINER_TYPE)}
    assert "acme-dev-api" in names and not any(str(n).startswith("wondernest") for n in names)


def test_keys_left_in_the_old_namespace_are_named_and_nothing_is_declared() -> None:
    with pytest.raises(ConfigError) as caught:
        evaluate({"appName": "acme"}, project="acme", other_keys={"wondernest:target": "docker"})
    assert caught.value.problems == [
        "wondernest:target: 'wondernest' is neither this project's namespace nor a provider's; "
        "the project is 'acme' (Pulumi.yaml), so the key is acme:target",
        "acme:target: required and not set",
    ]
    assert not declared_by({"appName": "acme"}, project="acme", other_keys={"wondernest:target": "docker"})


def test_providers_keep_their_own_namespaces() -> None:
    ev = evaluate(stack_config(), other_keys={"aws:region": "eu-west-1", "docker:host": "unix:///var/run/docker.sock"})
    assert ev.outputs["roles"]["app"] == "wondernest_app"


def renamed_copy(tmp_path: Path, project: str, namespace: str) -> Path:
    document = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    document["name"] = project
    (tmp_path / "Pulumi.yaml").write_text(yaml.safe_dump(document))
    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    renamed = {f"{namespace}:{key.split(':', 1)[1]}": value for key, value in config.items()}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": renamed}))
    return tmp_path


def check_config(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "components.commands.check_config", "dev", "--root", str(root)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_check_config_follows_the_project_name(tmp_path: Path) -> None:
    result = check_config(renamed_copy(tmp_path, "acme", "acme"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Pulumi.dev.yaml: valid (target docker, appName wondernest)\n"


def test_check_config_names_keys_in_another_projects_namespace(tmp_path: Path) -> None:
    result = check_config(renamed_copy(tmp_path, "acme", "wondernest"))
    assert result.returncode == 1
    assert "wondernest:target: 'wondernest' is neither this project's namespace nor a provider's" in result.stderr
    assert "acme:target: required and not set" in result.stderr


def test_a_project_without_a_project_file_is_named(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Pulumi.dev.yaml", tmp_path / "Pulumi.dev.yaml")
    result = check_config(tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'Pulumi.yaml'}: cannot read the project's name")


def test_the_template_asks_for_keys_the_program_reads_with_valid_defaults() -> None:
    template = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["template"]
    config = template["config"]
    assert set(config) == {"appName", "target"}
    fields = {info.alias or name for name, info in PlatformConfig.model_fields.items()}
    assert set(config) <= fields
    for key, entry in config.items():
        assert entry["description"] and ":" not in key
    defaults = {key: entry["default"] for key, entry in config.items()}
    assert parse_config(defaults).app_name == "wondernest"


def test_schemas_come_from_config() -> None:
    ev = evaluate(
        {**stack_config(), "postgres": {**stack_config()["postgres"], "schemas": ["core", "audit", "billing"]}}
    )
    assert {d.name for d in ev.of_type(SCHEMA_TYPE)} == {"schema-core", "schema-audit", "schema-billing"}
    assert {d.inputs["schema"] for d in ev.of_type(GRANT_TYPE)} == {"core", "audit", "billing"}
    assert len(SCHEMAS) == 9
    default = evaluate(stack_config())
    assert {d.inputs["name"] for d in default.of_type(SCHEMA_TYPE)} == set(SCHEMAS)


@pytest.mark.parametrize(
    ("schemas", "problem"),
    [
        (["core"], "the bundled API's migrations need audit"),
        (["core", "audit", "Billing"], "'Billing' is not a lower-case identifier of at most 63 characters"),
        (["core", "audit", "public"], "'public' is Postgres' own"),
        (["core", "audit", "pg_temp"], "'pg_temp' is Postgres' own"),
        (["core", "audit", "core"], "'core' is listed twice"),
    ],
)
def test_bad_schema_lists_are_refused(schemas: list[str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"target": "docker", "postgres": {"schemas": schemas}})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("wondernest:postgres.schemas = ")
    assert caught.value.problems[0].endswith(problem)
