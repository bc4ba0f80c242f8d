"""The rendered alertmanager.yml in a real Alertmanager, its page and ticket
destinations pointed at local listeners: what each destination receives when
one incident trips a page and two tickets of the same service beside another
service's ticket, and that every message links its runbook absolutely. The
email and SNS bodies are the same template, rendered from the payload the
webhook received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.model.alerts import AlertThresholds, alerts, rule_groups, runbook_link
from components.model.monitoring import Destination, Receivers, render_alertmanager_config, slack_url_file
from tests.servers import free_port, require_binary
from tests.test_alertmanager_config import render, write_config
from tests.test_monitoring_live import ALERTMANAGER, process

pytestmark = pytest.mark.servers

RUNBOOKS = "https://git.example.org/platform/blob/main/docs/runbooks.md"
RULES = {a.name: a for a in alerts(rule_groups(AlertThresholds(0.999, 1.0, "wondernest", runbook_url=RUNBOOKS)))}


@dataclass
class Inbox:
    """Every POST body a local listener received, by path."""

    url: str
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def at(self, path: str) -> list[dict[str, Any]]:
        return self.received.get(path, [])


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    box = Inbox("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                box.received.setdefault(self.path, []).append(body)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield box
    server.shutdown()


@pytest.fixture(scope="module")
def alertmanager(inbox: Inbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binary(ALERTMANAGER, "prometheus-alertmanager")
    root = tmp_path_factory.mktemp("alertmanager")
    receivers = Receivers(
        page=Destination(webhook_url=f"{inbox.url}/page", slack_channel="#incidents"),
        ticket=Destination(webhook_url=f"{inbox.url}/ticket", slack_channel="#platform"),
    )
    config = write_config(root, render_alertmanager_config(receivers))
    for kind in ("page", "ticket"):
        secret = Path(slack_url_file(kind).replace("/etc/alertmanager/", f"{root}/"))
        secret.parent.mkdir(exist_ok=True)
        secret.write_text(f"{inbox.url}/slack/{kind}")
    port = free_port()
    with process(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        root,
        "alertmanager",
        f"http://127.0.0.1:{port}/-/ready",
    ):
        yield f"http://127.0.0.1:{port}"


def firing(name: str, **labels: str) -> dict[str, object]:
    """The alert as Prometheus sends it: the rule's labels and annotations."""
    rule: dict[str, Any] = RULES[name].rule()
    return {"labels": {"alertname": name, **rule["labels"], **labels}, "annotations": rule["annotations"]}


@pytest.fixture(scope="module")
def delivered(alertmanager: str, inbox: Inbox) -> Inbox:
    """Redis down (a page), its scrape target down and its evictions (tickets of
    the same service), and the API slow (another service's ticket), sent at once."""
    sent = [
        firing("RedisDown", job="redis", instance="redis-exporter:9121"),
        firing("TargetDown", job="redis", instance="redis-exporter:9121", service="redis"),
        firing("RedisEvictions", job="redis", instance="redis-exporter:9121"),
        firing("ApiHighLatencyP99", job="api"),
    ]
    httpx.post(f"{alertmanager}/api/v2/alerts", json=sent, timeout=10).raise_for_status()
    # Pages wait 10 s for their group, tickets 30 s; then a little for delivery.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (inbox.at("/page") and inbox.at("/ticket")):
        time.sleep(0.5)
    time.sleep(5)
    return inbox


def test_the_page_carries_the_incident_and_its_services_tickets_are_held_back(
    delivered: Inbox, alertmanager: str
) -> None:
    [page] = delivered.at("/page")
    assert page["receiver"] == "page" and page["groupLabels"] == {"service": "redis"}
    assert [a["labels"]["alertname"] for a in page["alerts"]] == ["RedisDown"]
    state = {a["labels"]["alertname"]: a["status"] for a in httpx.get(f"{alertmanager}/api/v2/alerts").json()}
    assert state["TargetDown"]["state"] == "suppressed" and state["TargetDown"]["inhibitedBy"]
    assert state["RedisEvictions"]["state"] == "suppressed"
    assert state["ApiHighLatencyP99"]["state"] == "active" and not state["ApiHighLatencyP99"]["inhibitedBy"]


def test_another_services_warning_is_a_ticket_not_a_page(delivered: Inbox) -> None:
    [ticket] = delivered.at("/ticket")
    assert ticket["receiver"] == "ticket" and ticket["groupLabels"] == {"service": "api"}
    assert [a["labels"]["alertname"] for a in ticket["alerts"]] == ["ApiHighLatencyP99"]


def test_every_message_links_its_runbook_absolutely(delivered: Inbox, tmp_path: Path) -> None:
    for kind, alertname in (("page", "RedisDown"), ("ticket", "ApiHighLatencyP99")):
        link = runbook_link(RUNBOOKS, alertname)
        assert link.startswith("https://")
        [webhook] = delivered.at(f"/{kind}")
        assert webhook["alerts"][0]["annotations"]["runbook_url"] == link
        [slack] = delivered.at(f"/slack/{kind}")
        [attachment] = slack["attachments"]
        assert f"Runbook: {link}\n" in attachment["text"]
        assert attachment["title"] == f"[{kind.upper()}] {webhook['groupLabels']['service']}: {alertname}"
        # Email and SNS: the same template, from the data Alertmanager rendered the others with.
        assert f"Runbook: {link}\n" in render(tmp_path, "wondernest.text", webhook)
