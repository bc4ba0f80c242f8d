"""The aws CLI as the operator commands run it: one region, JSON out, and a
failure as one error carrying AWS's own code."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from typing import Any


class AwsError(Exception):
    def __init__(self, command: Sequence[str], stderr: str) -> None:
        lines = stderr.strip().splitlines()
        # "An error occurred (NotFoundException) when calling ...": the code in brackets.
        self.code = next((m[1] for line in lines if (m := re.search(r"\(([A-Za-z0-9]+)\)", line))), "")
        super().__init__(f"aws {' '.join(command[:2])}: {lines[-1] if lines else 'failed'}")


def aws(region: str, *args: str) -> Any:
    """`aws <args> --region <region> --output json`, parsed; {} for no output."""
    command = [*args, "--region", region, "--output", "json"]
    try:
        result = subprocess.run(["aws", *command], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise AwsError(command, "the aws CLI is not on PATH") from None
    if result.returncode != 0:
        raise AwsError(command, result.stderr)
    return json.loads(result.stdout) if result.stdout.strip() else {}
