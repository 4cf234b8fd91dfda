"""CAPO (Xhonneux et al. 2024): an IPO preference loss under the embedding attack.

Refusal is preferred over compliance on harmful prompts perturbed toward compliance; the
reference log-probabilities are the starting model's on the clean prompts. No utility SFT
data: the only benign signal is the pairs' benign share (a helpful answer preferred over a
refusal, unattacked), which keeps the preference from spreading to look-alikes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swisscheese.progress import Progress
from swisscheese.training.adversarial import AdversarialConfig, attacked_embeddings
from swisscheese.training.data import preference_pairs
from swisscheese.training.losses import ipo_loss, sequence_logps
from swisscheese.training.pairs import PairBatcher
from swisscheese.training.sft import TrainResult
from swisscheese.training.trainer import (
    frozen_copy,
    load_for_training,
    save_trained,
    train_loop,
)
from swisscheese.world.core import World


@dataclass
class CAPOConfig(AdversarialConfig):
    steps: int = field(default=150, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=16, metadata={"help": "preference pairs per step"})
    tau: float = field(default=0.1, metadata={"help": "IPO regularisation tau (margin 1/2tau)"})
    benign_fraction: float = field(default=0.5, metadata={
        "help": "share of pairs preferring a helpful answer over a refusal (not attacked)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")


def train_capo(model_dir: str | Path, out: str | Path, cfg: CAPOConfig | None = None,
               progress: Progress | None = None, world: World | None = None) -> TrainResult:
    import torch

    cfg = cfg or CAPOConfig()
    loaded = load_for_training(model_dir, world)
    model = loaded.model
    ref = frozen_copy(model)
    pairs = preference_pairs(loaded.world, cfg.steps * cfg.batch_size, cfg.seed,
                             cfg.benign_fraction)
    batcher = PairBatcher(loaded.tokenizer, pairs, cfg.batch_size, cfg.max_len, cfg.seed)
    seen = [0]

    def step(_: int):
        pb = batcher.next()
        b, n = pb.batch, pb.size
        seen[0] += b.tokens
        logits = model(inputs_embeds=attacked_embeddings(model, pb, cfg),
                       attention_mask=b.attention_mask).logits
        logp = sequence_logps(logits, b.labels, average=True)
        with torch.no_grad():
            ref_logp = sequence_logps(
                ref(input_ids=b.input_ids, attention_mask=b.attention_mask).logits, b.labels,
                average=True)
        loss = ipo_loss(logp[:n], logp[n:], ref_logp[:n], ref_logp[n:], cfg.tau)
        margin = (logp[:n] - ref_logp[:n]) - (logp[n:] - ref_logp[n:])
        return loss, {"margin": float(margin.detach().mean())}

    model, figs = train_loop(model, step, cfg, "capo", progress, tokens=lambda: seen[0])
    return TrainResult(save_trained(loaded, model, out, "capo", cfg, figs), figs)
