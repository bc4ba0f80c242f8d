"""`make status`'s verdict on each declared container, from what Docker reports."""

from __future__ import annotations

from typing import Any

import pytest

from components.commands.status import Declared, declared, judge

SERVICE = Declared("wondernest-dev-api", job=False)
JOB = Declared("wondernest-dev-migrations", job=True)


def docker(status: str, health: str | None = None, code: int = 0) -> dict[str, Any]:
    state: dict[str, Any] = {"Status": status, "ExitCode": code}
    if health is not None:
        state["Health"] = {"Status": health}
    return {"State": state}


@pytest.mark.parametrize(
    ("container", "found", "problem"),
    [
        (SERVICE, docker("running", "healthy"), None),
        (SERVICE, docker("running"), None),
        (SERVICE, docker("running", "starting"), "running but starting"),
        (SERVICE, docker("running", "unhealthy"), "running but unhealthy"),
        (SERVICE, docker("exited", "unhealthy", 137), "exited, not running"),
        (SERVICE, docker("paused", "healthy"), "paused, not running"),
        (SERVICE, None, "declared but not there"),
        (JOB, docker("exited", None, 0), None),
        (JOB, docker("exited", None, 1), "the job ended exited, exit code 1"),
        (JOB, docker("running"), None),
        (JOB, None, "declared but not there"),
    ],
)
def test_each_container_is_judged_as_its_kind(container: Declared, found: Any, problem: str | None) -> None:
    verdict = judge(container, found).problem
    assert (verdict or None) == problem if problem is None else verdict is not None and verdict.startswith(problem)


def test_the_state_says_which_containers_are_jobs() -> None:
    export = {
        "deployment": {
            "resources": [
                {"type": "docker:index/network:Network", "inputs": {"name": "net"}},
                {"type": "docker:index/container:Container", "inputs": {"name": "a", "attach": True, "mustRun": False}},
                {"type": "docker:index/container:Container", "inputs": {"name": "b"}, "outputs": {"name": "b"}},
            ]
        }
    }
    assert declared(export) == [Declared("a", job=True), Declared("b", job=False)]
