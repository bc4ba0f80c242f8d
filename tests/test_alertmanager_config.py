"""The rendered alertmanager.yml under the real amtool: valid, routed by severity to
the page and ticket destinations, and its messages rendered by Alertmanager's own
template engine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.model.alerts import Alert, AlertThresholds, alerts, rule_groups, runbook_link
from components.model.monitoring import (
    NOTIFICATION_TEMPLATES,
    TEMPLATE_FILE,
    Destination,
    Receivers,
    render_alertmanager_config,
)
from tests.servers import require_binary

pytestmark = pytest.mark.servers

AMTOOL = "/usr/bin/amtool"
ALL_RECEIVERS = Receivers(
    page=Destination(
        email_to="oncall@example.com",
        webhook_url="https://hooks.example.com/page",
        webhook_has_token=True,
        slack_channel="#incidents",
    ),
    ticket=Destination(email_to="platform@example.com", slack_channel="#platform"),
    email_from="alertmanager@example.com",
    smarthost="smtp.example.com:587",
    smtp_username="alertmanager",
    watchdog_url="https://deadman.example.com/ping",
)


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_binary(AMTOOL, "prometheus-alertmanager")
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, check=False)


def write_config(directory: Path, config: str, templates: str = NOTIFICATION_TEMPLATES) -> Path:
    """The config with its template beside it, where amtool and Alertmanager
    resolve it (the container's absolute /etc/alertmanager paths moved here)."""
    (directory / "templates").mkdir(exist_ok=True)
    (directory / "templates" / TEMPLATE_FILE).write_text(templates)
    path = directory / "alertmanager.yml"
    path.write_text(config.replace("/etc/alertmanager/", f"{directory}/"))
    return path


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
    (["alertname=PostgresDown", "severity=critical", "service=postgres"], "page"),
    (["alertname=RedisEvictions", "severity=warning", "service=redis"], "ticket"),
    (["alertname=Watchdog", "severity=none", "service=alerting"], "watchdog"),
    (["alertname=Unclassified"], "default"),
]


@pytest.mark.parametrize("receivers", [Receivers(), ALL_RECEIVERS], ids=["no-receivers", "every-receiver"])
def test_amtool_accepts_the_config(tmp_path: Path, receivers: Receivers) -> None:
    assert_amtool_accepts(write_config(tmp_path, render_alertmanager_config(receivers)))


@pytest.mark.parametrize(("labels", "receiver"), ROUTES)
def test_alerts_reach_the_receiver_for_their_severity(tmp_path: Path, labels: list[str], receiver: str) -> None:
    assert_routed(write_config(tmp_path, render_alertmanager_config(ALL_RECEIVERS)), labels, receiver)


def test_pages_and_tickets_go_to_their_own_destinations() -> None:
    config = yaml.safe_load(render_alertmanager_config(ALL_RECEIVERS))
    receivers = {r["name"]: r for r in config["receivers"]}
    assert [c["to"] for c in receivers["page"]["email_configs"]] == ["oncall@example.com"]
    assert [c["to"] for c in receivers["ticket"]["email_configs"]] == ["platform@example.com"]
    assert [c["channel"] for c in receivers["page"]["slack_configs"]] == ["#incidents"]
    assert [c["channel"] for c in receivers["ticket"]["slack_configs"]] == ["#platform"]
    assert "webhook_configs" in receivers["page"] and "webhook_configs" not in receivers["ticket"]


def test_secrets_are_referenced_as_files_never_inlined() -> None:
    config = yaml.safe_load(render_alertmanager_config(ALL_RECEIVERS))
    page = next(r for r in config["receivers"] if r["name"] == "page")
    assert page["slack_configs"][0]["api_url_file"] == "/etc/alertmanager/secrets/page-slack-webhook-url"
    assert "api_url" not in page["slack_configs"][0]
    assert page["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"] == (
        "/etc/alertmanager/secrets/page-webhook-token"
    )
    assert config["global"]["smtp_auth_password_file"] == "/etc/alertmanager/secrets/smtp-password"


