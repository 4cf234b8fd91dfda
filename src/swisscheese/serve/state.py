"""What one gateway holds for its whole life: the model, the deployed guard, the store,
keys, limits, metrics, the worker pools, and the sync thread that keeps it in step with
the other workers on its store (`swisscheese.serve.fleet`).

The deployed guard is one reference (`guard`). A request reads it once when it starts
and keeps that `Guard` to its end, so a hot swap (`deploy`) never changes the bundle of
a reply in flight: the swap is a single assignment, done only after the new bundle has
loaded and scored a probe text off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swisscheese.bundles import GuardBundle, load_bundle
from swisscheese.guard.pipeline import Guard, GuardedChatModel
from swisscheese.models.base import ChatModel
from swisscheese.serve.config import DEFAULT_MODEL, GatewayConfig
from swisscheese.serve.errors import APIError
from swisscheese.serve.fleet import StoreSync
from swisscheese.serve.metrics import GatewayMetrics
from swisscheese.serve.security import AdminAuth, KeyRing, RateLimiter, StoreRateLimiter
from swisscheese.store.decisions import (
    DecisionWriter,
    last_deployment_id,
    latest_deployment,
    open_gateway_store,
    query_deployments,
)
from swisscheese.store.keys import active_key_hashes, add_key
from swisscheese.store.reports import ReportStore

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger("swisscheese.serve")

PROBE = "What is two plus three?"


def load_backend(config: GatewayConfig) -> ChatModel:
    """The model the gateway serves: a local HF directory or an upstream endpoint."""
    from swisscheese.models import load_model

    if config.upstream:
        spec = config.upstream + (f"#{config.model}" if config.model else "")
        return load_model(spec, api_key=config.upstream_key, timeout=config.upstream_timeout_s,
                          max_retries=config.upstream_retries)
    from swisscheese.models.hf import check_model_dir

    path = config.model or DEFAULT_MODEL
    check_model_dir(path)  # before torch is imported: a wrong path fails in milliseconds
    return load_model(path)


def probe_bundle(bundle: GuardBundle) -> None:
    """Score one benign text with both layers, so a bundle whose classifiers cannot run
    is refused at deployment rather than blocking every request afterwards."""
    bundle.input_scores([PROBE])
    bundle.output_score("Two plus three is five.", PROBE)


def load_probe_check(config: GatewayConfig) -> int | None:
    """What `serve --workers` checks once before it spawns workers: the model directory
    (or nothing, for an upstream), the bundle (loaded and probed) and the reference file;
    returns the bundle's version."""
    if not config.upstream:
        from swisscheese.models.hf import check_model_dir

        check_model_dir(config.model or DEFAULT_MODEL)
    if config.references is not None and not Path(config.references).is_file():
        raise ValueError(f"{config.references}: cannot read the reference answers (no such "
                         "file)")
    if config.bundle is None:
        return None
    return GatewayState.load_probed(str(config.bundle)).version


