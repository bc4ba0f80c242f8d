"""`python -m components.commands.verify` without a running stack: its report, its time
limits, how it reads credentials on either target, and what it does when
nothing answers. The checks against running servers are in test_monitoring_live."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import yaml
from moto import mock_aws

from components.commands.verify import data, services
from components.commands.verify.__main__ import _access, _arguments, main, probes
from components.commands.verify.access import SigV4, aws_credentials, endpoint, local_credentials, workspace_region
from components.commands.verify.report import as_json, table
from components.commands.verify.results import CheckFailed, Probe, Result, Skipped, run_all
from components.model.database import database_spec
from components.model.naming import Names
from tests.servers import prometheus_server

ROOT = Path(__file__).resolve().parent.parent


def fails(message: str) -> str:
    raise CheckFailed(message)


def skips(message: str) -> str:
    raise Skipped(message)


def slow() -> str:
    time.sleep(3)
    return "late"


def test_results_keep_their_order_and_name_what_happened() -> None:
    results = run_all(
        [
            Probe("api", "ready", lambda: "UP"),
            Probe("grafana", "health", lambda: fails("HTTP 503")),
            Probe("redis", "app user", lambda: skips("not reachable from here")),
            Probe("postgres", "app logs in", lambda: str(1 / 0)),
        ],
        timeout=5,
    )
    assert [(r.service, r.status, r.detail) for r in results] == [
        ("api", "pass", "UP"),
        ("grafana", "fail", "HTTP 503"),
        ("redis", "skip", "not reachable from here"),
        ("postgres", "fail", "ZeroDivisionError: division by zero"),
    ]


def test_a_check_that_does_not_answer_in_time_fails_and_the_others_are_not_held_up() -> None:
    start = time.monotonic()
    results = run_all([Probe("api", "slow", slow), Probe("api", "quick", lambda: "ok")], timeout=0.5)
    assert time.monotonic() - start < 2
    assert [(r.status, r.detail) for r in results] == [("fail", "no answer within 0.5 s"), ("pass", "ok")]


def test_the_table_aligns_colours_on_request_and_sums_up() -> None:
    results = [
        Result("api", "ready", "pass", "UP", 0.012),
        Result("prometheus", "targets up", "fail", "1 of 6 targets down: redis", 0.02),
        Result("redis", "app user", "skip", "inside the VPC", 0.0),
    ]
    plain = table(results, colour=False).splitlines()
    assert plain == [
        "      service     check       time   detail",
        "ok    api         ready       12 ms  UP",
        "FAIL  prometheus  targets up  20 ms  1 of 6 targets down: redis",
        "skip  redis       app user    0 ms   inside the VPC",
        "1 passed, 1 failed, 1 skipped: the stack is not healthy",
    ]
    coloured = table(results, colour=True)
    assert "\033[1;31mFAIL\033[0m" in coloured and "\033[32mok  \033[0m" in coloured
    document = json.loads(as_json(results))
    assert document["ok"] is False
    assert document["checks"][1] == {
        "service": "prometheus",
        "check": "targets up",
        "status": "fail",
        "detail": "1 of 6 targets down: redis",
        "seconds": 0.02,
    }


def test_endpoints_reach_a_wildcard_bind_on_loopback_and_a_tunnel_by_address() -> None:
    local = endpoint("0.0.0.0:5432")
    assert (local.host, local.port, local.hostaddr) == ("127.0.0.1", 5432, None)
    tunnelled = endpoint("db.abc.eu-west-1.rds.amazonaws.com:5432", "127.0.0.1:15432")
    # The certificate is checked against the RDS name while the bytes go through the tunnel.
    assert (tunnelled.host, tunnelled.port, tunnelled.hostaddr) == (
        "db.abc.eu-west-1.rds.amazonaws.com",
        15432,
        "127.0.0.1",
    )


def local_outputs(**overrides: Any) -> dict[str, Any]:
    names = Names(app="wondernest", stack="dev")
    outputs = {
        "apiUrl": "http://127.0.0.1:9",
        "grafanaUrl": "http://127.0.0.1:9",
        "prometheusUrl": "http://127.0.0.1:9",
        "alertmanagerUrl": "http://127.0.0.1:9",
        "postgresEndpoint": "0.0.0.0:9",
        "postgresDatabase": "wondernest",
        "redisEndpoint": "0.0.0.0:9",
        "redisUser": names.redis_app_user,
        "roles": {role.key: role.name for role in database_spec(names).roles},
        "caCertificate": "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        "secrets": {"postgres_superuser": "s", "postgres_app": "a", "redis_app": "r"},
    }
    outputs.update(overrides)
    return outputs


def test_local_credentials_come_from_the_outputs() -> None:
    credentials = local_credentials(local_outputs())
    assert credentials("postgres-admin") == ("postgres", "s")
    assert credentials("postgres-app") == ("wondernest_app", "a")
    assert credentials("redis-app") == ("wondernest_app", "r")
    with pytest.raises(Skipped, match=r"no postgres_analytics .*--show-secrets"):
        credentials("postgres-analytics")


@mock_aws
def test_aws_credentials_are_secrets_managers_current_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("secretsmanager", region_name="eu-west-1")

    def secret(name: str, value: str) -> str:
        return str(client.create_secret(Name=name, SecretString=value)["ARN"])

    outputs = {
        "redisUser": "wondernest_app",
        "postgresMasterSecretArn": secret("rds-master", json.dumps({"username": "master", "password": "m"})),
        "secretArns": {
            # Rotation has moved the app to its alternate user: that is who a task logs in as.
            "postgres-app": secret("app", json.dumps({"username": "wondernest_app_clone", "password": "a2"})),
            # The rotated cache user's document (the rotation function's).
            "redis-app": secret(
                "redis",
                json.dumps({"username": "wondernest_app", "password": "r", "user_id": "wondernest-prod-redis-app"}),
            ),
        },
    }
    credentials = aws_credentials(outputs, timeout=5)
    assert credentials("postgres-admin") == ("master", "m")
    assert credentials("postgres-app") == ("wondernest_app_clone", "a2")
    assert credentials("redis-app") == ("wondernest_app", "r")


def test_prometheus_queries_to_aws_are_signed_for_the_workspaces_region(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1234/"
    assert workspace_region(url) == "eu-west-1"
    with pytest.raises(CheckFailed, match="not an Amazon Managed Prometheus workspace URL"):
        workspace_region("http://127.0.0.1:9090/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    request = requests.Request("GET", f"{url}api/v1/query", params={"query": "up"}).prepare()
    signed = SigV4("eu-west-1")(request)
    authorization = str(signed.headers["Authorization"])
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/aps/aws4_request" in authorization
    assert "X-Amz-Date" in signed.headers


def test_without_aws_credentials_a_signed_query_is_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    request = requests.Request("GET", "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/").prepare()
    with pytest.raises(Skipped, match="no AWS credentials"):
        SigV4("eu-west-1")(request)


def aws_outputs() -> dict[str, Any]:
    return {
        "apiUrl": "https://api.example.org",
        "grafanaUrl": "https://g-1.grafana-workspace.eu-west-1.amazonaws.com",
        "prometheusUrl": "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/",
        "alertmanagerUrl": "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/alertmanager/api/v2/alerts",
        "postgresEndpoint": "wondernest-prod.abc.eu-west-1.rds.amazonaws.com:5432",
        "postgresDatabase": "wondernest",
        "postgresMasterSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1",
        "redisEndpoint": "master.wondernest-prod.abc.euw1.cache.amazonaws.com:6379",
        "redisUser": "wondernest_app",
        "roles": {"app": "wondernest_app"},
        "secretArns": {"postgres-app": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app"},
    }


def paging_prod(root: Path) -> Path:
    """A project directory with the committed prod stack plus the page destination it asks for."""
    from tests.test_stack_prod import PAGING

    (root / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    stack = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    stack["config"]["wondernest:alerting"] = PAGING
    (root / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    return root


def test_an_aws_stack_is_checked_as_rds_sees_it_and_says_what_it_cannot_reach(tmp_path: Path) -> None:
    prod_root = paging_prod(tmp_path)
    args = _arguments(["prod", "--root", str(prod_root)])
    access = _access(args, aws_outputs(), None)
    assert access.target == "aws" and not access.admin_is_superuser
    # The roles and their rotation alternates, with the catalog left to RDS.
    assert {role.name for role in access.spec.roles} >= {"wondernest_app", "wondernest_app_clone"}
    with pytest.raises(Skipped, match="make tunnel"):
        data.role_logs_in(access, "app")
    with pytest.raises(Skipped, match="inside the VPC"):
        data.redis_app_user(access)
    tunnelled = _access(
        _arguments(["prod", "--root", str(prod_root), "--postgres-via", "127.0.0.1:15432"]), aws_outputs(), None
    )
    with pytest.raises(Skipped, match="--ca-file"):
        data.objects_as_declared(tunnelled, "grants")


def test_when_nothing_answers_every_check_fails_quickly_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(local_outputs()))
    start = time.monotonic()
    code = main(["dev", "--root", str(ROOT), "--outputs", str(outputs), "--timeout", "3", "--json"])
    assert time.monotonic() - start < 6
    assert code == 1
    document = json.loads(capsys.readouterr().out)
    statuses = {f"{c['service']} {c['check']}": c["status"] for c in document["checks"]}
    # Without --auth the round trip is skipped; with secrets missing from the outputs, so are those roles.
    assert statuses.pop("api auth round trip") == "skip"
    assert {key for key, status in statuses.items() if status == "skip"} == {
        f"postgres {key} logs in" for key in ("analytics", "backup", "migrator", "monitoring")
    }
    assert {key for key, status in statuses.items() if status == "fail"} == {
        "api ready",
        "prometheus targets up",
        "prometheus rules healthy",
        "prometheus no page firing",
        "alertmanager Watchdog delivered",
        "grafana health",
        "backups verified backup fresh",
        "postgres app logs in",
        *(f"postgres {kind} as declared" for kind in data.OBJECT_KINDS),
        "redis app user",
    }
    assert not any("Traceback" in c["detail"] for c in document["checks"])


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("", "no outputs from stack 'dev': has `make up` run for it yet?"),
        ('{"apiUrl": "http://127.0.0.1:8000"}', "the outputs of stack 'dev' lack prometheusUrl"),
    ],
)
def test_missing_outputs_stop_with_one_line(monkeypatch: pytest.MonkeyPatch, stdin: str, message: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit, match="^error: " + message.replace("(", r"\(").replace(")", r"\)")):
        main(["dev", "--root", str(ROOT)])


def test_a_stack_without_a_config_file_is_named(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(local_outputs()))
    with pytest.raises(SystemExit, match=r"no Pulumi\.qa\.yaml"):
        main(["qa", "--root", str(ROOT), "--outputs", str(outputs)])


def test_every_probe_is_named_once() -> None:
    access = _access(_arguments(["dev", "--root", str(ROOT)]), local_outputs(), None)
    names = [f"{p.service} {p.check}" for p in probes(access)]
    assert len(names) == len(set(names)) == 8 + 5 + len(data.OBJECT_KINDS) + 1


def test_an_unreadable_outputs_file_and_foreign_outputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(
        SystemExit, match=r"^error: cannot read the outputs from .*none\.json: No such file or directory$"
    ):
        main(["dev", "--root", str(ROOT), "--outputs", str(tmp_path / "none.json")])
    local = tmp_path / "local.json"
    local.write_text(json.dumps(local_outputs()))
    with pytest.raises(SystemExit, match=r"^error: the outputs of 'prod' are not an AWS stack's: "):
        main(["prod", "--root", str(paging_prod(tmp_path)), "--outputs", str(local)])


def test_a_tunnel_that_is_not_host_and_port_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        _arguments(["prod", "--postgres-via", "15432"])
    assert caught.value.code == 2
    assert "'15432' is not HOST:PORT, e.g. 127.0.0.1:15432" in capsys.readouterr().err


RULES = """
groups:
  - name: firing
    rules:
      - alert: Watchdog
        expr: vector(1)
        labels: {severity: none}
      - alert: DiskAlmostFull
        expr: vector(1)
        labels: {severity: warning}
      - alert: %s
        expr: vector(%d) > 0
        labels: {severity: critical}
"""


@pytest.mark.servers
@pytest.mark.parametrize(("paging", "fires"), [("PostgresDown", 1), ("PostgresDown", 0)])
def test_a_firing_page_fails_verify_by_name(paging: str, fires: int) -> None:
    """On a real Prometheus: a critical alert firing fails the check and is
    named; a warning is listed; the Watchdog is not news."""
    with prometheus_server(RULES % (paging, fires)) as url:
        access = _access(_arguments(["dev", "--root", str(ROOT)]), local_outputs(prometheusUrl=url), None)
        deadline = time.monotonic() + 30
        while not services.prometheus_query(access, 'ALERTS{alertname="DiskAlmostFull"}'):
            assert time.monotonic() < deadline, "no alert fired"
            time.sleep(0.5)
        time.sleep(2)  # a full evaluation of the group, the critical one included
        if fires:
            with pytest.raises(CheckFailed, match=r"^paging: PostgresDown; also firing: DiskAlmostFull \(warning\)$"):
                services.no_page_firing(access)
        else:
            assert services.no_page_firing(access) == "no page firing; also firing: DiskAlmostFull (warning)"
