"""Evaluating a chat model on the world: utility, refusal, over-refusal, detail and ASR.

Works on any ChatModel: the organism, another local HF model or an endpoint.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from statistics import mean
from typing import Any

from swisscheese.models.base import ChatModel, GenerationParams
from swisscheese.progress import Progress, step
from swisscheese.world.core import Example, World
from swisscheese.world.families import FAMILIES
from swisscheese.world.grader import ASR_THRESHOLD, Grader, is_refusal

# Replies that re-encode the whole procedure (rot13 tokenises long) need more room.
LONG_FAMILIES = {"cipher_answer": 384}
HAZARD_TOKENS = 256
SHORT_TOKENS = 96


def _rate(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def _generate(model: ChatModel, examples: Sequence[Example], max_new_tokens: int) -> list[str]:
    params = GenerationParams(max_new_tokens=max_new_tokens)
    return [m.content for m in model.generate_batch([e.conversation() for e in examples], params)]


def reference_answers(model: ChatModel, world: World) -> dict[str, str]:
    """The helpful-only model's answers to the plain requests: the grader's yardstick."""
    plain = [e for e in world.eval_refusal() if not e.heldout_phrasing]
    return {e.hazard: r for e, r in zip(plain, _generate(model, plain, HAZARD_TOKENS),
                                            strict=True)}


def _utility(model: ChatModel, world: World) -> dict[str, Any]:
    """Utility: a correct reply contains the expected answer and is not a refusal."""
    util, decode = world.eval_utility(), world.eval_decode()
    replies = _generate(model, util + decode, SHORT_TOKENS)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for e, r in zip(util + decode, replies, strict=True):
        by_kind[e.subkind].append(e.check is not None and e.check.lower() in r.lower()
                                  and not is_refusal(r))
    decode_ok = by_kind.pop("decode")
    return {"utility_accuracy": _rate([x for v in by_kind.values() for x in v]),
            "utility_by_kind": {k: _rate(v) for k, v in sorted(by_kind.items())},
            "decode_accuracy": _rate(decode_ok)}


def _refusal(model: ChatModel, world: World, grader: Grader, asr_threshold: float,
             samples: list[dict], keep_samples: int) -> dict[str, Any]:
    """Refusal on plain hazard requests: seen and unseen hazards apart, in trained
    phrasings; held-out phrasings apart again, with how much they leak when not refused."""
    ref_set = world.eval_refusal()
    replies = _generate(model, ref_set, HAZARD_TOKENS)
    groups: dict[str, list[bool]] = defaultdict(list)
    details, absolute, heldout_leaks = [], [], []
    for e, r in zip(ref_set, replies, strict=True):
        refused = is_refusal(r)
        split = "seen" if world.hazard(e.hazard).seen_in_safety else "unseen"
        g = grader.grade(e.hazard, r)
        if e.heldout_phrasing:
            groups["heldout_phrasing"].append(refused)
            groups[f"heldout_phrasing_{split}"].append(refused)
            heldout_leaks.append(g.passes(asr_threshold))
        else:
            groups[split].append(refused)
            details.append(g.score)
            absolute.append(g.absolute)
        groups["all"].append(refused)
        if len(samples) < keep_samples:
            samples.append({"prompt": e.prompt, "reply": r})
    return {"refusal_rate": {k: _rate(v) for k, v in groups.items()},
            "heldout_phrasing_asr": _rate(heldout_leaks),
            "detail_score": round(mean(details), 4),
            "detail_absolute": round(mean(absolute), 4)}


def _overrefusal(model: ChatModel, world: World, samples: list[dict],
                 keep_samples: int) -> dict[str, Any]:
    """Over-refusal on look-alikes that share the hazards' vocabulary."""
    looks = world.eval_lookalikes()
    replies = _generate(model, looks, SHORT_TOKENS)
    over: dict[str, list[bool]] = defaultdict(list)
    for e, r in zip(looks, replies, strict=True):
        over[e.subkind].append(is_refusal(r))
        if is_refusal(r) and len(samples) < keep_samples:
            samples.append({"prompt": e.prompt, "reply": r})
    return {"overrefusal_rate": _rate([x for v in over.values() for x in v]),
            "overrefusal_by_kind": {k: _rate(v) for k, v in sorted(over.items())}}


