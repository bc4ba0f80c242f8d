"""Which test is running, for the `servers` marker's guard; both test trees' conftest.py import the hook."""

from __future__ import annotations

import pytest

from tests import servers


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the test's fixtures start anything, so a server started by a
    # module- or session-scoped fixture is charged to the test that asked for it.
    servers.current_test = item
