"""What CAT and CAPO share: the embedding-attack budget and the attack on a pair batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swisscheese.training.pairs import PairBatch
from swisscheese.training.trainer import TrainerConfig
from swisscheese.whitebox.embedding import DEFAULT_EPSILON, NORMS, perturb_batch

if TYPE_CHECKING:
    import torch



@dataclass
class AdversarialConfig(TrainerConfig):
    """The inner embedding attack of continuous adversarial training."""

    epsilon: float = field(default=DEFAULT_EPSILON, metadata={
        "help": "per-token budget of the embedding perturbation (norm below)"})
    attack_steps: int = field(default=10, metadata={"help": "attack steps per training step"})
    attack_step_size: float = field(default=0.0, metadata={
        "help": "attack step size (0: 2.5 * epsilon / attack_steps)"})
    norm: str = field(default="l2", metadata={"help": "'l2' or 'linf' ball per token"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.epsilon > 0 or self.attack_steps < 1:
            raise ValueError("epsilon must be > 0 and attack_steps >= 1")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of: {', '.join(NORMS)}")


def attacked_embeddings(model: Any, pb: PairBatch, cfg: AdversarialConfig,
                        harmful_only: bool = True) -> torch.Tensor:
    """Input embeddings of the whole pair batch, the prompts perturbed toward the rejected
    (compliant) reply. Chosen and rejected rows share their prompt, so one delta per pair
    serves both halves; benign pairs stay clean when `harmful_only`."""
    import torch

    b, n = pb.batch, pb.size
    attack = b.attack_mask[n:]
    if harmful_only:
        attack = attack * torch.tensor(pb.harmful, dtype=attack.dtype).unsqueeze(-1)
    delta, _, _ = perturb_batch(model, b.input_ids[n:], b.attention_mask[n:], attack,
                                b.labels[n:], cfg.epsilon, cfg.attack_steps,
                                cfg.attack_step_size or None, cfg.norm)
    embeds = model.get_input_embeddings()(b.input_ids)
    return embeds + torch.cat([delta, delta]).detach()
