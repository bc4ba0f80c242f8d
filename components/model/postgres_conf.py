"""PostgreSQL tuning and the exact `postgresql.conf` / `pg_hba.conf` the server reads.

One tuning function serves both targets: the container reads the rendered file,
and the AWS target turns the same numbers into parameter-group values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network

from components.model.tls import MIN_TLS_VERSION, ServerTls

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

MIN_MEMORY_BYTES = 256 * MIB
# Below this a sort or hash spills to disk almost at once; a config that forces it
# is a sizing mistake, so it is rejected instead of rendered.
MIN_WORK_MEM_KB = 1024
# Concurrent sort/hash operations assumed per connection when dividing memory.
OPERATIONS_PER_CONNECTION = 3

CONTAINER_CONFIG_DIR = "/etc/postgresql"
CONTAINER_CONFIG_FILE = f"{CONTAINER_CONFIG_DIR}/postgresql.conf"
CONTAINER_HBA_FILE = f"{CONTAINER_CONFIG_DIR}/pg_hba.conf"
CONTAINER_TLS = ServerTls.in_dir(f"{CONTAINER_CONFIG_DIR}/tls")
CONTAINER_PORT = 5432


class TuningError(ValueError):
    """The requested memory cannot hold a sane configuration."""


@dataclass(frozen=True)
class PostgresTuning:
    memory_bytes: int
    max_connections: int
    shared_buffers_kb: int
    effective_cache_size_kb: int
    work_mem_kb: int
    maintenance_work_mem_kb: int
    random_page_cost: float = 1.1
    # SSD-backed volumes serve many concurrent prefetches.
    effective_io_concurrency: int = 200
    checkpoint_completion_target: float = 0.9

    @property
    def shared_buffers_pages(self) -> int:
        """In 8 kB pages, the unit RDS parameter groups take for shared_buffers."""
        return self.shared_buffers_kb // 8

    @property
    def effective_cache_size_pages(self) -> int:
        return self.effective_cache_size_kb // 8


def tune(memory_bytes: int, max_connections: int) -> PostgresTuning:
    """Derive the memory settings from the memory the server may use."""
    if memory_bytes < MIN_MEMORY_BYTES:
        raise TuningError(
            f"{_human(memory_bytes)} is below the {_human(MIN_MEMORY_BYTES)} minimum PostgreSQL is tuned for"
        )
    memory_kb = memory_bytes // KIB
    shared_buffers_kb = _round_down_mb(memory_kb // 4)
    effective_cache_size_kb = _round_down_mb(memory_kb * 3 // 4)
    work_mem_kb = (memory_kb - shared_buffers_kb) // (max_connections * OPERATIONS_PER_CONNECTION)
    if work_mem_kb < MIN_WORK_MEM_KB:
        raise TuningError(
            f"{_human(memory_bytes)} cannot hold {max_connections} connections: work_mem "
            f"would be {work_mem_kb}kB, below the {MIN_WORK_MEM_KB}kB minimum; raise the "
            "memory or lower maxConnections"
        )
    maintenance_work_mem_kb = min(max(_round_down_mb(memory_kb // 16), 16 * KIB), 2 * MIB)
    return PostgresTuning(
        memory_bytes=memory_bytes,
        max_connections=max_connections,
        shared_buffers_kb=shared_buffers_kb,
        effective_cache_size_kb=effective_cache_size_kb,
        work_mem_kb=work_mem_kb,
        maintenance_work_mem_kb=maintenance_work_mem_kb,
    )


def render_postgresql_conf(
    tuning: PostgresTuning,
    *,
    slow_query_ms: int,
    hba_file: str = CONTAINER_HBA_FILE,
    tls: ServerTls | None = None,
) -> str:
    """The container's postgresql.conf; every line is a decision of this platform.
    With `tls`, the server offers TLS (pg_hba.conf then accepts nothing else)."""
    settings: list[tuple[str, str]] = [
        ("listen_addresses", "'*'"),
        ("port", str(CONTAINER_PORT)),
        ("hba_file", _quote(hba_file)),
        ("max_connections", str(tuning.max_connections)),
        ("superuser_reserved_connections", "3"),
        ("password_encryption", "'scram-sha-256'"),
        ("shared_buffers", _mem(tuning.shared_buffers_kb)),
        ("effective_cache_size", _mem(tuning.effective_cache_size_kb)),
        ("work_mem", _mem(tuning.work_mem_kb)),
        ("maintenance_work_mem", _mem(tuning.maintenance_work_mem_kb)),
        ("random_page_cost", f"{tuning.random_page_cost}"),
        ("effective_io_concurrency", str(tuning.effective_io_concurrency)),
        ("checkpoint_completion_target", f"{tuning.checkpoint_completion_target}"),
        ("min_wal_size", "256MB"),
        ("max_wal_size", "2GB"),
        ("wal_compression", "on"),
        ("shared_preload_libraries", "'pg_stat_statements'"),
        ("pg_stat_statements.max", "10000"),
        ("pg_stat_statements.track", "all"),
        # Utility statements (CREATE/ALTER ROLE ... PASSWORD) are kept with their
        # literal text, password verifiers included; the slow-query views need
        # only the queries.
        ("pg_stat_statements.track_utility", "off"),
        ("track_io_timing", "on"),
        ("log_destination", "'stderr'"),
        ("logging_collector", "off"),
        ("log_min_duration_statement", str(slow_query_ms)),
        # A logged statement's bind parameters (emails, password hashes) stay out of the log.
        ("log_parameter_max_length", "0"),
        ("log_line_prefix", "'%m [%p] %q%u@%d '"),
        ("log_lock_waits", "on"),
        ("log_temp_files", "0"),
        ("log_autovacuum_min_duration", "'1s'"),
        ("log_timezone", "'UTC'"),
        ("timezone", "'UTC'"),
        # A backstop for the sessions no role setting covers (an operator's psql
        # as the superuser): the platform's roles end idle transactions sooner.
        ("idle_in_transaction_session_timeout", "'1h'"),
    ]
    if tls is not None:
        settings += [
            ("ssl", "on"),
            ("ssl_cert_file", _quote(tls.cert_file)),
            ("ssl_key_file", _quote(tls.key_file)),
            ("ssl_min_protocol_version", _quote(MIN_TLS_VERSION)),
        ]
    lines = [
        "# Rendered by the platform spec from the stack's postgres config; do not edit by hand.",
        *(f"{key} = {value}" for key, value in settings),
    ]
    return "\n".join(lines) + "\n"


def render_pg_hba_conf(
    *,
    database: str,
    admin_role: str,
    client_networks: Sequence[IPv4Network],
    tls: bool = False,
) -> str:
    """Only SCRAM, only from the given networks; the admin may reach every database,
    every other role only the application's. With `tls`, a network connection
    must be encrypted (`hostssl`): a plaintext one matches no line."""
    if not client_networks:
        raise ValueError("pg_hba.conf needs at least one client network")
    lines = [
        "# Rendered by the platform spec; only scram-sha-256 is accepted, nothing trusts.",
        "# TYPE  DATABASE  USER  ADDRESS  METHOD",
        f"local   all       {admin_role}  scram-sha-256",
        f"local   {database}  all  scram-sha-256",
    ]
    kind = "hostssl" if tls else "host   "
    for network in client_networks:
        lines.append(f"{kind} all       {admin_role}  {network}  scram-sha-256")
        lines.append(f"{kind} {database}  all  {network}  scram-sha-256")
    return "\n".join(lines) + "\n"


def healthcheck_args(*, admin_role: str, database: str, port: int = CONTAINER_PORT) -> list[str]:
    """pg_isready over TCP: during first-boot initialisation the image's entrypoint
    runs a socket-only server, which must not count as ready. pg_hba.conf needs a
    matching loopback line, or every probe logs a FATAL "no pg_hba.conf entry"."""
    return ["pg_isready", "-h", "127.0.0.1", "-p", str(port), "-U", admin_role, "-d", database]


def _round_down_mb(kb: int) -> int:
    return kb - kb % KIB


def _mem(kb: int) -> str:
    if kb % MIB == 0:
        return f"{kb // MIB}GB"
    if kb % KIB == 0:
        return f"{kb // KIB}MB"
    return f"{kb}kB"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _human(n_bytes: int) -> str:
    if n_bytes % GIB == 0:
        return f"{n_bytes // GIB}GiB"
    if n_bytes % MIB == 0:
        return f"{n_bytes // MIB}MiB"
    return f"{n_bytes} bytes"


@dataclass(frozen=True)
class RdsParameter:
    name: str
    value: str
    apply_method: str = "immediate"


def rds_parameters(tuning: PostgresTuning, *, slow_query_ms: int) -> list[RdsParameter]:
    """The same decisions as `render_postgresql_conf`, in the units an RDS parameter
    group takes (8 kB pages for the buffer sizes, kB for the work memories), plus
    what RDS adds: TLS forced on every connection. Booleans are 0/1, the values
    RDS lists for them. Paths, listen addresses and logging destinations are
    RDS's to set and are left out."""
    reboot = "pending-reboot"
    return [
        RdsParameter("max_connections", str(tuning.max_connections), reboot),
        RdsParameter("password_encryption", "scram-sha-256"),
        RdsParameter("shared_buffers", str(tuning.shared_buffers_pages), reboot),
        RdsParameter("effective_cache_size", str(tuning.effective_cache_size_pages)),
        RdsParameter("work_mem", str(tuning.work_mem_kb)),
        RdsParameter("maintenance_work_mem", str(tuning.maintenance_work_mem_kb)),
        RdsParameter("random_page_cost", f"{tuning.random_page_cost}"),
        RdsParameter("effective_io_concurrency", str(tuning.effective_io_concurrency)),
        RdsParameter("checkpoint_completion_target", f"{tuning.checkpoint_completion_target}"),
        RdsParameter("min_wal_size", "256"),
        RdsParameter("max_wal_size", "2048"),
        RdsParameter("wal_compression", "on"),
        RdsParameter("shared_preload_libraries", "pg_stat_statements", reboot),
        RdsParameter("pg_stat_statements.max", "10000", reboot),
        RdsParameter("pg_stat_statements.track", "all"),
        RdsParameter("pg_stat_statements.track_utility", "0"),
        RdsParameter("track_io_timing", "1"),
        RdsParameter("log_min_duration_statement", str(slow_query_ms)),
        RdsParameter("log_parameter_max_length", "0"),
        RdsParameter("log_lock_waits", "1"),
        RdsParameter("log_temp_files", "0"),
        RdsParameter("log_autovacuum_min_duration", "1000"),
        RdsParameter("idle_in_transaction_session_timeout", "3600000"),
        RdsParameter("rds.force_ssl", "1"),
        RdsParameter("ssl_min_protocol_version", "TLSv1.2"),
    ]
