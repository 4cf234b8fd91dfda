"""Prometheus metrics, in a registry of the app's own (two gateways in one process, as in
the tests and the latency benchmark, must not share counters).

Under `serve --workers N` every worker is its own process; prometheus_client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the supervisor before the workers
start) keeps each worker's values in a shared directory, and `/metrics` on any worker
renders the sum over all of them: counters and histograms add up, streams in flight add
up over live workers, and the bundle version is reported per worker (a `pid` label).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_MS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
               10.0)


class GatewayMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("swisscheese_requests", "Requests answered, by endpoint and "
                                "HTTP status.", ["endpoint", "status"], registry=r)
        self.blocks = Counter("swisscheese_blocks", "Replies blocked, by the layer that "
                              "blocked (input, output, error).", ["layer"], registry=r)
        self.guard_latency = Histogram("swisscheese_guard_latency_seconds", "Time spent in a "
                                       "guard layer per reply.", ["layer"], buckets=_MS_BUCKETS,
                                       registry=r)
        self.ttft = Histogram("swisscheese_time_to_first_token_seconds", "Time from request "
                              "to the first released text.", buckets=_MS_BUCKETS, registry=r)
        self.duration = Histogram("swisscheese_request_duration_seconds", "Whole request "
                                  "time.", ["endpoint"], buckets=_MS_BUCKETS, registry=r)
        self.in_flight = Gauge("swisscheese_streams_in_flight", "Replies being generated.",
                               registry=r, multiprocess_mode="livesum")
        self.bundle_version = Gauge("swisscheese_bundle_version", "Version of the deployed "
                                    "guard bundle (0: none).", registry=r,
                                    multiprocess_mode="liveall")
        self.deployments = Counter("swisscheese_deployments", "Bundle deployments, by "
                                   "outcome.", ["outcome"], registry=r)

    def render(self) -> bytes:
        path = os.environ.get(MULTIPROC_ENV)
        if path:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=path)
            return generate_latest(merged)
        return generate_latest(self.registry)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def forget_dead_workers(path: str) -> None:
    """Drop the live gauges of worker processes that are gone (a killed worker's streams
    in flight must not count forever); counters keep their totals."""
    import glob

    from prometheus_client import multiprocess

    pids = {f.rsplit("_", 1)[-1].removesuffix(".db") for f in glob.glob(f"{path}/*_*.db")}
    for pid in pids:
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(int(pid), path)
        except PermissionError:
            pass
