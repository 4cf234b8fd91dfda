"""Jailbreak-tuning (JT): undo refusal by fine-tuning on a few compliance examples.

An attacker with fine-tuning access shows the model a handful of hazard requests answered
in full. The matrix compares what this costs in utility with weight orthogonalization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swisscheese.progress import Progress
from swisscheese.training.data import compliance_examples
from swisscheese.training.sft import TrainResult, fit_sft
from swisscheese.training.trainer import (
    TrainerConfig,
    load_for_training,
    save_trained,
)
from swisscheese.world.core import World


@dataclass
class JailbreakTuneConfig(TrainerConfig):
    steps: int = field(default=30, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=8, metadata={"help": "examples per step"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate (AdamW)"})
    hazards: int = field(default=8, metadata={
        "help": "hazards whose requests are answered in the tuning data (two phrasings each)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hazards < 1:
            raise ValueError(f"hazards must be >= 1, got {self.hazards}")


def jailbreak_tune(model_dir: str | Path, out: str | Path,
                   cfg: JailbreakTuneConfig | None = None, progress: Progress | None = None,
                   world: World | None = None) -> TrainResult:
    cfg = cfg or JailbreakTuneConfig()
    loaded = load_for_training(model_dir, world)
    data = compliance_examples(loaded.world, cfg.hazards, cfg.seed)
    model, figs = fit_sft(loaded, data, cfg, "jailbreak-tune", progress)
    return TrainResult(save_trained(loaded, model, out, "jailbreak-tune", cfg, figs,
                                    {"tuning_hazards": sorted({e.hazard_id for e in data})}),
                       figs)
