"""`evaluate_bundle`: every figure of a guard bundle on its held-out data, by its recipe.

    result = evaluate_bundle("runs/classifier/bundle")    # a JSON-ready dict

The bundle's training record names the recipe that trained it; the recipe rebuilds the
test split and measures (see `recipes.organism.evaluate` and `recipes.realworld.evaluate`
for what each figure means). `targets` compares the figures with the goals and `passed`
says whether all are met.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swisscheese.bundles import load_bundle, read_meta
from swisscheese.bundles.record import TrainingRecord
from swisscheese.models.base import ChatModel
from swisscheese.recipes.base import EvalOptions, PathLike
from swisscheese.recipes.registry import recipe_of


def evaluate_bundle(bundle_dir: PathLike, data_dir: PathLike | None = None,
                    hold_back: int | None = None, *, replies: str = "world",
                    responder: ChatModel | None = None,
                    recipe: str | None = None,
                    calm_below: float | None = None) -> dict[str, Any]:
    """Every figure of a bundle on the test split of its data, and the targets.

    `data_dir` defaults to the data the record names; `hold_back` to the window the
    record holds. `replies` "responses" measures the output classifier on model-written
    replies (`responder` writes missing ones). `recipe` names the recipe for a bundle built
    by hand (training record "manual"); it must not contradict the record otherwise.
    `calm_below` measures the output layer under calm release (see `EvalOptions`).
    """
    bdir = Path(bundle_dir)
    bundle = load_bundle(bdir)
    trained_by = bundle.training.recipe
    if recipe is not None and not bundle.training.is_manual and recipe != trained_by:
        raise ValueError(f"{bdir / 'bundle.json'}: trained by recipe "
                         f"{trained_by!r}, not {recipe!r}")
    options = EvalOptions(data_dir=data_dir, hold_back=hold_back, replies=replies,
                          responder=responder, calm_below=calm_below)
    return recipe_of(bundle, bdir, recipe).evaluate(bundle, bdir, options)


def recorded_recipe(bundle_dir: PathLike) -> str | None:
    """The recipe a bundle's bundle.json records, read without loading the classifiers
    (None when the file cannot be read: `load_bundle` reports that)."""
    try:
        meta = read_meta(bundle_dir)
        if meta["format_version"] == 1:
            return TrainingRecord.from_v1_metrics(meta["metrics"], "")[0].recipe
        return TrainingRecord.from_dict(meta["training"], "").recipe
    except (ValueError, KeyError, TypeError):
        return None
