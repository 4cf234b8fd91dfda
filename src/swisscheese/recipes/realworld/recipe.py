"""The `realworld` recipe: an input guard bundle trained on the public datasets."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from swisscheese.bundles import GuardBundle
from swisscheese.progress import Progress
from swisscheese.recipes.base import EvalOptions, PathLike, Recipe, Table, TrainingSet
from swisscheese.recipes.realworld.data import check_datasets_dir, load_realworld
from swisscheese.recipes.realworld.evaluate import (
    figure_lines,
    realworld_eval_result,
    resolve_datasets_dir,
)
from swisscheese.recipes.realworld.texts import (
    RealWorldConfig,
    augment_converters,
    input_training_texts,
)
from swisscheese.recipes.realworld.train import train_realworld

_WORD = re.compile(r"[a-z0-9']+")


class RealWorldRecipe(Recipe):
    """Bundles trained on ../shared/datasets (`RealWorldConfig`); see `train`."""

    name: ClassVar[str] = "realworld"
    config_class: ClassVar[type] = RealWorldConfig
    cli_options: ClassVar[frozenset[str]] = frozenset({
        "datasets", "limit", "heldout", "augment", "backend", "model_dir"})
    # The n-gram for the smoke run: seconds (the encoder path has its own tests, on a tiny
    # random BERT, and the benchmark on the real MiniLM).
    quick: ClassVar[Mapping[str, Any]] = {"limit": 30, "augment": 1, "backend": "ngram"}

    reads_replies: ClassVar[bool] = False

    def check(self, settings: Any, inputs: dict[str, Any]) -> None:
        if inputs.get("model_dir") is not None and not settings.backend.startswith("encoder"):
            raise ValueError(f"--model-dir applies to the encoder backend, not --backend "
                             f"{settings.backend}")
        check_datasets_dir(inputs.get("datasets"))
        augment_converters(inputs.get("heldout") or ())

    @staticmethod
    def with_model_dir(settings: RealWorldConfig, model_dir: str | None) -> RealWorldConfig:
        """`settings` whose input and output encoders read `model_dir` (recorded with the
        settings, so rapid response rebuilds on the same encoder)."""
        if model_dir is None:
            return settings
        return dataclasses.replace(
            settings, input_params={**settings.input_params, "model_dir": model_dir},
            output_params={**settings.output_params, "model_dir": model_dir})

    def train(self, out: PathLike, settings: Any, *, target_fpr: float = 0.005,
              seed: int = 0, progress: Progress | None = None, overwrite: bool = False,
              **inputs: Any) -> Path:
        """`inputs`: datasets (the datasets directory), heldout, model_dir (a local
        encoder directory instead of the packaged MiniLM)."""
        return train_realworld(out, inputs.get("datasets"),
                               config=self.with_model_dir(settings, inputs.get("model_dir")),
                               target_fpr=target_fpr, heldout=inputs.get("heldout"),
                               seed=seed, overwrite=overwrite, progress=progress)

    def evaluate(self, bundle: GuardBundle, bundle_dir: Path,
                 options: EvalOptions) -> dict[str, Any]:
        given = [name for name, v in (("a responder", options.responder),
                                      ("hold_back", options.hold_back),
                                      ("calm_below", options.calm_below)) if v is not None]
        if options.replies != "world":
            given.append(f"replies={options.replies!r}")
        if given:
            raise ValueError(f"{' and '.join(given)} do(es) not apply to realworld bundle "
                             f"{bundle_dir}: the public datasets hold no model replies to "
                             "stream")
        settings = self.settings_of(bundle.training, bundle_dir / "bundle.json")
        return realworld_eval_result(bundle, bundle_dir, settings, options.data_dir)

    def training_set(self, bundle: GuardBundle, bundle_dir: Path,
                     data_dir: PathLike | None = None) -> TrainingSet:
        """The input training set of a realworld bundle, rebuilt for rapid response;
        `data_dir` is the datasets directory (default: the recorded one)."""
        record = bundle.training
        cfg: RealWorldConfig = self.settings_of(record, bundle_dir / "bundle.json")
        recorded = record.data.get("datasets_dir")
        d = resolve_datasets_dir(recorded if isinstance(recorded, str) else None, data_dir)
        held = list(record.heldout_families)
        data = load_realworld(d, limit=cfg.limit, seed=record.seed)
        x, y = input_training_texts(data, cfg.augment, held, record.seed)
        vocab = frozenset(w for t in data.train_harmful + data.train_benign[:2000]
                          for w in _WORD.findall(t.lower()))
        return TrainingSet(
            texts=x, labels=y, calibration=data.calibration, test_benign=data.test_benign,
            test_harmful=data.test_harmful + data.test_jbb_harmful,
            harmful_pool=list(zip(data.train_harmful_groups, data.train_harmful, strict=True)),
            benign_pool=[(t, t) for t in data.train_benign[:4000]],
            vocabulary=vocab, backend=bundle.input.name,
            input_params=cfg.input_kwargs(record.seed), seed=record.seed,
            world_seed=0, output_backend=bundle.output.name,
            output_params={"seed": record.seed, **cfg.output_params},
            describe={"datasets": str(d), "heldout_families": held})

    # ---- what the CLI shows ---------------------------------------------------------------
    def trained_tables(self, bundle: GuardBundle, bundle_dir: Path) -> list[Table]:
        rows = [list(r) for r in figure_lines(bundle.metrics["realworld"])]
        return [Table(f"realworld guard bundle v{bundle.version}: held-out figures (target "
                      f"FPR {bundle.target_fpr})", ["measure", "value"], rows,
                      [f"wrote {bundle_dir}"])]

    def eval_tables(self, result: Mapping[str, Any]) -> list[Table]:
        rows = [list(r) for r in figure_lines(result["realworld"])]
        notes = [f"output stop rate: {result['output']['note']}"]
        differ = result.get("recorded_figures_differ")
        if differ:
            notes.append(f"differs from the figures recorded at training: {', '.join(differ)}")
        elif differ is not None:
            notes.append("figures equal those recorded at training")
        return [Table(f"realworld bundle v{result['bundle_version']} on {result['data']} "
                      "(held-out splits)", ["measure", "value"], rows, notes)]
