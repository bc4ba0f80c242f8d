from __future__ import annotations

import json
import subprocess
import sys

import pytest

from components.connect import libpq_env

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


def test_unknown_role_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown role 'root'"):
        libpq_env(OUTPUTS, "root")


def test_the_lines_survive_a_shell_round_trip() -> None:
    lines = subprocess.run(
        [sys.executable, "-m", "components.connect", "app"],
        input=json.dumps(OUTPUTS),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    echoed = subprocess.run(
        ["sh", "-c", lines + 'printf %s "$PGPASSWORD"'], capture_output=True, text=True, check=True
    ).stdout
    assert echoed == "pa$s'w"
