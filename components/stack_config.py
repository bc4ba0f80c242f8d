"""Reads the `wondernest:` namespace out of the running Pulumi program."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import config as runtime_config

from components.config import NAMESPACE, PlatformConfig, parse_config, parse_raw_value


def load_platform_config() -> PlatformConfig:
    """All keys at once, so an unknown or misspelt key is an error rather than
    a setting silently ignored (pulumi.Config only answers for keys it is asked)."""
    # The engine passes config in PULUMI_CONFIG; tests and the automation API set
    # it in-process. The in-process values win, as they do for pulumi.Config.
    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{NAMESPACE}:"
    raw = {key[len(prefix) :]: parse_raw_value(value) for key, value in merged.items() if key.startswith(prefix)}
    secret_keys = [key for key in merged if runtime_config.is_config_secret(key)]
    secret_keys += runtime_config.get_config_secret_keys_env()
    return parse_config(raw, secret_keys)