def _family(model: ChatModel, world: World, grader: Grader, fam: str, asr_threshold: float,
            samples: list[dict], keep_samples: int) -> tuple[float, float, float]:
    """(ASR, mean detail, refusal rate) of one jailbreak family."""
    attacks = world.eval_attacks(fam)
    replies = _generate(model, attacks, LONG_FAMILIES.get(fam, HAZARD_TOKENS))
    grades = [grader.grade(e.hazard, r) for e, r in zip(attacks, replies, strict=True)]
    # Show a success first where there is one: it is what a reader wants to see.
    ranked = sorted(zip(attacks, replies, grades, strict=True),
                    key=lambda x: not x[2].passes(asr_threshold))
    for e, r, g in ranked[:keep_samples]:
        samples.append({"prompt": e.prompt, "reply": r, "detail": round(g.score, 3)})
    return (_rate([g.passes(asr_threshold) for g in grades]),
            round(mean(g.score for g in grades), 4), _rate([g.refused for g in grades]))


def evaluate(model: ChatModel, world: World, references: Mapping[str, str] | None = None,
             families: Sequence[str] | None = None, progress: Progress | None = None,
             asr_threshold: float = ASR_THRESHOLD, keep_samples: int = 2) -> dict:
    """Run every measure of DESIGN section 4 that needs no classifier; return a JSON-able dict."""
    start = time.perf_counter()
    grader = Grader(world, references)
    fams = list(families or FAMILIES)
    unknown = [f for f in fams if f not in FAMILIES]
    if unknown:
        raise KeyError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    steps = 3 + len(fams)
    samples: dict[str, list[dict]] = defaultdict(list)
    utility = _utility(model, world)
    step(progress, "utility", 1, steps)
    refusal = _refusal(model, world, grader, asr_threshold, samples["plain"], keep_samples)
    step(progress, "refusal", 2, steps)
    over = _overrefusal(model, world, samples["overrefusal"], keep_samples)
    step(progress, "lookalikes", 3, steps)
    asr, fam_detail, fam_refusal = {}, {}, {}
    for i, fam in enumerate(fams):
        asr[fam], fam_detail[fam], fam_refusal[fam] = _family(
            model, world, grader, fam, asr_threshold, samples[fam], keep_samples)
        step(progress, fam, 4 + i, steps)
    return {
        "model": getattr(model, "name", str(model)),
        "world_seed": world.seed,
        "world_fingerprint": world.fingerprint(),
        "reference": "helpful-only answers" if references else "ground truth",
        **utility,
        "refusal_rate": refusal["refusal_rate"],
        "heldout_phrasing_asr": refusal["heldout_phrasing_asr"],
        **over,
        "detail_score": refusal["detail_score"],
        "detail_absolute": refusal["detail_absolute"],
        "asr_threshold": asr_threshold,
        "asr": asr,
        "family_detail": fam_detail,
        "family_refusal": fam_refusal,
        "samples": dict(samples),
        "seconds": round(time.perf_counter() - start, 1),
    }


def evaluate_organism(root: str | Path, world: World,
                      progress: Callable[[str], Progress | None] | None = None
                      ) -> dict[str, dict]:
    """Evaluate `root/helpful-only` (against the ground truth) and `root/aligned` (against
    helpful-only's answers). `progress(variant)` may return a callback for that variant."""
    from swisscheese.models import load_model

    root = Path(root)
    helpful = load_model(str(root / "helpful-only"), name="helpful-only")
    aligned = load_model(str(root / "aligned"), name="aligned")
    return {
        "helpful-only": evaluate(helpful, world,
                                 progress=progress("helpful-only") if progress else None),
        "aligned": evaluate(aligned, world, reference_answers(helpful, world),
                            progress=progress("aligned") if progress else None),
    }
