"""Images built from app/: one Dockerfile, one target per image, tagged by content."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components.build_context import context_digest
from components.spec.naming import Names

APP_DIR = Path("app")


def app_image(
    resource_name: str, names: Names, *, target: str, inputs: Sequence[str], parent: pulumi.Resource
) -> docker.Image:
    """`<app>-<target>:<digest>`, where the digest covers exactly the files the
    target is built from: unchanged inputs, unchanged tag, no diff."""
    tag = context_digest(APP_DIR, inputs)[:16]
    return docker.Image(
        resource_name,
        build=docker.DockerBuildArgs(context=str(APP_DIR), dockerfile=str(APP_DIR / "Dockerfile"), target=target),
        image_name=f"{names.app}-{'api' if target == 'runtime' else target}:{tag}",
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
