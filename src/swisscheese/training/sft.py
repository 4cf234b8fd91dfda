"""Safety SFT: fine-tune on refusals of hazard requests and answers to everything else.

The same recipe made the aligned organism; here it is a config and trainer pair that runs
on any local HF causal LM, and the base of jailbreak-tuning and the WO countermeasure,
which are SFT on other data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swisscheese.organism.train import PhaseFigures
from swisscheese.progress import Progress
from swisscheese.training.data import Batcher, encode_examples, safety_examples
from swisscheese.training.losses import sft_loss
from swisscheese.training.trainer import (
    Loaded,
    TrainerConfig,
    load_for_training,
    save_trained,
    train_loop,
)
from swisscheese.world.core import Example, World


@dataclass
class SFTConfig(TrainerConfig):
    """Refusal SFT on the world's safety corpus."""

    examples: int = field(default=0, metadata={
        "help": "distinct training examples (0: steps x batch_size, each seen once)"})


@dataclass
class TrainResult:
    path: Path
    figures: PhaseFigures

    def to_dict(self) -> dict:
        return {"path": str(self.path), **self.figures.to_dict()}


def fit_sft(loaded: Loaded, examples: Sequence[Example], cfg: TrainerConfig, phase: str,
            progress: Progress | None = None):  # -> (model, PhaseFigures)
    """Train `loaded.model` on `examples` (loss on the replies only)."""
    rows = encode_examples(loaded.tokenizer, examples, cfg.max_len)
    batcher = Batcher(rows, cfg.batch_size, loaded.tokenizer.pad_token_id, cfg.seed)
    seen = [0]

    def step(_: int):
        b = batcher.next()
        seen[0] += b.tokens
        logits = loaded.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
        return sft_loss(logits, b.labels), {}

    return train_loop(loaded.model, step, cfg, phase, progress, tokens=lambda: seen[0])


def train_sft(model_dir: str | Path, out: str | Path, cfg: SFTConfig | None = None,
              progress: Progress | None = None, world: World | None = None) -> TrainResult:
    """Refusal SFT of the model in `model_dir`, saved to `out`."""
    cfg = cfg or SFTConfig()
    loaded = load_for_training(model_dir, world)
    n = cfg.examples or cfg.steps * cfg.batch_size
    model, figs = fit_sft(loaded, safety_examples(loaded.world, n, cfg.seed), cfg, "sft",
                          progress)
    return TrainResult(save_trained(loaded, model, out, "sft", cfg, figs), figs)
