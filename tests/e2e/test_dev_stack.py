"""The dev stack applied to a real Docker engine: the program's own graph,
stand-in upstream images, the project's images built from app/Dockerfile,
then `python -m components.commands.verify` on the outputs, a second apply, and a
destroy that keeps what is protected. The tests run in order on one stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from components.commands.stack_outputs import reachable
from tests.e2e.applier import EngineMocks, State
from tests.e2e.engine import Engine
from tests.e2e.stack_apply import CONTAINER, NEEDS_GRAFANA, SKIPPED, Run, apply
from tests.provider_host import provider_host

pytestmark = [pytest.mark.servers, pytest.mark.e2e]

PASSWORD = "random:index/randomPassword:RandomPassword"

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Deployed:
    engine: Engine
    state: State
    first: Run
    outputs_file: Path


@pytest.fixture(scope="module")
def stack(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    state = State()
    started = time.monotonic()
    first = apply(engine, state)
    print(f"first apply: {dict(first.ops())} in {time.monotonic() - started:.0f} s")
    outputs_file = tmp_path_factory.mktemp("outputs") / "dev.json"
    outputs_file.write_text(json.dumps(first.outputs))
    return Deployed(engine, state, first, outputs_file)


def verify(outputs_file: Path) -> dict[str, dict[str, Any]]:
    """`make verify ARGS=--auth` as an operator runs it, on the applied outputs."""
    command = [
        sys.executable,
        "-m",
        "components.commands.verify",
        "dev",
        "--outputs",
        str(outputs_file),
        "--auth",
        "--json",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout, result.stderr
    return {f"{c['service']} {c['check']}": c for c in json.loads(result.stdout)["checks"]}


def verified(outputs_file: Path, timeout: float = 240) -> dict[str, dict[str, Any]]:
    """Verify's checks once all that can pass do: the first scrapes, the
    Watchdog's delivery and the first verified backup take a while."""
    deadline = time.monotonic() + timeout
    while True:
        checks = verify(outputs_file)
        failing = {
            name: c["detail"] for name, c in checks.items() if c["status"] != "pass" and name not in NEEDS_GRAFANA
        }
        if not failing:
            return checks
        if time.monotonic() > deadline:
            raise AssertionError(f"verify still finds: {failing}")
        time.sleep(5)


def test_the_first_apply_creates_every_resource_but_grafana(stack: Deployed) -> None:
    declared = [d for d in stack.first.mocks.declared if not d.typ.startswith("wondernest:")]
    ops = {(s.typ, s.name): s.op for s in stack.first.steps}
    assert {key for key, op in ops.items() if op == "skip"} == set(SKIPPED)
    assert all(ops[(d.typ, d.name)] in {"create", "skip"} for d in declared), ops
    assert len(ops) == len(declared)
    running = {c.name for c in stack.engine.client.containers.list()}
    services = {
        d.inputs["name"]
        for d in declared
        if d.typ == CONTAINER and not d.inputs.get("attach") and (d.typ, d.name) not in SKIPPED
    }
    assert running == services


def test_the_project_images_are_built_from_app_dockerfile(stack: Deployed) -> None:
    sizes = stack.first.mocks.docker.image_sizes
    for name, size in sorted(sizes.items()):
        print(f"{name}: {size / 1024 / 1024:.0f} MiB")
    assert {name.split(":")[0] for name in sizes} == {"wondernest-api", "wondernest-backup", "wondernest-dev-s3"}
    # The API image carries its venv and code only; the backup image adds PostgreSQL 15.
    api = next(size for name, size in sizes.items() if name.startswith("wondernest-api:"))
    backup = next(size for name, size in sizes.items() if name.startswith("wondernest-backup:"))
    assert api < backup


def test_the_backup_image_has_postgresql_without_its_jit(stack: Deployed) -> None:
    """LLVM and the JIT provider are left unpacked, their packages still
    installed (scanners see their versions); the server runs without JIT, and
    the verification of the first backup (verify's checks) restores with it."""
    backups = stack.engine.client.containers.get("wondernest-dev-backups")
    script = (
        "for f in /usr/lib/*-linux-gnu/libLLVM-14.so.1 /usr/lib/postgresql/15/lib/llvmjit.so; do"
        ' test -e "$f" && echo "present $f"; done;'
        " dpkg-query -W -f '${Package} ${Status}\n' libllvm14 postgresql-15;"
        " /usr/lib/postgresql/15/bin/postgres --version"
    )
    code, output = backups.exec_run(["sh", "-c", script])
    assert isinstance(output, bytes)
    text = output.decode()
    assert code == 0, text
    assert "present" not in text
    assert "libllvm14 install ok installed" in text and "postgresql-15 install ok installed" in text
    assert "PostgreSQL) 15." in text


def test_the_migrations_job_ran_to_success(stack: Deployed) -> None:
    job = stack.engine.client.containers.get("wondernest-dev-migrations")
    assert job.attrs["State"]["ExitCode"] == 0, job.logs().decode()
    # No health of its own: the image's HEALTHCHECK would call an exited job unhealthy.
    assert "Health" not in job.attrs["State"], job.attrs["State"]
    assert job.attrs["Config"]["Healthcheck"]["Test"] == ["NONE"]


