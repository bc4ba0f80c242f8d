"""The make recipes that read stack outputs or start the stack stop safely.

Each runs the real Makefile with fake `pulumi`, `psql`, `aws` and `docker`
first on PATH; a fake records that it was called, so a test sees both the
message and that nothing ran after it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fake_commands import FakeCommands

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

OUTPUTS = {
    "postgresEndpoint": "127.0.0.1:5433",
    "postgresDatabase": "wondernest",
    "roles": {"app": "wondernest_app"},
    "secrets": {"postgres_app": "s3cr$t 'pw'"},
}

# Every variable the Makefile reads, `$(NAME)`.
MAKEFILE_VARIABLES = frozenset(re.findall(r"\$\((\w+)\)", (ROOT / "Makefile").read_text()))


class Sandbox(FakeCommands):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.tmp = tmp_path
        self.state = tmp_path / "state"

    def with_state(self) -> None:
        self.state.mkdir()
        (self.state / "passphrase").write_text("x\n")

    def make(self, *args: str) -> subprocess.CompletedProcess[str]:
        # An outer make (`make test ARGS=...`) exports its command-line variables
        # and flags; the recipe under test must see only what this call passes.
        inherited = MAKEFILE_VARIABLES | {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
        env = {name: value for name, value in os.environ.items() if name not in inherited}
        env["PATH"] = self.path
        return subprocess.run(
            ["make", "--no-print-directory", "-C", str(ROOT), f"STATE_DIR={self.state}", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    sandbox = Sandbox(tmp_path)
    sandbox.tool("psql", 'env | grep "^PG" | sort > "$(dirname "$0")/../psql-env"')
    sandbox.tool("aws", "exit 0")
    return sandbox


@pytest.mark.parametrize("target", ["psql", "outputs", "destroy", "destroy-all", "reset-db", "verify"])
def test_without_local_state_nothing_runs(box: Sandbox, target: str) -> None:
    box.tool("pulumi", "echo '{}'")
    result = box.make(target)
    assert result.returncode != 0
    assert "error: no local stack state in .pulumi-state/: run make up first" in result.stderr
    assert box.called() == []


@pytest.mark.parametrize(
    ("pulumi", "message"),
    [
        ("echo '{}'", "error: stack 'dev' has no outputs: run `make up` first"),
        ("true", "error: no outputs from stack 'dev': has `make up` run for it yet?"),
        ("echo 'error: no stack named dev found' >&2; exit 255", "error: no stack named dev found"),
        ('echo \'{"postgresEndpoint": "x:1"}\'', "lack postgresDatabase, roles, secrets"),
    ],
)
def test_psql_stops_on_missing_outputs(box: Sandbox, pulumi: str, message: str) -> None:
    box.with_state()
    box.tool("pulumi", pulumi)
    result = box.make("psql")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert [call for call in box.called() if call.startswith("psql")] == []


def test_psql_gets_the_roles_credentials_in_its_environment(box: Sandbox) -> None:
    box.with_state()
    box.tool("pulumi", f"cat <<'EOF'\n{json.dumps(OUTPUTS)}\nEOF")
    result = box.make("psql", "ROLE=app")
    assert result.returncode == 0, result.stderr
    assert "pulumi stack output --stack dev --show-secrets --json" in box.called()
    assert "psql " in box.called()  # no arguments: the password is in the environment only
    assert (box.tmp / "psql-env").read_text().splitlines() == [
        "PGDATABASE=wondernest",
        "PGHOST=127.0.0.1",
        "PGPASSWORD=s3cr$t 'pw'",
        "PGPORT=5433",
        "PGUSER=wondernest_app",
    ]


def test_psql_refuses_an_unknown_role(box: Sandbox) -> None:
    box.with_state()
    box.tool("pulumi", f"cat <<'EOF'\n{json.dumps(OUTPUTS)}\nEOF")
    result = box.make("psql", "ROLE=root")
    assert result.returncode != 0 and "error: unknown role 'root'" in result.stderr
    assert [call for call in box.called() if call.startswith("psql")] == []


@pytest.mark.parametrize(
    ("pulumi", "message"),
    [
        ("echo '{}'", "error: stack 'prod' has no outputs"),
        ('echo \'{"postgresEndpoint": "db:5432"}\'', "error: this stack has no admin bastion"),
    ],
)
def test_tunnel_stops_without_a_bastion_in_the_outputs(box: Sandbox, pulumi: str, message: str) -> None:
    box.tool("pulumi", pulumi)
    result = box.make("tunnel", "STACK=prod", "STATE=s3://b/p", "SECRETS=awskms://alias/k")
    assert result.returncode != 0
    assert message in result.stderr
    assert [call for call in box.called() if call.startswith("aws")] == []


def test_tunnel_starts_the_port_forward(box: Sandbox) -> None:
    outputs = {"postgresEndpoint": "db.example:5432", "adminBastionId": "i-0abc"}
    box.tool("pulumi", f"echo '{json.dumps(outputs)}'")
    result = box.make("tunnel", "STACK=prod", "STATE=s3://b/p", "SECRETS=awskms://alias/k", "TUNNEL_PORT=25432")
    assert result.returncode == 0, result.stderr
    (call,) = [call for call in box.called() if call.startswith("aws")]
    assert call.startswith(
        "aws ssm start-session --target i-0abc --document-name AWS-StartPortForwardingSessionToRemoteHost"
    )
    assert '"localPortNumber":["25432"]' in call


@pytest.mark.parametrize("target", ["up", "preview"])
def test_up_checks_the_machine_before_installing_anything(box: Sandbox, target: str) -> None:
    box.tool("pulumi", "echo v3.140.0")
    box.tool("docker", "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' >&2; exit 1")
    venv = box.tmp / "venv"
    result = box.make(target, f"VENV={venv}")
    assert result.returncode != 0
    assert "preflight ok   pulumi: v3.140.0" in result.stdout
    assert "preflight FAIL docker: no Docker engine reachable" in result.stderr
    assert not venv.exists()
    assert not box.state.exists()
    assert [call for call in box.called() if call.startswith("pulumi") and "version" not in call] == []


def test_up_refuses_an_aws_stack(box: Sandbox) -> None:
    result = box.make("up", "STACK=prod", f"VENV={box.tmp / 'venv'}")
    assert result.returncode != 0
    assert "error: prod is an AWS stack: use make aws-preview / make aws-up" in result.stderr
    assert box.called() == []


def test_aws_preview_needs_its_backend_and_key(box: Sandbox) -> None:
    result = box.make("aws-preview", "STACK=prod")
    assert result.returncode != 0 and "error: set STATE=s3://<bucket>/<prefix>" in result.stderr
    assert box.called() == []


def test_check_config_needs_no_pulumi(box: Sandbox) -> None:
    """Runs with the checkout's venv: installing one here would take minutes."""
    venv = ROOT / "venv"
    if not (venv / ".config").exists():
        pytest.skip("the checkout's venv is not installed (make venv)")
    result = box.make("check-config", "STACK=staging")
    assert result.returncode == 0, result.stderr
    assert "Pulumi.staging.yaml: valid (target aws, appName wondernest)" in result.stdout
    assert box.called() == []


