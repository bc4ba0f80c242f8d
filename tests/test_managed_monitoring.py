"""What the prod stack hands Amazon Managed Prometheus and the ADOT collectors,
under the same real promtool and amtool as the local configs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.model.monitoring import NOTIFICATION_TEMPLATES, TEMPLATE_FILE
from tests.harness import Evaluation, evaluate
from tests.servers import require_binary
from tests.test_alert_rules import PROMTOOL, assert_promtool_passes
from tests.test_alertmanager_config import ROUTES, assert_amtool_accepts, assert_routed
from tests.test_stack_prod import CERT, RUNBOOKS, prod_config

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def prod() -> Evaluation:
    return evaluate(prod_config({"certificateArn": CERT, "domainName": "api.example.com"}), stack="prod")


def test_the_managed_definition_carries_the_same_template_as_the_local_alertmanager(prod: Evaluation) -> None:
    definition = yaml.safe_load(
        prod.named("aws:amp/alertManagerDefinition:AlertManagerDefinition", "alertmanager").inputs["definition"]
    )
    assert definition["template_files"] == {TEMPLATE_FILE: NOTIFICATION_TEMPLATES}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_binary(PROMTOOL, "prometheus")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)


@pytest.fixture
def alertmanager_config(prod: Evaluation, tmp_path: Path) -> Path:
    definition = yaml.safe_load(
        prod.named("aws:amp/alertManagerDefinition:AlertManagerDefinition", "alertmanager").inputs["definition"]
    )
    # AMP resolves `templates` by name among template_files; amtool beside the config.
    for name, text in definition["template_files"].items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "alertmanager.yml"
    path.write_text(definition["alertmanager_config"])
    return path


def test_amtool_accepts_the_managed_alertmanager_definition(alertmanager_config: Path) -> None:
    assert_amtool_accepts(alertmanager_config)


@pytest.mark.parametrize(("labels", "receiver"), ROUTES)
def test_managed_alerts_reach_the_receiver_for_their_severity(
    alertmanager_config: Path, labels: list[str], receiver: str
) -> None:
    assert_routed(alertmanager_config, labels, receiver)


def test_promtool_checks_and_unit_tests_the_rule_namespace(prod: Evaluation, tmp_path: Path) -> None:
    rules = tmp_path / "namespace.yml"
    rules.write_text(prod.named("aws:amp/ruleGroupNamespace:RuleGroupNamespace", "rules").inputs["data"])
    assert_promtool_passes(rules, tmp_path, runbooks=RUNBOOKS)


def _collector_configs(prod: Evaluation) -> dict[str, dict[str, Any]]:
    found = {}
    for task in prod.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        for container in json.loads(task.inputs["containerDefinitions"]):
            env = {e["name"]: e["value"] for e in container["environment"]}
            if "AOT_CONFIG_CONTENT" in env:
                found[task.name] = yaml.safe_load(env["AOT_CONFIG_CONTENT"])
    return found


def test_every_collector_scrape_config_passes_promtool(prod: Evaluation, tmp_path: Path) -> None:
    configs = _collector_configs(prod)
    assert sorted(configs) == ["api-task", "backups-task", "exporters-task"]
    jobs = set()
    for name, config in configs.items():
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(config["receivers"]["prometheus"]["config"]))
        result = promtool("check", "config", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        jobs |= {job["job_name"] for job in config["receivers"]["prometheus"]["config"]["scrape_configs"]}
        exporter = config["exporters"]["prometheusremotewrite"]
        assert exporter["endpoint"].endswith("/api/v1/remote_write")
        assert exporter["auth"] == {"authenticator": "sigv4auth"}
    # Every job the rules and dashboards expect from the workloads is scraped somewhere.
    assert jobs == {"api", "postgres", "redis", "backups"}


def test_each_task_keeps_its_own_instance_label(prod: Evaluation) -> None:
    for config in _collector_configs(prod).values():
        for job in config["receivers"]["prometheus"]["config"]["scrape_configs"]:
            assert job["relabel_configs"] == [{"target_label": "instance", "replacement": "${env:HOSTNAME}"}]