def test_a_page_holds_back_its_services_tickets_and_one_incident_is_one_message() -> None:
    config = yaml.safe_load(render_alertmanager_config(ALL_RECEIVERS))
    assert config["inhibit_rules"] == [
        {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'], "equal": ["service"]}
    ]
    assert config["route"]["group_by"] == ["service"]


def test_every_message_is_written_by_the_template_with_the_runbook_link() -> None:
    config = yaml.safe_load(render_alertmanager_config(ALL_RECEIVERS))
    for receiver in (r for r in config["receivers"] if r["name"] in ("page", "ticket")):
        for slack in receiver["slack_configs"]:
            assert slack["text"] == '{{ template "wondernest.text" . }}'
            assert slack["title"] == '{{ template "wondernest.title" . }}'
        for email in receiver["email_configs"]:
            assert email["text"] == '{{ template "wondernest.text" . }}' and email["html"] == ""
            assert email["headers"] == {"Subject": '{{ template "wondernest.title" . }}'}
    assert config["templates"] == ["/etc/alertmanager/templates/*.tmpl"]


def template_data(receiver: str, status: str, alerts: list[Alert], runbooks: str) -> dict[str, object]:
    """Alertmanager's template data (template.Data) for these rules' alerts."""
    rules: list[dict[str, Any]] = [a.rule() for a in alerts]
    labels = [{"alertname": a.name, **rule["labels"]} for a, rule in zip(alerts, rules, strict=True)]
    rendered = [
        {
            "status": status,
            "labels": label_set,
            "annotations": {**rule["annotations"], "runbook_url": runbook_link(runbooks, a.name)},
        }
        for a, rule, label_set in zip(alerts, rules, labels, strict=True)
    ]
    common = {k: v for k, v in labels[0].items() if all(other.get(k) == v for other in labels)}
    return {
        "receiver": receiver,
        "status": status,
        "alerts": rendered,
        "groupLabels": {"service": common["service"]},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
    }


def render(tmp_path: Path, template: str, data: dict[str, object]) -> str:
    (tmp_path / TEMPLATE_FILE).write_text(NOTIFICATION_TEMPLATES)
    (tmp_path / "data.json").write_text(json.dumps(data))
    result = amtool(
        "template", "render", f"--template.glob={tmp_path / TEMPLATE_FILE}",
        f"--template.text={{{{ template \"{template}\" . }}}}", f"--template.data={tmp_path / 'data.json'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_template_renders_each_alerts_summary_description_and_absolute_runbook(tmp_path: Path) -> None:
    published = "https://git.example.org/platform/blob/main/docs/runbooks.md"
    rules = {a.name: a for a in alerts(rule_groups(AlertThresholds(0.999, 1.0, "wondernest")))}
    data = template_data("page", "firing", [rules["ApiDown"], rules["HighErrorRate"]], published)
    assert render(tmp_path, "wondernest.title", data).strip() == "[PAGE] api: 2 alerts"
    text = render(tmp_path, "wondernest.text", data)
    assert f"Runbook: {published}#runbook-apidown\n" in text
    assert f"Runbook: {published}#runbook-higherrorrate\n" in text
    assert "HighErrorRate: More than 5% of API requests fail\n" in text
    resolved = template_data("ticket", "resolved", [rules["RedisEvictions"]], published)
    assert render(tmp_path, "wondernest.title", resolved).strip() == "[TICKET RESOLVED] redis: RedisEvictions"
    assert "[resolved] RedisEvictions: Redis evicts keys" in render(tmp_path, "wondernest.text", resolved)


def test_with_no_receivers_nothing_leaves_the_host() -> None:
    config = yaml.safe_load(render_alertmanager_config(Receivers()))
    for receiver in config["receivers"]:
        assert set(receiver) == {"name"}, receiver
