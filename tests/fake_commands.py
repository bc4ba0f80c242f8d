"""Fake commands first on PATH, each recording its own call, for tests of
what a recipe or a tool runs and in which order."""

from __future__ import annotations

import os
from pathlib import Path


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
