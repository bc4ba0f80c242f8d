from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from components.commands.check_config import check
from tests.e2e import standins
from tests.e2e.engine import Engine, own_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """One dockerd for the whole run, with every stand-in image built on it."""
    with own_engine() as started:
        config, problems, _ = check(ROOT, "dev")
        assert config is not None, problems
        for reference in standins.build_all(started, config):
            print(f"stand-in {reference}")
        yield started
