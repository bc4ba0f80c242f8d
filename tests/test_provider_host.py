"""The Postgres providers inside Pulumi's own dynamic provider host, on a real
PostgreSQL 15, called over gRPC the way the engine calls them: providers
serialized as the SDK serializes them, every number a double, secrets plain
(the host does not accept them), and during a preview unknown leaves and
unknown whole lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components.model.database import DatabaseSpec, database_spec
from components.model.naming import Names
from components.postgres.provider import PostgresProvider, RoleProvider
from components.postgres.resources import declared_objects
from tests.platform_db import PASSWORDS
from tests.provider_host import UNKNOWN_VALUE, ProviderError, ProviderHost, provider_host, urn_of
from tests.servers import PostgresServer

pytestmark = pytest.mark.servers

SPEC = database_spec(Names(app="hosted", stack="test"))
KINDS = {"role": "Role", "schema": "Schema", "grant": "SchemaGrant", "database": "DatabaseAccess"}
KINDS["extension"] = "Extension"
APPS = ("hosted", "drifted", "refused")


@pytest.fixture(scope="module")
def host(pg: PostgresServer) -> Iterator[ProviderHost]:
    # Each test's platform has a database of its own, as the image creates it.
    with pg.admin("postgres") as admin:
        for app in APPS:
            admin.execute(f"CREATE DATABASE {app}")
    with provider_host() as running:
        yield running


def kind_of(name: str) -> str:
    return KINDS[name.split("-", 1)[0]]


def engine_inputs(pg: PostgresServer, spec: DatabaseSpec) -> list[tuple[str, str, dict[str, Any]]]:
    """(logical name, URN, inputs) for every object, as the program registers them."""
    conn = pg.admin_connection(spec.name)
    objects = []
    for name, provider, inputs in declared_objects(spec, superuser=True):
        props: dict[str, Any] = {**inputs, "connection": conn, "__provider": serialize_provider(provider)}
        if isinstance(provider, RoleProvider):
            props["password"] = PASSWORDS[name.removeprefix("role-")]
        objects.append((name, urn_of("test", kind_of(name), name), props))
    return objects


def up(host: ProviderHost, objects: list[tuple[str, str, dict[str, Any]]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """A first `pulumi up`: Check, then Create with the checked inputs."""
    state = {}
    for name, urn, inputs in objects:
        checked = host.check(urn, {}, inputs)
        assert checked.failures == [], name
        state[name] = host.create(urn, checked.inputs)
    return state


def test_every_kind_lives_its_whole_life_through_the_host(host: ProviderHost, pg: PostgresServer) -> None:
    objects = engine_inputs(pg, SPEC)
    assert {kind_of(name) for name, _, _ in objects} == set(KINDS.values())
    state = up(host, objects)
    # What the engine stored is what it sent back: numbers as doubles.
    assert state["role-analytics"][1]["connection_limit"] == float(SPEC.role("analytics").connection_limit)
    assert isinstance(state["role-analytics"][1]["connection_limit"], float)

    # A refresh, then a no-change `up`: Read with the stored outputs, Check and Diff against them.
    for name, urn, inputs in objects:
        id_, outs = state[name]
        read_id, read = host.read(id_, urn, outs, inputs)
        assert read_id == id_, name
        checked = host.check(urn, inputs, inputs)
        assert host.diff(id_, urn, read, checked.inputs, inputs).changes == "DIFF_NONE", name

    # A change of each kind, applied by Update and seen by the next Read.
    grantees = [g for g in state["schema-content"][1]["grantees"] if "analytics" not in g]
    connect = [r for r in state["database-access"][1]["connect_roles"] if "backup" not in r]
    changed: dict[str, dict[str, Any]] = {
        "role-analytics": {"connection_limit": 7.0},
        "schema-content": {"grantees": grantees},
        "grant-content-analytics": {"table_privileges": ["SELECT"], "sequence_privileges": []},
        "database-access": {"connect_roles": connect},
        "extension-pg_stat_statements": {"readers": []},
    }
    by_name = {name: (urn, inputs) for name, urn, inputs in objects}
    for name, change in changed.items():
        urn, old_inputs = by_name[name]
        news = {**old_inputs, **change}
        checked = host.check(urn, old_inputs, news)
        assert checked.failures == [], name
        id_, olds = state[name]
        diff = host.diff(id_, urn, olds, checked.inputs, old_inputs)
        assert (diff.changes, diff.replaces) == ("DIFF_SOME", []), name
        outs = host.update(id_, urn, olds, checked.inputs, old_inputs)
        _, read = host.read(id_, urn, outs, checked.inputs)
        assert host.diff(id_, urn, read, checked.inputs, checked.inputs).changes == "DIFF_NONE", name
        state[name] = (id_, outs)
        by_name[name] = (urn, checked.inputs)
    with pg.admin(SPEC.name) as admin:
        limit = admin.execute(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (SPEC.role("analytics").name,)
        ).fetchone()
        assert limit == (7,)

    # `pulumi destroy`: dependents first, each with its stored outputs.
    for name, urn, _ in reversed(objects):
        id_, outs = state[name]
        host.delete(id_, urn, outs, by_name[name][1])
        gone_id, gone = host.read(id_, urn, outs, by_name[name][1])
        if kind_of(name) in ("Role", "Schema", "Extension"):
            assert gone_id == "", name
        elif kind_of(name) == "SchemaGrant":
            # A grant is rights, not an object: while its role and schema live it reads as holding none.
            assert gone_id == "" or not gone["schema_privileges"], name
    with pg.admin(SPEC.name) as admin:
        roles = admin.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'hosted_%'").fetchone()
        assert roles == (0,)


@pytest.mark.parametrize(("limit", "refused"), [(0.0, True), (-1.0, True), (2.5, True), (1.0, False), (10.0, False)])
def test_connection_limits_arrive_as_doubles_and_are_still_checked(
    host: ProviderHost, pg: PostgresServer, limit: float, refused: bool
) -> None:
    _, urn, inputs = engine_inputs(pg, SPEC)[0]
    checked = host.check(urn, {}, {**inputs, "connection_limit": limit})
    assert [prop for prop, _ in checked.failures] == (["connection_limit"] if refused else []), limit


def unknown_variants(inputs: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each input unknown in turn, a whole list or object included, and one
    unknown item inside each list."""
    for key, value in inputs.items():
        if key == "__provider":
            continue
        yield key, {**inputs, key: UNKNOWN_VALUE}
        if isinstance(value, list) and value:
            yield f"{key}[0]", {**inputs, key: [UNKNOWN_VALUE, *value[1:]]}
        if isinstance(value, dict) and value:
            first = next(iter(value))
            yield f"{key}.{first}", {**inputs, key: {**value, first: UNKNOWN_VALUE}}


