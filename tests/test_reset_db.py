"""`make reset-db` against a real Postgres with the platform applied and
migrated, the Pulumi CLI and docker stood in for by fakes that record their
calls (neither runs here): what it drops, in what order it calls the stack,
and that refusals and failures before the drop change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from components.commands.reset_db import IN_DATABASE, in_database_urns
from components.model.database import database_spec
from components.model.naming import Names
from components.postgres.provider import RoleProvider
from components.postgres.resources import declared_objects
from tests.api_stack import migrate_platform, platform
from tests.fake_commands import FakeCommands
from tests.servers import PostgresServer, postgres_server

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent
NAMES = Names(app="wondernest", stack="dev")
BACKUP_ID = "20261203T101500000000Z"
PREFIX = "urn:pulumi:dev::wondernest::wondernest:local:Platform$wondernest:local:Database"


def export() -> dict[str, object]:
    """The state's resources as `pulumi stack export` lists them: the database's objects and others."""
    resources = [
        {
            "urn": f"{PREFIX}$pulumi-python:dynamic/postgres:Role::role-app",
            "type": "pulumi-python:dynamic/postgres:Role",
        }
    ]
    for name, provider, _inputs in declared_objects(database_spec(NAMES), superuser=True):
        if isinstance(provider, RoleProvider):
            continue
        kind = type(provider).__name__.removesuffix("Provider")
        typ = f"pulumi-python:dynamic/postgres:{kind}"
        resources.append({"urn": f"{PREFIX}${typ}::{name}", "type": typ})
    resources.append(
        {
            "urn": "urn:pulumi:dev::wondernest::docker:index/container:Container::api",
            "type": "docker:index/container:Container",
        }
    )
    return {"version": 3, "deployment": {"resources": resources}}


class Fakes(FakeCommands):
    def __init__(self, root: Path, pg: PostgresServer) -> None:
        assert pg.ca is not None
        super().__init__(root)
        outputs = {
            "postgresEndpoint": f"127.0.0.1:{pg.port}",
            "postgresDatabase": "wondernest",
            "caCertificate": pg.ca.read_text(),
            "secrets": {"postgres_superuser": pg.superuser_password},
        }
        (root / "outputs.json").write_text(json.dumps(outputs))
        (root / "export.json").write_text(json.dumps(export()))
        self._tool(
            "pulumi",
            f"""
case "$1 $2" in
  "stack output") cat "{root}/outputs.json" ;;
  "stack export") cat "{root}/export.json" ;;
esac""",
        )
        refused = 'echo "pg_dump: connection refused" >&2; exit 1'
        self._tool(
            "docker",
            f"""
case "$*" in
  *"wondernest_backup run"*) [ -n "$FAIL_BACKUP" ] && {{ {refused}; }}; echo '{{"backup": "{BACKUP_ID}"}}' ;;
  *"wondernest_backup verify"*) echo '{{"verified": "{BACKUP_ID}"}}' ;;
  inspect*) echo healthy ;;
