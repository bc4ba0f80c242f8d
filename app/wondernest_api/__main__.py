"""`python -m wondernest_api [serve | migrate | check]`.

`migrate` applies the migrations as the role that owns the schema objects (the
DB_* variables only). `serve` runs as the app role and exits with one error
line when the database lacks a migration this code has. `--check-only` (alias
of `check`) validates the configuration and that Postgres and Redis answer
with it, then exits: 0 when all is well, 1 when a dependency does not answer,
2 when the configuration is invalid.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

import orjson

from wondernest_api.envconfig import DatabaseSettings, SettingsError
from wondernest_api.settings import Settings, load_migration_settings, load_settings


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(
            {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        ).decode()


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _set_level(level: str) -> None:
    from wondernest_api.jsonlog import log

    log.set_level(level)
    logging.getLogger().setLevel(level.upper())


def check(settings: Settings) -> int:
    import psycopg
    import redis

    from wondernest_api.db import describe_error

    report: dict[str, str] = {"config": "ok"}
    try:
        with psycopg.connect(settings.db_conninfo()) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            report["database"] = f"ok (PostgreSQL {row[0] if row else '?'})"
    except psycopg.Error as exc:
        report["database"] = f"failed: {describe_error(exc)}"
    try:
        client = redis.Redis(
            **settings.redis_options(),  # type: ignore[arg-type]
            socket_timeout=3,
            socket_connect_timeout=3,
        )
        client.ping()
        report["redis"] = "ok"
    except (redis.RedisError, OSError) as exc:
        report["redis"] = f"failed: {type(exc).__name__}: {exc}"
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    return 0 if all(v.startswith("ok") for v in report.values()) else 1


def run_migrations(settings: DatabaseSettings, baseline_at: str | None = None) -> int:
    import psycopg

    from wondernest_api.db import describe_error
    from wondernest_api.jsonlog import log
    from wondernest_api.migrate import MigrationError, baseline, migrate

    try:
        if baseline_at is not None:
            recorded = baseline(settings.conninfo("wondernest-migrate"), baseline_at)
            log.info("migrations baselined", versions=recorded)
            return 0
        applied = migrate(settings.conninfo("wondernest-migrate"))
    except MigrationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except psycopg.Error as exc:
        sys.stderr.write(f"error: migrations: {describe_error(exc)}\n")
        return 1
    log.info("migrations applied" if applied else "migrations up to date", versions=applied)
    return 0


def schema_problem(settings: Settings) -> str | None:
    """Why the API must not serve this database, if it must not."""
    import psycopg

    from wondernest_api.db import describe_error
    from wondernest_api.migrate import pending

    try:
        missing = pending(settings.db_conninfo())
    except psycopg.Error as exc:
        return f"database: {describe_error(exc)}"
    if missing:
        return (
            f"database {settings.db_name!r} lacks migration(s) {', '.join(missing)}: "
            "run `python -m wondernest_api migrate` as the migrator role first"
        )
    return None


def serve(settings: Settings) -> None:
    import uvicorn

    from wondernest_api.app import create_app
    from wondernest_api.bounded_http import bounded_protocol

    app, _ = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools with each request's head bounded: it holds whatever headers it is sent.
        http=bounded_protocol(max_head_bytes=settings.max_header_bytes, max_headers=settings.max_headers),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        # SIGTERM: stop accepting, let in-flight requests finish, then close pools.
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
    )
    # One server on two sockets: the public port and the metrics port (ByListener routes between them).
    sockets = [config.bind_socket(), _bind(settings.host, settings.metrics_port)]
    uvicorn.Server(config).run(sockets=sockets)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wondernest_api")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "check"])
    parser.add_argument("--check-only", action="store_true", help="validate config and connectivity, then exit")
    parser.add_argument(
        "--baseline",
        metavar="VERSION",
        help="migrate: record the migrations up to VERSION as applied, without running them (an adopted database)",
    )
    args = parser.parse_args(argv)
    if args.baseline is not None and args.command != "migrate":
        parser.error("--baseline goes with migrate")
    _configure_logging()
    try:
        if args.command == "migrate" and not args.check_only:
            return run_migrations(load_migration_settings(), args.baseline)
        settings = load_settings()
    except SettingsError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    _set_level(settings.log_level)
    if args.check_only or args.command == "check":
        return check(settings)
    if problem := schema_problem(settings):
        sys.stderr.write(f"error: {problem}\n")
        return 1
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
