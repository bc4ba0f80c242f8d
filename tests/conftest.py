from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers import PostgresServer, postgres_server

# Mock-runtime tests read Pulumi.dev.yaml relative to the project root.
os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server
