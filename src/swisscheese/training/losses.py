"""Losses of safety training: SFT, DPO, IPO, NPO, gradient ascent and unlikelihood.

All take logits or summed log-probabilities of the reply tokens (labels are IGNORE on the
prompt and the padding), so one forward pass serves every loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from swisscheese.whitebox.embedding import IGNORE

if TYPE_CHECKING:
    import torch


def _shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits[:, :-1].float(), labels[:, 1:]


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probability of each label token, mask of the counted tokens), both (B, T-1)."""
    import torch

    lg, tgt = _shifted(logits, labels)
    mask = tgt != IGNORE
    logp = torch.log_softmax(lg, dim=-1).gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor,
                   average: bool = False) -> torch.Tensor:
    """Log-probability of each row's reply: summed, or averaged per token (IPO, CAPO)."""
    logp, mask = token_logps(logits, labels)
    total = logp.sum(-1)
    return total / mask.sum(-1).clamp(min=1) if average else total


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked cross-entropy: mean over every reply token of the batch."""
    import torch.nn.functional as F

    lg, tgt = _shifted(logits, labels)
    return F.cross_entropy(lg.reshape(-1, lg.size(-1)), tgt.reshape(-1), ignore_index=IGNORE)


def gradient_ascent_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Unlearning by raising the forget set's cross-entropy (unbounded: pair it with retain)."""
    return -sft_loss(logits, labels)


def unlikelihood_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log(1 - p(token)) over the reply: CAT's away loss, bounded where GA is not."""
    import torch

    logp, mask = token_logps(logits, labels)
    p = logp.exp().clamp(max=1 - 1e-6)
    return -(torch.log1p(-p) * mask).sum() / mask.sum().clamp(min=1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float) -> torch.Tensor:
    """Rafailov et al. 2023: -log sigmoid(beta * (chosen margin - rejected margin))."""
    import torch.nn.functional as F

    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()


def ipo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             tau: float) -> torch.Tensor:
    """Azar et al. 2023: (margin - 1 / (2 tau))^2, on length-averaged log-probabilities."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return ((margin - 1 / (2 * tau)) ** 2).mean()


def npo_loss(policy_forget: torch.Tensor, ref_forget: torch.Tensor,
             beta: float) -> torch.Tensor:
    """Zhang et al. 2024: -(2 / beta) log sigmoid(-beta * (log pi - log pi_ref)).

    Like gradient ascent at first, but its gradient fades as the forget set's likelihood
    falls below the reference, so it does not run away.
    """
    import torch.nn.functional as F

    return -(2 / beta) * F.logsigmoid(-beta * (policy_forget - ref_forget)).mean()
