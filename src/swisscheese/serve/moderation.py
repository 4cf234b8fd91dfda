"""POST /v1/moderations: the classifiers alone, no model (a checks-only endpoint).

The OpenAI moderation shape, with two categories of our own: `harmful_request` (the input
classifier reading the text as a prompt) and `harmful_content` (the streaming output
classifier reading it as a reply, cumulative maximum, in the bundle's chunking). `flagged`
is true when either crosses its calibrated threshold. The `swisscheese` field adds the
thresholds and the bundle version.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from swisscheese.bundles import GuardBundle
from swisscheese.guard.normalize import normalize_text
from swisscheese.serve.errors import APIError
from swisscheese.serve.protocol import ModerationRequest
from swisscheese.serve.state import GatewayState
from swisscheese.store.decisions import DecisionRecord

MAX_INPUTS = 64


def _scores(bundle: GuardBundle, texts: list[str]) -> list[tuple[float, float]]:
    norm = [normalize_text(t) for t in texts]
    inputs = bundle.input_scores(norm)
    return [(float(i), bundle.output_score(t)) for i, t in zip(inputs, norm, strict=True)]


async def moderate(state: GatewayState, req: ModerationRequest,
                   key_id: str | None) -> dict[str, Any]:
    texts = req.texts()
    if not texts or len(texts) > MAX_INPUTS:
        raise APIError(400, f"'input' must hold 1 to {MAX_INPUTS} texts, got {len(texts)}",
                       param="input")
    guard = state.guard
    bundle = guard.bundle
    if bundle is None:
        raise APIError(503, "no guard bundle is deployed, so there is nothing to classify "
                       "with; deploy one with `swisscheese bundle deploy`", "server_error",
                       code="no_bundle")
    budget = state.config.classifier_timeout_s
    loop = asyncio.get_running_loop()
    try:
        scores = await asyncio.wait_for(
            loop.run_in_executor(state.guard_pool, _scores, bundle, texts), budget)
    except TimeoutError:
        raise APIError(503, f"the classifiers did not answer within {budget:g} s; retry, or "
                       "send fewer or shorter texts", "server_error",
                       code="classifier_timeout") from None
    except Exception as e:  # noqa: BLE001 - a classifier failure is the server's, not the client's
        raise APIError(500, f"the classifiers failed ({type(e).__name__}); see the gateway "
                       "log", "server_error", code="classifier_error") from None
    mid = "modr-" + uuid.uuid4().hex
    results = []
    for i, (text, (s_in, s_out)) in enumerate(zip(texts, scores, strict=True)):
        cats = {"harmful_request": bundle.flag_input(s_in),
                "harmful_content": bundle.flag_output(s_out)}
        flagged = any(cats.values())
        results.append({
            "flagged": flagged, "categories": cats,
            "category_scores": {"harmful_request": s_in, "harmful_content": s_out},
            "swisscheese": {"input_score": s_in, "output_score": s_out,
                            "thresholds": dict(bundle.thresholds),
                            "bundle_version": bundle.version},
        })
        state.writer.record(DecisionRecord(
            id=f"{mid}-{i}", endpoint="moderations", conversation=[{"role": "user",
                                                                     "content": text}],
            status="flagged" if flagged else "ok", key_id=key_id, model=req.model,
            blocked=flagged, layer=("input" if cats["harmful_request"] else "output")
            if flagged else None, input_score=s_in, output_score=s_out,
            bundle_version=bundle.version))
    return {"id": mid, "model": req.model or f"swisscheese-guard-v{bundle.version}",
            "results": results}
