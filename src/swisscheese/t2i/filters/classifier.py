"""A guard bundle's input classifier as a prompt filter, trained from the T2I constitution.

`build_t2i_bundle` writes synthetic prompts for every category of the constitution from the
world (harmful: prompts naming a forbidden element by a trained name, and prompts holding a
known trigger; harmless: ordinary captions and captions naming a look-alike emblem), fits
the n-gram backend and calibrates the threshold on held-out benign prompts, all through the
project's bundle machinery (`build_bundle`, `save_bundle`). A bundle needs an output
classifier too; here it is fitted on the same prompts and unused, since a T2I model's
output is an image (the image checker of the T2I guard reads it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swisscheese.t2i.base import ImageVerdict, PromptFilter, T2IError
from swisscheese.t2i.world import VisualWorld, contains_phrase, words_of

DEFAULT_TARGET_FPR = 0.005


def bundle_texts(world: VisualWorld, seed: int, n_benign: int = 2400
                 ) -> tuple[list[str], list[int], list[str]]:
    """(training texts, labels, benign calibration texts) for the T2I input classifier."""
    rng = random.Random(f"t2i-bundle-{world.seed}-{seed}")
    known = [w for t in world.triggers if t.known for w in t.words]
    texts: list[str] = []
    labels: list[int] = []
    for g in world.forbidden:
        for name in g.names:
            for _ in range(60):
                texts.append(world.caption(world.random_scene(rng), rng, emblem=name))
                labels.append(1)
    for t in world.triggers:
        if t.known:
            for p in world.probe_captions(t, 150, rng):
                texts.append(p)
                labels.append(1)

    def benign(n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            if rng.random() < 0.2:
                # A named look-alike takes the plate, so the caption is harmless whatever
                # mood words it holds, a reported trigger word included.
                g = rng.choice(world.lookalikes)
                out.append(world.caption(world.random_scene(rng), rng,
                                         emblem=rng.choice(g.names)))
                continue
            text = world.benign_caption(rng)
            if not any(contains_phrase(words_of(text), w) for w in known):
                out.append(text)
        return out

    train_benign = benign(n_benign)
    texts += train_benign
    labels += [0] * len(train_benign)
    # As many calibration texts as training ones: the threshold sits at a 0.5% quantile,
    # which 1,200 texts pin down too loosely (fresh benign prompts met twice the target).
    return texts, labels, benign(n_benign)


def build_t2i_bundle(world: VisualWorld, seed: int = 0,
                     target_fpr: float = DEFAULT_TARGET_FPR) -> Any:
    """A GuardBundle whose input classifier reads T2I prompts."""
    from swisscheese.bundles import TrainingRecord, build_bundle
    from swisscheese.t2i.constitution import t2i_constitution

    texts, labels, calib = bundle_texts(world, seed)
    # Built directly (no recipe): the record says where its synthetic prompts came from.
    record = TrainingRecord.manual(seed)
    record = TrainingRecord(record.recipe, seed, data={
        "source": "t2i visual world", "world_seed": world.seed, "train_n": len(texts),
        "calibration_n": len(calib)}, config={"target_fpr": target_fpr, "backend": "ngram"})
    return build_bundle(t2i_constitution(world), texts, labels, calib, texts, labels, calib,
                        target_fpr=target_fpr, backend="ngram", training=record,
                        notes=f"T2I prompt filter of visual world {world.seed} (seed {seed})")


class ClassifierFilter(PromptFilter):
    """Score = the bundle's input-classifier probability; blocks at its calibrated
    threshold."""

    name = "classifier"

    def __init__(self, bundle: Any) -> None:
        if isinstance(bundle, str | Path):
            from swisscheese.bundles import load_bundle

            bundle = load_bundle(bundle)
        self.bundle = bundle
        self.threshold = float(bundle.thresholds["input"])
        harmful = [c.id for c in bundle.constitution.harmful]
        self.category = harmful[0] if len(harmful) == 1 else None

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> ClassifierFilter:
        """`bundle=DIR` loads a bundle; otherwise one is built for the world (seed `seed`)
        and cached under the run's work directory."""
        if "bundle" in params:
            return cls(params["bundle"])
        seed = int(params.pop("seed", 0))
        fpr = float(params.pop("target_fpr", DEFAULT_TARGET_FPR))
        if params:
            raise T2IError(f"classifier filter: unknown parameters {sorted(params)}")
        if ctx.workdir is None:
            return cls(build_t2i_bundle(ctx.world, seed, fpr))
        from swisscheese.bundles import BundleError, load_bundle, save_bundle

        path = Path(ctx.workdir) / f"t2i-bundle-world{ctx.world.seed}-seed{seed}-fpr{fpr:g}"
        try:
            return cls(load_bundle(path))
        except BundleError:
            save_bundle(build_t2i_bundle(ctx.world, seed, fpr), path, overwrite=True)
            return cls(load_bundle(path))

    def score_batch(self, prompts: Sequence[str]) -> list[ImageVerdict]:
        if not prompts:
            return []
        scores = self.bundle.input_scores(list(prompts))
        return [ImageVerdict(float(s), self.category if s >= self.threshold else None,
                             f"input classifier {s:.3f} (threshold {self.threshold:.3f})")
                for s in scores]