def test_verify_passes_every_check_but_grafanas(stack: Deployed) -> None:
    checks = verified(stack.outputs_file)
    for name, check in sorted(checks.items()):
        print(f"{check['status']:5} {name}: {check['detail']}")
    assert checks["grafana health"]["status"] == "fail"
    # The one target down is Grafana's, which is not running.
    targets = checks["prometheus targets up"]
    assert targets["status"] == "fail" and "grafana" in targets["detail"], targets
    assert "api" not in targets["detail"] and "postgres" not in targets["detail"]


def test_prometheus_reads_each_data_volumes_free_space_which_the_exporter_cannot_read(stack: Deployed) -> None:
    prometheus = stack.first.outputs["prometheusUrl"]

    def mountpoints() -> set[str]:
        found = httpx.get(
            f"{prometheus}/api/v1/query", params={"query": 'node_filesystem_avail_bytes{job="node"}'}, timeout=10
        ).json()["data"]["result"]
        return {series["metric"]["mountpoint"] for series in found if float(series["value"][1]) > 0}

    deadline = time.monotonic() + 60
    while (seen := mountpoints()) != {f"/volumes/{s}" for s in ("backups", "postgres", "prometheus", "redis")}:
        assert time.monotonic() < deadline, seen
        time.sleep(3)
    exporter = stack.engine.client.containers.get("wondernest-dev-node-exporter")
    # statfs needs the mount only: the data directories stay closed to it.
    for volume in ("postgres", "backups"):
        listing = exporter.exec_run(["ls", f"/volumes/{volume}"])
        assert listing.exit_code != 0 and b"Permission denied" in listing.output, (volume, listing.output)
    mounts = {m["Destination"]: m["RW"] for m in exporter.attrs["Mounts"]}
    assert mounts and not any(mounts.values()), mounts


def test_the_api_is_served_on_loopback_only(stack: Deployed) -> None:
    api = stack.engine.client.containers.get("wondernest-dev-api")
    bindings = api.attrs["HostConfig"]["PortBindings"]
    assert bindings == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    response = httpx.get(f"{stack.first.outputs['apiUrl']}/api/users/me", timeout=5)
    assert response.status_code == 401 and response.json()["error"]


def test_pgadmin_signs_in_with_the_generated_login(stack: Deployed) -> None:
    """The login page on loopback, then a sign-in with the email from the config
    and the password the stack generated and handed over as a file."""
    password = stack.state.resources[(PASSWORD, "pgadmin-login")].outputs["result"]
    container = stack.engine.client.containers.get("wondernest-dev-pgadmin")
    email = next(e.split("=", 1)[1] for e in container.attrs["Config"]["Env"] if e.startswith("PGADMIN_DEFAULT_EMAIL="))
    with httpx.Client(base_url=stack.first.outputs["pgadminUrl"], timeout=15) as client:
        page = client.get("/login", follow_redirects=True)
        assert page.status_code == 200 and "<title>pgAdmin 4</title>" in page.text
        token = re.search(r'"csrfToken": "([^"]+)"', page.text)
        assert token, page.text[:2000]
        wrong = client.post(
            "/authenticate/login",
            data={"email": email, "password": "not-it", "csrf_token": token.group(1)},
            follow_redirects=True,
        )
        assert "/browser" not in str(wrong.url)
        signed_in = client.post(
            "/authenticate/login",
            data={"email": email, "password": password, "csrf_token": token.group(1)},
            follow_redirects=True,
        )
        assert signed_in.status_code == 200 and str(signed_in.url).rstrip("/").endswith("/browser"), signed_in.url
    # The server pgAdmin lists, as its libpq reaches it: the pgpass the entrypoint
    # copied into the login's storage, verify-full against PGSSLROOTCERT.
    storage = f"/var/lib/pgadmin/storage/{email.replace('@', '_')}"
    database = stack.first.outputs["postgresDatabase"]
    script = (
        "import psycopg; "
        f"conn = psycopg.connect(host='postgres', dbname='{database}', user='postgres', "
        f"sslmode='verify-full', passfile='{storage}/.pgpass'); "
        "print(conn.execute('SELECT current_user').fetchone()[0])"
    )
    probe = container.exec_run(["/venv/bin/python3", "-c", script])
    assert probe.exit_code == 0 and isinstance(probe.output, bytes), probe.output
    assert probe.output.strip() == b"postgres"


