"""Prometheus metrics of one lossd process (``lossd_*``), on a registry of its own.

Under ``lossd serve --workers N`` the parent sets ``PROMETHEUS_MULTIPROC_DIR`` before it starts
the workers: each worker then writes its values to files there and ``/metrics`` of any worker
reports the sum over all of them (prometheus_client's multiprocess mode), so a scrape that lands
on one worker still sees the whole server.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.registry import Collector

from .losses import REGISTRY

# sub-millisecond resolution: a small loss answers in tens of microseconds
LATENCY_BUCKETS = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3,
                   50e-3, 100e-3, 250e-3, 500e-3, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# the ``loss`` label is a registered loss or one of these words (bounded cardinality)
FIXED_LABELS = frozenset({"batch", "runs", "unknown"})
# the ``protocol`` label: each frontend's guard sets its name ("rest", "v2-rest", "grpc",
# "v2-grpc") for the request it runs, so the engine labels the queue time of the calls it makes;
# a call made in the process itself (a test, an embedding) is IN_PROCESS
IN_PROCESS = "in-process"
PROTOCOL: ContextVar[str] = ContextVar("lossd_protocol", default=IN_PROCESS)


class MultiProcessRegistry(CollectorRegistry):
    """Collects the values every worker wrote to ``directory``. Metrics registered here are not
    collected directly (that would count this process twice): their values reach the scrape
    through their files, so any module can register on ``Metrics.registry`` in either mode."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.collector = multiprocess.MultiProcessCollector(None, directory)
        super().register(self.collector)

    def register(self, collector: Collector) -> None:
        """Ignored: the collector's values reach the scrape through the worker files."""

    def unregister(self, collector: Collector) -> None:
        """Ignored, as :meth:`register`."""


class Metrics:
    """Every metric family lossd exports; one instance per process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = registry or (MultiProcessRegistry(directory) if directory
                                     else CollectorRegistry())
        r = self.registry
        self.requests = Counter("lossd_requests", "Requests answered, by loss, protocol and "
                                "code", ["loss", "protocol", "code"], registry=r)
        self.request_seconds = Histogram("lossd_request_duration_seconds", "Time from decoded "
                                         "request to encoded answer, by loss and protocol",
                                         ["loss", "protocol"], buckets=LATENCY_BUCKETS,
                                         registry=r)
        self.queue_seconds = Histogram("lossd_queue_duration_seconds", "Time a request waited "
                                       "in the queue before compute, by loss and protocol",
                                       ["loss", "protocol"], buckets=LATENCY_BUCKETS, registry=r)
        self.compute_seconds = Histogram("lossd_compute_duration_seconds", "Compute time of "
                                         "one batch", buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("lossd_batch_size", "Requests per computed batch, by loss",
                                    ["loss"], buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("lossd_queue_depth", "Requests waiting in the queue",
                                 multiprocess_mode="livesum", registry=r)
        self.in_flight = Gauge("lossd_in_flight", "Requests accepted and not yet answered",
                               multiprocess_mode="livesum", registry=r)
        self.rejections = Counter("lossd_rejections", "Requests refused before compute, by "
                                  "reason", ["reason"], registry=r)
        for reason in ("queue_full", "draining", "deadline", "cancelled"):
            self.rejections.labels(reason)
        self.warnings = Counter("lossd_warnings", "Python warnings raised while serving (NumPy's "
                                "overflow, invalid value, divide by zero: RuntimeWarning), by "
                                "category", ["category"], registry=r)
        self._answered: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._queued: dict[tuple[str, str], Any] = {}
        self._batches: dict[str, Any] = {}

    def answered(self, loss: str, protocol: str, code: str, seconds: float) -> None:
        """Count one answered request and its duration.

        ``loss`` is counted under its name when it is a registered loss or one of
        :data:`FIXED_LABELS`, else as "unknown". The labelled children are cached per
        (loss, protocol, code), which saves their lookup on every request.
        """
        key = (loss, protocol, code)
        children = self._answered.get(key)
        if children is None:
            if loss not in REGISTRY and loss not in FIXED_LABELS:
                return self.answered("unknown", protocol, code, seconds)
            children = self._answered[key] = (self.requests.labels(loss, protocol, code),
                                              self.request_seconds.labels(loss, protocol))
        children[0].inc()
        children[1].observe(seconds)

    def warned(self, category: str) -> None:
        """Count one Python warning of ``category`` (a Warning class name: a small set)."""
        self.warnings.labels(category).inc()

    def queued(self, loss: str, protocol: str, seconds: float) -> None:
        """Observe one request's time in the queue (``loss`` a registered loss)."""
        child = self._queued.get((loss, protocol))
        if child is None:
            child = self._queued[loss, protocol] = self.queue_seconds.labels(loss, protocol)
        child.observe(seconds)

    def batched(self, loss: str, size: int) -> None:
        """Observe one computed batch of ``size`` requests of ``loss``."""
        child = self._batches.get(loss)
        if child is None:
            child = self._batches[loss] = self.batch_size.labels(loss)
        child.observe(size)
