"""A pytest plugin (pyproject addopts): which test is running, for the `servers`
marker's guard, the run's PostgreSQL template cluster, and at the end of a run
how many tests were skipped and why."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from tests import servers


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the test's fixtures start anything, so a server started by a
    # module- or session-scoped fixture is charged to the test that asked for it.
    servers.current_test = item


_made_template: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """A directory for the run's template cluster, unless the caller gave one
    (the mutation runner: one for all its runs); it is made on first use."""
    global _made_template
    if not os.environ.get(servers.TEMPLATE):
        _made_template = tempfile.mkdtemp(prefix="wn-pg-template-")
        os.environ[servers.TEMPLATE] = _made_template


def pytest_unconfigure(config: pytest.Config) -> None:
    global _made_template
    if _made_template is not None:
        shutil.rmtree(_made_template, ignore_errors=True)
        del os.environ[servers.TEMPLATE]
        _made_template = None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """At the very end, how many tests were skipped and why: a green run that
    started no server proves much less than it looks."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for report in skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    terminalreporter.write_sep("!", f"{len(skipped)} tests SKIPPED, so not proven by this run", red=True, bold=True)
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"  {count:4} {reason}", red=True)
    if any("not found (Debian package" in reason for reason in reasons):
        terminalreporter.write_line(
            "  `make servers` installs the server packages; CI sets REQUIRE_SERVERS=1.", red=True
        )
