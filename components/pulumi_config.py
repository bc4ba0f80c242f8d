"""Reads the project's config namespace out of the running Pulumi program."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.config import PlatformConfig, parse_config, parse_raw_value, project_keys


def load_platform_config() -> PlatformConfig:
    """All keys at once, so an unknown or misspelt key is an error rather than
    a setting silently ignored (pulumi.Config only answers for keys it is asked).
    The namespace is the project's name, as for `pulumi.Config()`: renaming the
    project in Pulumi.yaml renames it."""
    # The engine passes config in PULUMI_CONFIG; tests and the automation API set
    # it in-process. The in-process values win, as they do for pulumi.Config.
    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    namespace = pulumi.get_project()
    mine, strays = project_keys(merged, namespace)
    raw = {key: parse_raw_value(value) for key, value in mine.items()}
    secret_keys = [key for key in merged if runtime_config.is_config_secret(key)]
    secret_keys += runtime_config.get_config_secret_keys_env()
    # The program runs in the project's directory, as Pulumi starts it.
    return parse_config(raw, secret_keys, namespace, strays, stack=pulumi.get_stack(), root=Path.cwd())
