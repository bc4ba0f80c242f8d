"""The API's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PoolCollector(Collector):
    """Reads the pool's own statistics at scrape time, so no request pays for them."""

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        size = stats.get("pool_size", 0)
        available = stats.get("pool_available", 0)
        yield GaugeMetricFamily("db_pool_size", "Connections open in the pool", value=size)
        yield GaugeMetricFamily("db_pool_in_use", "Connections lent out", value=size - available)
        yield GaugeMetricFamily(
            "db_pool_waiting", "Requests waiting for a connection", value=stats.get("requests_waiting", 0)
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by method and route template",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registrations = Counter(
            "user_registrations_total", "Accounts registered", registry=self.registry
        )
        self.login_failures = Counter(
            "auth_login_failures_total",
            "Login attempts refused, by reason",
            ("reason",),
            registry=self.registry,
        )
        # labels() costs a lock and a dict lookup; the hot path keeps its children.
        self._request_children: dict[tuple[str, str, int], Callable[[], None]] = {}
        self._duration_children: dict[tuple[str, str], Callable[[float], None]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        inc = self._request_children.get((method, route, status))
        if inc is None:
            inc = self.requests.labels(method, route, str(status)).inc
            self._request_children[(method, route, status)] = inc
        observe = self._duration_children.get((method, route))
        if observe is None:
            observe = self.duration.labels(method, route).observe
            self._duration_children[(method, route)] = observe
        inc()
        observe(seconds)

    def watch_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        self.registry.register(PoolCollector(stats))
