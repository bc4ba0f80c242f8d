"""Another app on the platform, on a real Docker engine: the notes service of
tests/fixtures/notes_app (its own port, paths, variable names and user, no
migrations, no metrics), run through the app contract beside the dev stack,
under another app name, other subnets and other host ports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.applier import EngineMocks, State
from tests.e2e.engine import Engine
from tests.e2e.stack_apply import CONTAINER, NEEDS_GRAFANA, SKIPPED, Run
from tests.e2e.stack_apply import apply as apply_stack
from tests.harness import stack_config
from tests.provider_host import provider_host

pytestmark = [pytest.mark.servers, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
NOTES = yaml.safe_load((ROOT / "tests" / "fixtures" / "notes_app" / "app.yaml").read_text())
# The AWS services it uses, emulated beside it: a topic fanning out to a queue, and an email sender.
SERVICES = {
    "queues": {"jobs": {"maxReceiveCount": 3}},
    "topics": {"events": {"subscribers": ["jobs"]}},
    "email": {"sender": "notes@notes.example.com"},
}
SERVICE_MAPPING = {
    "NOTES_JOBS_QUEUE": "queues.jobs.url",
    "NOTES_EVENTS_TOPIC": "topics.events.arn",
    "NOTES_MAIL_FROM": "email.sender",
    "NOTES_MAIL_KEY": "secrets.mail-key",
}
# An external secret, as `pulumi config set --secret --path 'appSecrets.mail-key'` sets it.
MAIL_KEY = "SG.e2e-mail-provider-key"
CONFIG = stack_config(
    {
        "appName": "notes",
        "app": {
            **NOTES,
            "awsServices": SERVICES,
            "externalSecrets": ["mail-key"],
            "platformEnvironment": {**NOTES["platformEnvironment"], **SERVICE_MAPPING},
        },
        "appSecrets": {"mail-key": MAIL_KEY},
        "network": {
            "frontendSubnet": "172.31.0.0/24",
            "backendSubnet": "172.31.1.0/24",
            "opsSubnet": "172.31.2.0/24",
        },
        "postgres": {"hostPort": 15433},
        "redis": {"hostPort": 16379},
        "api": {"hostPort": 18080},
        "monitoring": {"prometheusPort": 19090, "grafanaPort": 13000},
        "devTools": {"enabled": False, "s3": False},
    }
)
# What verify runs that the notes service has no part in.
NOT_APPLICABLE = {"api auth round trip"}


def apply(engine: Engine, state: State) -> Run:
    return apply_stack(engine, state, CONFIG, secret_keys=["appSecrets"])


@dataclass
class Deployed:
    engine: Engine
    state: State
    first: Run
    root: Path
    """A project directory whose Pulumi.dev.yaml is this stack's, for verify."""
    outputs_file: Path


