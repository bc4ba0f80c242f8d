"""AWS sizes the platform knows. An RDS class's memory is what the database
tuning derives from, so a class missing here is refused by the config, with the
list of those that are known, rather than tuned against a guessed memory size.
"""

from __future__ import annotations

GIB = 1024**3

# Instance class → memory in bytes.
RDS_CLASSES: dict[str, int] = {
    "db.t4g.micro": 1 * GIB,
    "db.t4g.small": 2 * GIB,
    "db.t4g.medium": 4 * GIB,
    "db.t4g.large": 8 * GIB,
    "db.m6g.large": 8 * GIB,
    "db.m6g.xlarge": 16 * GIB,
    "db.m6g.2xlarge": 32 * GIB,
    "db.m7g.large": 8 * GIB,
    "db.m7g.xlarge": 16 * GIB,
    "db.r6g.large": 16 * GIB,
    "db.r6g.xlarge": 32 * GIB,
    "db.r7g.large": 16 * GIB,
    "db.r7g.xlarge": 32 * GIB,
}

# Graviton node types with in-transit encryption and Multi-AZ failover support.
CACHE_NODE_TYPES: tuple[str, ...] = (
    "cache.t4g.micro",
    "cache.t4g.small",
    "cache.t4g.medium",
    "cache.m6g.large",
    "cache.m7g.large",
    "cache.r6g.large",
    "cache.r7g.large",
)

# Fargate's valid task sizes: memory (MiB) allowed for each CPU value (units).
FARGATE_MEMORY_MIB: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
}


def fargate_memory_mib(cpu: int, wanted_mib: int) -> int:
    """The smallest task memory Fargate accepts with `cpu` that holds `wanted_mib`, else its largest."""
    allowed = FARGATE_MEMORY_MIB[cpu]
    return next((mib for mib in allowed if mib >= wanted_mib), allowed[-1])
