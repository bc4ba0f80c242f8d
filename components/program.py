"""The Pulumi program: config → target platform → stack outputs."""

from __future__ import annotations

from typing import Any

import pulumi

from components.local.platform import build_local_platform
from components.spec.naming import Names
from components.stack_config import load_platform_config


def main() -> dict[str, Any]:
    # Parsing comes first and raises on any bad key: nothing is declared
    # unless the whole config is valid.
    cfg = load_platform_config()
    names = Names(app=cfg.app_name, stack=pulumi.get_stack())
    if cfg.target == "aws":
        # pulumi_aws is large; the local stack never pays for importing it.
        from components.aws.platform import Platform

        outputs = Platform("platform", cfg, names).outputs
    else:
        outputs = build_local_platform(cfg, names)
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
