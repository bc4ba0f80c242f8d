"""Images the stack builds: one Dockerfile target per image, tagged by content."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components.model.app import ImageBuild
from components.model.images import APP_DIR, context_digest
from components.model.naming import Names


def built_image(resource_name: str, image_name: str, build: ImageBuild, *, parent: pulumi.Resource) -> docker.Image:
    """`<image_name>:<digest>`, where the digest covers exactly the files the
    image is built from: unchanged inputs, unchanged tag, no diff."""
    context = Path(build.context)
    tag = context_digest(context, build.inputs)[:16]
    return docker.Image(
        resource_name,
        build=docker.DockerBuildArgs(context=build.context, dockerfile=build.dockerfile, target=build.target),
        image_name=f"{image_name}:{tag}",
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def app_image(
    resource_name: str, names: Names, *, target: str, inputs: Sequence[str], parent: pulumi.Resource
) -> docker.Image:
    """A target of app/Dockerfile, named `<app>-<target>`."""
    build = ImageBuild(str(APP_DIR), str(APP_DIR / "Dockerfile"), target, tuple(inputs))
    return built_image(resource_name, f"{names.app}-{target}", build, parent=parent)
