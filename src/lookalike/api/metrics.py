"""Prometheus metrics, on a registry of the app's own so several apps can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lookalike_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "lookalike_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.errors = Counter("lookalike_errors_total", "Errors by code", ["code"], registry=self.registry)
        self.models_loaded = Gauge("lookalike_models_loaded", "Models loaded in memory", registry=self.registry)
        self.model_running = Gauge("lookalike_model_running", "Model runs in progress", registry=self.registry)
        self.model_waiting = Gauge("lookalike_model_waiting", "Requests queued for the model", registry=self.registry)
        self.model_shed = Gauge(
            "lookalike_model_shed", "Requests shed (ServerBusy) since start", registry=self.registry
        )
