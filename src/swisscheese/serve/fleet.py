"""What keeps the workers of one store in step: keys, deployments and heartbeats.

Every gateway worker runs one `StoreSync` thread. Each `interval` it reads the store's
active keys (a key made by `swisscheese keys new`, or revoked, takes effect on every
worker within one interval, no restart), follows the newest successful deployment (a
`bundle deploy` sent to any worker reaches all of them: each loads and probes the bundle
off its event loop, then swaps it in as one assignment), and writes its heartbeat, which
`/healthz` reads to report every live worker's bundle version.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from swisscheese.store.decisions import (
    heartbeat,
    latest_deployment,
    live_workers,
    now_iso,
)
from swisscheese.store.keys import active_key_hashes

if TYPE_CHECKING:
    from swisscheese.serve.state import GatewayState

log = logging.getLogger("swisscheese.serve")
HEARTBEAT_S = 0.5
LIVE_WITHIN_S = 3.0  # a worker silent for longer is not reported as live


class StoreSync:
    """The sync thread of one worker (see the module docstring)."""

    def __init__(self, state: GatewayState, interval_s: float) -> None:
        self.state = state
        self.interval_s = interval_s
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker_id = f"{self.host}:{self.pid}:{id(state) % 100000}"
        self.started = now_iso()
        self.lock = threading.Lock()  # held while a deployment is recorded or followed
        self._failed: set[int] = set()
        self._stop = threading.Event()
        self._last_beat = 0.0
        self._thread = threading.Thread(target=self._run, name="store-sync", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        try:
            self.beat(stopped=True)
        except Exception:  # noqa: BLE001 - shutting down: the store may be gone already
            pass

    def worker_info(self) -> dict[str, Any]:
        return {"id": self.worker_id, "pid": self.pid, "host": self.host,
                "bundle_version": self.state.bundle_version,
                "deployment_id": self.state.deployment_id}

    def fleet(self) -> list[dict[str, Any]]:
        """Every live worker on the store: id, pid, bundle version, heartbeat age."""
        rows = live_workers(self.state.engine, LIVE_WITHIN_S)
        return [{"id": r["worker_id"], "pid": r["pid"], "host": r["host"],
                 "bundle_version": r["bundle_version"], "deployment_id": r["deployment_id"],
                 "started": r["started"], "heartbeat_age_s": r["heartbeat_age_s"]}
                for r in rows]

    def beat(self, stopped: bool = False) -> None:
        heartbeat(self.state.engine, self.worker_id, self.host, self.pid, self.started,
                  self.state.bundle_version, self.state.deployment_id, stopped=stopped)
        self._last_beat = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync_once()
            except Exception as e:  # noqa: BLE001 - a store hiccup must not kill the thread
                log.warning("store sync failed (%s: %s); retrying", type(e).__name__, e)

    def sync_once(self) -> None:
        """One round: keys, the newest deployment, the heartbeat."""
        state = self.state
        if state.keys.replace(active_key_hashes(state.engine)):
            log.info("API keys changed in the store: %d active", len(state.keys._hashes))
        self.follow()
        if time.monotonic() - self._last_beat >= HEARTBEAT_S:
            self.beat()

    def follow(self) -> None:
        """Swap to the store's newest deployment if it is newer than the one served."""
        state = self.state
        with self.lock:
            dep = latest_deployment(state.engine, state.follow_from or 0)
            if dep is None or dep["id"] in self._failed:
                return
            if state.deployment_id is not None and dep["id"] <= state.deployment_id:
                return
            try:
                bundle = state.load_probed(dep["path"])
            except Exception as e:  # noqa: BLE001 - keep serving the current bundle
                self._failed.add(dep["id"])
                log.error("cannot follow deployment %s of %s (%s); this worker keeps bundle "
                          "version %s", dep["id"], dep["path"], e, state.bundle_version)
                return
            previous = state.bundle_version
            state.swap(bundle, dep["path"], dep["id"])
            log.info("followed deployment %s: bundle version %s from %s (was %s)", dep["id"],
                     bundle.version, dep["path"], previous)
        self.beat()
