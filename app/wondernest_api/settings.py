"""Configuration from the environment, with a `<NAME>_FILE` variant for every secret.

The platform hands secrets over as files (`DB_PASSWORD_FILE=/run/secrets/...`);
plain variables are accepted for local runs. Bad or missing configuration fails
at start with every offending variable named.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from wondernest_api.envconfig import DatabaseSettings, Port, SettingsError, load_from_env

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# A proxy list must not trust these whole spaces: IPv4, IPv6, and the IPv4
# clients of a dual-stack listener, which arrive as IPv4-mapped IPv6 addresses.
WHOLE_SPACES: tuple[tuple[Network, str], ...] = (
    (ipaddress.IPv4Network("0.0.0.0/0"), "every IPv4 address"),
    (ipaddress.IPv6Network("::/0"), "every IPv6 address"),
    (ipaddress.IPv6Network("::ffff:0:0/96"), "every IPv4 address (as IPv4-mapped IPv6)"),
)


def trusts_everyone(networks: list[Network]) -> str | None:
    """The whole address space the networks cover between them, if any."""
    for space, description in WHOLE_SPACES:
        same = [n for n in networks if n.version == space.version]
        # Two networks either nest or are disjoint: one holding the space covers
        # it, else the ones inside it must add up to it.
        if any(space.subnet_of(n) for n in same):  # type: ignore[arg-type]
            return description
        inside = [n for n in same if n.subnet_of(space)]  # type: ignore[arg-type]
        if inside and list(ipaddress.collapse_addresses(inside)) == [space]:  # type: ignore[type-var]
            return description
    return None


class Settings(DatabaseSettings):
    db_pool_min: Annotated[int, Field(ge=1, le=100)] = 2
    db_pool_max: Annotated[int, Field(ge=1, le=100)] = 10
    db_read_hosts: str | None = None
    """Read replicas as `host:port,host:port`: the read pool picks one at random
    and falls back to DB_HOST when none answers as a standby."""

    redis_host: str
    redis_port: Port = 6379
    redis_user: str
    redis_password: SecretStr
    redis_tls: bool = False
    """TLS to Redis, the certificate verified and the host name checked."""
    redis_ca_file: str | None = None
    """The CA to verify Redis' certificate against (the local stack's own);
    unset, the system's CAs (ElastiCache's certificates chain to a public CA)."""

    jwt_secret: SecretStr
    """The key that signs access tokens."""
    jwt_previous_secret: SecretStr | None = None
    jwt_next_secret: SecretStr | None = None
    """Keys accepted beside it: the one it replaced and the one that replaces it
    at the next rotation, so tokens keep working across a rotation while tasks
    holding the old keys and tasks holding the new ones serve side by side."""
    jwt_issuer: str = "wondernest-api"
    jwt_audience: str = "wondernest-users"
    access_token_ttl_seconds: Annotated[int, Field(ge=60, le=86_400)] = 3600
    refresh_token_ttl_seconds: Annotated[int, Field(ge=3600, le=90 * 86_400)] = 30 * 86_400
    refresh_reuse_grace_seconds: Annotated[int, Field(ge=0, le=300)] = 30
    """How long after a rotation the previous refresh token still yields the same
    new pair (a retry, a second tab); after it, the token's return is a theft."""
    bcrypt_rounds: Annotated[int, Field(ge=4, le=16)] = 12

    login_ip_limit: Annotated[int, Field(ge=1)] = 20
    login_ip_window_seconds: Annotated[int, Field(ge=1)] = 60
    login_account_limit: Annotated[int, Field(ge=1)] = 5
    login_account_window_seconds: Annotated[int, Field(ge=1)] = 900
    register_ip_limit: Annotated[int, Field(ge=1)] = 10
    register_ip_window_seconds: Annotated[int, Field(ge=1)] = 3600
    hash_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    """Password hashes computed at once. Each takes a core for its whole cost, so
    more than the cores only queues them inside the thread pool, where a burst of
    logins would hold every worker thread."""
    hash_queue_max: Annotated[int, Field(ge=0, le=10_000)] = 32
    """Requests waiting for a hashing slot; beyond them, 503 with Retry-After at once."""
    hash_queue_wait_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    """How long a request waits for a slot before it is answered 503: about
    what a client waits before it gives up and retries."""

    cors_allowed_origins: tuple[str, ...] = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """The least severe line written; `warning` leaves out the per-request lines."""
    max_body_bytes: Annotated[int, Field(ge=1024, le=10 * 1024 * 1024)] = 64 * 1024
    max_header_bytes: Annotated[int, Field(ge=4096, le=1024 * 1024)] = 32 * 1024
    """The request line and headers of one request, together."""
    max_headers: Annotated[int, Field(ge=16, le=1000)] = 100
    host: str = "0.0.0.0"  # noqa: S104 (inside the container; the host publishes on loopback)
    port: Port = 8080
    metrics_port: Port = 9102
    """/metrics, on a listener of its own: whatever routes to `port` (a load
    balancer, a published host port) cannot reach it."""
    forwarded_allow_ips: str = ""
    graceful_shutdown_seconds: Annotated[int, Field(ge=1, le=300)] = 20

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        if self.metrics_port == self.port:
            raise ValueError("METRICS_PORT: must differ from PORT, so the public listener cannot serve /metrics")
        return self

    @field_validator("db_read_hosts")
    @classmethod
    def _read_hosts(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for entry in value.split(","):
            host, sep, port = entry.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{entry.strip()!r} is not host:port; list replicas as host:port,host:port")
        return ",".join(entry.strip() for entry in value.split(","))

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: str) -> str:
        networks = []
        for entry in (e.strip() for e in value.split(",") if e.strip()):
            if entry == "*":
                raise ValueError(
                    "'*' trusts every peer, so a client's own X-Forwarded-For would pick its address; "
                    "list the proxies' addresses or networks"
                )
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        if covered := trusts_everyone(networks):
            raise ValueError(
                f"together these networks cover {covered}, so any client could pick its address "
                "with X-Forwarded-For; list only the proxies' addresses or networks"
            )
        return value

    @field_validator("jwt_secret", "jwt_previous_secret", "jwt_next_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(o.strip() for o in value.split(",") if o.strip())
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an explicit http(s) origin")
        return value

    def redis_options(self) -> dict[str, object]:
        """Connection settings shared by the server's async client and --check-only's."""
        return {
            "host": self.redis_host,
            "port": self.redis_port,
            "username": self.redis_user,
            "password": self.redis_password.get_secret_value(),
            "ssl": self.redis_tls,
            **({"ssl_ca_certs": self.redis_ca_file, "ssl_check_hostname": True} if self.redis_tls else {}),
        }

    def db_conninfo(self) -> str:
        return self.conninfo("wondernest-api")

    def db_read_conninfo(self) -> str | None:
        """The replicas, in random order, then the primary: libpq takes the first
        that is a standby, or, with none answering as one, any (the primary).
        Each host's certificate is checked against that host's own name."""
        if self.db_read_hosts is None:
            return None
        from psycopg.conninfo import make_conninfo

        hosts = [entry.rpartition(":") for entry in self.db_read_hosts.split(",")]
        return make_conninfo(
            self.conninfo("wondernest-api-read"),
            host=",".join([*(h for h, _, _ in hosts), self.db_host]),
            port=",".join([*(p for _, _, p in hosts), str(self.db_port)]),
            target_session_attrs="prefer-standby",
            load_balance_hosts="random",
        )


def load_migration_settings(environ: Mapping[str, str] | None = None) -> DatabaseSettings:
    """`migrate` runs as the role that owns the schema objects, and needs
    nothing but its database connection: not the API's Redis or signing key."""
    return load_from_env(DatabaseSettings, os.environ if environ is None else environ)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    settings = load_from_env(Settings, os.environ if environ is None else environ)
    if settings.db_pool_min > settings.db_pool_max:
        raise SettingsError(["DB_POOL_MIN: must not exceed DB_POOL_MAX"])
    return settings
