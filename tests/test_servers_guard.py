"""A test that starts a real server must be marked `servers`, so `make test-fast` starts none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TESTS = """
import pytest
from tests.servers import require_binary

def test_unmarked() -> None:
    require_binary("/nonexistent/redis-server", "redis-server")

@pytest.mark.servers
def test_marked() -> None:
    require_binary("/nonexistent/redis-server", "redis-server")
"""


def test_an_unmarked_test_that_starts_a_server_fails(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = servers: starts real servers\n")
    (tmp_path / "test_guarded.py").write_text(TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.servers_guard", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "test_guarded.py::test_unmarked starts redis-server but is not marked `servers`" in result.stdout
    assert "/nonexistent/redis-server not found (Debian package redis-server)" in result.stdout
    assert "1 failed, 1 skipped" in result.stdout