@pytest.fixture(scope="module")
def notes(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    state = State()
    started = time.monotonic()
    first = apply(engine, state)
    print(f"notes apply: {dict(first.ops())} in {time.monotonic() - started:.0f} s")
    root = tmp_path_factory.mktemp("notes-project")
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    # The config names the build context, which the config check reads from the project.
    shutil.copytree(ROOT / NOTES["build"]["context"], root / NOTES["build"]["context"])
    # As `pulumi config set --secret` stores them: encrypted, which the config check leaves to `up`.
    stored = {**CONFIG, "appSecrets": {name: {"secure": "v1:encrypted"} for name in CONFIG["appSecrets"]}}
    stack_file = {"config": {f"wondernest:{key}": value for key, value in stored.items()}}
    (root / "Pulumi.dev.yaml").write_text(yaml.safe_dump(stack_file, sort_keys=False))
    outputs_file = root / "outputs.json"
    outputs_file.write_text(json.dumps(first.outputs))
    yield Deployed(engine, state, first, root, outputs_file)
    with provider_host() as host:
        EngineMocks(engine, state, skip=SKIPPED, log=print, host=host).destroy(exclude_protected=True)


def container(deployed: Deployed, name: str) -> Any:
    return deployed.engine.client.containers.get(f"notes-dev-{name}")


def test_the_stack_runs_the_notes_service_and_no_migrations_job(notes: Deployed) -> None:
    ops = {(s.typ, s.name): s.op for s in notes.first.steps}
    assert {key for key, op in ops.items() if op == "skip"} == set(SKIPPED)
    assert (CONTAINER, "migrations") not in ops
    sizes = notes.first.mocks.docker.image_sizes
    assert any(name.startswith("notes-api:") for name in sizes), sizes
    api = container(notes, "api")
    assert api.attrs["State"]["Health"]["Status"] == "healthy"
    assert api.attrs["Config"]["User"] == "10001:10001"
    assert api.attrs["Config"]["Cmd"] == ["python", "/srv/notes.py"]
    # Published on loopback only, from the contract's port.
    assert api.attrs["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}


def test_it_reaches_postgres_and_redis_with_the_credentials_under_its_own_names(notes: Deployed) -> None:
    url = notes.first.outputs["apiUrl"]
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "databaseUser": "notes_app", "cache": True}
    created = httpx.post(f"{url}/v1/notes", json={"text": "from the contract"}, timeout=10)
    assert created.status_code == 201 and created.json()["greeting"] == "hello", created.text
    listed = httpx.get(f"{url}/v1/notes", timeout=10).json()["notes"]
    assert any(note.endswith(":from the contract") for note in listed)
    assert httpx.post(f"{url}/v1/notes", content=b"{", timeout=10).status_code == 400


def test_its_secrets_are_files_and_never_in_its_environment(notes: Deployed) -> None:
    api = container(notes, "api")
    env = dict(e.split("=", 1) for e in api.attrs["Config"]["Env"])
    assert env["NOTES_PG_PASSWORD_FILE"] == "/run/secrets/db-password"
    assert env["NOTES_CACHE_PASSWORD_FILE"] == "/run/secrets/redis-password"
    password = notes.state.resources[("random:index/randomPassword:RandomPassword", "postgres-app")].outputs["result"]
    assert password not in json.dumps(api.attrs)
    listing = api.exec_run(["python", "-c", "import os; print(sorted(os.listdir('/run/secrets')))"])
    assert listing.output.decode().strip() == (
        "['aws-credentials', 'ca.crt', 'db-password', 'external-mail-key', 'redis-password']"
    )
    # The external secret: the app's own file (read as the app's user), named by its variable, never a value.
    assert env["NOTES_MAIL_KEY_FILE"] == "/run/secrets/external-mail-key"
    assert "NOTES_MAIL_KEY" not in env and MAIL_KEY not in json.dumps(api.attrs)
    read = api.exec_run(["python", "-c", "import os; print(open(os.environ['NOTES_MAIL_KEY_FILE']).read())"])
    assert (read.exit_code, read.output.decode().strip()) == (0, MAIL_KEY)
    mode = api.exec_run(["stat", "-c", "%a %u", "/run/secrets/external-mail-key"]).output.decode().split()
    assert mode == ["400", "10001"]


def test_it_uses_its_queue_topic_and_email_sender_on_the_emulator(notes: Deployed) -> None:
    url = notes.first.outputs["apiUrl"]
    created = httpx.post(f"{url}/v1/notes", json={"text": "fan me out"}, timeout=10)
    assert created.status_code == 201, created.text
    # Published to the topic by the app, delivered to the subscribed queue, received by the app
    # (with the notes earlier tests posted, each once).
    wanted = {"id": created.json()["id"], "text": "fan me out"}
    deadline = time.monotonic() + 30
    jobs: list[dict[str, str]] = []
    while wanted not in jobs:
        assert time.monotonic() < deadline, f"the note never reached the queue; it held {jobs}"
        jobs += httpx.get(f"{url}/v1/jobs", timeout=10).json()["jobs"]
    assert len({job["id"] for job in jobs}) == len(jobs)
    mailed = httpx.post(f"{url}/v1/mail", json={"to": "reader@example.org", "text": "a note"}, timeout=10)
    assert mailed.status_code == 202 and mailed.json()["messageId"], mailed.text
    # What the emulator recorded, asked inside its container (it publishes no port).
    quota = container(notes, "dev-s3").exec_run(
        [
            "/opt/dev-s3/bin/python", "-c",
            "import boto3; print(boto3.client('ses', endpoint_url='http://127.0.0.1:4566', region_name='us-east-1',"
            " aws_access_key_id='x', aws_secret_access_key='x').get_send_quota()['SentLast24Hours'])",
        ]
    )  # fmt: skip
    assert quota.exit_code == 0 and quota.output.decode().strip() == "1.0", quota.output
    env = dict(e.split("=", 1) for e in container(notes, "api").attrs["Config"]["Env"])
    assert env["AWS_ENDPOINT_URL"] == "http://dev-s3:4566" and "AWS_SECRET_ACCESS_KEY" not in env


def test_verify_passes_every_check_that_applies_and_says_which_do_not(notes: Deployed) -> None:
    deadline = time.monotonic() + 240
    while True:
        command = [
            sys.executable, "-m", "components.commands.verify", "dev", "--root", str(notes.root),
            "--outputs", str(notes.outputs_file), "--auth", "--json",
        ]  # fmt: skip
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.stdout, result.stderr
        checks = {f"{c['service']} {c['check']}": c for c in json.loads(result.stdout)["checks"]}
        failing = {
            name: c["detail"]
            for name, c in checks.items()
            if c["status"] != "pass" and name not in NEEDS_GRAFANA | NOT_APPLICABLE
        }
        if not failing:
            break
        assert time.monotonic() < deadline, f"verify still finds: {failing}"
        time.sleep(5)
    for name, check in sorted(checks.items()):
        print(f"{check['status']:5} {name}: {check['detail']}")
    assert checks["api ready"]["detail"] == "/readyz: HTTP 200"
    skipped = checks["api auth round trip"]
    assert skipped["status"] == "skip" and skipped["detail"].startswith("does not apply"), skipped
    # No api job to scrape: the one target down is Grafana's, which is not running.
    assert "api" not in checks["prometheus targets up"]["detail"]


def test_a_second_apply_changes_nothing(notes: Deployed) -> None:
    again = apply(notes.engine, notes.state)
    assert set(again.ops()) == {"same", "skip"}, again.ops()
