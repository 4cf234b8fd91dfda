"""The recipe contract, for every registered recipe at its smoke-run settings: it trains a
bundle whose training record names it, measures that bundle on held-out data in the shape
`classifier eval` prints, and rebuilds the texts the bundle was fitted on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swisscheese.bundles import load_bundle
from swisscheese.recipes.base import EvalOptions, Recipe, TrainingSet
from swisscheese.recipes.registry import RECIPES, get_recipe
from swisscheese.recipes.targets import TARGETS

_TRAINED: dict[str, Path] = {}


@pytest.fixture(params=RECIPES.names())
def recipe(request: pytest.FixtureRequest) -> Recipe:
    r = get_recipe(request.param)
    try:
        r.check(r.settings(**r.quick), {})
    except (ValueError, FileNotFoundError) as e:  # a recipe whose data is not on this machine
        pytest.skip(f"recipe {r.name}: {e}")
    return r


@pytest.fixture
def trained(recipe: Recipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Trained once per recipe: the tests below only read the bundle.
    if recipe.name not in _TRAINED:
        out = tmp_path_factory.mktemp(f"recipe-{recipe.name}")
        _TRAINED[recipe.name] = recipe.train(out, recipe.settings(**recipe.quick), seed=1)
    return _TRAINED[recipe.name]


def test_a_recipe_is_named_and_documented(recipe: Recipe) -> None:
    assert RECIPES.get(recipe.name) is type(recipe)
    assert type(recipe).__doc__ and recipe.config_class.__doc__
    assert recipe.settings() == recipe.config_class()


def test_train_writes_a_bundle_whose_record_names_the_recipe(recipe: Recipe,
                                                             trained: Path) -> None:
    b = load_bundle(trained)
    assert b.training.recipe == recipe.name and b.training.seed == 1
    assert recipe.settings_of(b.training, trained / "bundle.json") == recipe.settings(
        **recipe.quick)
    for layer in ("input", "output"):
        assert b.metrics[layer]["calibration_fpr"] <= b.target_fpr


def test_evaluate_gives_the_common_figures_and_targets(recipe: Recipe, trained: Path) -> None:
    b = load_bundle(trained)
    result = recipe.evaluate(b, trained, EvalOptions())
    for section, key in {t[1] for t in TARGETS}:
        assert key in result[section], f"{recipe.name}: no {section}.{key}"
    assert result["targets"] and result["passed"] == all(
        t["pass"] for t in result["targets"].values())
    assert recipe.eval_tables(result) and recipe.trained_tables(b, trained)


def test_the_training_set_is_rebuilt_as_it_was_fitted(recipe: Recipe, trained: Path) -> None:
    b = load_bundle(trained)
    data = recipe.training_set(b, trained)
    assert isinstance(data, TrainingSet)
    assert len(data.texts) == len(data.labels) == b.metrics["input"]["train_n"]
    assert set(data.labels) == {0, 1} and data.calibration and data.harmful_pool
    assert data.backend == b.input.name
    # The calibration prompts are the ones the threshold was set on: the recorded FPR.
    flags = b.input_scores(data.calibration) >= b.thresholds["input"]
    assert float(np.mean(flags)) == pytest.approx(b.metrics["input"]["calibration_fpr"])
