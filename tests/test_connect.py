from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.commands.connect import libpq_env

OUTPUTS = {
    "postgresEndpoint": "127.0.0.1:5433",
    "postgresDatabase": "wondernest",
    "roles": {"app": "wondernest_app", "analytics": "wondernest_analytics"},
    "secrets": {"postgres_app": "pa$s'w", "postgres_analytics": "b", "postgres_superuser": "s"},
}


def test_role_environment() -> None:
    assert libpq_env(OUTPUTS, "app") == {
        "PGHOST": "127.0.0.1",
        "PGPORT": "5433",
        "PGUSER": "wondernest_app",
        "PGPASSWORD": "pa$s'w",
        "PGDATABASE": "wondernest",
    }
    assert libpq_env(OUTPUTS, "superuser")["PGUSER"] == "postgres"


def test_a_stack_with_its_own_ca_is_verified(tmp_path: Path) -> None:
    outputs = {**OUTPUTS, "caCertificate": "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"}
    lines = subprocess.run(
        [sys.executable, "-m", "components.commands.connect", "app", "dev", str(tmp_path)],
        input=json.dumps(outputs),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ca = tmp_path / "dev-ca.crt"
    assert ca.read_text() == outputs["caCertificate"]
    assert f"export PGSSLROOTCERT={ca}\n" in lines and "export PGSSLMODE=verify-full\n" in lines


def test_unknown_role_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown role 'root'"):
        libpq_env(OUTPUTS, "root")


def test_the_lines_survive_a_shell_round_trip() -> None:
    lines = subprocess.run(
        [sys.executable, "-m", "components.commands.connect", "app"],
        input=json.dumps(OUTPUTS),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    echoed = subprocess.run(
        ["sh", "-c", lines + 'printf %s "$PGPASSWORD"'], capture_output=True, text=True, check=True
    ).stdout
    assert echoed == "pa$s'w"


def test_a_role_whose_password_the_outputs_do_not_hold_is_refused() -> None:
    prod = {**OUTPUTS, "secrets": {"postgres_app": "a"}}
    with pytest.raises(SystemExit, match="outputs hold no password for superuser"):
        libpq_env(prod, "superuser")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "error: no outputs from stack 'dev': has `make up` run for it yet?"),
        ("Traceback (most recent call last):", "error: the outputs of stack 'dev' are not JSON"),
        ("[]", "error: stack 'dev' has no outputs: run `make up` first"),
        ('{"postgresEndpoint": "h:1"}', "error: the outputs of stack 'dev' lack postgresDatabase, roles, secrets"),
    ],
)
def test_unusable_outputs_give_one_error_line(text: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "components.commands.connect", "app", "dev"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
