"""The stack's rendered prometheus.yml under the real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from components.model.alerts import AlertThresholds, render_rule_file, rule_groups
from components.model.monitoring import SCRAPE_INTERVALS, container_targets, render_prometheus_config
from tests.servers import require_binary

pytestmark = pytest.mark.servers

PROMTOOL = "/usr/bin/promtool"


def test_promtool_accepts_the_stack_config(tmp_path: Path) -> None:
    require_binary(PROMTOOL, "prometheus")
    rules = tmp_path / "platform.yml"
    rules.write_text(render_rule_file(rule_groups(AlertThresholds(0.999, 1.0, "wondernest"))))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        render_prometheus_config(
            targets=container_targets("api:9102"),
            external_labels={"app": "wondernest", "environment": "dev"},
            alertmanager="alertmanager:9093",
            rule_files=[str(rules)],
        )
    )
    result = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_job_has_scrape_settings_and_nothing_scrapes_a_database_port() -> None:
    targets = container_targets("api:9102")
    assert set(targets) == set(SCRAPE_INTERVALS)
    assert not any(t.endswith((":5432", ":6379")) for t in targets.values())
    rendered = yaml.safe_load(
        render_prometheus_config(targets=targets, external_labels={}, alertmanager="am:9093", rule_files=[])
    )
    assert [j["job_name"] for j in rendered["scrape_configs"]] == list(SCRAPE_INTERVALS)