def _needs_checkout_venv() -> None:
    if not (ROOT / "venv" / ".config").exists():
        pytest.skip("the checkout's venv is not installed (make venv)")


EXPORT = {
    "deployment": {
        "resources": [
            {"type": "docker:index/container:Container", "inputs": {"name": name}, "outputs": {"name": name}}
            for name in ("wondernest-dev-api", "wondernest-dev-redis")
        ]
    }
}


def test_status_lists_this_stacks_containers_and_names_what_is_not_as_declared(box: Sandbox) -> None:
    _needs_checkout_venv()
    box.with_state()
    box.tool("pulumi", f"echo '{json.dumps(EXPORT)}'")
    running = [{"Name": "/wondernest-dev-api", "State": {"Status": "running", "Health": {"Status": "healthy"}}}]
    missing = 'echo "Error: No such object: wondernest-dev-redis" >&2'
    box.tool("docker", f"[ \"$1\" = inspect ] && echo '{json.dumps(running)}' && {missing} && exit 1; exit 0")
    result = box.make("status")
    assert result.returncode != 0
    assert box.called() == [
        # (the fake's echo turns each backslash-t into a tab)
        "docker ps --all --filter name=^wondernest-dev- --format table {{.Names}}\t{{.Status}}\t{{.Ports}}",
        "pulumi stack export --stack dev",
        "docker inspect wondernest-dev-api wondernest-dev-redis",
    ]
    assert "wondernest-dev-redis" in result.stdout and "declared but not there" in result.stdout
    assert "1 of 2 containers not as declared: wondernest-dev-redis" in result.stdout


