"""What the API's settings derive from the resources the stack gives it."""

from __future__ import annotations


def hash_concurrency(cpus: float) -> int:
    """Password hashes computed at once: one per whole CPU, at least one.

    Measured with app/bench/login_benchmark.py (bcrypt cost 12, 2 CPUs): 1
    hash at a time gave 3.7 logins/s, 2 gave 6.9 with the lowest p99, and 3
    or 4 gave no more logins but longer tails and a slower /health meanwhile.
    A hash holds a core for its whole cost, so more than the cores only queue."""
    return max(1, int(cpus))
