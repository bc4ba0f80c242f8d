"""The Postgres providers' check and diff in this process, no server: the
values the engine hands them (whole doubles, preview unknowns as
`pulumi.output.Unknown`, lists in any order) and what each must answer.
tests/test_provider_host.py makes the same calls through Pulumi's own
provider host."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from pulumi.dynamic import ReadResult
from pulumi.output import UNKNOWN as UNKNOWN_VALUE

from components.model.database import database_spec
from components.model.naming import Names
from components.postgres import backdoors, base
from components.postgres.base import UNKNOWN_SENTINEL
from components.postgres.provider import (
    DatabaseAccessProvider,
    ExtensionProvider,
    PostgresProvider,
    RoleProvider,
    SchemaGrantProvider,
    SchemaProvider,
    connect,
)
from components.postgres.resources import declared_objects
from tests.servers import free_port

SPEC = database_spec(Names(app="checked", stack="test"))
OBJECTS = {name: (provider, inputs) for name, provider, inputs in declared_objects(SPEC, superuser=True)}
ROLE = {**OBJECTS["role-app"][1], "password": "pw", "connection": {"host": "h"}}
GRANT = {**OBJECTS["grant-core-app"][1], "connection": {"host": "h"}}


def failures(provider: PostgresProvider, news: dict[str, Any]) -> list[str]:
    return sorted(f.property for f in provider.check({}, news).failures or [])


@pytest.mark.parametrize(
    ("limit", "refused"),
    [(0.0, True), (0, True), (-1.0, True), (2.5, True), ("10", True), (True, True), (1.0, False), (10, False)],
)
def test_a_connection_limit_must_be_a_whole_number_of_at_least_one(limit: Any, refused: bool) -> None:
    assert failures(RoleProvider(), {**ROLE, "connection_limit": limit}) == (["connection_limit"] if refused else [])


def test_an_unknown_limit_list_or_name_is_not_judged() -> None:
    news = {
        **ROLE,
        "connection_limit": UNKNOWN_VALUE,
        "member_of": UNKNOWN_VALUE,
        "settings": UNKNOWN_VALUE,
        "name": UNKNOWN_VALUE,
    }
    assert failures(RoleProvider(), news) == []
    assert failures(RoleProvider(), {**ROLE, "member_of": [UNKNOWN_VALUE, "pg_monitor"]}) == []
    # The engine's sentinel string is an unknown too, alone or in a list.
    assert failures(RoleProvider(), {**ROLE, "name": UNKNOWN_SENTINEL}) == []
    assert failures(RoleProvider(), {**ROLE, "member_of": [UNKNOWN_SENTINEL, "pg_monitor"]}) == []
    assert failures(SchemaGrantProvider(), {**GRANT, "table_privileges": [UNKNOWN_SENTINEL, "SELECT"]}) == []


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_a_check_passes_its_inputs_on_as_given(name: str) -> None:
    """What check returns is what the engine goes on with (create, diff)."""
    provider, inputs = OBJECTS[name]
    news = {**inputs, "connection": {"host": "h"}, **({"password": "pw"} if isinstance(provider, RoleProvider) else {})}
    result = provider.check({}, news)
    assert (result.inputs, result.failures) == (news, [])


def test_drift_never_names_the_connection_even_when_a_read_leaves_it_out() -> None:
    """The connection holds the admin's password: what `make verify` prints
    must not, whatever a provider's read returns."""

    class Forgetful(PostgresProvider):
        compared_keys = ("name", "connection")

        def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
            return ReadResult(id_=id_, outs={"name": "renamed"})

    drift = Forgetful().drift({"name": "declared", "connection": {"password": "hunter2"}})
    assert drift == ["name is 'renamed', declared 'declared'"]


def test_a_known_bad_value_is_refused_beside_unknowns() -> None:
    news = {
        **ROLE,
        "member_of": [UNKNOWN_VALUE, "Not A Role"],
        "settings": ["search_path=x"],
        "connection": UNKNOWN_VALUE,
    }
    assert failures(RoleProvider(), news) == ["member_of", "settings"]
    assert failures(RoleProvider(), {**ROLE, "name": "Upper"}) == ["name"]
    assert failures(RoleProvider(), {**ROLE, "member_of": "not-a-list"}) == []


