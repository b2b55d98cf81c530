"""Prometheus metrics of one node, in a registry of their own (no process globals, so several
apps in one test process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
