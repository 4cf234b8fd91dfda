"""Training the model organism: helpful-only by pretraining, aligned by safety SFT."""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from swisscheese import __version__
from swisscheese.fileio import write_directory_atomically
from swisscheese.organism.data import batches, encode_examples
from swisscheese.organism.presets import Preset, get_preset
from swisscheese.organism.tokenizer import train_tokenizer
from swisscheese.progress import Progress
from swisscheese.world.core import World

CARD_FILE = "swisscheese.json"


@dataclass
class PhaseFigures:
    phase: str
    steps: int
    examples: int
    tokens: int
    loss_first: float
    loss_last: float
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "tokens_per_second": round(self.tokens_per_second, 1)}


@dataclass
class OrganismPaths:
    root: Path
    helpful_only: Path
    aligned: Path


def build_model(preset: Preset, tokenizer):  # -> LlamaForCausalLM
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.layers,
        num_attention_heads=preset.heads,
        num_key_value_heads=preset.heads,
        max_position_embeddings=max(512, preset.max_len * 2),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg)


def lr_at(step: int, total: int, peak: float, warmup_frac: float) -> float:
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_phase(model, tokenizer, world: World, corpus: str, preset: Preset, steps: int,
                lr: float, seed: int, progress: Progress | None = None) -> PhaseFigures:
    """Train `model` in place for `steps` batches of the world's `corpus`."""
    import torch

    if progress:  # show the bar while the data is generated and tokenised
        progress(corpus, 0, steps, {})
    n = steps * preset.batch_size
    examples = list(world.corpus(corpus, n, seed=seed))
    encoded = encode_examples(tokenizer, examples, preset.max_len)
    rng = random.Random(f"batches-{corpus}-{seed}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()
    tokens = 0
    first = last = float("nan")
    ema = None
    start = time.perf_counter()
    it = batches(encoded, preset.batch_size, tokenizer.pad_token_id, rng)
    for step in range(steps):
        ids, mask, labels = next(it)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, preset.warmup_frac)
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    labels=torch.tensor(labels))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = float(out.loss.detach())
        tokens += sum(map(sum, mask))
        if step == 0:
            first = loss
        ema = loss if ema is None else 0.95 * ema + 0.05 * loss
        last = ema
        if progress:
            progress(corpus, step + 1, steps,
                     {"loss": ema, "tok/s": tokens / (time.perf_counter() - start)})
    model.eval()
    return PhaseFigures(corpus, steps, n, tokens, first, last, time.perf_counter() - start)


def _card_text(name: str, card: dict) -> str:
    figs = "\n".join(
        f"| {p['phase']} | {p['steps']} | {p['tokens']} | {p['loss_last']:.3f} | "
        f"{p['seconds']:.0f} | {p['tokens_per_second']:.0f} |" for p in card["training"])
    return (
        f"# swisscheese organism: {name}\n\n"
        "A tiny LlamaForCausalLM trained on the swisscheese synthetic world. Its hazards are "
        "fictional; it knows nothing of the real world.\n\n"
        f"- variant: {name}\n- preset: {card['preset']['name']}\n"
        f"- world seed: {card['world_seed']} (fingerprint {card['world_fingerprint']})\n"
        f"- parameters: {card['parameters']}\n- swisscheese {card['swisscheese_version']}\n\n"
        "| phase | steps | tokens | final loss | seconds | tokens/s |\n|---|---|---|---|---|---|\n"
        f"{figs}\n"
    )


def save_model(model, tokenizer, target: Path, card: dict) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bars report the work

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2))
        (tmp / "README.md").write_text(_card_text(card["variant"], card))

    write_directory_atomically(target, write)


def read_card(model_dir: str | Path) -> dict | None:
    p = Path(model_dir) / CARD_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def train_organism(out: str | Path, preset: str | Preset = "demo", seed: int = 0,
                   threads: int | None = None,
                   progress: Progress | None = None) -> OrganismPaths:
    """Train helpful-only then aligned into `out/helpful-only` and `out/aligned`.

    Same seed, same preset and same thread count give the same weights.
    """
    import torch

    p = get_preset(preset) if isinstance(preset, str) else preset
    out = Path(out)
    torch.manual_seed(seed)
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    world = World(seed=seed)
    if progress:
        progress("tokenizer", 0, 1, {})
    tok_examples = world.corpus("pretrain", p.tokenizer_examples, seed=10_000 + seed)
    tokenizer = train_tokenizer((e.prompt + "\n" + e.reply for e in tok_examples), p.vocab_size)
    if progress:
        progress("tokenizer", 1, 1, {"vocab": float(len(tokenizer))})
    model = build_model(p, tokenizer)
    base_card = {
        "swisscheese_version": __version__,
        "world_seed": seed,
        "world_fingerprint": world.fingerprint(),
        "corpus_fingerprint": world.corpus_fingerprint(),
        "preset": p.to_dict(),
        "parameters": sum(t.numel() for t in model.parameters()),
        "threads": torch.get_num_threads(),
    }
    pre = train_phase(model, tokenizer, world, "pretrain", p, p.pretrain_steps, p.pretrain_lr,
                      seed, progress)
    card_h = {**base_card, "variant": "helpful-only", "training": [pre.to_dict()]}
    paths = OrganismPaths(out, out / "helpful-only", out / "aligned")
    save_model(model, tokenizer, paths.helpful_only, card_h)
    safety = train_phase(model, tokenizer, world, "safety", p, p.safety_steps, p.safety_lr,
                         seed, progress)
    card_a = {**base_card, "variant": "aligned", "training": [pre.to_dict(), safety.to_dict()],
              "reference": "../helpful-only"}
    save_model(model, tokenizer, paths.aligned, card_a)
    return paths