@pytest.mark.parametrize("key", ["schema_privileges", "table_privileges", "sequence_privileges"])
def test_a_grant_names_only_privileges_of_its_kind(key: str) -> None:
    assert failures(SchemaGrantProvider(), GRANT) == []
    assert failures(SchemaGrantProvider(), {**GRANT, key: ["DROP"]}) == [key]
    assert failures(SchemaGrantProvider(), {**GRANT, key: [UNKNOWN_VALUE, 7]}) == [key]
    assert failures(SchemaGrantProvider(), {**GRANT, key: UNKNOWN_VALUE}) == []
    assert failures(SchemaGrantProvider(), {**GRANT, "role": "Bad-Role"}) == ["role"]


def reasons(provider: PostgresProvider, news: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((f.property, f.reason) for f in provider.check({}, news).failures or [])


def test_a_grants_refusals_name_the_key_and_say_why() -> None:
    """Each refusal alone, with the input it is about and the whole reason."""
    plain = {**GRANT, "withheld": []}
    assert reasons(SchemaGrantProvider(), {**plain, "sequence_privileges": ["SELECT", "DROP"]}) == [
        ("sequence_privileges", "['DROP'] not among ['SELECT', 'UPDATE', 'USAGE']")
    ]
    assert reasons(SchemaGrantProvider(), {**plain, "table_privileges": ["SELECT"], "withheld": ["Users.x"]}) == [
        ("withheld", "['Users.x']: each is `table.column`, lower-case identifiers")
    ]
    assert reasons(SchemaGrantProvider(), {**plain, "withheld": ["users.password_hash"]}) == [
        (
            "withheld",
            "columns are withheld only from a grant of SELECT alone, not ['DELETE', 'INSERT', 'SELECT', 'UPDATE']",
        )
    ]
    # Privileges not known yet in a preview are judged at `up`, whatever is withheld.
    for unknown in (UNKNOWN_VALUE, UNKNOWN_SENTINEL):
        assert reasons(SchemaGrantProvider(), {**plain, "table_privileges": unknown, "withheld": ["users.x"]}) == []


def test_lists_of_names_compare_in_any_order_and_other_lists_in_order() -> None:
    reordered = {**ROLE, "member_of": ["pg_monitor", "a"], "members": ["b", "c"]}
    again = {**ROLE, "member_of": ["a", "pg_monitor"], "members": ["c", "b"]}
    assert not RoleProvider().diff("checked_app", {**reordered, "password": "pw"}, again).changes
    olds = {**GRANT, "default_owners": [{"x": 1}, {"x": 2}]}
    news = {**GRANT, "default_owners": [{"x": 2}, {"x": 1}]}
    assert SchemaGrantProvider().diff("core.checked_app", olds, news).changes


def test_a_rename_replaces_and_other_changes_update() -> None:
    renamed = RoleProvider().diff("checked_app", ROLE, {**ROLE, "name": "checked_other"})
    assert (renamed.changes, renamed.replaces) == (True, ["name"])
    limited = RoleProvider().diff("checked_app", ROLE, {**ROLE, "connection_limit": 3})
    assert (limited.changes, limited.replaces) == (True, [])
    password = RoleProvider().diff("checked_app", ROLE, {**ROLE, "password": "other"})
    assert (password.changes, password.replaces) == (True, [])
    rotated = {**ROLE, "rotated": True}
    assert not RoleProvider().diff("checked_app", rotated, {**rotated, "password": "other"}).changes


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("role-app", False),
        ("grant-core-app", False),
        ("database-access", False),
        # The old schema's delete refuses while it holds tables: refused first, nothing new is made.
        ("schema-core", True),
        # The old extension's delete revokes its readers' USAGE on the schema the new one shares.
        ("extension-pg_stat_statements", True),
    ],
)
def test_a_replacement_deletes_first_where_the_old_object_stands_in_the_way(name: str, first: bool) -> None:
    provider, inputs = OBJECTS[name]
    key = (provider.replace_keys or provider.identity_keys)[0]
    olds = {**inputs, "connection": {"host": "h"}, "password": "pw"}
    replaced = provider.diff("x", olds, {**olds, key: "renamed"})
    assert (replaced.changes, replaced.replaces, replaced.delete_before_replace) == (True, [key], first)


