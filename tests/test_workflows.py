"""The GitHub Actions workflows: valid against GitHub's workflow schema, and
holding what the platform relies on: the tests CI runs, the policy pack on
every preview and update, previews refreshed and posted, updates approved."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def load(name: str) -> dict[str, Any]:
    # YAML 1.1 reads the `on:` key as True.
    data: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True)
    return data


def pulumi_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        step["with"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if str(step.get("uses", "")).startswith("pulumi/actions@")
    ]


def test_every_workflow_is_valid_against_githubs_schema() -> None:
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker is not None, "check-jsonschema (requirements-dev.txt) is not installed"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert [w.name for w in WORKFLOWS] == ["checks.yml", "deploy.yml", "preview.yml"]


def test_ci_runs_what_the_readme_says_on_every_change() -> None:
    checks = load("checks.yml")
    assert set(checks["on"]) == {"pull_request", "push"}
    job = checks["jobs"]["test"]
    assert [step.get("run") for step in job["steps"]][-1] == ".ci/run"
    assert job["container"]["image"] == "debian:bookworm"
    assert job["timeout-minutes"] <= 45


def test_actionlint_checks_the_workflows_at_a_pinned_version() -> None:
    """Here only the schema is checked (actionlint's releases are not
    reachable from the test machines); on GitHub, actionlint itself runs."""
    job = load("checks.yml")["jobs"]["workflows"]
    [command] = [step["run"] for step in job["steps"] if "run" in step]
    assert re.fullmatch(
        r'docker run --rm -v "\$PWD:/repo" --workdir /repo rhysd/actionlint:\d+\.\d+\.\d+ -color', command
    )


@pytest.mark.parametrize(("name", "command"), [("preview.yml", "preview"), ("deploy.yml", "up")])
def test_every_preview_and_update_applies_the_policy_pack_after_a_refresh(name: str, command: str) -> None:
    [step] = pulumi_steps(load(name))
    assert step["command"] == command and step["stack-name"] == "prod"
    assert step["policyPacks"] == "policies"
    assert step["policyPackConfigs"] == "policies/config/prod.json"
    assert (ROOT / step["policyPackConfigs"]).is_file()
    assert step["refresh"] is True
    # A self-managed backend and a KMS secrets provider, named by variables.
    assert step["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"


def test_a_preview_is_posted_and_an_update_waits_for_an_approval() -> None:
    preview, deploy = load("preview.yml"), load("deploy.yml")
    assert pulumi_steps(preview)[0]["comment-on-pr"] is True
    assert preview["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    [up] = deploy["jobs"].values()
    assert up["environment"] == "production"
    assert "conclusion == 'success'" in up["if"] and deploy["on"]["workflow_run"]["workflows"] == ["checks"]
    # The commit whose checks passed, not whatever main is now.
    assert up["steps"][0]["with"]["ref"] == "${{ github.event.workflow_run.head_sha }}"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    # Roles by OIDC, no stored keys; the deploy role is not the preview's.
    roles = {
        name: [
            s["with"]["role-to-assume"]
            for j in load(name)["jobs"].values()
            for s in j["steps"]
            if "role-to-assume" in s.get("with", {})
        ]
        for name in ("preview.yml", "deploy.yml")
    }
    assert roles == {
        "preview.yml": ["${{ vars.AWS_PREVIEW_ROLE_ARN }}"],
        "deploy.yml": ["${{ vars.AWS_DEPLOY_ROLE_ARN }}"],
    }
    assert not any("secrets." in path.read_text() for path in WORKFLOWS)


def test_a_pull_request_shows_the_rendered_files_it_changes() -> None:
    job = load("preview.yml")["jobs"]["render"]
    script = "\n".join(str(step.get("run", "")) for step in job["steps"])
    assert "for stack in dev prod" in script and "python -m tests.render" in script
    assert "diff -ruN rendered/base rendered/head" in script and "GITHUB_STEP_SUMMARY" in script
    refs = [step["with"].get("ref") for step in job["steps"] if step.get("uses", "").startswith("actions/checkout")]
    assert refs == [None, "${{ github.event.pull_request.base.sha }}"]
    assert (ROOT / "tests" / "render.py").is_file()
