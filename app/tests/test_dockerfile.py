"""The image definition passes hadolint and checkov with nothing to report."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

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


# The app's image, and the prod stack's postgres_exporter with its query file baked in.
DOCKERFILES = [APP_DIR / "Dockerfile", ROOT / "components" / "aws" / "exporter" / "Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=["app", "postgres-exporter"])
def test_hadolint_reports_nothing(dockerfile: Path) -> None:
    hadolint = tool("hadolint", ROOT / "venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == "", result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=["app", "postgres-exporter"])
def test_checkov_reports_nothing(dockerfile: Path) -> None:
    checkov = tool("checkov", ROOT / ".tools" / "checkov" / "bin" / "checkov")
    result = subprocess.run(
        [
            checkov,
            "--framework",
            "dockerfile",
            "-f",
            str(dockerfile),
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert "Failed checks: 0" in result.stdout and "Passed checks:" in result.stdout


def stages() -> dict[str, str]:
    """Stage name → its instructions."""
    text = (APP_DIR / "Dockerfile").read_text()
    found: dict[str, str] = {}
    for block in text.split("\nFROM ")[1:]:
        header, _, body = block.partition("\n")
        found[header.split(" AS ")[1].strip()] = body
    return found


def test_the_final_stages_are_minimal() -> None:
    text = (APP_DIR / "Dockerfile").read_text()
    s = stages()
    assert set(s) == {
        "build-base", "build", "build-backup", "build-dev-s3", "runtime", "backup", "dev-s3",
        "rds-ca", "runtime-aws", "backup-aws",
    }  # fmt: skip
    # The AWS images are the local ones plus Amazon's RDS CA bundle, readable by their user.
    bundle = "COPY --from=rds-ca --chmod=0444 /rds-global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem"
    for name in ("runtime-aws", "backup-aws"):
        assert [line for line in s[name].splitlines() if line.strip()] == [bundle], name
    assert "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in s["rds-ca"]
    assert "FROM runtime AS runtime-aws" in text and "FROM backup AS backup-aws" in text
    # A Fargate task volume at /backups starts as a copy of the image's directory, owned by 1001.
    assert 'VOLUME ["/backups"]' in s["backup"]
    assert "python:3.11.11-slim-bookworm" in text
    runtime = s["runtime"]
    assert "USER 1001:1001" in runtime
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in runtime
    for name in ("runtime", "backup", "dev-s3"):
        # Compilers, build tools and pip stay in the build stages.
        for forbidden in ("gcc", "build-essential", "pip install"):
            assert forbidden not in s[name], name
        assert "HEALTHCHECK" in s[name], name
        assert s[name].strip().splitlines()[-1].startswith("CMD"), name
    # The backup image switches to root only to install PostgreSQL 15, then back;
    # dev-s3 never leaves the runtime's unprivileged user.
    assert [line for line in s["backup"].splitlines() if line.startswith("USER")] == ["USER 0", "USER 1001:1001"]
    assert "postgresql-15" in s["backup"]
    assert not [line for line in s["dev-s3"].splitlines() if line.startswith("USER")]
