"""Prometheus metrics of one model server, framework-neutral.

Every :class:`ServingMetrics` owns its own ``CollectorRegistry`` (not prometheus-client's
global one), so several servers in one process (tests, a benchmark) keep separate counts and
never clash on metric names. The HTTP layer calls :meth:`ServingMetrics.record` once per
request; :class:`cartola.serving.core.ModelRegistry` reports loads and swaps through
:meth:`model_load` and :meth:`model_served`; the request logger counts written and dropped
rows. Nothing here listens: the server answers ``GET /metrics`` with :meth:`exposition`.

With several worker processes (:mod:`cartola.serving.workers`) each one keeps its values in
prometheus-client's multiprocess files under ``$PROMETHEUS_MULTIPROC_DIR`` (a folder the
supervisor makes and removes) and a scrape, whichever worker answers it, reads them all:
counters and histograms summed over the workers, the served version the most recently set.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest, multiprocess)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The endpoint label's only values: a fixed set (never the raw path) bounds the label
# cardinality whatever URLs clients or scanners send.
ENDPOINTS = ("predict", "status", "metadata", "metrics", "health", "other")
# Single-row predictions take ~1 ms in process; a 10,000-row request or a stalled client can
# take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)


class ServingMetrics:  # pylint: disable=too-many-instance-attributes
    """The counters, histogram and gauges of one server, in a registry of their own."""

    def __init__(self, registry: Optional[CollectorRegistry] = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.requests = Counter("cartola_requests", "HTTP requests answered",
                                ("method", "endpoint", "status"), registry=reg)
        self.latency = Histogram("cartola_request_seconds",
                                 "Time from reading a request to writing its answer",
                                 ("endpoint",), buckets=LATENCY_BUCKETS, registry=reg)
        self.rows_scored = Counter("cartola_rows_scored", "Rows predicted in answered requests",
                                   registry=reg)
        self.model_version = Gauge("cartola_model_version",
                                   "Model version being served (0 before one loads)",
                                   registry=reg, multiprocess_mode="mostrecent")
        self.model_loads = Counter("cartola_model_loads",
                                   "Model version loads by result (ok, failed)", ("result",),
                                   registry=reg)
        self.model_swaps = Counter("cartola_model_swaps",
                                   "Times a newly loaded version replaced the served one",
                                   registry=reg)
        self.log_rows = Counter("cartola_request_log_rows",
                                "Scored rows written to the request log", registry=reg)
        self.log_dropped = Counter("cartola_request_log_dropped",
                                   "Sampled rows not logged: queue full or write failed",
                                   registry=reg)

    def record(self, endpoint: str, method: str, status: int, seconds: float,
               rows: int = 0) -> None:
        """Count one answered request; ``rows`` = rows it scored (0 unless a successful
        predict). An endpoint outside :data:`ENDPOINTS` is counted as ``other``."""
        endpoint = endpoint if endpoint in ENDPOINTS else "other"
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if rows:
            self.rows_scored.inc(rows)

    # ModelRegistry's observer interface.
    def model_load(self, version: int, ok: bool) -> None:  # pylint: disable=unused-argument
        """A load of ``version`` finished (``ok``) or failed."""
        self.model_loads.labels("ok" if ok else "failed").inc()

    def model_served(self, version: int, previous: Optional[int]) -> None:
        """``version`` now serves; ``previous`` (None for the first) was swapped out."""
        self.model_version.set(version)
        if previous is not None:
            self.model_swaps.inc()

    # The request logger's counters.
    def logged_rows(self, rows: int) -> None:
        """``rows`` were written to a request log file."""
        self.log_rows.inc(rows)

    def dropped_rows(self, rows: int) -> None:
        """``rows`` were sampled but not logged."""
        self.log_dropped.inc(rows)

    def exposition(self) -> Tuple[bytes, str]:
        """(body, content type) of a scrape: Prometheus' text format, of every worker when
        several share ``$PROMETHEUS_MULTIPROC_DIR``."""
        if os.environ.get(MULTIPROC_ENV):
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
