"""The Pulumi program: config → target platform → stack outputs."""

from __future__ import annotations

from typing import Any

import pulumi

from components.local.platform import build_local_platform
from components.spec.naming import Names
from components.stack_config import load_platform_config


class UnsupportedTargetError(Exception):
    pass


def main() -> dict[str, Any]:
    # Parsing comes first and raises on any bad key: nothing is declared
    # unless the whole config is valid.
    cfg = load_platform_config()
    names = Names(app=cfg.app_name, stack=pulumi.get_stack())
    if cfg.target != "docker":
        raise UnsupportedTargetError(
            f"wondernest:target = {cfg.target!r}: this program declares only the 'docker' "
            "target so far; the AWS components are not part of it yet"
        )
    outputs = build_local_platform(cfg, names)
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
