"""Pure model functions: tuning arithmetic, role model, renderers' invariants."""

from __future__ import annotations

import json
from ipaddress import IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.model import pgadmin, postgres_conf, redis_conf
from components.model.database import SCHEMAS, database_spec
from components.model.naming import Names

MIB = 1024 * 1024


def test_tuning_for_the_seed_sizes() -> None:
    t = postgres_conf.tune(1024 * MIB, 100)
    assert (t.shared_buffers_kb, t.effective_cache_size_kb) == (256 * 1024, 768 * 1024)
    assert t.maintenance_work_mem_kb == 64 * 1024
    assert t.work_mem_kb == (1024 * 1024 - 256 * 1024) // 300
    assert (t.shared_buffers_pages, t.effective_cache_size_pages) == (32768, 98304)


@given(st.integers(min_value=256, max_value=256 * 1024), st.integers(min_value=20, max_value=5000))
def test_tuning_never_promises_more_memory_than_there_is(memory_mib: int, max_connections: int) -> None:
    try:
        t = postgres_conf.tune(memory_mib * MIB, max_connections)
    except postgres_conf.TuningError:
        return
    memory_kb = memory_mib * 1024
    assert t.shared_buffers_kb <= memory_kb // 4
    assert t.effective_cache_size_kb <= memory_kb * 3 // 4
    assert t.shared_buffers_kb + max_connections * 3 * t.work_mem_kb <= memory_kb
    assert t.work_mem_kb >= postgres_conf.MIN_WORK_MEM_KB
    assert 16 * 1024 <= t.maintenance_work_mem_kb <= 2 * 1024 * 1024


def test_too_little_memory_is_refused_with_the_reason() -> None:
    with pytest.raises(postgres_conf.TuningError, match="below the 256MiB minimum"):
        postgres_conf.tune(128 * MIB, 20)
    with pytest.raises(postgres_conf.TuningError, match="cannot hold 1000 connections"):
        postgres_conf.tune(512 * MIB, 1000)


def test_pg_hba_never_trusts_and_needs_a_network() -> None:
    text = postgres_conf.render_pg_hba_conf(
        database="wondernest", admin_role="postgres", client_networks=[IPv4Network("172.30.1.0/24")]
    )
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert {rule[-1] for rule in rules} == {"scram-sha-256"}
    assert not any("0.0.0.0/0" in rule for rule in rules)
    with pytest.raises(ValueError, match="at least one client network"):
        postgres_conf.render_pg_hba_conf(database="w", admin_role="postgres", client_networks=[])


def test_the_role_model() -> None:
    spec = database_spec(Names(app="wondernest", stack="dev"))
    assert spec.schemas == SCHEMAS and len(SCHEMAS) == 9
    assert [(r.name, r.connection_limit, r.member_of) for r in spec.roles] == [
        ("wondernest_migrator", 3, ()),
        ("wondernest_app", 50, ()),
        ("wondernest_analytics", 10, ()),
        ("wondernest_monitoring", 6, ("pg_monitor",)),
        ("wondernest_backup", 3, ()),
    ]
    for reader in ("wondernest_analytics", "wondernest_backup"):
        grants = [g for g in spec.grants if g.role == reader]
        assert {g.schema for g in grants} == set(SCHEMAS)
        assert all(g.table_privileges == ("SELECT",) and g.schema_privileges == ("USAGE",) for g in grants)
        assert all(g.sequence_privileges == ("SELECT",) for g in grants)
        assert all(set(g.default_owners) == {"postgres", "wondernest_migrator"} for g in grants)
    monitoring_grants = [g for g in spec.grants if g.role == "wondernest_monitoring"]
    assert monitoring_grants == []
    assert spec.object_owner == "wondernest_migrator"
    assert spec.routine_owners == ("postgres", "wondernest_migrator")
    creators = {g.role for g in spec.grants if "CREATE" in g.schema_privileges}
    assert creators == {"wondernest_migrator"}
    app = {g.schema: g for g in spec.grants if g.role == "wondernest_app"}
    assert set(app) == set(SCHEMAS)
    assert all(g.schema_privileges == ("USAGE",) for g in app.values())
    assert all(set(g.default_owners) == {"postgres", "wondernest_migrator"} for g in app.values())
    # The audit trail only grows: rows are added and read, never changed or removed.
    assert set(app["audit"].table_privileges) == {"INSERT", "SELECT"}
    assert set(app["audit"].sequence_privileges) == {"SELECT", "USAGE"}
    assert all(
        set(g.table_privileges) == {"SELECT", "INSERT", "UPDATE", "DELETE"} for s, g in app.items() if s != "audit"
    )


