"""The image definition passes hadolint and checkov with nothing to report."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[1]
ROOT = APP_DIR.parent


def tool(name: str, *candidates: Path) -> str:
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found (`make tools` installs checkov; hadolint comes with the dev requirements)"
    if os.environ.get("REQUIRE_SERVERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def test_hadolint_reports_nothing() -> None:
    hadolint = tool("hadolint", ROOT / "venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, str(APP_DIR / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout


def test_checkov_reports_nothing() -> None:
    checkov = tool("checkov", ROOT / ".tools" / "checkov" / "bin" / "checkov")
    result = subprocess.run(
        [
            checkov,
            "--framework",
            "dockerfile",
            "-f",
            str(APP_DIR / "Dockerfile"),
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert "Failed checks: 0" in result.stdout and "Passed checks:" in result.stdout


def test_the_runtime_stage_is_minimal() -> None:
    text = (APP_DIR / "Dockerfile").read_text()
    runtime, backup = text.split(" AS runtime", 1)[1].split(" AS backup", 1)
    assert "USER 1001:1001" in runtime
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in runtime
    assert "HEALTHCHECK" in runtime
    # Compilers, build tools and pip stay in the build stages.
    for forbidden in ("gcc", "build-essential", "pip install"):
        assert forbidden not in runtime
        assert forbidden not in backup
    # The backup image switches to root only to install PostgreSQL 15, then back.
    assert backup.strip().splitlines()[-1].startswith("CMD")
    assert [line for line in backup.splitlines() if line.startswith("USER")] == ["USER 0", "USER 1001:1001"]
    assert "postgresql-15" in backup
    assert "python:3.11.11-slim-bookworm" in text
