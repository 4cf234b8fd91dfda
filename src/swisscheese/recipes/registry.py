"""The recipe registry: `classifier train --preset NAME`, `classifier eval` and `patch` ask
it for the recipe a bundle's training record names.

    >>> from swisscheese.recipes.registry import RECIPES
    >>> RECIPES.names()
    ['organism', 'realworld']

Add a recipe with `RECIPES.add_lazy("mine", "my_package.recipe:MyRecipe")` or the
`@RECIPES.register` decorator, or from another package through the entry-point group
`swisscheese.recipes`.
"""

from __future__ import annotations

from pathlib import Path

from swisscheese.bundles import BundleError, GuardBundle
from swisscheese.recipes.base import Recipe
from swisscheese.registry import Registry, UnknownPluginError

RECIPES: Registry[type[Recipe]] = Registry("recipe", Recipe,
                                           entry_point_group="swisscheese.recipes")
RECIPES.add_lazy("organism", "swisscheese.recipes.organism.recipe:OrganismRecipe")
RECIPES.add_lazy("realworld", "swisscheese.recipes.realworld.recipe:RealWorldRecipe")


def get_recipe(name: str) -> Recipe:
    """The recipe registered as `name` (an unknown name lists the registered ones)."""
    return RECIPES.create(name)  # type: ignore[no-any-return]


def recipe_of(bundle: GuardBundle, bundle_dir: Path, override: str | None = None) -> Recipe:
    """The recipe that trained `bundle` (or `override`); BundleError naming bundle.json
    when the record names no registered recipe, or the bundle was built by hand."""
    name = override or bundle.training.recipe
    where = bundle_dir / "bundle.json"
    if bundle.training.is_manual and override is None:
        raise BundleError(f"{where}: training.recipe is 'manual' (built with build_bundle, "
                          "not by a recipe): say which recipe's data to measure it on "
                          f"(--recipe NAME; registered: {', '.join(RECIPES.names())})")
    try:
        return get_recipe(name)
    except UnknownPluginError as e:
        raise BundleError(f"{where}: training.recipe: {e}") from None