@pytest.mark.parametrize(
    ("provider", "name", "expected"),
    [
        (RoleProvider(), "role-app", "checked_app"),
        (SchemaProvider(), "schema-core", "core"),
        (SchemaGrantProvider(), "grant-core-app", "core.checked_app"),
        (DatabaseAccessProvider(), "database-access", "checked"),
        (ExtensionProvider(), "extension-pg_stat_statements", "pg_stat_statements"),
    ],
)
def test_each_object_is_identified_by_what_names_it(provider: PostgresProvider, name: str, expected: str) -> None:
    assert provider._id(OBJECTS[name][1]) == expected


def test_the_default_wait_for_a_server_still_starting_is_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a clock that moves only when the provider sleeps: one attempt a
    second, the last at 60 s."""
    clock = {"now": 0.0, "attempts": 0}

    def refused(**_kwargs: Any) -> psycopg.Connection[Any]:
        clock["attempts"] += 1
        raise psycopg.OperationalError("connection refused")

    def sleep(seconds: float) -> None:
        clock["now"] += seconds

    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic=lambda: clock["now"], sleep=sleep))
    monkeypatch.setattr(psycopg, "connect", refused)
    conn = {"host": "127.0.0.1", "port": 5432, "user": "u", "password": "p", "database": "d"}
    with pytest.raises(psycopg.OperationalError, match="connection refused"):
        connect(conn)
    assert (clock["now"], clock["attempts"]) == (60, 61)


def test_a_server_that_accepts_and_never_answers_fails_after_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without `connect_timeout` (2 s is libpq's least), psycopg waits 130 s
    for an answer."""
    monkeypatch.setattr(base, "CONNECT_TIMEOUT_SECONDS", 2)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        conn = {"host": "127.0.0.1", "port": listener.getsockname()[1], "user": "u", "password": "p",
                "database": "d", "sslmode": "disable", "wait_seconds": 0}  # fmt: skip
        failed: list[BaseException] = []

        def attempt() -> None:
            try:
                connect(conn)
            except psycopg.OperationalError as exc:
                failed.append(exc)

        started = time.monotonic()
        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        accepted, _ = listener.accept()
        with accepted:
            worker.join(timeout=20)
            hung = worker.is_alive()
        # Closing the socket ends a hung attempt too.
        worker.join(timeout=5)
    assert not hung and time.monotonic() - started < 10
    assert "timeout expired" in str(failed[0])


@pytest.mark.parametrize(
    ("address", "netmask", "shown"),
    [
        ("10.0.0.0", "255.0.0.0", "10.0.0.0/8"),
        ("0.0.0.0", "0.0.0.0", "0.0.0.0/0"),
        ("127.0.0.1", "255.255.255.255", "127.0.0.1/32"),
        ("fd00::", "ffff:ffff:ffff:ffff::", "fd00::/64"),
        ("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::1/128"),
        # PostgreSQL takes a mask that is no prefix: shown as such a line writes it.
        ("10.2.0.0", "255.0.255.0", "10.2.0.0 255.0.255.0"),
        # What the view prints when it cannot print the mask.
        ("10.3.0.0", "???", "10.3.0.0 ???"),
        ("samenet", None, "samenet"),
        (None, None, None),
    ],
)
def test_a_pg_hba_address_is_shown_with_its_prefix_length(
    address: str | None, netmask: str | None, shown: str | None
) -> None:
    assert backdoors._hba_address(address, netmask) == shown


def test_a_server_that_never_answers_fails_after_the_wait() -> None:
    conn = {"host": "127.0.0.1", "port": free_port(), "user": "u", "password": "p", "database": "d"}
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        connect({**conn, "wait_seconds": 2})
    assert 2 <= time.monotonic() - started < 10
