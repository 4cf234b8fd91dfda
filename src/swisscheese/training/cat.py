"""Continuous adversarial training, CAT (Xhonneux et al. 2024).

Each step attacks the harmful prompts of the batch in embedding space toward compliance
(the inner loop: `swisscheese.whitebox.embedding.perturb_batch`), then trains the model
under that attack to give the refusal (toward loss, cross-entropy) and to move away from
the compliant reply (away loss, unlikelihood -log(1 - p)), plus cross-entropy on clean
utility data (look-alikes and tasks) so that it keeps answering them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swisscheese.progress import Progress
from swisscheese.training.adversarial import AdversarialConfig, attacked_embeddings
from swisscheese.training.data import (
    Batcher,
    PreferencePair,
    benign_examples,
    encode_examples,
    harmful_items,
)
from swisscheese.training.losses import sft_loss, unlikelihood_loss
from swisscheese.training.pairs import PairBatcher
from swisscheese.training.sft import TrainResult
from swisscheese.training.trainer import load_for_training, save_trained, train_loop
from swisscheese.world.core import World


@dataclass
class CATConfig(AdversarialConfig):
    steps: int = field(default=150, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=16, metadata={"help": "harmful prompts per step"})
    utility_batch_size: int = field(default=32, metadata={
        "help": "utility examples per step (0: no utility data)"})
    toward_weight: float = field(default=1.0, metadata={
        "help": "weight of the refusal loss under attack"})
    away_weight: float = field(default=0.5, metadata={
        "help": "weight of the unlikelihood of the compliant reply under attack"})
    utility_weight: float = field(default=1.0, metadata={"help": "weight of the utility loss"})


def train_cat(model_dir: str | Path, out: str | Path, cfg: CATConfig | None = None,
              progress: Progress | None = None, world: World | None = None) -> TrainResult:
    cfg = cfg or CATConfig()
    loaded = load_for_training(model_dir, world)
    tok, model = loaded.tokenizer, loaded.model
    pairs = [PreferencePair(i.prompt, i.refusal, i.compliance, True)
             for i in harmful_items(loaded.world, cfg.steps * cfg.batch_size, cfg.seed)]
    harmful = PairBatcher(tok, pairs, cfg.batch_size, cfg.max_len, cfg.seed)
    utility = None
    if cfg.utility_batch_size:
        rows = encode_examples(
            tok, benign_examples(loaded.world, cfg.steps * cfg.utility_batch_size, cfg.seed),
            cfg.max_len)
        utility = Batcher(rows, cfg.utility_batch_size, tok.pad_token_id, cfg.seed)
    seen = [0]

    def step(_: int):
        pb = harmful.next()
        b, n = pb.batch, pb.size
        seen[0] += b.tokens
        logits = model(inputs_embeds=attacked_embeddings(model, pb, cfg),
                       attention_mask=b.attention_mask).logits
        toward = sft_loss(logits[:n], b.labels[:n])
        away = unlikelihood_loss(logits[n:], b.labels[n:])
        loss = cfg.toward_weight * toward + cfg.away_weight * away
        figs = {"toward": float(toward.detach()), "away": float(away.detach())}
        if utility is not None:
            u = utility.next()
            seen[0] += u.tokens
            util = sft_loss(model(input_ids=u.input_ids, attention_mask=u.attention_mask).logits,
                            u.labels)
            loss = loss + cfg.utility_weight * util
            figs["utility"] = float(util.detach())
        return loss, figs

    model, figs = train_loop(model, step, cfg, "cat", progress, tokens=lambda: seen[0])
    return TrainResult(save_trained(loaded, model, out, "cat", cfg, figs), figs)