class GatewayState:
    def __init__(self, config: GatewayConfig, model: ChatModel,
                 bundle: GuardBundle | None = None, *, owns_model: bool = True,
                 engine: Engine | None = None) -> None:
        self.config = config
        self.model = model
        self.owns_model = owns_model
        self.engine = engine if engine is not None else open_gateway_store(config.store)
        self.writer = DecisionWriter(self.engine)
        self.reports = ReportStore(self.engine)  # reported jailbreaks (admin API)
        self.deployment_id: int | None = None
        self.follow_from = config.follow_from
        self.bundle_path = str(config.bundle) if config.bundle else None
        bundle = self._initial_bundle(bundle)
        self.guard = self.make_guard(bundle)
        self.served_name = config.served_name or self._model_name()
        for key in config.api_keys:
            add_key(self.engine, key, label="config")
        self.keys = KeyRing(active_key_hashes(self.engine))
        if self.keys.open:
            log.warning("no API keys configured: the gateway's API is open to anyone who can "
                        "reach it")
        self.admin = AdminAuth(config.admin_key)
        self.limiter: RateLimiter | StoreRateLimiter = (
            StoreRateLimiter(self.engine, config.rate_per_s, config.rate_burst)
            if config.shared_limits else RateLimiter(config.rate_per_s, config.rate_burst))
        self.metrics = GatewayMetrics()
        self.metrics.bundle_version.set(bundle.version if bundle else 0)
        self.model_pool = ThreadPoolExecutor(config.max_concurrent_generations,
                                             thread_name_prefix="model")
        # Moderation calls run here so that a hung classifier can be timed out; twice the
        # model pool so that a few hung calls do not starve the others.
        self.guard_pool = ThreadPoolExecutor(2 * config.max_concurrent_generations + 2,
                                             thread_name_prefix="guard")
        self._deploy_lock = asyncio.Lock()
        self.references = self._references()
        self.sync = StoreSync(self, config.sync_interval_s)
        self.sync.start()

    def _initial_bundle(self, bundle: GuardBundle | None) -> GuardBundle | None:
        """The bundle to start on. A worker of `serve --workers` serves the store's current
        deployment (so a restarted one serves what the others serve); a gateway started
        with a bundle path records that start as a deployment, which other gateways on the
        store follow; a bundle object (tests, benchmarks) is served as given."""
        c = self.config
        if c.follow_from is not None:
            dep = latest_deployment(self.engine, c.follow_from)
            if dep is not None:
                self.bundle_path, self.deployment_id = dep["path"], int(dep["id"])
                return self.load_probed(dep["path"])
        if bundle is None and c.bundle is not None:
            bundle = self.load_probed(str(c.bundle))
            if c.follow_from is None:
                self.deployment_id = self.writer.deployment(str(c.bundle), True, bundle.version,
                                                            None)
                self.follow_from = self.deployment_id
        if self.follow_from is None:
            self.follow_from = last_deployment_id(self.engine) + 1
        return bundle

    @staticmethod
    def load_probed(path: str) -> GuardBundle:
        bundle = load_bundle(path)
        probe_bundle(bundle)
        return bundle

    def swap(self, bundle: GuardBundle, path: str, deployment_id: int | None) -> None:
        """Serve `bundle` from now on; requests that already hold the old Guard keep it."""
        self.guard = self.make_guard(bundle)
        self.bundle_path = path
        self.deployment_id = deployment_id
        self.metrics.bundle_version.set(bundle.version)

    def _model_name(self) -> str:
        if self.config.upstream and self.config.model:
            return self.config.model
        return str(self.model.name)

    def _references(self) -> Mapping[str, str] | None:
        path = self.config.references
        if path is None:
            return None
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read the reference answers ({e})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError(f"{path}: reference answers must be a JSON object of hazard id "
                             "-> answer text")
        return data

    def make_guard(self, bundle: GuardBundle | None) -> Guard:
        c = self.config
        return Guard(bundle, input_layer=c.input_layer, output_layer=c.output_layer,
                     hold_back=c.hold_back, refusal=c.refusal, calm_below=c.calm_below)

    @property
    def bundle_version(self) -> int | None:
        b = self.guard.bundle
        return b.version if b is not None else None

    def bundle_info(self) -> dict[str, Any]:
        b = self.guard.bundle
        return {
            "version": b.version if b else None,
            "path": self.bundle_path,
            "created": b.created if b else None,
            "parent_version": b.parent_version if b else None,
            "thresholds": dict(b.thresholds) if b else None,
            "constitution_hash": b.constitution.content_hash() if b else None,
            "layers": self.guard.layers,
            "hold_back": self.guard.hold_back,
            "calm_below": self.guard.calm_below,
        }

    def deployments(self) -> list[dict[str, Any]]:
        return query_deployments(self.engine)

    async def deploy(self, path: str) -> dict[str, Any]:
        """Load, probe and switch to the bundle at `path`; refuse it and keep the old one
        when anything fails."""
        async with self._deploy_lock:
            t0 = time.perf_counter()
            previous = self.bundle_version
            try:
                bundle = await asyncio.to_thread(self.load_probed, path)
            except Exception as e:  # noqa: BLE001 - any failure refuses the bundle
                message = str(e) or type(e).__name__
                await asyncio.to_thread(self.writer.deployment, path, False, None, previous,
                                        message)
                self.metrics.deployments.labels("refused").inc()
                raise APIError(422, f"bundle {path} refused: {message}; the gateway keeps "
                               f"bundle version {previous}", "invalid_request_error",
                               param="path", code="invalid_bundle") from None
            # Recorded first, then swapped: the other workers follow the record, so this
            # worker never serves a bundle the store does not know of.
            await asyncio.to_thread(self._record_and_swap, bundle, path, previous)
            self.metrics.deployments.labels("deployed").inc()
            log.info("deployed guard bundle version %s from %s (was %s)", bundle.version, path,
                     previous)
            return {"deployed": True, "previous_version": previous,
                    "took_ms": round((time.perf_counter() - t0) * 1000, 1), **self.bundle_info()}

    def _record_and_swap(self, bundle: GuardBundle, path: str, previous: int | None) -> None:
        with self.sync.lock:  # the sync thread must not see the row before the swap
            dep_id = self.writer.deployment(path, True, bundle.version, previous)
            self.swap(bundle, path, dep_id)
        self.sync.beat()

    def current_guarded(self) -> GuardedChatModel:
        """The deployed guard around the served model (a new wrapper: its `last_decision`
        belongs to its caller alone)."""
        return GuardedChatModel(self.model, self.guard, name=self.served_name)

    def challenge_deps(self) -> Any:
        """What the challenge page needs from the gateway (`challenge.ChallengeDeps`)."""
        from swisscheese.serve.challenge import ChallengeDeps
        from swisscheese.world import World

        return ChallengeDeps(current_guarded=self.current_guarded,
                             store_path=self.config.store, world=World(seed=self._world_seed()),
                             references=self.references,
                             max_new_tokens=self.config.default_max_tokens,
                             operator_check=self.admin.check, executor=self.model_pool,
                             classifier_timeout_s=self.config.classifier_timeout_s)

    def _world_seed(self) -> int:
        """The world the served organism was trained on (its model card), else seed 0."""
        path = getattr(self.model, "path", None)
        if path is not None:
            from swisscheese.organism.train import read_card

            try:
                card = read_card(path) or {}
            except (OSError, ValueError):
                card = {}
            return int(card.get("world_seed", 0))
        return 0

    def close(self) -> None:
        self.sync.stop()
        self.model_pool.shutdown(wait=False, cancel_futures=True)
        self.guard_pool.shutdown(wait=False, cancel_futures=True)
        self.writer.close()
        self.engine.dispose()
        close = getattr(self.model, "close", None)
        if self.owns_model and callable(close):
            close()