def test_stats_reads_this_stacks_running_containers_once(box: Sandbox) -> None:
    _needs_checkout_venv()
    box.tool("docker", '[ "$1" = ps ] && printf "wondernest-dev-api\\nwondernest-dev-postgres\\n"; exit 0')
    result = box.make("stats")
    assert result.returncode == 0, result.stderr
    assert box.called() == [
        "docker ps --filter name=^wondernest-dev- --format {{.Names}}",
        "docker stats --no-stream --format table {{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.PIDs}} "
        "wondernest-dev-api wondernest-dev-postgres",
    ]
    box.tool("docker", "exit 0")
    stopped = box.make("stats")
    assert stopped.returncode != 0 and "error: no running container of dev: make up first" in stopped.stderr


LOGS = {
    "wondernest-dev-api": "2026-12-05T10:00:02.000000002Z GET /health 200\n2026-12-05T10:00:04.000000000Z ready\n",
    "wondernest-dev-postgres": "2026-12-05T10:00:01.500000000Z database system is ready\n",
    "wondernest-dev-backups": "2026-12-05T10:00:03.000000000Z backup taken\n",
}


def _fake_docker(box: Sandbox) -> None:
    cases = "".join(f'  *"{name}"*) printf "%b" {json.dumps(text)} ;;\n' for name, text in LOGS.items())
    box.tool(
        "docker",
        f'case "$1" in ps) printf "%s\\n" {" ".join(LOGS)} ;; logs) case "$*" in\n{cases}esac ;; esac',
    )


def test_logs_interleaves_every_service_by_time_with_its_name(box: Sandbox) -> None:
    _needs_checkout_venv()
    _fake_docker(box)
    result = box.make("logs", "LINES=50")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "postgres | database system is ready",
        "api      | GET /health 200",
        "backups  | backup taken",
        "api      | ready",
    ]
    assert "docker logs --timestamps --tail 50 wondernest-dev-api" in box.called()
    assert not any("--follow" in call for call in box.called())


def test_logs_of_one_service_and_of_one_that_is_not_there(box: Sandbox) -> None:
    _needs_checkout_venv()
    _fake_docker(box)
    one = box.make("logs", "SERVICE=postgres")
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines() == ["postgres | database system is ready"]
    missing = box.make("logs", "SERVICE=redis")
    assert missing.returncode != 0
    assert "error: no service 'redis'; these exist: api, backups, postgres" in missing.stderr


def test_status_refuses_an_aws_stack(box: Sandbox) -> None:
    result = box.make("status", "STACK=prod")
    assert result.returncode != 0 and "is an AWS stack" in result.stderr


def test_import_dump_pipes_the_dump_in_and_passes_the_password_by_environment(box: Sandbox) -> None:
    _needs_checkout_venv()
    box.with_state()
    outputs = {
        **OUTPUTS,
        "roles": {"migrator": "wondernest_migrator"},
        "secrets": {"postgres_superuser": "not-this", "postgres_migrator": "mig'r$pw"},
    }
    box.tool("pulumi", f"cat <<'EOF'\n{json.dumps(outputs)}\nEOF")
    box.tool(
        "docker",
        'cat > "$(dirname "$0")/../stdin"; '
        'printf "%s|%s" "$RESTORE_DB_USER" "$RESTORE_DB_PASSWORD" > "$(dirname "$0")/../exec-env"',
    )
    missing = box.make("import-dump")
    assert missing.returncode == 2 and "error: name the dump: make import-dump FILE=" in missing.stderr
    assert box.called() == []
    dump = box.tmp / "shop.dump"
    dump.write_bytes(b"PGDMP\x01 an archive")
    result = box.make("import-dump", f"FILE={dump}")
    assert result.returncode == 0, result.stderr
    [call] = [c for c in box.called() if c.startswith("docker")]
    assert call == (
        "docker exec -i -e RESTORE_DB_USER -e RESTORE_DB_PASSWORD wondernest-dev-backups python -m wondernest_backup "
        "import-dump - --owner wondernest_migrator --schemas core,family,subscription,content,audio,analytics,ml,"
        "safety,audit"
    )
    assert "mig'r$pw" not in "".join(box.called())
    assert (box.tmp / "stdin").read_bytes() == dump.read_bytes()
    # As the migrator, which will own what the dump makes: never the superuser.
    assert (box.tmp / "exec-env").read_text() == "wondernest_migrator|mig'r$pw"


REDIS_OUTPUTS = {
    "redisEndpoint": "127.0.0.1:6379",
    "redisUser": "wondernest_app",
    "caCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "secrets": {"redis_app": "r3d'is$pw"},
}


