"""The one training loop every safety method shares, and loading and saving models for it.

A method supplies `step(i) -> (loss, figures)`; the loop owns the optimiser (AdamW), the
learning-rate schedule (warm-up then cosine, as the organism's own training), gradient
clipping, seeding, progress and timing. `save_trained` writes the model atomically with a
card (`swisscheese.json`) naming its parent, the method and the config.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from swisscheese import __version__
from swisscheese.organism.train import PhaseFigures, lr_at, read_card, save_model
from swisscheese.progress import Progress
from swisscheese.world.core import World

StepFn = Callable[[int], tuple[Any, dict[str, float]]]  # step index -> (loss tensor, figures)


@dataclass
class TrainerConfig:
    """What every method shares. Method configs extend it."""

    steps: int = field(default=200, metadata={"help": "optimiser steps"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate (AdamW)"})
    batch_size: int = field(default=32, metadata={"help": "examples per step"})
    max_len: int = field(default=320, metadata={"help": "tokens per example, prompt included"})
    warmup_frac: float = field(default=0.05, metadata={
        "help": "share of the steps spent warming the learning rate up"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    grad_clip: float = field(default=1.0, metadata={"help": "clip the gradient norm to this"})
    seed: int = field(default=0, metadata={"help": "seed of data order and initialisation"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0: leave as set)"})
    lora_rank: int = field(default=0, metadata={
        "help": "train LoRA adapters of this rank instead of all weights (needs peft); "
                "merged into the saved model"})

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1 or self.max_len < 8:
            raise ValueError("batch_size must be >= 1 and max_len >= 8")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0, got {self.lora_rank}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


@dataclass
class Loaded:
    """A model ready to train, with what its card says about where it came from."""

    model: Any
    tokenizer: Any
    path: Path
    card: dict | None
    world: World


def load_for_training(model_dir: str | Path, world: World | None = None) -> Loaded:
    """Load a local HF causal LM (clear error if it is not one) and its world."""
    from swisscheese.models.hf import HFChatModel

    chat = HFChatModel(model_dir)
    card = read_card(chat.path)
    if world is None:
        world = World(seed=(card or {}).get("world_seed", 0))
    elif card and card.get("world_fingerprint") not in (None, world.fingerprint()):
        raise ValueError(f"{chat.path} was trained on world fingerprint "
                         f"{card['world_fingerprint']}, not this world's {world.fingerprint()}")
    tok = chat.tokenizer
    tok.padding_side = "right"  # training pads its own rows on the right
    return Loaded(chat.model, tok, chat.path, card, world)


def frozen_copy(model: Any) -> Any:
    """The reference policy of DPO, NPO and CAPO: the starting weights, never trained."""
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref



def _with_lora(model: Any, rank: int) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ValueError("lora_rank > 0 needs the optional package peft; install it or set "
                         "lora_rank to 0") from None
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                     task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def train_loop(model: Any, step: StepFn, cfg: TrainerConfig, phase: str,
               progress: Progress | None = None,
               tokens: Callable[[], int] | None = None) -> tuple[Any, PhaseFigures]:
    """Run `cfg.steps` optimiser steps of `step`; return the (merged) model and figures.

    `tokens()`, when given, reports tokens seen so far, for the throughput figure.
    """
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.lora_rank:
        model = _with_lora(model, cfg.lora_rank)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95),
                            weight_decay=cfg.weight_decay)
    model.train()
    if progress:
        progress(phase, 0, cfg.steps, {})
    first = ema = float("nan")
    start = time.perf_counter()
    for i in range(cfg.steps):
        for g in opt.param_groups:
            # The organism's own schedule, so a defence trains as the aligned organism did.
            g["lr"] = lr_at(i, cfg.steps, cfg.lr, cfg.warmup_frac)
        loss, figures = step(i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        value = float(loss.detach())
        if not torch.isfinite(loss.detach()):
            raise ValueError(f"{phase}: the loss became {value} at step {i}; lower the lr")
        first = value if i == 0 else first
        ema = value if i == 0 else 0.9 * ema + 0.1 * value
        if progress:
            progress(phase, i + 1, cfg.steps, {"loss": ema, **figures})
    seconds = time.perf_counter() - start
    model.eval()
    if cfg.lora_rank:
        model = model.merge_and_unload()
    n_tokens = tokens() if tokens else 0
    return model, PhaseFigures(phase, cfg.steps, cfg.steps * cfg.batch_size, n_tokens, first,
                               ema, seconds)


def _minimal_card(model: Any, world: World) -> dict:
    """A card for a model swisscheese did not train (any HF causal LM)."""
    return {
        "swisscheese_version": __version__,
        "world_seed": world.seed,
        "world_fingerprint": world.fingerprint(),
        "preset": {"name": "external"},
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": [],
    }


def save_trained(loaded: Loaded, model: Any, out: str | Path, method: str, cfg: Any,
                 figures: PhaseFigures | None, extra: dict | None = None) -> Path:
    """Write `model` to `out` atomically with a card naming its parent, method and config."""
    parent = loaded.card or _minimal_card(model, loaded.world)
    reference = _reference_of(loaded)
    card = {
        **parent,
        "swisscheese_version": __version__,
        "variant": method,
        "method": method,
        "parent": str(loaded.path.resolve()),
        "parent_variant": parent.get("variant", loaded.path.name),
        "config": cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg or {}),
        "training": [*parent.get("training", []), *([figures.to_dict()] if figures else [])],
        **({"reference": reference} if reference else {}),
        **(extra or {}),
    }
    if not reference:  # the parent's relative path would point nowhere from `out`
        card.pop("reference", None)
    save_model(model, loaded.tokenizer, Path(out), card)
    return Path(out)


def _reference_of(loaded: Loaded) -> str | None:
    """The helpful-only model the grader compares with, as an absolute path."""
    card = loaded.card or {}
    if card.get("variant") == "helpful-only":
        return str(loaded.path.resolve())
    ref = card.get("reference")
    if not ref:
        return None
    p = Path(ref)
    return str((p if p.is_absolute() else loaded.path / p).resolve())


def reference_dir(model_dir: str | Path) -> Path | None:
    """Where the helpful-only reference of a trained model is, if its card says."""
    card = read_card(model_dir) or {}
    if card.get("variant") == "helpful-only":
        return Path(model_dir)
    ref = card.get("reference")
    if not ref:
        return None
    p = Path(ref)
    return (p if p.is_absolute() else Path(model_dir) / p).resolve()
