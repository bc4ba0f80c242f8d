"""The dev stack's AWS emulation: S3 for the backups' off-site copy, and S3,
SQS, SNS and SES for an app that declares `awsServices`.

moto's server, built from app/Dockerfile (target `dev-s3`, running
app/wondernest_emulator): the same implementation the test suite runs against,
as an unprivileged user with a read-only root. LocalStack, the seed's choice,
runs as root, which the platform's policies refuse. It creates the declared
queues, dead-letter queues, topics, subscriptions, buckets and email identity
at every start and reports healthy only then. Everything lives in memory: a
restart empties queues and buckets, which is what a development copy may do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_docker as docker

from components.local.containers import ContainerSpec, hardened_container, healthcheck
from components.local.images import app_image
from components.local.network import Network
from components.model.images import DEV_S3_INPUTS, IMAGE_UID
from components.model.naming import Names

UID = str(IMAGE_UID)

PORT = 4566
MEMORY_BYTES = 256 * 1024 * 1024
REGION = "us-east-1"
READY_FILE = "/tmp/emulator-ready"  # noqa: S108 (the container's own tmpfs)
# Healthy once the declared resources exist (the file), and while the server answers.
PROBE = (
    "import os, sys, urllib.request; "
    f"sys.exit(not os.path.exists({READY_FILE!r}) "
    f"or urllib.request.urlopen('http://127.0.0.1:{PORT}/moto-api/', timeout=2).status != 200)"
)


@dataclass(frozen=True)
class DevS3Args:
    names: Names
    network: Network
    resources: dict[str, Any] = field(default_factory=dict)
    """What it creates at start (components/model/app_services.py, emulated_resources)."""


class DevS3(pulumi.ComponentResource):
    container: docker.Container
    endpoint: str
    """Where the backups container reaches it, on the backend network."""

    def __init__(self, name: str, args: DevS3Args, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:DevS3", name, None, opts)
        names, network = args.names, args.network
        image = app_image("dev-s3-image", names, target="dev-s3", inputs=DEV_S3_INPUTS, parent=self)
        self.container = hardened_container(
            "dev-s3",
            ContainerSpec(
                name=names.resource("dev-s3"),
                image=image.image_name,
                user=f"{UID}:{UID}",
                memory_bytes=MEMORY_BYTES,
                networks=[(network.backend.name, ["dev-s3"])],
                envs=[f"EMULATED_RESOURCES={json.dumps(args.resources, sort_keys=True)}"],
                read_only=True,
                tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=64m"},  # noqa: S108
                healthcheck=healthcheck(
                    ["CMD", "python", "-c", PROBE], interval_s=15, timeout_s=3, retries=3, start_period_s=20
                ),
                labels=names.labels("dev-s3"),
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.endpoint = f"http://dev-s3:{PORT}"
        self.register_outputs({"endpoint": self.endpoint})