def test_redis_conf_carries_persistence_and_eviction() -> None:
    text = redis_conf.render_redis_conf(maxmemory_bytes=256 * MIB, eviction_policy="allkeys-lru")
    lines = set(text.splitlines())
    assert {"appendonly yes", "protected-mode yes", "save 900 1", f"maxmemory {256 * MIB}"} <= lines
    assert "maxmemory-policy allkeys-lru" in lines
    assert redis_conf.container_memory_limit(256 * MIB) > 2 * 256 * MIB


def test_pgadmin_servers_json_and_pgpass() -> None:
    servers = json.loads(
        pgadmin.render_servers_json(
            name="wondernest (dev)",
            group="wondernest",
            host="postgres",
            port=5432,
            database="wondernest",
            username="postgres",
        )
    )["Servers"]["1"]
    assert servers["Host"] == "postgres" and servers["PassFile"] == "/.pgpass"
    assert servers["SSLMode"] == "verify-full" and "SSLRootCert" not in servers
    assert pgadmin.render_pgpass(host="postgres", port=5432, database="*", username="u", password="p:w\\") == (
        "postgres:5432:*:u:p\\:w\\\\\n"
    )


def _conf_values(text: str) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in text.splitlines() if " = " in line and not line.startswith("#"))
    return {key: value.strip("'") for key, value in pairs}


def _kilobytes(value: str) -> int:
    units = {"kB": 1, "MB": 1024, "GB": 1024**2}
    number, unit = value[:-2], value[-2:]
    return int(number) * units[unit]


@pytest.mark.parametrize(("memory_gib", "connections"), [(1, 100), (8, 100), (16, 400), (32, 1000)])
def test_the_rds_parameter_group_makes_the_containers_decisions(memory_gib: int, connections: int) -> None:
    """Every setting both carry means the same once RDS's units are applied."""
    from components.model.postgres_conf import rds_parameters, render_postgresql_conf, tune

    tuning = tune(memory_gib * 1024**3, connections)
    conf = _conf_values(render_postgresql_conf(tuning, slow_query_ms=250))
    rds = {p.name: p.value for p in rds_parameters(tuning, slow_query_ms=250)}
    pages = {"shared_buffers", "effective_cache_size"}  # 8 kB pages on RDS
    kilobytes = {"work_mem", "maintenance_work_mem"}
    megabytes = {"min_wal_size", "max_wal_size"}
    booleans = {"track_io_timing", "log_lock_waits", "pg_stat_statements.track_utility"}
    milliseconds = {"log_autovacuum_min_duration", "idle_in_transaction_session_timeout"}
    in_ms = {"1s": 1000, "1h": 3_600_000}
    shared = set(conf) & set(rds)
    assert shared >= pages | kilobytes | megabytes | booleans | {"max_connections", "password_encryption"}
    for key in shared:
        local, remote = conf[key], rds[key]
        if key in pages:
            assert _kilobytes(local) == int(remote) * 8, key
        elif key in kilobytes:
            assert _kilobytes(local) == int(remote), key
        elif key in megabytes:
            assert _kilobytes(local) == int(remote) * 1024, key
        elif key in booleans:
            assert {"on": "1", "off": "0"}[local] == remote, key
        elif key in milliseconds:
            assert in_ms[local] == int(remote), key
        else:
            assert local == remote, key
    # What RDS adds, and what it does not let a parameter group set.
    assert set(rds) - set(conf) == {"rds.force_ssl", "ssl_min_protocol_version"}
    assert {"listen_addresses", "port", "hba_file", "log_destination"} <= set(conf) - set(rds)
