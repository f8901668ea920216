"""The service's Prometheus metrics, one registry per app (so tests can run several apps)."""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServiceMetrics:
    """Requests, latency, batch sizes, errors by kind, queue depth, reloads and CPU seconds."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds
        self.requests = Counter(
            "opsnb_requests",
            "HTTP requests answered, by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "opsnb_request_seconds",
            "Time from handler start to answer, by endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.records = Histogram(
            "opsnb_request_records",
            "Records per /predict request",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "opsnb_batch_rows",
            "Rows per call of the compiled predictor",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "opsnb_batch_requests",
            "Requests gathered into one predictor call",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.predict_seconds = Histogram(
            "opsnb_predict_seconds",
            "Time of one compiled predictor call",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "opsnb_errors",
            "Refused or failed requests, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "opsnb_queue_depth", "Requests waiting for the predictor", registry=self.registry
        )
        self.loop_lag = Gauge(
            "opsnb_loop_lag_seconds",
            "How late the event loop runs a timer (recent peak); admission refuses past budget/4",
            registry=self.registry,
        )
        self.disconnects = Counter(
            "opsnb_client_disconnects",
            "Clients that went away before their request body was complete, by endpoint",
            ["endpoint"],
            registry=self.registry,
        )
        self.log_failures = Counter(
            "opsnb_log_failures",
            "Prediction-log writes that failed (answered 503 log_unavailable)",
            registry=self.registry,
        )
        self.worker = Gauge(
            "opsnb_worker_info",
            "1 for the worker process these metrics come from (metrics are per worker)",
            ["pid"],
            registry=self.registry,
        )
        self.worker.labels(str(os.getpid())).set(1)
        self.reloads = Counter(
            "opsnb_reloads", "Model loads, by outcome", ["outcome"], registry=self.registry
        )
        self.model = Gauge(
            "opsnb_model_info",
            "1 for the model version being served",
            ["version"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
