"""Configuration from the environment: `_FILE` variants, and every problem named."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from wondernest_api.envconfig import DatabaseSettings, SettingsError
from wondernest_api.jsonlog import JsonLog
from wondernest_api.settings import load_migration_settings, load_settings

BASE = {
    "DB_HOST": "db",
    "DB_NAME": "wondernest",
    "DB_USER": "wondernest_app",
    "REDIS_HOST": "redis",
    "REDIS_USER": "wondernest_app",
}


def secrets_as_files(tmp_path: Path) -> dict[str, str]:
    files = {}
    for name, value in (
        ("DB_PASSWORD", "db-pass"),
        ("REDIS_PASSWORD", "redis-pass"),
        ("JWT_SECRET", "j" * 40),
    ):
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        files[f"{name}_FILE"] = str(path)
    return files


def test_secrets_come_from_files_without_their_trailing_newline(tmp_path: Path) -> None:
    settings = load_settings({**BASE, **secrets_as_files(tmp_path)})
    assert settings.db_password.get_secret_value() == "db-pass"
    assert settings.jwt_secret.get_secret_value() == "j" * 40
    assert "db-pass" not in repr(settings)


def test_production_defaults(tmp_path: Path) -> None:
    settings = load_settings({**BASE, **secrets_as_files(tmp_path)})
    assert settings.bcrypt_rounds == 12
    assert settings.access_token_ttl_seconds == 3600
    assert settings.port == 8080
    assert settings.cors_allowed_origins == ()


def test_both_a_value_and_a_file_is_ambiguous(tmp_path: Path) -> None:
    env = {**BASE, **secrets_as_files(tmp_path), "DB_PASSWORD": "inline"}
    with pytest.raises(SettingsError, match="DB_PASSWORD: set either DB_PASSWORD or DB_PASSWORD_FILE"):
        load_settings(env)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    env = {**BASE, **secrets_as_files(tmp_path), "JWT_SECRET_FILE": str(tmp_path / "missing")}
    with pytest.raises(SettingsError, match="JWT_SECRET_FILE: cannot read"):
        load_settings(env)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    env = {
        **secrets_as_files(tmp_path),
        "DB_PORT": "seventy",
        "BCRYPT_ROUNDS": "3",
        "CORS_ALLOWED_ORIGINS": "*",
        "DB_HOST": "db",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    text = str(caught.value)
    for variable in ("DB_PORT", "BCRYPT_ROUNDS", "CORS_ALLOWED_ORIGINS", "DB_NAME", "DB_USER", "REDIS_HOST"):
        assert f"  - {variable}:" in text


def test_pool_bounds_are_checked(tmp_path: Path) -> None:
    env = {**BASE, **secrets_as_files(tmp_path), "DB_POOL_MIN": "20", "DB_POOL_MAX": "5"}
    with pytest.raises(SettingsError, match="DB_POOL_MIN: must not exceed DB_POOL_MAX"):
        load_settings(env)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("*", "trusts every peer"),
        ("10.0.0.0/24,*", "trusts every peer"),
        ("the-alb", "'the-alb' is not an IP"),
        ("0.0.0.0/0", "every IPv4 address"),
        ("::/0", "every IPv6 address"),
        ("0.0.0.0/1,128.0.0.0/1", "every IPv4 address"),
        ("10.0.0.0/8,0.0.0.0/2,64.0.0.0/2,128.0.0.0/1", "every IPv4 address"),
        ("::/1,8000::/1", "every IPv6 address"),
        ("::ffff:0:0/96", "every IPv4 address (as IPv4-mapped IPv6)"),
        ("::/8", "every IPv4 address (as IPv4-mapped IPv6)"),
    ],
)
def test_only_named_proxies_are_trusted(tmp_path: Path, value: str, words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**BASE, **secrets_as_files(tmp_path), "FORWARDED_ALLOW_IPS": value})
    assert any(p.startswith("FORWARDED_ALLOW_IPS") and words in p for p in caught.value.problems)


def test_proxy_networks_are_accepted(tmp_path: Path) -> None:
    env = {**BASE, **secrets_as_files(tmp_path), "FORWARDED_ALLOW_IPS": "10.40.0.0/21, 10.40.8.0/21,127.0.0.1"}
    assert load_settings(env).forwarded_allow_ips.startswith("10.40.0.0/21")
    # Large, even public, but not everything: a CDN's published ranges, say.
    env["FORWARDED_ALLOW_IPS"] = "0.0.0.0/1,2400:cb00::/32,::ffff:10.0.0.0/104"
    assert load_settings(env).forwarded_allow_ips


def test_read_replicas_are_listed_as_host_and_port(tmp_path: Path) -> None:
    env = {**BASE, **secrets_as_files(tmp_path)}
    assert load_settings(env).db_read_conninfo() is None
    settings = load_settings({**env, "DB_READ_HOSTS": " r1.example:5432, r2.example:6432 "})
    assert settings.db_read_hosts == "r1.example:5432,r2.example:6432"
    conninfo = dict(part.split("=", 1) for part in (settings.db_read_conninfo() or "").split())
    # The replicas, then the primary to fall back on; one at random that answers as a standby.
    assert conninfo["host"] == f"r1.example,r2.example,{BASE['DB_HOST']}"
    assert conninfo["port"] == "5432,6432,5432"
    assert conninfo["target_session_attrs"] == "prefer-standby" and conninfo["load_balance_hosts"] == "random"
    assert conninfo["application_name"] == "wondernest-api-read"
    for bad in ("r1.example", "r1.example:0", ":5432", "r1.example:5432,r2.example:http"):
        with pytest.raises(SettingsError, match="DB_READ_HOSTS"):
            load_settings({**env, "DB_READ_HOSTS": bad})


def test_the_log_level_is_one_of_four_and_warning_drops_the_request_lines(tmp_path: Path) -> None:
    assert load_settings({**BASE, **secrets_as_files(tmp_path)}).log_level == "info"
    with pytest.raises(SettingsError, match="LOG_LEVEL"):
        load_settings({**BASE, **secrets_as_files(tmp_path), "LOG_LEVEL": "verbose"})
    assert load_settings({**BASE, **secrets_as_files(tmp_path), "LOG_LEVEL": "warning"}).log_level == "warning"
    stream = io.BytesIO()
    log = JsonLog(stream)
    log.request("r1", "GET", "/health", 200, 1.0)
    log.set_level("warning")
    log.request("r2", "GET", "/health", 200, 1.0)
    log.info("dropped")
    log.warning("kept")
    log.flush()
    lines = [json.loads(line) for line in stream.getvalue().decode().splitlines()]
    assert [(line["msg"], line.get("requestId")) for line in lines] == [("request", "r1"), ("kept", None)]


def test_pool_bounds_may_be_equal(tmp_path: Path) -> None:
    settings = load_settings({**BASE, **secrets_as_files(tmp_path), "DB_POOL_MIN": "5", "DB_POOL_MAX": "5"})
    assert (settings.db_pool_min, settings.db_pool_max) == (5, 5)
    with pytest.raises(SettingsError) as caught:
        load_settings({**BASE, **secrets_as_files(tmp_path), "DB_POOL_MIN": "6", "DB_POOL_MAX": "5"})
    assert caught.value.problems == ["DB_POOL_MIN: must not exceed DB_POOL_MAX"]


def test_a_missing_secret_is_pointed_at_its_file_form_and_other_values_are_not() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    problems = caught.value.problems
    for secret in ("DB_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET"):
        assert f"{secret}: required and not set (or {secret}_FILE)" in problems
    for plain in ("DB_HOST", "DB_NAME", "DB_USER", "REDIS_HOST", "REDIS_USER"):
        assert f"{plain}: required and not set" in problems
    assert len(problems) == 8


def test_settings_come_from_the_process_environment_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**BASE, **secrets_as_files(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    assert load_settings().jwt_secret.get_secret_value() == "j" * 40
    assert load_migration_settings().db_password.get_secret_value() == "db-pass"


def test_migrations_need_only_the_database(tmp_path: Path) -> None:
    database = {k: v for k, v in BASE.items() if k.startswith("DB_")}
    files = secrets_as_files(tmp_path)
    settings = load_migration_settings({**database, "DB_PASSWORD_FILE": files["DB_PASSWORD_FILE"]})
    assert (settings.db_host, settings.db_name, settings.db_user) == ("db", "wondernest", "wondernest_app")
    assert settings.db_password.get_secret_value() == "db-pass"
    assert type(settings) is DatabaseSettings
    with pytest.raises(SettingsError) as caught:
        load_migration_settings(database)
    assert caught.value.problems == ["DB_PASSWORD: required and not set (or DB_PASSWORD_FILE)"]


def test_redis_is_reached_with_tls_verified_against_the_named_ca(tmp_path: Path) -> None:
    env = {**BASE, **secrets_as_files(tmp_path)}
    plain = load_settings(env).redis_options()
    assert plain == {
        "host": "redis",
        "port": 6379,
        "username": "wondernest_app",
        "password": "redis-pass",
        "ssl": False,
    }
    tls = load_settings({**env, "REDIS_TLS": "true", "REDIS_CA_FILE": "/run/ca.pem"}).redis_options()
    assert tls == {**plain, "ssl": True, "ssl_ca_certs": "/run/ca.pem", "ssl_check_hostname": True}


def test_connections_name_their_pool(tmp_path: Path) -> None:
    settings = load_settings({**BASE, **secrets_as_files(tmp_path), "DB_READ_HOSTS": "r1.example:5432"})
    for conninfo, name in (
        (settings.db_conninfo(), "wondernest-api"),
        (settings.db_read_conninfo(), "wondernest-api-read"),
    ):
        assert dict(part.split("=", 1) for part in (conninfo or "").split())["application_name"] == name


def test_an_ipv6_replica_is_listed_with_its_port_after_the_last_colon(tmp_path: Path) -> None:
    settings = load_settings({**BASE, **secrets_as_files(tmp_path), "DB_READ_HOSTS": "fd00::5:6432"})
    conninfo = dict(part.split("=", 1) for part in (settings.db_read_conninfo() or "").split())
    assert (conninfo["host"], conninfo["port"]) == ("fd00::5,db", "6432,5432")
