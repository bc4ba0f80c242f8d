"""The backup service: the API's image with PostgreSQL 15 and the backup tool,
dumping as the read-only backup role, proving each dump by restoring it into a
throwaway server inside the container, and keeping what the policy says."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import BackupsConfig
from components.local.containers import ContainerSpec, SecretFile, hardened_container, labelled_volume, python_probe
from components.local.images import app_image
from components.local.network import Network
from components.local.secrets import Secrets
from components.model.backups import BACKUP_DIR, METRICS_PORT
from components.model.images import BACKUP_INPUTS, IMAGE_UID
from components.model.naming import Names

UID = str(IMAGE_UID)

SECRETS_DIR = "/run/secrets"


@dataclass(frozen=True)
class DevBucket:
    """The dev stack's own bucket service: reached on the backend network, any
    credentials accepted, the bucket created on first use."""

    endpoint: str


@dataclass(frozen=True)
class BackupsArgs:
    names: Names
    config: BackupsConfig
    dev_bucket: DevBucket | None
    database: str
    backup_role: str
    postgres_host: str
    postgres_port: int
    network: Network
    secrets: Secrets
    ca_pem: pulumi.Output[str]
    """The stack's CA: Postgres is verified against it."""
    depends_on: tuple[pulumi.Resource, ...]


def _aws_credentials(access_key_id: str, secret_access_key: str) -> str:
    return f"[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret_access_key}\n"


class Backups(pulumi.ComponentResource):
    container: docker.Container
    volume: docker.Volume

    def __init__(self, name: str, args: BackupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:local:Backups", name, None, opts)
        names, cfg = args.names, args.config
        image = app_image("backup-image", names, target="backup", inputs=BACKUP_INPUTS, parent=self)
        # The dumps live here; they outlive any `pulumi destroy` that is not deliberate.
        backups = self.volume = labelled_volume(
            "backups", names, "backups", pulumi.ResourceOptions(parent=self, protect=True), holds_data=True
        )
        secrets_volume = labelled_volume("backup-secrets", names, "backups", pulumi.ResourceOptions(parent=self))
        env = {
            "DB_HOST": args.postgres_host,
            "DB_PORT": str(args.postgres_port),
            "DB_NAME": args.database,
            "DB_USER": args.backup_role,
            "DB_PASSWORD_FILE": f"{SECRETS_DIR}/db-password",
            "DB_SSLMODE": "verify-full",
            "DB_SSLROOTCERT": f"{SECRETS_DIR}/ca.crt",
            **cfg.service_environment(),
        }
        secret_files = [
            SecretFile(f"{SECRETS_DIR}/db-password", args.secrets.role_password("backup"), UID),
            SecretFile(f"{SECRETS_DIR}/ca.crt", args.ca_pem, UID),
        ]
        networks: list[tuple[pulumi.Input[str], list[str]]] = [(args.network.backend.name, ["backups"])]
        if cfg.s3_bucket is None and args.dev_bucket is not None:
            env.update(
                S3_BUCKET=f"{names.app}-{names.stack}-backups",
                S3_PREFIX=f"{names.app}/{names.stack}",
                S3_REGION=cfg.s3_region,
                S3_ENDPOINT_URL=args.dev_bucket.endpoint,
                S3_CREATE_BUCKET="true",
                AWS_SHARED_CREDENTIALS_FILE=f"{SECRETS_DIR}/aws-credentials",
            )
            # The development service accepts any key; these are not secrets.
            secret_files.append(SecretFile(f"{SECRETS_DIR}/aws-credentials", _aws_credentials("dev", "dev"), UID))
        if cfg.s3_bucket:
            env.update(
                S3_BUCKET=cfg.s3_bucket,
                S3_PREFIX=cfg.s3_prefix or f"{names.app}/{names.stack}",
                S3_REGION=cfg.s3_region,
            )
            if cfg.s3_endpoint_url:
                env["S3_ENDPOINT_URL"] = cfg.s3_endpoint_url
            if cfg.s3_access_key_id and cfg.s3_secret_access_key:
                env["AWS_SHARED_CREDENTIALS_FILE"] = f"{SECRETS_DIR}/aws-credentials"
                secret_files.append(
                    SecretFile(
                        f"{SECRETS_DIR}/aws-credentials",
                        pulumi.Output.secret(
                            _aws_credentials(cfg.s3_access_key_id, cfg.s3_secret_access_key.get_secret_value())
                        ),
                        UID,
                    )
                )
            # The backend network has no route out; the bucket is outside.
            networks.append((args.network.frontend.name, []))
        self.container = hardened_container(
            "backups",
            ContainerSpec(
                name=names.resource("backups"),
                image=image.image_name,
                user=f"{UID}:{UID}",
                memory_bytes=int(cfg.memory),
                networks=networks,
                envs=[f"{k}={v}" for k, v in sorted(env.items())],
                secret_files=secret_files,
                volumes=[
                    docker.ContainerVolumeArgs(volume_name=backups.name, container_path=BACKUP_DIR),
                    docker.ContainerVolumeArgs(volume_name=secrets_volume.name, container_path=SECRETS_DIR),
                ],
                # Writable: its secret files are uploaded (see ContainerSpec.read_only).
                read_only=False,
                tmpfs={"/tmp": "rw,noexec,nosuid,nodev,size=64m"},  # noqa: S108
                shm_size_mb=256,
                healthcheck=python_probe(
                    METRICS_PORT,
                    "/metrics",
                    request_timeout_s=4,
                    interval_s=30,
                    timeout_s=5,
                    retries=3,
                    start_period_s=120,
                ),
                labels={**names.labels("backups"), "com.wondernest.backup-verify": "restore"},
                metrics_job="backups",
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[backups, secrets_volume, *args.depends_on]),
        )
        self.register_outputs({"image": image.image_name, "volume": backups.name})
