"""A copy of every backup in an S3-compatible bucket, under the same names."""

from __future__ import annotations

from typing import Any

from wondernest_backup.backup import Repository
from wondernest_backup.pgtools import BackupError
from wondernest_backup.settings import BackupSettings


class Offsite:
    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        *,
        sse: str = "AES256",
        kms_key_id: str | None = None,
        create_bucket: bool = False,
    ) -> None:
        self._s3 = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._create_bucket = create_bucket
        self._extra: dict[str, str] = {"ServerSideEncryption": sse}
        if kms_key_id:
            self._extra["SSEKMSKeyId"] = kms_key_id

    @classmethod
    def from_settings(cls, settings: BackupSettings) -> Offsite | None:
        if not settings.s3_bucket:
            return None
        import boto3

        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
        return cls(
            client,
            settings.s3_bucket,
            settings.s3_prefix,
            sse=settings.s3_sse,
            kms_key_id=settings.s3_kms_key_id,
            create_bucket=settings.s3_create_bucket,
        )

    def _key(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    def upload(self, repo: Repository, backup_id: str) -> None:
        if self._create_bucket:
            existing = {b["Name"] for b in self._s3.list_buckets().get("Buckets", [])}
            if self._bucket not in existing:
                self._s3.create_bucket(Bucket=self._bucket)
            self._create_bucket = False
        # Dump first, manifest last: as locally, a backup exists once its manifest does.
        for path in (repo.dump_path(backup_id), repo.manifest_path(backup_id)):
            self._s3.upload_file(str(path), self._bucket, self._key(path.name), ExtraArgs=self._extra)

    def download(self, repo: Repository, backup_id: str) -> None:
        for path in (repo.dump_path(backup_id), repo.manifest_path(backup_id)):
            try:
                self._s3.download_file(self._bucket, self._key(path.name), str(path))
            except Exception as exc:
                raise BackupError(f"backup {backup_id}: cannot download {path.name}: {exc}") from exc

    def ids(self) -> list[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._key("")):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if name.endswith(".json"):
                    found.append(name.removesuffix(".json"))
        return sorted(found)

    def delete(self, backup_id: str) -> None:
        for suffix in (".json", ".dump"):
            self._s3.delete_object(Bucket=self._bucket, Key=self._key(f"{backup_id}{suffix}"))
