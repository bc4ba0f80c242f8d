"""ECR repositories and the images built from app/ into them, tagged by content."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components.model.images import APP_DIR, context_digest
from components.model.naming import Names

KEEP_IMAGES = 30


def ecr_image(
    resource_name: str,
    names: Names,
    *,
    inputs: Sequence[str] | None,
    kms_key_arn: pulumi.Input[str],
    parent: pulumi.Resource,
    context: Path = APP_DIR,
    dockerfile: Path | None = None,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
) -> pulumi.Output[str]:
    """Build an image (by default a target of app/Dockerfile), push it, return `repo@sha256:...`.
    With `inputs` None, every file of the context makes the tag.

    Tags are immutable and are the digest of the build inputs and arguments:
    unchanged inputs push nothing and leave every task definition as it is."""
    child = pulumi.ResourceOptions(parent=parent)
    repository = aws.ecr.Repository(
        f"{resource_name}-repository",
        name=f"{names.app}/{names.stack}/{resource_name}",
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
        encryption_configurations=[
            aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=kms_key_arn)
        ],
        force_delete=False,
        opts=child,
    )
    aws.ecr.LifecyclePolicy(
        f"{resource_name}-repository",
        repository=repository.name,
        policy=pulumi.Output.json_dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "description": f"Keep the {KEEP_IMAGES} newest images: rollbacks reach that far",
                        "selection": {
                            "tagStatus": "any",
                            "countType": "imageCountMoreThan",
                            "countNumber": KEEP_IMAGES,
                        },
                        "action": {"type": "expire"},
                    }
                ]
            }
        ),
        opts=pulumi.ResourceOptions(parent=repository),
    )
    args = dict(sorted((build_args or {}).items()))
    tag = hashlib.sha256(f"{context_digest(context, inputs)}{args}".encode()).hexdigest()[:16]
    token = aws.ecr.get_authorization_token_output(
        registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=parent)
    )
    image = docker.Image(
        f"{resource_name}-image",
        build=docker.DockerBuildArgs(
            context=str(context),
            dockerfile=str(dockerfile or context / "Dockerfile"),
            target=target,
            args=args or None,
            # Fargate tasks here run on x86_64, whatever machine runs `pulumi up`.
            platform="linux/amd64",
        ),
        image_name=pulumi.Output.concat(repository.repository_url, ":", tag),
        registry=docker.RegistryArgs(
            server=repository.repository_url,
            username=token.user_name,
            password=pulumi.Output.secret(token.password),
        ),
        opts=child,
    )
    return image.repo_digest
