"""The backup tool's configuration, from the environment (`*_FILE` for secrets)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, SecretStr, field_validator
from wondernest_api.envconfig import DatabaseSettings, Port, SettingsError, load_from_env

from wondernest_backup.pgtools import Endpoint
from wondernest_backup.retention import RetentionPolicy


class BackupSettings(DatabaseSettings):
    backup_dir: Path = Path("/backups")
    backup_schedule: str = "0 3 * * *"
    retention_last: Annotated[int, Field(ge=1)] = 7
    retention_daily: Annotated[int, Field(ge=0)] = 14
    retention_weekly: Annotated[int, Field(ge=0)] = 8
    retention_monthly: Annotated[int, Field(ge=0)] = 12
    restore_jobs: Annotated[int, Field(ge=1, le=16)] = 2
    reverify_budget_seconds: Annotated[int, Field(ge=0, le=86_400)] = 900
    """How long each cycle spends proving older backups again, oldest proof first."""
    offsite_retry_minutes: Annotated[int, Field(ge=1, le=1440)] = 15
    """Between cycles, how often an off-site copy or deletion that failed is tried again."""
    metrics_port: Port = 9200
    s3_bucket: str | None = None
    s3_prefix: str = "backups"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_sse: Literal["AES256", "aws:kms"] = "AES256"
    s3_kms_key_id: str | None = None
    s3_create_bucket: bool = False
    """For a development bucket service that starts empty; never set against real S3."""
    restore_db_user: str | None = None
    restore_db_password: SecretStr | None = None

    @field_validator("backup_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a cron expression: {exc}") from None
        return value

    def source(self) -> Endpoint:
        return Endpoint(
            self.db_host,
            self.db_port,
            self.db_user,
            self.db_password.get_secret_value(),
            self.db_name,
            self.db_sslmode,
            self.db_sslrootcert,
        )

    def restorer(self) -> Endpoint:
        """The role that may create and fill databases: an operator's, passed only for `restore`."""
        if self.restore_db_user is None or self.restore_db_password is None:
            raise SettingsError(["RESTORE_DB_USER and RESTORE_DB_PASSWORD(_FILE): required to restore"])
        return Endpoint(
            self.db_host,
            self.db_port,
            self.restore_db_user,
            self.restore_db_password.get_secret_value(),
            self.db_name,
            self.db_sslmode,
            self.db_sslrootcert,
        )

    def retention(self) -> RetentionPolicy:
        return RetentionPolicy(
            last=self.retention_last,
            daily=self.retention_daily,
            weekly=self.retention_weekly,
            monthly=self.retention_monthly,
        )


def load_settings(environ: Mapping[str, str]) -> BackupSettings:
    return load_from_env(BackupSettings, environ)