def test_redis_cli_gets_the_password_in_its_environment_only(box: Sandbox) -> None:
    box.with_state()
    box.tool("pulumi", f"cat <<'EOF'\n{json.dumps(REDIS_OUTPUTS)}\nEOF")
    box.tool("redis-cli", 'printf "%s" "$REDISCLI_AUTH" > "$(dirname "$0")/../redis-auth"')
    result = box.make("redis-cli")
    assert result.returncode == 0, result.stderr
    [call] = [c for c in box.called() if c.startswith("redis-cli")]
    ca = box.state / "dev-ca.crt"
    assert call == f"redis-cli --tls --cacert {ca} -h 127.0.0.1 -p 6379 --user wondernest_app"
    assert ca.read_text() == REDIS_OUTPUTS["caCertificate"]
    assert (box.tmp / "redis-auth").read_text() == "r3d'is$pw"


def test_redis_cli_stops_on_an_aws_stacks_outputs(box: Sandbox) -> None:
    box.with_state()
    box.tool("pulumi", f"cat <<'EOF'\n{json.dumps(OUTPUTS)}\nEOF")
    box.tool("redis-cli", "exit 0")
    result = box.make("redis-cli")
    assert result.returncode != 0 and "error:" in result.stderr
    assert [c for c in box.called() if c.startswith("redis-cli")] == []


def test_restart_backup_and_restore_act_on_this_stacks_containers(box: Sandbox) -> None:
    _needs_checkout_venv()
    box.with_state()
    outputs = {**OUTPUTS, "secrets": {"postgres_superuser": "sup'er$pw"}}
    box.tool("pulumi", f"cat <<'EOF'\n{json.dumps(outputs)}\nEOF")
    box.tool(
        "docker",
        'case "$*" in *"wondernest_backup run"*) echo \'{"backup": "20261205T030000000000Z"}\' ;; esac; '
        'printf "%s|%s\\n" "$RESTORE_DB_USER" "$RESTORE_DB_PASSWORD" >> "$(dirname "$0")/../exec-env"',
    )
    assert box.make("restart").returncode == 2
    assert box.make("restore").returncode == 2
    assert box.called() == []
    assert box.make("restart", "SERVICE=api").returncode == 0
    backup = box.make("backup")
    assert backup.returncode == 0, backup.stderr
    restore = box.make("restore", "TARGET=wondernest_restored")
    assert restore.returncode == 0, restore.stderr
    forced = box.make("restore", "TARGET=wondernest", "ID=20261205T030000000000Z", "FORCE=1")
    assert forced.returncode == 0, forced.stderr
    docker = [call for call in box.called() if call.startswith("docker")]
    assert docker == [
        "docker restart wondernest-dev-api",
        "docker exec wondernest-dev-backups python -m wondernest_backup run",
        "docker exec wondernest-dev-backups python -m wondernest_backup verify 20261205T030000000000Z",
        "docker exec -e RESTORE_DB_USER -e RESTORE_DB_PASSWORD wondernest-dev-backups python -m wondernest_backup "
        "restore --latest --target-db wondernest_restored",
        "docker exec -e RESTORE_DB_USER -e RESTORE_DB_PASSWORD wondernest-dev-backups python -m wondernest_backup "
        "restore 20261205T030000000000Z --target-db wondernest --force",
    ]
    assert (box.tmp / "exec-env").read_text().splitlines()[-2:] == ["postgres|sup'er$pw", "postgres|sup'er$pw"]


def test_app_env_gives_the_api_from_the_checkout_the_stacks_services_with_secrets_as_files(box: Sandbox) -> None:
    box.with_state()
    outputs = {
        **OUTPUTS,
        **REDIS_OUTPUTS,
        "roles": {"app": "wondernest_app"},
        "secrets": {"postgres_app": "db'pw", "redis_app": "r$pw", "jwt_signing_key": "j" * 64},
    }
    box.tool("pulumi", f"cat <<'EOF'\n{json.dumps(outputs)}\nEOF")
    result = box.make("-s", "app-env")
    assert result.returncode == 0, result.stderr
    env = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())
    secrets = box.state / "dev-app-secrets"
    assert env["DB_PASSWORD_FILE"] == str(secrets / "db-password")
    assert (secrets / "db-password").read_text() == "db'pw"
    assert (secrets / "jwt-secret").read_text() == "j" * 64
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in secrets.iterdir())
    assert env["DB_SSLMODE"] == "verify-full" and env["DB_SSLROOTCERT"] == str(box.state / "dev-ca.crt")
    assert env["PORT"] == "8081" and env["DB_USER"] == "wondernest_app" and env["REDIS_TLS"] == "true"
    # No secret's value on the lines a shell evaluates.
    assert not any(value in result.stdout for value in ("db'pw", "r$pw", "j" * 64))
