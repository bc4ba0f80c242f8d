"""The shape both targets share: what a platform takes (`PlatformArgs`) and
what it exports (its typed outputs), so the program treats the local and the
AWS platform alike.

The stack outputs' names are a contract: `make verify`, `make connect`,
`make aws-restore` and the docs read them, so a field's camelCase name is the
output's name and renaming a field renames an output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import pulumi
from pydantic.alias_generators import to_camel

from components.config import PlatformConfig
from components.model.naming import Names


@dataclass(frozen=True)
class PlatformArgs:
    config: PlatformConfig
    names: Names


@dataclass(frozen=True)
class PlatformOutputs:
    """What every target exports."""

    api_url: pulumi.Input[str]
    grafana_url: pulumi.Input[str]
    prometheus_url: pulumi.Input[str]
    alertmanager_url: pulumi.Input[str]
    postgres_endpoint: pulumi.Input[str]
    postgres_database: str
    redis_endpoint: pulumi.Input[str]
    redis_user: pulumi.Input[str]
    roles: dict[str, str]
    """Role key → login name."""

    def exports(self) -> dict[str, Any]:
        """Each output under its stack-output name; an absent optional one is
        not exported at all."""
        return {to_camel(f.name): value for f in fields(self) if (value := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class LocalOutputs(PlatformOutputs):
    ca_certificate: pulumi.Input[str]
    """Not a secret: what clients on the host verify Postgres and Redis against."""
    secrets: pulumi.Input[Mapping[str, pulumi.Input[str]]]
    """Every generated credential, as one secret output."""
    pgadmin_url: pulumi.Input[str] | None = None


@dataclass(frozen=True)
class OneOffTask:
    """What `make aws-backup` and `make aws-restore` run a one-off ECS task with."""

    cluster: pulumi.Input[str]
    subnets: Sequence[pulumi.Input[str]]
    security_group: pulumi.Input[str]
    prefix: str
    region: str
    task_definition: pulumi.Input[str]

    def export(self) -> dict[str, Any]:
        return {to_camel(f.name): getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class AwsOutputs(PlatformOutputs):
    page_topic_arn: pulumi.Input[str]
    ticket_topic_arn: pulumi.Input[str]
    postgres_master_secret_arn: pulumi.Input[str]
    secret_arns: dict[str, pulumi.Output[str]]
    backup_vault: pulumi.Input[str]
    backup_bucket: pulumi.Input[str]
    restore_task: OneOffTask
    backup_task: OneOffTask
    kms_key_arn: pulumi.Input[str]
    region: str
    log_groups: dict[str, str]
    """Service → log group, what `make aws-logs SERVICE=...` reads."""
    postgres_reader_endpoint: pulumi.Input[str] | None = None
    """libpq's multi-host form: each replica's certificate names that replica,
    so no shared DNS name could be verified (verify-full)."""
    admin_bastion_id: pulumi.Input[str] | None = None
    email_dkim_records: pulumi.Input[list[dict[str, str]]] | None = None
    """The app's email domain's DKIM records, to add by hand where no zone is configured."""

    def exports(self) -> dict[str, Any]:
        exported = super().exports()
        exported["restoreTask"] = self.restore_task.export()
        exported["backupTask"] = self.backup_task.export()
        return exported
