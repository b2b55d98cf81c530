"""Prometheus metrics of one node, in a registry of their own (no process globals, so several
apps in one test process do not collide)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# name, help, "counter" or "gauge", value: a figure its owner keeps anyway (a plain int on
# the media path), read only when Prometheus scrapes.
Reading = tuple[str, str, str, float]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Gauge(
            "chorus_calls",
            "Calls in progress on this node by state",
            ["state"],
            registry=self.registry,
        )
        self.calls_ended = Counter(
            "chorus_calls_ended", "Calls ended, by reason", ["reason"], registry=self.registry
        )
        self.call_setup = Histogram(
            "chorus_call_setup_seconds",
            "From POST /v1/calls to the answer SDP (caller's leg ready, ringback starting)",
            buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self.peer_connections = Gauge(
            "chorus_peer_connections", "Open WebRTC peer connections", registry=self.registry
        )
        self.event_sockets = Gauge(
            "chorus_event_sockets", "Connected event WebSockets", registry=self.registry
        )
        for state in ("ringing", "answered"):
            self.calls.labels(state).set(0)

    def observe(self, read: Callable[[], Iterable[Reading]]) -> None:
        """Publishes figures read at scrape time: the mixer counts in plain attributes, which
        costs nothing per packet, instead of calling into prometheus_client 50 times a second
        per participant."""
        self.registry.register(_Readings(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Readings:
    def __init__(self, read: Callable[[], Iterable[Reading]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        for name, doc, kind, value in self._read():
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, doc, value=value)
