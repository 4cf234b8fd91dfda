"""What one gateway holds for its whole life: the model, the deployed guard, the store,
keys, limits, metrics, and the worker pools.

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
from typing import Any

from swisscheese.bundles import GuardBundle, load_bundle
from swisscheese.guard.pipeline import Guard, GuardedChatModel
from swisscheese.models.base import ChatModel
from swisscheese.serve.config import DEFAULT_MODEL, GatewayConfig
from swisscheese.serve.errors import APIError
from swisscheese.serve.metrics import GatewayMetrics
from swisscheese.serve.security import AdminAuth, KeyRing, RateLimiter
from swisscheese.store.decisions import DecisionWriter, query_deployments
from swisscheese.store.keys import active_key_hashes, add_key

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


class GatewayState:
    def __init__(self, config: GatewayConfig, model: ChatModel,
                 bundle: GuardBundle | None = None, *, owns_model: bool = True) -> None:
        self.config = config
        self.model = model
        self.owns_model = owns_model
        if bundle is None and config.bundle is not None:
            bundle = load_bundle(config.bundle)
            probe_bundle(bundle)
        self.guard = self.make_guard(bundle)
        self.bundle_path = str(config.bundle) if config.bundle else None
        self.served_name = config.served_name or self._model_name()
        self.writer = DecisionWriter(config.store)
        with self.writer.lock() as conn:
            for key in config.api_keys:
                add_key(conn, key, label="config")
            hashes = active_key_hashes(conn)
        self.keys = KeyRing(hashes)
        if self.keys.open:
            log.warning("no API keys configured: the gateway's API is open to anyone who can "
                        "reach it")
        self.admin = AdminAuth(config.admin_key)
        self.limiter = RateLimiter(config.rate_per_s, config.rate_burst)
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
        with self.writer.lock() as conn:
            return query_deployments(conn)

    async def deploy(self, path: str) -> dict[str, Any]:
        """Load, probe and switch to the bundle at `path`; refuse it and keep the old one
        when anything fails."""
        async with self._deploy_lock:
            t0 = time.perf_counter()
            previous = self.bundle_version
            try:
                bundle = await asyncio.to_thread(load_bundle, path)
                await asyncio.to_thread(probe_bundle, bundle)
            except Exception as e:  # noqa: BLE001 - any failure refuses the bundle
                message = str(e) or type(e).__name__
                await asyncio.to_thread(self.writer.deployment, path, False, None, previous,
                                        message)
                self.metrics.deployments.labels("refused").inc()
                raise APIError(422, f"bundle {path} refused: {message}; the gateway keeps "
                               f"bundle version {previous}", "invalid_request_error",
                               param="path", code="invalid_bundle") from None
            # The swap: requests that already hold the old Guard keep it.
            self.guard = self.make_guard(bundle)
            self.bundle_path = path
            self.metrics.bundle_version.set(bundle.version)
            self.metrics.deployments.labels("deployed").inc()
            await asyncio.to_thread(self.writer.deployment, path, True, bundle.version,
                                    previous)
            log.info("deployed guard bundle version %s from %s (was %s)", bundle.version, path,
                     previous)
            return {"deployed": True, "previous_version": previous,
                    "took_ms": round((time.perf_counter() - t0) * 1000, 1), **self.bundle_info()}

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
        self.model_pool.shutdown(wait=False, cancel_futures=True)
        self.guard_pool.shutdown(wait=False, cancel_futures=True)
        self.writer.close()
        close = getattr(self.model, "close", None)
        if self.owns_model and callable(close):
            close()