def test_check_and_diff_take_preview_unknowns_of_every_input(host: ProviderHost, pg: PostgresServer) -> None:
    objects = engine_inputs(pg, SPEC)
    one_of_each = {kind_of(name): (name, urn, inputs) for name, urn, inputs in objects}
    for kind, (name, urn, inputs) in one_of_each.items():
        for what, news in unknown_variants(inputs):
            # A first preview: no old inputs.
            checked = host.check(urn, {}, news)
            assert checked.failures == [], f"{kind} with {what} unknown"
            # A preview of a change to an existing object.
            diff = host.diff(f"{name}-id", urn, inputs, checked.inputs, inputs)
            assert diff.changes in ("DIFF_SOME", "DIFF_UNKNOWN"), f"{kind} with {what} unknown"


def test_a_known_bad_value_is_still_refused_beside_unknowns(host: ProviderHost, pg: PostgresServer) -> None:
    _, urn, inputs = engine_inputs(pg, SPEC)[0]
    news = {**inputs, "member_of": UNKNOWN_VALUE, "connection": UNKNOWN_VALUE, "password": UNKNOWN_VALUE}
    checked = host.check(urn, {}, {**news, "name": "Not-An-Identifier", "connection_limit": 0.0})
    assert sorted(prop for prop, _ in checked.failures) == ["connection_limit", "name"]
    grant = next((u, i) for n, u, i in engine_inputs(pg, SPEC) if n.startswith("grant-"))
    checked = host.check(grant[0], {}, {**grant[1], "role": UNKNOWN_VALUE, "table_privileges": ["SELECT", "DROP"]})
    assert [prop for prop, _ in checked.failures] == ["table_privileges"]


def test_drift_made_by_hand_is_read_diffed_and_removed_through_the_host(host: ProviderHost, pg: PostgresServer) -> None:
    spec = database_spec(Names(app="drifted", stack="test"))
    objects = engine_inputs(pg, spec)
    state = up(host, objects)
    name, urn, inputs = objects[0]
    role = spec.role(name.removeprefix("role-")).name
    with pg.admin(spec.name) as admin:
        admin.execute(f"ALTER ROLE {role} SUPERUSER BYPASSRLS")
    id_, outs = state[name]
    _, read = host.read(id_, urn, outs, inputs)
    assert "SUPERUSER" in read["escalations"]
    assert host.diff(id_, urn, read, inputs, inputs).changes == "DIFF_SOME"
    host.update(id_, urn, read, inputs, inputs)
    with pg.admin(spec.name) as admin:
        row = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        assert row == (False,)


def test_a_failing_call_reaches_the_engine_as_an_error_with_the_reason(host: ProviderHost, pg: PostgresServer) -> None:
    objects = engine_inputs(pg, database_spec(Names(app="refused", stack="test")))
    state = up(host, objects)
    schema = "schema-core"
    urn, inputs = next((u, i) for n, u, i in objects if n == schema)
    with pg.admin("refused") as admin:
        admin.execute("CREATE TABLE core.kept (id int)")
    with pytest.raises(ProviderError, match="refusing to drop it and its data"):
        host.delete(state[schema][0], urn, state[schema][1], inputs)


def test_the_providers_are_the_ones_the_program_serializes() -> None:
    """The blob the host unpickles names each class by module and name."""
    for _, provider, _ in declared_objects(SPEC, superuser=True):
        assert isinstance(provider, PostgresProvider)
        assert serialize_provider(provider) == serialize_provider(type(provider)())
