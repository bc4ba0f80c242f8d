"""The SQL the API runs; every statement is parameterised."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    password_hash: str
    is_active: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


@dataclass(frozen=True)
class Session:
    id: uuid.UUID
    family_id: uuid.UUID
    user_id: uuid.UUID
    expires_at: dt.datetime
    rotated_at: dt.datetime | None
    revoked_at: dt.datetime | None
    user_active: bool


@dataclass(frozen=True)
class Activity:
    action: str
    at: dt.datetime
    ip: str | None


ACTIVITY_LIMIT = 50
"""The most events `/api/users/me/activity` returns, newest first."""

_USER_COLUMNS = "id, email, password_hash, is_active, created_at, last_login_at"
_USER_COLUMNS_U = ", ".join(f"u.{column.strip()}" for column in _USER_COLUMNS.split(","))
_SESSION_COLUMNS = "s.id, s.family_id, s.user_id, s.expires_at, s.rotated_at, s.revoked_at, u.is_active AS user_active"


async def create_user(conn: AsyncConnection[Any], email: str, password_hash: str) -> User:
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(
            f"INSERT INTO core.users (email, password_hash) VALUES (%s, %s) RETURNING {_USER_COLUMNS}",
            (email, password_hash),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def account_for_login(conn: AsyncConnection[Any], email: str) -> tuple[str, User | None]:
    """The address's key and the account it finds. The key is the database's
    own (`core.users.email_key`: NFKC, then lower case), the one form every
    lookup, the uniqueness of accounts and the login counter go by."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT k.key, {_USER_COLUMNS_U} FROM (SELECT lower(normalize(%s, NFKC)) AS key) k "
            "LEFT JOIN core.users u ON u.email_key = k.key",
            (email,),
        )
        row = await cur.fetchone()
    assert row is not None
    key = str(row.pop("key"))
    return key, (User(**row) if row["id"] is not None else None)


async def user_in_session(conn: AsyncConnection[Any], user_id: uuid.UUID, session_id: uuid.UUID) -> User | None:
    """The account, only while the session its access token names is not revoked:
    logout and a reused refresh token end the access tokens too, in the same
    primary-key lookup that loads the account."""
    async with conn.cursor(row_factory=class_row(User)) as cur:
        await cur.execute(
            f"SELECT {_USER_COLUMNS_U} FROM core.users u JOIN core.user_sessions s ON s.user_id = u.id "
            "WHERE u.id = %s AND s.id = %s AND s.revoked_at IS NULL",
            (user_id, session_id),
        )
        return await cur.fetchone()


async def record_login(conn: AsyncConnection[Any], user_id: uuid.UUID) -> None:
    await conn.execute("UPDATE core.users SET last_login_at = now(), updated_at = now() WHERE id = %s", (user_id,))


async def create_session(
    conn: AsyncConnection[Any],
    *,
    user_id: uuid.UUID,
    family_id: uuid.UUID | None,
    token_hash: str,
    ttl_seconds: int,
    ip: str | None,
    user_agent: str | None,
) -> uuid.UUID:
    cur = await conn.execute(
        "INSERT INTO core.user_sessions (family_id, user_id, token_hash, expires_at, ip_address, user_agent) "
        "VALUES (coalesce(%s, gen_random_uuid()), %s, %s, now() + make_interval(secs => %s), %s, %s) "
        "RETURNING id",
        (family_id, user_id, token_hash, ttl_seconds, ip, (user_agent or "")[:512] or None),
    )
    row = await cur.fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


async def session_for_update(conn: AsyncConnection[Any], token_hash: str) -> Session | None:
    """Locks the row: two refreshes racing with one token cannot both rotate it;
    the second waits and finds it rotated."""
    async with conn.cursor(row_factory=class_row(Session)) as cur:
        await cur.execute(
            f"SELECT {_SESSION_COLUMNS} FROM core.user_sessions s JOIN core.users u ON u.id = s.user_id "
            "WHERE s.token_hash = %s FOR UPDATE OF s",
            (token_hash,),
        )
        return await cur.fetchone()


async def mark_rotated(conn: AsyncConnection[Any], session_id: uuid.UUID) -> None:
    await conn.execute("UPDATE core.user_sessions SET rotated_at = now() WHERE id = %s", (session_id,))


async def revoke_family(conn: AsyncConnection[Any], family_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE core.user_sessions SET revoked_at = now() WHERE family_id = %s AND revoked_at IS NULL",
        (family_id,),
    )


async def audit(
    conn: AsyncConnection[Any],
    action: str,
    *,
    user_id: uuid.UUID | None,
    ip: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit.activity_logs (user_id, action, ip_address, details) VALUES (%s, %s, %s, %s)",
        (user_id, action, ip, Jsonb(details or {})),
    )


async def recent_activity(
    conn: AsyncConnection[Any], user_id: uuid.UUID, limit: int = ACTIVITY_LIMIT
) -> list[Activity]:
    """What the audit trail holds of one account, newest first. Its details
    stay out: they are evidence for operators, not the account's own view."""
    async with conn.cursor(row_factory=class_row(Activity)) as cur:
        await cur.execute(
            "SELECT action, created_at AS at, host(ip_address) AS ip FROM audit.activity_logs"
            " WHERE user_id = %s ORDER BY created_at DESC, id DESC LIMIT %s",
            (user_id, limit),
        )
        return await cur.fetchall()
