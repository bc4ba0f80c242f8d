"""The Pulumi program: config → target platform → stack outputs."""

from __future__ import annotations

import gc
from typing import Any

import pulumi

from components.local.platform import LocalPlatform
from components.model.naming import Names
from components.pulumi_config import load_platform_config
from components.target import PlatformArgs, PlatformOutputs

# Declaring a stack allocates hundreds of thousands of short-lived objects
# (outputs, futures, event-loop handles) on top of the provider SDKs' large
# module graph. At the default threshold (700 allocations) the collector runs
# thousands of times, each older-generation pass rescanning every class those
# SDKs define; this often it costs more than declaring the resources. The
# program runs once and exits, so it collects rarely.
GC_THRESHOLD = (50_000, 20, 20)


def main() -> dict[str, Any]:
    gc.set_threshold(*GC_THRESHOLD)
    # Parsing comes first and raises on any bad key: nothing is declared
    # unless the whole config is valid.
    cfg = load_platform_config()
    args = PlatformArgs(config=cfg, names=Names(app=cfg.app_name, stack=pulumi.get_stack()))
    outputs: PlatformOutputs
    if cfg.target == "aws":
        # pulumi_aws is large; the local stack never pays for importing it.
        from components.aws.platform import AwsPlatform

        outputs = AwsPlatform("platform", args).outputs
    else:
        outputs = LocalPlatform("platform", args).outputs
    exported = outputs.exports()
    for key, value in exported.items():
        pulumi.export(key, value)
    return exported
