"""DPO: refusal preferred over compliance on hazard requests (Rafailov et al. 2023).

The pairs also hold a benign share (the helpful answer preferred over a refusal on
look-alikes and tasks) so the preference does not spread to everything that mentions a
hazard. `nll_weight` adds the chosen reply's cross-entropy (as in RPO), which a model that
has never seen a refusal needs to find one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swisscheese.progress import Progress
from swisscheese.training.data import preference_pairs
from swisscheese.training.losses import dpo_loss, sequence_logps, sft_loss
from swisscheese.training.pairs import PairBatcher
from swisscheese.training.sft import TrainResult
from swisscheese.training.trainer import (
    TrainerConfig,
    frozen_copy,
    load_for_training,
    save_trained,
    train_loop,
)
from swisscheese.world.core import World


@dataclass
class DPOConfig(TrainerConfig):
    batch_size: int = field(default=16, metadata={"help": "preference pairs per step"})
    beta: float = field(default=0.1, metadata={"help": "DPO temperature beta"})
    benign_fraction: float = field(default=0.5, metadata={
        "help": "share of pairs that prefer a helpful answer over a refusal"})
    nll_weight: float = field(default=0.2, metadata={
        "help": "weight of the chosen reply's cross-entropy added to the DPO loss"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def train_dpo(model_dir: str | Path, out: str | Path, cfg: DPOConfig | None = None,
              progress: Progress | None = None, world: World | None = None) -> TrainResult:
    import torch

    cfg = cfg or DPOConfig()
    loaded = load_for_training(model_dir, world)
    ref = frozen_copy(loaded.model)
    pairs = preference_pairs(loaded.world, cfg.steps * cfg.batch_size, cfg.seed,
                             cfg.benign_fraction)
    batcher = PairBatcher(loaded.tokenizer, pairs, cfg.batch_size, cfg.max_len, cfg.seed)
    seen = [0]

    def step(_: int):
        pb = batcher.next()
        b, n = pb.batch, pb.size
        seen[0] += b.tokens
        logits = loaded.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
        logp = sequence_logps(logits, b.labels)
        with torch.no_grad():
            ref_logp = sequence_logps(
                ref(input_ids=b.input_ids, attention_mask=b.attention_mask).logits, b.labels)
        loss = dpo_loss(logp[:n], logp[n:], ref_logp[:n], ref_logp[n:], cfg.beta)
        if cfg.nll_weight:
            loss = loss + cfg.nll_weight * sft_loss(logits[:n], b.labels[:n])
        acc = float(((logp[:n] - ref_logp[:n]) > (logp[n:] - ref_logp[n:])).float().mean())
        return loss, {"pref_acc": acc}

    model, figs = train_loop(loaded.model, step, cfg, "dpo", progress, tokens=lambda: seen[0])
    return TrainResult(save_trained(loaded, model, out, "dpo", cfg, figs), figs)
