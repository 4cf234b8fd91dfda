"""The `organism` recipe: guard bundles trained on the synthetic world (see `train`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from swisscheese.bundles import GuardBundle, TrainingRecord
from swisscheese.data.generate import load_dataset, read_manifest
from swisscheese.data.records import PLAIN, Record
from swisscheese.progress import Progress
from swisscheese.recipes.base import (
    EvalOptions,
    OutputData,
    PathLike,
    Recipe,
    Table,
    TrainingSet,
    fmt,
)
from swisscheese.recipes.organism.evaluate import evaluate_organism, resolve_data_dir
from swisscheese.recipes.organism.train import (
    TrainConfig,
    backend_params,
    check_backend,
    check_data_constitution,
    input_training,
    merged_heldout,
    output_training,
    prompt_texts,
    resolve_constitution,
    train_bundle,
    world_seed_of,
)
from swisscheese.world.core import World

_WORDS = re.compile(r"[a-z]+")


def _plain(record: Record) -> bool:
    return record.family == PLAIN and len(record.messages) == 1


def _pool(records: list[Record], label: int) -> list[tuple[str, str]]:
    """(group, request) of the plain requests with `label`, one per request key."""
    seen: set[str] = set()
    out = []
    for r in records:
        if r.label == label and _plain(r) and r.key not in seen:
            seen.add(r.key)
            out.append((r.hazard_id or r.key, r.text))
    return out


class OrganismRecipe(Recipe):
    """Bundles trained on requests drawn from the synthetic world (`TrainConfig`)."""

    name: ClassVar[str] = "organism"
    config_class: ClassVar[type] = TrainConfig
    cli_options: ClassVar[frozenset[str]] = frozenset({
        "constitution", "data", "heldout", "responder", "n_per_category", "augment",
        "backend", "output_backend", "model_dir", "output_context", "input_heldout",
        "input_params", "output_params"})
    quick: ClassVar[Mapping[str, Any]] = {"n_per_category": 40, "augment": 1}

    def settings_of(self, record: TrainingRecord, where: Path) -> Any:
        """As the base does, except that a record written before open crafts existed
        (stop 25 and earlier) was trained without them, and one written before the output's
        first-user-message group (stop 26 and earlier) without that."""
        config = {"input_open_crafts": 0, "output_first_user": False, **dict(record.config)}
        return super().settings_of(replace(record, config=config), where)

    def check(self, settings: Any, inputs: dict[str, Any]) -> None:
        check_backend(settings)
        inputs["constitution"] = resolve_constitution(inputs.get("constitution"))

    def train(self, out: PathLike, settings: Any, *, target_fpr: float = 0.005,
              seed: int = 0, progress: Progress | None = None, overwrite: bool = False,
              **inputs: Any) -> Path:
        """`inputs`: constitution, data (a dataset directory), heldout, responder."""
        return train_bundle(out, inputs.get("constitution"), inputs.get("data"),
                            heldout=inputs.get("heldout"), target_fpr=target_fpr,
                            responder=inputs.get("responder"), seed=seed, progress=progress,
                            config=settings, overwrite=overwrite)

    def evaluate(self, bundle: GuardBundle, bundle_dir: Path,
                 options: EvalOptions) -> dict[str, Any]:
        settings = (None if bundle.training.is_manual
                    else self.settings_of(bundle.training, bundle_dir / "bundle.json"))
        return evaluate_organism(bundle, bundle_dir, settings, options)

    def training_set(self, bundle: GuardBundle, bundle_dir: Path,
                     data_dir: PathLike | None = None) -> TrainingSet:
        """Rebuild the training texts of a bundle written by `train_bundle` from the data
        directory its record names (or `data_dir`), the way it built them."""
        record = bundle.training
        cfg: TrainConfig = self.settings_of(record, bundle_dir / "bundle.json")
        seed = record.seed
        data = resolve_data_dir(bundle_dir, bundle, data_dir)
        manifest = read_manifest(data)
        check_data_constitution(data, manifest, bundle.constitution, f"bundle {bundle_dir}'s")
        splits = load_dataset(data)
        held = merged_heldout(manifest, record.heldout_families)
        world = World(seed=world_seed_of(manifest, cfg.world_seed))
        train = [r for r in splits["train"] if r.family not in set(held)]
        input_train = [r for r in train if r.family not in set(cfg.input_heldout)]
        in_x, in_y = input_training(input_train, world,
                                    list(manifest.get("converters") or []),
                                    [*held, *cfg.input_heldout], cfg.augment, seed,
                                    cfg.input_crafts())
        val_benign = [r for r in splits["val"] if r.label == 0]
        test = splits["test"]
        everything = [r for s in splits.values() for r in s]
        # Harmful plain requests only: harmless ones include cipher practice, whose rot13
        # words would make a ciphered report read as plain language.
        vocab = frozenset(w for r in everything if _plain(r) and r.label == 1
                          for w in _WORDS.findall(r.text.lower()))
        input_params, output_params = backend_params(cfg, seed)

        def outputs() -> OutputData:
            pairs, cal_convs, cal, _ = output_training(world, bundle.constitution, train,
                                                       val_benign, manifest, seed,
                                                       cfg.output_open_crafts)
            return OutputData(pairs.texts, pairs.labels, cal, pairs.conversations, cal_convs)

        return TrainingSet(
            texts=in_x,
            labels=in_y,
            calibration=prompt_texts(val_benign),
            test_benign=prompt_texts([r for r in test if r.label == 0]),
            test_harmful=prompt_texts([r for r in test if r.label == 1]),
            harmful_pool=_pool(everything, 1), benign_pool=_pool(everything, 0),
            vocabulary=vocab, backend=bundle.input.name, input_params=input_params,
            seed=seed, world_seed=world.seed, output_builder=outputs,
            output_backend=bundle.output.name, output_params=output_params,
            describe={"data": str(data), "heldout_families": held,
                      "input_heldout": list(cfg.input_heldout)})

    # ---- what the CLI shows ---------------------------------------------------------------
    def trained_tables(self, bundle: GuardBundle, bundle_dir: Path) -> list[Table]:
        m, th = bundle.metrics, bundle.thresholds
        val = m.get("validation", {})
        rows = [["threshold", fmt(th["input"]), fmt(th["output"])],
                ["calibration FPR (val)", fmt(m["input"]["calibration_fpr"]),
                 fmt(m["output"]["calibration_fpr"])],
                ["calibration texts", fmt(m["input"]["calibration_n"]),
                 fmt(m["output"]["calibration_n"])],
                ["training texts", fmt(m["input"]["train_n"]), fmt(m["output"]["train_n"])],
                ["val TPR / FPR", f"{fmt(val.get('input_tpr'))} / {fmt(val.get('input_fpr'))}",
                 "-"]]
        held = ", ".join(bundle.training.heldout_families) or "none"
        return [Table(f"guard bundle v{bundle.version}: {bundle_dir}",
                      ["measure", "input", "output"], rows,
                      [f"target FPR {bundle.target_fpr}; held out of training: {held}",
                       f"wrote {bundle_dir} (data: {bundle.training.data.get('dir')})"])]

    def eval_tables(self, result: Mapping[str, Any]) -> list[Table]:
        inp, outp = result["input"], result["output"]
        held = inp["heldout_families"]
        rows = [["input TPR (trained families)", fmt(inp["tpr"])],
                ["input TPR (all families)", fmt(inp["tpr_all"])],
                ["input FPR (harmless prompts)", fmt(inp["fpr"])],
                ["  trained / held-out families",
                 f"{fmt(inp['fpr_trained_families'])} / {fmt(inp['fpr_heldout_families'])}"],
                ["input AUPRC", fmt(inp["auprc"])],
                ["over-refusal (look-alikes)", fmt(inp["overrefusal"])],
                [f"held-out recall ({', '.join(held) or 'none'})", fmt(inp["heldout_recall"])]]
        rows += [[f"  recall {fam}{' (held out)' if fam in held else ''}", fmt(v)]
                 for fam, v in inp["recall_by_family"].items()]
        rows.append(["output stop rate before 25% of details", fmt(outp["stop_rate_25"])])
        # By reply form for the world's answers, by prompt family for model-written replies.
        rows += [[f"  {var}", fmt(v)] for var, v in (outp.get("stop_rate_25_by_variant")
                                                     or outp.get("stop_rate_25_by_family")
                                                     or {}).items()]
        rows += [["characters released per hazard answer", fmt(outp["tokens_released_mean"])],
                 ["output FPR (harmless replies)", fmt(outp["fpr"])]]
        if "fpr_open_crafts" in outp:
            rows += [["harmless crafts it never saw: input flags / output stops",
                      f"{fmt(inp.get('fpr_open_crafts'))} / {fmt(outp['fpr_open_crafts'])}"]]
        return [Table(f"bundle v{result['bundle_version']} on {result['data']} (test)",
                      ["measure", "value"], rows)]
