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


def test_a_run_that_skipped_server_tests_says_so_at_its_end(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = servers: starts real servers\n")
    (tmp_path / "test_skipping.py").write_text(
        TESTS.replace("def test_unmarked", "@pytest.mark.servers\ndef test_also_marked")
        + "\n\ndef test_plain() -> None:\n    assert True\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.servers_guard", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    tail = result.stdout.strip().splitlines()[-5:]
    assert any("2 tests SKIPPED, so not proven by this run" in line for line in tail), tail
    assert any("2 /nonexistent/redis-server not found (Debian package redis-server)" in line for line in tail), tail
    assert any("`make servers` installs the server packages" in line for line in tail), tail
