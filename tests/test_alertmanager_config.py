"""The rendered alertmanager.yml under the real amtool: valid, and routed by severity."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from components.spec.monitoring import Receivers, render_alertmanager_config
from tests.servers import require_binary

pytestmark = pytest.mark.servers

AMTOOL = "/usr/bin/amtool"
ALL_RECEIVERS = Receivers(
    webhook_url="https://hooks.example.com/alerts",
    webhook_has_token=True,
    slack_channel="#alerts",
    email_to="ops@example.com",
    email_from="alertmanager@example.com",
    smarthost="smtp.example.com:587",
    smtp_username="alertmanager",
    watchdog_url="https://deadman.example.com/ping",
)


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_binary(AMTOOL, "prometheus-alertmanager")
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, check=False)


def assert_amtool_accepts(config: Path) -> None:
    result = amtool("check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def assert_routed(config: Path, labels: list[str], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={config}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


# (labels of an alert, the receiver it must reach): both targets route the same way.
ROUTES = [
    (["alertname=PostgresDown", "severity=critical"], "critical"),
    (["alertname=RedisEvictions", "severity=warning"], "warning"),
    (["alertname=Watchdog", "severity=none"], "watchdog"),
    (["alertname=Unclassified"], "default"),
]


@pytest.mark.parametrize("receivers", [Receivers(), ALL_RECEIVERS], ids=["no-receivers", "every-receiver"])
def test_amtool_accepts_the_config(tmp_path: Path, receivers: Receivers) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(render_alertmanager_config(receivers))
    assert_amtool_accepts(config)


@pytest.mark.parametrize(("labels", "receiver"), ROUTES)
def test_alerts_reach_the_receiver_for_their_severity(tmp_path: Path, labels: list[str], receiver: str) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(render_alertmanager_config(ALL_RECEIVERS))
    assert_routed(config, labels, receiver)


def test_secrets_are_referenced_as_files_never_inlined() -> None:
    config = yaml.safe_load(render_alertmanager_config(ALL_RECEIVERS))
    critical = next(r for r in config["receivers"] if r["name"] == "critical")
    assert critical["slack_configs"][0]["api_url_file"] == "/etc/alertmanager/secrets/slack-webhook-url"
    assert "api_url" not in critical["slack_configs"][0]
    assert critical["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"].startswith(
        "/etc/alertmanager/secrets/"
    )
    assert config["global"]["smtp_auth_password_file"] == "/etc/alertmanager/secrets/smtp-password"
    assert config["inhibit_rules"] == [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "instance"],
        }
    ]


def test_with_no_receivers_nothing_leaves_the_host() -> None:
    config = yaml.safe_load(render_alertmanager_config(Receivers()))
    for receiver in config["receivers"]:
        assert set(receiver) == {"name"}, receiver