esac""",
        )

    def _tool(self, name: str, body: str) -> None:
        # Whatever the last test in the body returned, the fake succeeds.
        self.tool(name, f"{body}\nexit 0")

    def reset(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "components.commands.reset_db", "dev", *args],
            input=stdin,
            env={**os.environ, "PATH": self.path, **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[PostgresServer, Fakes]]:
    with postgres_server(tls=True) as pg:
        platform(pg)
        migrate_platform(pg)
        yield pg, Fakes(tmp_path, pg)


def tables(pg: PostgresServer) -> list[str]:
    with pg.admin("wondernest") as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname IN ('core', 'audit') ORDER BY 1"
        ).fetchall()
    return [str(row[0]) for row in rows]


MIGRATED = ["audit.activity_logs", "core.schema_migrations", "core.user_sessions", "core.users"]


def test_only_the_databases_own_objects_are_refreshed() -> None:
    urns = in_database_urns(export())
    assert urns and all(any(f"${typ}::" in urn for typ in IN_DATABASE) for urn in urns)
    assert not any("::role-" in urn or "docker:" in urn for urn in urns)


def test_a_wrong_answer_changes_nothing(stack: tuple[PostgresServer, Fakes]) -> None:
    pg, fakes = stack
    result = fakes.reset(stdin="wondernest_prod\n")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("error: not confirmed; nothing changed")
    assert "Type the database's name (wondernest) to go on" in result.stdout
    assert tables(pg) == MIGRATED
    assert not any(call.startswith("docker") for call in fakes.called())


def test_a_failed_backup_changes_nothing(stack: tuple[PostgresServer, Fakes]) -> None:
    pg, fakes = stack
    result = fakes.reset("--yes", FAIL_BACKUP="1")
    assert result.returncode == 1
    assert (
        "error: the backup before the reset failed (exit 1): pg_dump: connection refused; nothing changed"
        in result.stderr
    )
    assert tables(pg) == MIGRATED
    assert [c for c in fakes.called() if c.startswith("docker")] == [
        "docker exec wondernest-dev-backups python -m wondernest_backup run"
    ]


def test_the_reset_drops_the_database_and_rebuilds_it_through_the_stack(stack: tuple[PostgresServer, Fakes]) -> None:
    pg, fakes = stack
    result = fakes.reset(stdin="wondernest\n")
    assert result.returncode == 0, result.stderr
    assert tables(pg) == []
    with pg.admin() as conn:
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'wondernest'").fetchone()
        roles = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'wondernest\\_%'").fetchone()
    assert owner == ("postgres",) and roles == (5,)  # the roles are the cluster's: they stay
    urns = in_database_urns(export())
    targets = " ".join(f"--target {urn}" for urn in urns)
    assert fakes.called() == [
        "pulumi stack output --json --show-secrets --stack dev",
        "pulumi stack export --stack dev",
        "docker exec wondernest-dev-backups python -m wondernest_backup run",
        f"docker exec wondernest-dev-backups python -m wondernest_backup verify {BACKUP_ID}",
        "docker stop wondernest-dev-api",
        f"pulumi refresh --yes --stack dev {targets}",
        f"pulumi up --yes --stack dev {targets} --policy-pack policies --policy-pack-config policies/config/dev.json",
        "docker start --attach wondernest-dev-migrations",
        "docker start wondernest-dev-api",
        "docker inspect --format {{.State.Health.Status}} wondernest-dev-api",
    ]
    assert f"what it held is in backup {BACKUP_ID}" in result.stdout
    # What `pulumi up` then does with those objects, and the migrations job after it.
    admin = pg.admin_connection("wondernest")
    for _name, provider, inputs in declared_objects(database_spec(NAMES), superuser=True):
        if not isinstance(provider, RoleProvider):
            provider.create({**inputs, "connection": admin})
    migrate_platform(pg)
    assert tables(pg) == MIGRATED


def test_a_database_the_config_does_not_name_is_refused(stack: tuple[PostgresServer, Fakes], tmp_path: Path) -> None:
    pg, fakes = stack
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    (tmp_path / "outputs.json").write_text(json.dumps({**outputs, "postgresDatabase": "billing"}))
    result = fakes.reset("--yes")
    assert result.returncode == 1
    assert "the stack's outputs name database 'billing', its config 'wondernest'" in result.stderr
    assert tables(pg) == MIGRATED
    assert not any(call.startswith("docker") for call in fakes.called())


def test_a_failure_after_the_drop_names_the_backup_to_restore(stack: tuple[PostgresServer, Fakes]) -> None:
    pg, fakes = stack
    (fakes.bin / "pulumi").write_text(
        (fakes.bin / "pulumi")
        .read_text()
        .replace("exit 0", '[ "$1" = up ] && { echo "error: update failed" >&2; exit 255; }\nexit 0')
    )
    result = fakes.reset("--yes")
    assert result.returncode == 1
    assert "error: re-creating the database's objects failed (exit 255)" in result.stderr
    assert f"What the database held is backup {BACKUP_ID}" in result.stderr
    assert "docker start wondernest-dev-api" not in fakes.called()
    with psycopg.connect(pg.dsn(dbname="wondernest")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_an_api_that_does_not_come_back_still_names_the_backup(stack: tuple[PostgresServer, Fakes]) -> None:
    _pg, fakes = stack
    (fakes.bin / "docker").write_text(
        (fakes.bin / "docker")
        .read_text()
        .replace(
            "exit 0",
            '[ "$1 $2" = "start wondernest-dev-api" ] && { echo "error: no such container" >&2; exit 1; }\nexit 0',
        )
    )
    result = fakes.reset("--yes")
    assert result.returncode == 1
    assert "error: starting wondernest-dev-api failed (exit 1)" in result.stderr
    assert f"What the database held is backup {BACKUP_ID}" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_aws_stack_is_pointed_at_the_restore_section_that_exists(tmp_path: Path) -> None:
    import yaml

    from components.commands.reset_db import main
    from tests.test_stack_prod import prod_config

    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    stack = {"config": {f"wondernest:{key}": value for key, value in prod_config().items()}}
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack))
    with pytest.raises(SystemExit) as refused:
        main(["prod", "--root", str(tmp_path)])
    assert 'make aws-restore or a point-in-time restore (docs/aws.md, "Restoring")' in str(refused.value)
    assert "\n## Restoring\n" in (ROOT / "docs" / "aws.md").read_text()
