"""The images the project builds from app/: where, from what, and as whom they run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

APP_DIR = Path("app")
IMAGE_UID = 1001
"""app/Dockerfile's `USER`: every image built from it runs as this uid."""

# What each target of app/Dockerfile copies, plus the Dockerfile: its whole input.
API_INPUTS = ("Dockerfile", "requirements.txt", "wondernest_api")
BACKUP_INPUTS = ("Dockerfile", "requirements.txt", "requirements-backup.txt", "wondernest_api", "wondernest_backup")
DEV_S3_INPUTS = ("Dockerfile", "requirements.txt", "requirements-dev-s3.txt", "wondernest_api", "wondernest_emulator")


_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def context_digest(context: Path, inputs: Iterable[str] | None = None) -> str:
    """sha256 over the relative path and bytes of every file under `inputs`
    (paths in the context), or of every file of the context when None.

    Images are tagged with it: an unchanged app gives the same tag, so
    `pulumi preview` shows no image or container change, and any change to the
    code, the dependencies or the Dockerfile gives a new tag."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for name in ("",) if inputs is None else inputs:
        path = context / name
        if not path.exists():
            raise FileNotFoundError(f"build input {path} does not exist")
        candidates = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        files.extend(
            p
            for p in candidates
            if not (_SKIPPED_PARTS & set(p.relative_to(context).parts)) and p.suffix not in _SKIPPED_SUFFIXES
        )
    for file in sorted(set(files)):
        digest.update(file.relative_to(context).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()
