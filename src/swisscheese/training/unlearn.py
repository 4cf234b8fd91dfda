"""Unlearning the hazard procedures: gradient ascent or NPO on a forget set, with retain loss.

The forget set holds the seen hazards' procedures as answers to plain requests; the retain
set the safety corpus's look-alikes and utility tasks (plain cross-entropy, weighted by
`retain_weight`), so the model keeps what it should. Unlearning does not teach refusal:
it removes what a jailbreak would extract, which the detail grader measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swisscheese.progress import Progress
from swisscheese.training.data import Batcher, benign_examples, encode_examples, forget_examples
from swisscheese.training.losses import (
    gradient_ascent_loss,
    npo_loss,
    sequence_logps,
    sft_loss,
)
from swisscheese.training.sft import TrainResult
from swisscheese.training.trainer import (
    TrainerConfig,
    frozen_copy,
    load_for_training,
    save_trained,
    train_loop,
)
from swisscheese.world.core import World

METHODS = ("npo", "ga")


@dataclass
class UnlearnConfig(TrainerConfig):
    steps: int = field(default=120, metadata={"help": "optimiser steps"})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate (AdamW)"})
    batch_size: int = field(default=16, metadata={"help": "forget and retain examples per step"})
    method: str = field(default="npo", metadata={"help": "'npo' or 'ga' (gradient ascent)"})
    beta: float = field(default=0.1, metadata={"help": "NPO temperature beta"})
    retain_weight: float = field(default=1.0, metadata={"help": "weight of the retain loss"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"unknown unlearning method {self.method!r}; choose one of: "
                             f"{', '.join(METHODS)}")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def unlearn(model_dir: str | Path, out: str | Path, cfg: UnlearnConfig | None = None,
            progress: Progress | None = None, world: World | None = None) -> TrainResult:
    import torch

    cfg = cfg or UnlearnConfig()
    loaded = load_for_training(model_dir, world)
    n = cfg.steps * cfg.batch_size
    tok = loaded.tokenizer
    forget = Batcher(encode_examples(tok, forget_examples(loaded.world, n, cfg.seed),
                                     cfg.max_len), cfg.batch_size, tok.pad_token_id, cfg.seed)
    retain = Batcher(encode_examples(tok, benign_examples(loaded.world, n, cfg.seed),
                                     cfg.max_len), cfg.batch_size, tok.pad_token_id, cfg.seed)
    ref = frozen_copy(loaded.model) if cfg.method == "npo" else None
    seen = [0]

    def step(_: int):
        f, r = forget.next(), retain.next()
        seen[0] += f.tokens + r.tokens
        logits = loaded.model(input_ids=f.input_ids, attention_mask=f.attention_mask).logits
        if ref is None:
            forget_loss = gradient_ascent_loss(logits, f.labels)
        else:
            with torch.no_grad():
                ref_logp = sequence_logps(
                    ref(input_ids=f.input_ids, attention_mask=f.attention_mask).logits,
                    f.labels)
            forget_loss = npo_loss(sequence_logps(logits, f.labels), ref_logp, cfg.beta)
        keep = sft_loss(loaded.model(input_ids=r.input_ids,
                                     attention_mask=r.attention_mask).logits, r.labels)
        return forget_loss + cfg.retain_weight * keep, {
            "forget": float(forget_loss.detach()), "retain": float(keep.detach())}

    model, figs = train_loop(loaded.model, step, cfg, f"unlearn-{cfg.method}", progress,
                             tokens=lambda: seen[0])
    return TrainResult(save_trained(loaded, model, out, f"unlearn-{cfg.method}", cfg, figs), figs)
