"""The API's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# The 5xx statuses the API answers itself: an unhandled error, and a
# dependency down or work shed.
SERVER_ERRORS = (500, 503)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PoolCollector(Collector):
    """Reads the pool's own statistics at scrape time, so no request pays for them."""

    def __init__(self) -> None:
        self._pools: dict[str, Callable[[], dict[str, int]]] = {}

    def add(self, pool: str, stats: Callable[[], dict[str, int]]) -> None:
        self._pools[pool] = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "size": GaugeMetricFamily("db_pool_size", "Connections open in the pool", labels=["pool"]),
            "in_use": GaugeMetricFamily("db_pool_in_use", "Connections lent out", labels=["pool"]),
            "waiting": GaugeMetricFamily("db_pool_waiting", "Requests waiting for a connection", labels=["pool"]),
        }
        for pool, read in self._pools.items():
            stats = read()
            size = stats.get("pool_size", 0)
            families["size"].add_metric([pool], size)
            families["in_use"].add_metric([pool], size - stats.get("pool_available", 0))
            families["waiting"].add_metric([pool], stats.get("requests_waiting", 0))
        yield from families.values()


class RequestStats(Collector):
    """Request counts and latency histograms, kept as plain numbers.

    prometheus_client's Counter and Histogram take a lock per update and walk
    every bucket; on the request path that cost more than the rest of the
    middleware. All updates and scrapes happen on the event loop's one thread,
    so plain dicts are safe, and the families are built only when scraped.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._buckets = buckets
        self._counts: dict[tuple[str, str, int], int] = {}
        # Per (method, route): one count per bucket, then +Inf, then the sum.
        self._histograms: dict[tuple[str, str], list[float]] = {}

    def declare(self, method: str, route: str, statuses: Iterable[int]) -> None:
        """Start these series at zero: a counter's first sample is its baseline,
        so a series born with the first failure would never show it in a rate."""
        for status in statuses:
            self._counts.setdefault((method, route, status), 0)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self._histograms[(method, route)] = [0.0] * (len(self._buckets) + 2)
        histogram[bisect_left(self._buckets, seconds)] += 1
        histogram[-1] += seconds

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "http_requests",
            "HTTP requests by method, route template and status",
            labels=("method", "route", "status"),
        )
        for (method, route, status), count in sorted(self._counts.items()):
            requests.add_metric((method, route, str(status)), count)
        yield requests
        durations = HistogramMetricFamily(
            "http_request_duration_seconds",
            "HTTP request duration by method and route template",
            labels=("method", "route"),
        )
        bounds = [floatToGoString(b) for b in self._buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
        for (method, route), values in sorted(self._histograms.items()):
            cumulative = list(accumulate(values[:-1]))
            durations.add_metric((method, route), list(zip(bounds, cumulative, strict=True)), sum_value=values[-1])
        yield durations


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._pools = PoolCollector()
        self.registry.register(self._pools)
        # CPU, memory and file descriptors of this process, from /proc.
        ProcessCollector(registry=self.registry)
        self.requests = RequestStats(LATENCY_BUCKETS)
        self.registry.register(self.requests)
        self.registrations = Counter("user_registrations_total", "Accounts registered", registry=self.registry)
        self.registration_refusals = Counter(
            "auth_registration_refusals_total",
            "Registrations refused before any work, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.login_failures = Counter(
            "auth_login_failures_total",
            "Login attempts refused, by reason",
            ("reason",),
            registry=self.registry,
        )
        self.shed = Counter(
            "auth_requests_shed_total",
            "Logins and registrations dropped before their password hash: the line full, the wait too long, "
            "or the client gone",
            ("reason",),
            registry=self.registry,
        )
        for reason in ("queue_full", "queue_wait", "client_gone"):
            self.shed.labels(reason)

    def declare_routes(self, routes: Iterable[tuple[str, str]]) -> None:
        """Each (method, route) the API serves starts with its error series at
        zero, the ones its alerts count: a failure in a fresh process then
        shows as an increase from 0 rather than as the series' first sample."""
        for method, route in routes:
            self.requests.declare(method, route, SERVER_ERRORS)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.observe(method, route, status, seconds)

    def watch_pool(self, pool: str, stats: Callable[[], dict[str, int]]) -> None:
        """A pool's statistics as `db_pool_*{pool="<pool>"}`."""
        self._pools.add(pool, stats)
