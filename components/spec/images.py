"""The images the project builds from app/: where, from what, and as whom they run."""

from __future__ import annotations

from pathlib import Path

APP_DIR = Path("app")
IMAGE_UID = 1001
"""app/Dockerfile's `USER`: every image built from it runs as this uid."""

# What each target of app/Dockerfile copies, plus the Dockerfile: its whole input.
API_INPUTS = ("Dockerfile", "requirements.txt", "wondernest_api")
BACKUP_INPUTS = ("Dockerfile", "requirements.txt", "requirements-backup.txt", "wondernest_api", "wondernest_backup")
DEV_S3_INPUTS = ("Dockerfile", "requirements.txt", "requirements-dev-s3.txt", "wondernest_api")
