"""Stack config: defaults, every bad key named, nothing declared on bad input."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.config import ConfigError, PlatformConfig, parse_config
from tests.harness import declared_by, stack_config

# (key path, values that must each be rejected)
BAD_VALUES: dict[tuple[str, ...], list[Any]] = {
    ("appName",): ["", "A", "has-dash", 5, "x" * 30, "1abc"],
    ("target",): ["gcp", 1, None],
    ("postgres", "hostPort"): [0, 70000, "abc", -1],
    ("postgres", "maxConnections"): [5, 10**6, "many"],
    ("postgres", "memory"): ["lots", "1KiB", "100MiB", -5],
    ("postgres", "version"): [14, 16],
    ("postgres", "slowQueryMs"): [-1, "slow"],
    ("redis", "hostPort"): [65536, "x"],
    ("redis", "maxMemory"): ["1MiB", "x"],
    ("redis", "evictionPolicy"): ["lru", "allkeys"],
    ("network", "bindAddress"): ["0.0.0.0", "not-an-ip", "10.0.0.1"],
    ("network", "backendSubnet"): ["172.30.1.0/33", "nonsense"],
    ("api", "hostPort"): [0, "http"],
    ("api", "memory"): ["64MiB", "lots"],
    ("api", "cpus"): [0, -1, "many"],
    ("api", "dbPoolMax"): [0, 41],
    ("api", "corsAllowedOrigins"): [["*"], ["app.example.com"], "https://x.example.com"],
    ("images", "postgres"): ["postgres", "postgres:latest", "UPPER:1", ""],
    ("images", "redis"): ["redis", "redis:latest"],
    ("devTools", "enabled"): ["maybe", 3],
    ("devTools", "pgadminEmail"): ["nope", "a@b"],
    ("alerting", "runbookUrl"): ["README.md", "ftp://x/runbooks.md", "https://x/ y"],
}
KNOWN_KEYS = {"appName", "target", "network", "postgres", "redis", "api", "images", "devTools"}
PATH = re.compile(r"^(wondernest:[A-Za-z0-9.]*)")


def named_paths(error: ConfigError) -> set[str]:
    found = set()
    for problem in error.problems:
        match = PATH.match(problem)
        assert match, problem
        found.add(match.group(1))
    return found


def with_value(config: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(config)
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return config


def test_defaults_need_only_a_target() -> None:
    cfg = parse_config({"target": "docker"})
    assert cfg.app_name == "wondernest"
    assert str(cfg.network.bind_address) == "127.0.0.1"
    assert cfg.postgres.host_port == 5433 and cfg.redis.eviction_policy == "allkeys-lru"


def test_the_dev_stack_file_is_valid() -> None:
    cfg = parse_config(stack_config())
    assert isinstance(cfg, PlatformConfig)
    assert cfg.target == "docker" and cfg.dev_tools.enabled


@pytest.mark.parametrize(("path", "value"), [(path, value) for path, values in BAD_VALUES.items() for value in values])
def test_each_bad_value_is_named_with_what_is_allowed(path: tuple[str, ...], value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_value(stack_config(), path, value))
    assert named_paths(caught.value) == {"wondernest:" + ".".join(path)}
    assert len(caught.value.problems) == 1
    assert str(caught.value).startswith("invalid stack configuration (1 problem)")


def test_unknown_keys_are_named_with_the_keys_allowed_there() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"target": "docker", "postgre": {}, "redis": {"maxmemory": "1GiB"}})
    text = str(caught.value)
    assert "wondernest:postgre = {...}: unknown key; allowed here: appName, target" in text
    assert "wondernest:redis.maxmemory = '1GiB': unknown key; allowed here: hostPort, maxMemory" in text


def test_secret_values_are_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"target": "docker", "apiToken": "hunter2-very-secret"}, ["wondernest:apiToken"])
    assert "hunter2" not in str(caught.value)
    assert "[secret]" in str(caught.value)


def test_cross_field_problems_name_the_key_they_blame() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"target": "docker", "redis": {"hostPort": 5433}})
    assert caught.value.problems == ["wondernest:redis.hostPort = 5433: port already published by postgres.hostPort"]
    with pytest.raises(ConfigError) as caught:
        parse_config({"target": "docker", "network": {"opsSubnet": "172.30.1.128/25"}})
    assert named_paths(caught.value) == {"wondernest:network.opsSubnet"}


def test_a_public_bind_is_allowed_only_when_asked_for() -> None:
    cfg = parse_config({"target": "docker", "network": {"allowPublicBind": True, "bindAddress": "0.0.0.0"}})
    assert str(cfg.network.bind_address) == "0.0.0.0"


bad_choice = st.sampled_from(sorted(BAD_VALUES)).flatmap(
    lambda path: st.tuples(st.just(path), st.sampled_from(BAD_VALUES[path]))
)
unknown_key = st.from_regex(r"[a-z][A-Za-z]{2,12}", fullmatch=True).filter(lambda k: k not in KNOWN_KEYS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bad=st.lists(bad_choice, min_size=1, max_size=6, unique_by=lambda pv: pv[0]),
    extra=st.lists(unknown_key, max_size=2, unique=True),
)
def test_generated_bad_configs_name_every_bad_key_and_declare_nothing(
    bad: list[tuple[tuple[str, ...], Any]], extra: list[str]
) -> None:
    config = stack_config()
    for path, value in bad:
        config = with_value(config, path, value)
    for key in extra:
        config[key] = "surplus"
    expected = {"wondernest:" + ".".join(path) for path, _ in bad} | {f"wondernest:{k}" for k in extra}
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    assert named_paths(caught.value) == expected
    assert declared_by(config) == []


@settings(max_examples=40, deadline=None)
@given(
    memory_mib=st.integers(min_value=256, max_value=64 * 1024),
    max_connections=st.integers(min_value=20, max_value=5000),
)
def test_memory_and_connections_either_tune_or_are_rejected(memory_mib: int, max_connections: int) -> None:
    raw = {"target": "docker", "postgres": {"memory": f"{memory_mib}MiB", "maxConnections": max_connections}}
    try:
        cfg = parse_config(raw)
    except ConfigError as exc:
        assert named_paths(exc) == {"wondernest:postgres.memory"}
        assert "raise the memory or lower maxConnections" in str(exc)
    else:
        assert cfg.postgres.max_connections == max_connections
