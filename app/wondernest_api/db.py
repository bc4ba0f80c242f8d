"""The Postgres connection pool, configured once for the API (and its benchmark baseline)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from wondernest_api.settings import Settings


def create_pool(settings: Settings) -> AsyncConnectionPool[Any]:
    # autocommit: a lone SELECT needs no BEGIN/ROLLBACK round trips; handlers
    # that write open an explicit transaction.
    return AsyncConnectionPool(
        settings.db_conninfo(),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        kwargs={"autocommit": True},
        open=False,
        timeout=5,
        name="wondernest-api",
    )


def describe_error(exc: BaseException) -> str:
    """One line for a command-line message: psycopg's errors run over several lines."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else '(no message)'}"
