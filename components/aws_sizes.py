"""AWS instance sizes the platform knows, with the memory the database tuning
derives from. A class missing here is refused by the config, with the list of
those that are known, rather than tuned against a guessed memory size.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class Size:
    memory_bytes: int
    vcpus: int


RDS_CLASSES: dict[str, Size] = {
    "db.t4g.micro": Size(1 * GIB, 2),
    "db.t4g.small": Size(2 * GIB, 2),
    "db.t4g.medium": Size(4 * GIB, 2),
    "db.t4g.large": Size(8 * GIB, 2),
    "db.m6g.large": Size(8 * GIB, 2),
    "db.m6g.xlarge": Size(16 * GIB, 4),
    "db.m6g.2xlarge": Size(32 * GIB, 8),
    "db.m7g.large": Size(8 * GIB, 2),
    "db.m7g.xlarge": Size(16 * GIB, 4),
    "db.r6g.large": Size(16 * GIB, 2),
    "db.r6g.xlarge": Size(32 * GIB, 4),
    "db.r7g.large": Size(16 * GIB, 2),
    "db.r7g.xlarge": Size(32 * GIB, 4),
}

CACHE_NODE_TYPES: dict[str, Size] = {
    "cache.t4g.micro": Size(int(0.5 * GIB), 2),
    "cache.t4g.small": Size(int(1.37 * GIB), 2),
    "cache.t4g.medium": Size(int(3.09 * GIB), 2),
    "cache.m6g.large": Size(int(6.38 * GIB), 2),
    "cache.m7g.large": Size(int(6.38 * GIB), 2),
    "cache.r6g.large": Size(int(13.07 * GIB), 2),
    "cache.r7g.large": Size(int(13.07 * GIB), 2),
}

# Fargate's valid task sizes: memory (MiB) allowed for each CPU value (units).
FARGATE_MEMORY_MIB: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
}
