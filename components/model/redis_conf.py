"""The exact `redis.conf` and ACL file the Redis server reads."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from components.model.naming import Names
from components.model.tls import ServerTls

EvictionPolicy = Literal[
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "noeviction",
]

CONTAINER_CONFIG_DIR = "/usr/local/etc/redis"
CONTAINER_CONFIG_FILE = f"{CONTAINER_CONFIG_DIR}/redis.conf"
CONTAINER_ACL_FILE = f"{CONTAINER_CONFIG_DIR}/users.acl"
CONTAINER_DATA_DIR = "/data"
CONTAINER_PORT = 6379
CONTAINER_TLS = ServerTls.in_dir(f"{CONTAINER_CONFIG_DIR}/tls")

# RDB snapshots: after 15 min if 1 key changed, 5 min if 10, 1 min if 10000.
SAVE_POINTS: tuple[tuple[int, int], ...] = ((900, 1), (300, 10), (60, 10000))

# What the application may run: everything but the commands Redis itself files
# under @dangerous (FLUSHALL, FLUSHDB, CONFIG, DEBUG, SHUTDOWN, KEYS, MONITOR, ACL, ...)
# and @scripting (EVAL, FCALL, SCRIPT, FUNCTION): the API runs no server-side
# code, and a stolen credential must not load a function or flush the caches.
APP_USER_RULES = "~* &* +@all -@dangerous -@scripting"
HEALTHCHECK_USER_RULES = "resetkeys resetchannels -@all +ping"
# What redis_exporter 1.45 runs by default (exporter/exporter.go, slowlog.go,
# latency.go): PING, CLIENT SETNAME, INFO ALL (key counts per db come from its
# keyspace section), SLOWLOG LEN and LATENCY LATEST. Not CONFIG GET *, which
# hands over the whole configuration (file paths, limits, any password set
# there), nor SLOWLOG GET, which returns the arguments of slow commands, keys
# and values included: the exporter's scrape carries on without both, less the
# config and last-slow-command gauges, which no rule or dashboard reads. No
# key access, no writes, nothing that changes the server.
EXPORTER_USER_RULES = "resetkeys resetchannels -@all +ping +client|setname +info +slowlog|len +latency|latest"


@dataclass(frozen=True)
class RedisUser:
    name: str
    password_sha256: str
    rules: str


def acl_password_hash(password: str) -> str:
    """Redis ACL files accept `#<sha256>` so the plaintext never lands on disk."""
    return hashlib.sha256(password.encode()).hexdigest()


def container_memory_limit(maxmemory_bytes: int) -> int:
    # A BGSAVE or AOF rewrite forks; copy-on-write can touch every page, so the
    # container needs room for a second copy of the dataset.
    return 2 * maxmemory_bytes + 64 * 1024 * 1024


def render_redis_conf(
    *,
    maxmemory_bytes: int,
    eviction_policy: EvictionPolicy,
    aclfile: str = CONTAINER_ACL_FILE,
    data_dir: str = CONTAINER_DATA_DIR,
    tls: ServerTls | None = None,
) -> str:
    """With `tls`, the port speaks TLS only (a plaintext client gets nothing)."""
    listen = [f"port {CONTAINER_PORT}"]
    if tls is not None:
        listen = [
            "port 0",
            f"tls-port {CONTAINER_PORT}",
            f"tls-cert-file {tls.cert_file}",
            f"tls-key-file {tls.key_file}",
            f"tls-ca-cert-file {tls.ca_file}",
            # Clients authenticate with ACL passwords, not certificates.
            "tls-auth-clients no",
            'tls-protocols "TLSv1.2 TLSv1.3"',
        ]
    lines = [
        "# Rendered by the platform spec; do not edit by hand.",
        "bind * -::*",
        "protected-mode yes",
        *listen,
        f"aclfile {aclfile}",
        f"dir {data_dir}",
        "appendonly yes",
        'appendfilename "appendonly.aof"',
        "appendfsync everysec",
        *(f"save {seconds} {changes}" for seconds, changes in SAVE_POINTS),
        "stop-writes-on-bgsave-error yes",
        "rdbcompression yes",
        "rdbchecksum yes",
        "dbfilename dump.rdb",
        f"maxmemory {maxmemory_bytes}",
        f"maxmemory-policy {eviction_policy}",
        "tcp-keepalive 300",
        "timeout 0",
        "loglevel notice",
        'logfile ""',
        "slowlog-log-slower-than 10000",
        "latency-monitor-threshold 100",
        "enable-debug-command no",
        "enable-module-command no",
        "enable-protected-configs no",
    ]
    return "\n".join(lines) + "\n"


def render_platform_acl(names: Names, *, app: str, healthcheck: str, monitoring: str) -> str:
    """The ACL file the platform's Redis runs with: its three users, from their passwords."""
    return render_acl_file(
        [
            RedisUser(names.redis_app_user, acl_password_hash(app), APP_USER_RULES),
            RedisUser(names.redis_healthcheck_user, acl_password_hash(healthcheck), HEALTHCHECK_USER_RULES),
            RedisUser(names.redis_monitoring_user, acl_password_hash(monitoring), EXPORTER_USER_RULES),
        ]
    )


def render_acl_file(users: Sequence[RedisUser]) -> str:
    """The default user is switched off: a connection that has not authenticated
    as a named user can run nothing but AUTH/HELLO."""
    lines = ["user default off resetpass resetkeys resetchannels -@all"]
    for user in users:
        lines.append(f"user {user.name} on #{user.password_sha256} {user.rules}")
    return "\n".join(lines) + "\n"


def healthcheck_command(
    *, user: str, password_file: str, port: int = CONTAINER_PORT, ca_file: str | None = None
) -> str:
    """A shell line that authenticates and pings (over TLS, verified against
    `ca_file`, when given). The password travels from the file through this
    shell's own environment into redis-cli: it is never in the container's env
    or in any process's argument list."""
    tls = "" if ca_file is None else f" --tls --cacert {ca_file}"
    return (
        f'REDISCLI_AUTH="$(cat {password_file})" '
        f"redis-cli --no-auth-warning{tls} -h 127.0.0.1 -p {port} --user {user} ping | grep -qx PONG"
    )
