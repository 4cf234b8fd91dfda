"""`swisscheese serve --workers N`: N gateway processes on one port, sharing one store.

The supervisor (uvicorn's multiprocess supervisor, which restarts a worker that dies)
checks the store, the model and the bundle once, records the start as a deployment, and
spawns the workers. Each worker is its own process with its own model (or upstream
client) and guard; they share, through the store, the keys, the decisions, the
deployments (a `bundle deploy` to any of them reaches all: `swisscheese.serve.fleet`)
and the rate-limit buckets. A worker that is restarted serves the store's current
deployment, not the bundle the supervisor started with. Prometheus metrics add up over
the workers (prometheus_client's multiprocess mode).

For several machines, run `swisscheese serve` on each with the same `--store` URL behind
a load balancer: they share everything the same way (the README's "Running at scale").
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from swisscheese.serve.config import GatewayConfig
from swisscheese.serve.metrics import MULTIPROC_ENV, forget_dead_workers

CONFIG_ENV = "SWISSCHEESE_GATEWAY_CONFIG"
WORKERS_ENV = "SWISSCHEESE_GATEWAY_WORKERS"
log = logging.getLogger("swisscheese.serve")


def config_to_json(config: GatewayConfig) -> str:
    return json.dumps({k: (str(v) if isinstance(v, Path) else v)
                       for k, v in asdict(config).items()})


def config_from_json(text: str) -> GatewayConfig:
    data = json.loads(text)
    known = {f.name for f in fields(GatewayConfig)}
    return GatewayConfig(**{k: v for k, v in data.items() if k in known})


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory, called in the child)."""
    from swisscheese.serve.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = config_from_json(os.environ[CONFIG_ENV])
    metrics_dir = os.environ.get(MULTIPROC_ENV)
    if metrics_dir:
        forget_dead_workers(metrics_dir)
    if not config.upstream:
        import torch

        # The workers split the cores instead of each spinning threads on all of them.
        n = max(1, int(os.environ.get(WORKERS_ENV, "1")))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n))
    return create_app(config)


def prepare(config: GatewayConfig) -> GatewayConfig:
    """Check what every worker would need, once, and record the start as a deployment;
    returns the config the workers run with. Raises (StoreError, ValueError, OSError)
    before any worker starts."""
    from swisscheese.serve.state import load_probe_check
    from swisscheese.store.decisions import (
        last_deployment_id,
        latest_deployment,
        open_gateway_store,
        record_deployment,
    )
    from swisscheese.store.keys import add_key

    engine = open_gateway_store(config.store)
    try:
        bundle_version = load_probe_check(config)
        for key in config.api_keys:
            add_key(engine, key, label="config")
        if config.bundle is not None:
            current = latest_deployment(engine)
            follow_from = record_deployment(engine, str(config.bundle), True, bundle_version,
                                            current["version"] if current else None)
        else:
            follow_from = last_deployment_id(engine) + 1
    finally:
        engine.dispose()
    return replace(config, api_keys=[], follow_from=follow_from, shared_limits=True)


def run_workers(config: GatewayConfig, workers: int, host: str, port: int,
                log_level: str = "info") -> None:
    """Serve `config` from `workers` processes on host:port until interrupted."""
    import uvicorn

    if workers < 2:
        raise ValueError("--workers must be at least 2 here (1 serves in this process)")
    worker_config = prepare(config)
    metrics_dir = tempfile.mkdtemp(prefix="swisscheese-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ[CONFIG_ENV] = config_to_json(worker_config)
    os.environ[WORKERS_ENV] = str(workers)
    try:
        uvicorn.run("swisscheese.serve.workers:worker_app", factory=True, host=host,
                    port=port, workers=workers, log_level=log_level,
                    timeout_graceful_shutdown=10, timeout_worker_healthcheck=30)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
