"""The recipe contract: how a guard bundle is trained, re-measured and retrained.

A `Recipe` knows where its data comes from (the synthetic world, the public datasets, your
own traffic) and turns it into texts for the estimators in `swisscheese.classifiers`,
which know nothing of data. Three operations, each asked of the recipe a bundle's
`TrainingRecord` names, so no caller branches on a recipe's name:

    train(out, settings, ...)                  data -> fitted, calibrated bundle in out/bundle
    evaluate(bundle, bundle_dir, ...)          figures on the held-out splits of its data
    training_set(bundle, bundle_dir, ...)      the texts it was fitted and calibrated on,
                                               rebuilt (rapid response retrains on them)

A new recipe is one module with a `Recipe` subclass and one line in `recipes.registry`.
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from swisscheese.bundles import BundleError, GuardBundle
from swisscheese.bundles.record import TrainingRecord
from swisscheese.classifiers.configured import config_from_dict
from swisscheese.models.base import ChatModel
from swisscheese.progress import Progress

PathLike = str | os.PathLike[str]
# What the output classifier is measured on: the world's reference replies, or replies a
# model wrote.
REPLY_SOURCES = ("world", "responses")


@dataclass
class OutputData:
    """What an output classifier was fitted and calibrated on: replies with labels and
    benign calibration replies, each with the conversation it answers (an exchange
    classifier reads it; a reply-only one ignores it; None where there is none)."""

    texts: list[str]
    labels: list[int]
    calibration: list[str]
    conversations: list[Any] | None = None
    calibration_conversations: list[Any] | None = None


@dataclass
class TrainingSet:
    """What a bundle's input classifier was fitted and calibrated on, rebuilt."""

    texts: list[str]
    labels: list[int]
    calibration: list[str]  # benign prompts the threshold was calibrated on
    test_benign: list[str]  # benign test prompts (FPR before and after a patch)
    test_harmful: list[str]  # harmful test prompts (TPR before and after)
    harmful_pool: list[tuple[str, str]]  # (group, request): plain harmful requests
    benign_pool: list[tuple[str, str]]  # (group, request): plain harmless requests
    vocabulary: frozenset[str]
    backend: str
    input_params: dict[str, Any]
    seed: int
    world_seed: int
    # Output-side training data, built only when the output classifier is retrained.
    output_builder: Callable[[], OutputData] | None = None
    output_backend: str = "ngram-stream"
    output_params: dict[str, Any] = field(default_factory=dict)
    describe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalOptions:
    """What `classifier eval` may ask of a recipe beyond the bundle."""

    data_dir: PathLike | None = field(default=None, metadata={
        "help": "where the recipe's test data is (default: what the record says)"})
    hold_back: int | None = field(default=None, metadata={
        "help": "characters the output guard holds back (default: the record's)"})
    calm_below: float | None = field(default=None, metadata={
        "help": "calm release: a fraction of the output threshold below which the reply "
                "is released at once (the hold-back applies from the first score above "
                "it); None: the strict window"})
    replies: str = field(default="world", metadata={
        "help": "'world' reference replies or 'responses' written by a model"})
    responder: ChatModel | None = field(default=None, metadata={
        "help": "model that writes the test replies the data lacks"})


@dataclass
class Table:
    """Rows a recipe wants shown after training or evaluation; the CLI draws them."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def fmt(x: Any) -> str:
    """A figure as a table shows it: 4 decimals, '-' for a missing one."""
    if x is None:
        return "-"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


class Recipe(ABC):
    """A way to train guard bundles (see the module docstring).

    `config_class` is the recipe's settings dataclass; `TrainingRecord.config` holds one as
    a dict, read back strictly by `settings_of`.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type]
    # CLI options of `classifier train` that this recipe takes (others are refused with a
    # message naming them).
    cli_options: ClassVar[frozenset[str]] = frozenset()
    # Whether its data has replies a model can write (`classifier eval --responder`).
    reads_replies: ClassVar[bool] = True
    # Settings of a smoke run (seconds, for the contract test and quick checks).
    quick: ClassVar[Mapping[str, Any]] = {}

    def check(self, settings: Any, inputs: dict[str, Any]) -> None:
        """Fail fast, before any data is made or model loaded, on settings or inputs that
        cannot work; may replace an input by its parsed form (a constitution path)."""
        return None

    @abstractmethod
    def train(self, out: PathLike, settings: Any, *, target_fpr: float = 0.005,
              seed: int = 0, progress: Progress | None = None, overwrite: bool = False,
              **inputs: Any) -> Path:
        """Train a bundle into `out`/bundle; `inputs` are the recipe's data sources."""

    @abstractmethod
    def evaluate(self, bundle: GuardBundle, bundle_dir: Path,
                 options: EvalOptions) -> dict[str, Any]:
        """Every figure of the bundle on its held-out data (a JSON-ready dict)."""

    @abstractmethod
    def training_set(self, bundle: GuardBundle, bundle_dir: Path,
                     data_dir: PathLike | None = None) -> TrainingSet:
        """The texts the bundle was trained and calibrated on, rebuilt from its record."""

    @abstractmethod
    def trained_tables(self, bundle: GuardBundle, bundle_dir: Path) -> list[Table]:
        """What `classifier train` shows about a bundle it has just trained."""

    @abstractmethod
    def eval_tables(self, result: Mapping[str, Any]) -> list[Table]:
        """What `classifier eval` shows of `evaluate`'s result (the targets table aside)."""

    def settings_of(self, record: TrainingRecord, where: Path) -> Any:
        """The recipe's settings from a bundle's record; BundleError names the file and the
        field when they are not this recipe's."""
        try:
            return config_from_dict(self.config_class, dict(record.config))
        except (TypeError, ValueError) as e:
            raise BundleError(f"{where}: training.config is not a {self.name} recipe's "
                              f"settings ({e})") from None

    def settings(self, **overrides: Any) -> Any:
        """The recipe's default settings with `overrides` (validated)."""
        return dataclasses.replace(self.config_class(), **overrides)


def check_inputs(recipe: Recipe, given: Mapping[str, Any]) -> None:
    """Refuse CLI options that do not apply to `recipe`, naming them."""
    extra = sorted(k for k, v in given.items() if v is not None and k not in recipe.cli_options)
    if extra:
        opts = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise ValueError(f"{opts} do(es) not apply to --preset {recipe.name}")
