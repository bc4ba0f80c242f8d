"""An S3-compatible bucket service for the dev stack, so the backups' off-site
copy runs locally end to end.

moto's server, built from app/Dockerfile (target `dev-s3`): the same S3
implementation the test suite runs the copy against, and it runs as an
unprivileged user with a read-only root. LocalStack, the seed's choice, runs as
root, which the platform's policies refuse. Its buckets live in memory: a
restart empties them, which is what a development copy may do.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.local.containers import ContainerSpec, hardened_container, python_probe
from components.local.images import app_image
from components.local.network import Network
from components.model.images import DEV_S3_INPUTS, IMAGE_UID
from components.model.naming import Names

UID = str(IMAGE_UID)

PORT = 4566
MEMORY_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class DevS3Args:
    names: Names
    network: Network


class DevS3(pulumi.ComponentResource):
    endpoint: str
    """Where the backups container reaches it, on the backend network."""

    def __init__(self, name: str, args: DevS3Args, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:DevS3", name, None, opts)
        names, network = args.names, args.network
        image = app_image("dev-s3-image", names, target="dev-s3", inputs=DEV_S3_INPUTS, parent=self)
        hardened_container(
            "dev-s3",
            ContainerSpec(
                name=names.resource("dev-s3"),
                image=image.image_name,
                user=f"{UID}:{UID}",
                memory_bytes=MEMORY_BYTES,
                networks=[(network.backend.name, ["dev-s3"])],
                read_only=True,
                tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=64m"},  # noqa: S108
                healthcheck=python_probe(
                    PORT,
                    "/moto-api/",
                    request_timeout_s=2,
                    interval_s=15,
                    timeout_s=3,
                    retries=3,
                    start_period_s=20,
                ),
                labels=names.labels("dev-s3"),
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.endpoint = f"http://dev-s3:{PORT}"
        self.register_outputs({"endpoint": self.endpoint})
