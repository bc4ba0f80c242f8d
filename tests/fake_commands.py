"""Fake commands first on PATH, each recording its own call, for tests of
what a recipe or a tool runs and in which order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class FakeCommands:
    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.calls = root / "calls"

    def tool(self, name: str, body: str) -> None:
        """A fake command that appends its name and arguments to `calls`, then runs `body`."""
        path = self.bin / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.calls}"\n{body}\n')
        path.chmod(0o755)

    def called(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    @property
    def path(self) -> str:
        """PATH with the fakes first."""
        return f"{self.bin}:{os.environ['PATH']}"

    def run_module(self, module: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`python -m module args` from the checkout, with the fakes first on PATH."""
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            input=stdin,
            env={**os.environ, "PATH": self.path},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