def test_the_secrets_are_files_only_their_reader_can_read(stack: Deployed) -> None:
    for name in ("api", "backups"):
        container = stack.engine.client.containers.get(f"wondernest-dev-{name}")
        listing = container.exec_run(["sh", "-c", "stat -c '%n %a %u:%g' /run/secrets/*"])
        assert listing.exit_code == 0 and isinstance(listing.output, bytes), listing.output
        files = [line.split() for line in listing.output.decode().splitlines()]
        assert files and all(mode == "400" and owner == "1001:1001" for _, mode, owner in files), (name, files)
    passwords = [r.outputs["result"] for r in stack.state.resources.values() if r.typ == PASSWORD]
    assert passwords
    for container in stack.engine.client.containers.list(all=True):
        config = container.attrs["Config"]
        exposed = " ".join([*(config.get("Env") or []), *(config.get("Cmd") or [])])
        assert not any(p in exposed for p in passwords), container.name


def register_user(api_url: str, email: str) -> None:
    response = httpx.post(
        f"{api_url}/auth/register",
        json={"email": email, "password": "correct horse battery staple"},
        timeout=10,
    )
    assert response.status_code == 201, response.text


def login(api_url: str, email: str) -> int:
    return httpx.post(
        f"{api_url}/auth/login", json={"email": email, "password": "correct horse battery staple"}, timeout=10
    ).status_code


def test_a_second_apply_changes_nothing(stack: Deployed) -> None:
    second = apply(stack.engine, stack.state)
    assert set(second.ops()) <= {"same", "skip"}, [s for s in second.steps if s.op not in {"same", "skip"}]
    assert second.outputs == stack.first.outputs


def status(stack: Deployed) -> subprocess.CompletedProcess[str]:
    """`make status`: the state as `pulumi stack export` has it, judged against the engine."""
    export = {
        "deployment": {
            "resources": [
                {"type": r.typ, "inputs": r.inputs, "outputs": r.outputs}
                for r in stack.state.resources.values()
                if r.typ == CONTAINER
            ]
        }
    }
    return subprocess.run(
        [sys.executable, "-m", "components.commands.status"],
        input=json.dumps(export),
        cwd=ROOT,
        env={**os.environ, **stack.engine.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_container_stopped_by_hand_is_named_and_a_refreshing_up_starts_it(stack: Deployed) -> None:
    assert status(stack).returncode == 0, status(stack).stdout
    stack.engine.client.containers.get("wondernest-dev-backups").stop()
    stopped = status(stack)
    assert stopped.returncode == 1
    assert "1 of " in stopped.stdout and "not as declared: wondernest-dev-backups" in stopped.stdout
    # An up compares inputs with the state: the stopped container goes unnoticed.
    unnoticed = apply(stack.engine, stack.state)
    assert set(unnoticed.ops()) <= {"same", "skip"}
    assert not stack.engine.client.containers.get("wondernest-dev-backups").attrs["State"]["Running"]
    # Refreshed first, the provider's Read stores must_run false and the update starts it.
    with provider_host() as provider:
        refreshed = EngineMocks(stack.engine, stack.state, skip=SKIPPED, log=print, host=provider).refresh()
    assert [(s.op, s.name) for s in refreshed if s.typ == CONTAINER] == [("refreshed", "backups")]
    started = apply(stack.engine, stack.state)
    assert [(s.op, s.name, s.detail) for s in started.steps if s.op != "same" and s.op != "skip"] == [
        ("update", "backups", "mustRun")
    ]
    assert stack.engine.client.containers.get("wondernest-dev-backups").attrs["State"]["Running"]
    # Started again, it is "starting" until its first probe passes: as declared only then.
    deadline = time.monotonic() + 90
    while (again := status(stack)).returncode != 0:
        assert time.monotonic() < deadline, again.stdout
        time.sleep(2)


def test_destroy_keeps_the_protected_and_a_new_apply_finds_the_data(stack: Deployed) -> None:
    api_url = stack.first.outputs["apiUrl"]
    register_user(api_url, "kept@example.com")
    password = stack.state.resources[(PASSWORD, "postgres-superuser")].outputs["result"]

    with provider_host() as provider:
        mocks = EngineMocks(stack.engine, stack.state, skip=SKIPPED, log=print, host=provider)
        removed = mocks.destroy(exclude_protected=True)
    left = {(r.typ, r.name) for r in stack.state.resources.values()}
    assert left == {
        ("random:index/randomPassword:RandomPassword", "postgres-superuser"),
        ("random:index/randomPassword:RandomPassword", "verify-login"),
        ("docker:index/volume:Volume", "postgres-data"),
        ("docker:index/volume:Volume", "backups"),
    }, removed
    assert stack.engine.client.containers.list(all=True) == []
    assert {v.name for v in stack.engine.client.volumes.list()} >= {
        "wondernest-dev-postgres-data",
        "wondernest-dev-backups",
    }

    again = apply(stack.engine, stack.state)
    assert {(s.typ, s.name) for s in again.steps if s.op == "same"} == left
    assert login(again.outputs["apiUrl"], "kept@example.com") == 200
    host, port = reachable(again.outputs["postgresEndpoint"])
    with psycopg.connect(
        host=host,
        port=port,
        user="postgres",
        password=password,
        dbname=again.outputs["postgresDatabase"],
        sslmode="require",
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    (stack.outputs_file.parent / "again.json").write_text(json.dumps(again.outputs))
    verified(stack.outputs_file.parent / "again.json")
