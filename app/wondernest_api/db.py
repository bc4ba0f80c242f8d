"""The Postgres connection pool, configured once for the API (and its benchmark baseline)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
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


def create_read_pool(settings: Settings) -> AsyncConnectionPool[Any] | None:
    """The replicas' pool, for reads that may lag the primary by the replicas'
    delay; None without DB_READ_HOSTS. Its connections are read-only even when
    they fall back to the primary, so a write sent here fails instead of
    landing where its reader would not look."""
    conninfo = settings.db_read_conninfo()
    if conninfo is None:
        return None
    return AsyncConnectionPool(
        conninfo,
        min_size=1,
        max_size=settings.db_pool_max,
        kwargs={"autocommit": True},
        configure=_read_only,
        # Replicas come and go (the count lowered, one replaced in maintenance)
        # and their connections die with them: each is checked before it is lent.
        check=AsyncConnectionPool.check_connection,
        open=False,
        timeout=5,
        name="wondernest-api-read",
    )


async def _read_only(conn: AsyncConnection[Any]) -> None:
    await conn.execute("SET default_transaction_read_only = on")


def describe_error(exc: BaseException) -> str:
    """One line for a command-line message: psycopg's errors run over several lines."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else '(no message)'}"
