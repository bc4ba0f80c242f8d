"""The stack benchmark's reading of `docker stats` and of the graph (tests/e2e/bench_stack.py)."""

from __future__ import annotations

import pytest

from tests.e2e.bench_stack import GIB, MIB, parse_size, project_images


@pytest.mark.parametrize(
    ("text", "size"),
    [("0B", 0), ("512KiB", 512 * 1024), ("12.5MiB", 12.5 * MIB), ("1GiB", GIB), (" 1.5GiB ", 1.5 * GIB),
     ("3MB", 3_000_000)],
)  # fmt: skip
def test_docker_stats_sizes_are_read_in_their_units(text: str, size: float) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "12", "1.5 parsecs", "MiB"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a docker stats size"):
        parse_size(text)


def test_the_project_images_are_found_by_their_dockerfile_target() -> None:
    image = "docker:index/image:Image"
    declared = [
        (image, {"imageName": "wondernest-api:1", "build": {"target": "runtime"}}),
        (image, {"imageName": "wondernest-backup:2", "build": {"target": "backup"}}),
        (image, {"imageName": "notes:3", "build": {"target": None}}),
        ("docker:index/remoteImage:RemoteImage", {"name": "redis:7", "build": {"target": "runtime"}}),
    ]
    assert project_images(declared) == {"api": "wondernest-api:1", "backup": "wondernest-backup:2"}
