"""The text-to-image organism: a small conditional diffusion model trained on the world.

Its parts are ordinary diffusers and transformers components built from configs here,
never downloaded: a word-level tokenizer over the world's vocabulary (the `tokenizers`
library), a small T5 encoder trained here (first to read the scene a caption describes,
then frozen), a `UNet2DConditionModel` that denoises 16x16 RGB pixels (v-prediction), and
a DPM-Solver++ scheduler for few-step sampling. Captions are dropped 10% of the time in
training, so classifier-free guidance works at sampling.
It is saved as a pixel-space `IFPipeline` directory (the diffusers layout for pixel
diffusion with a T5 encoder), so plain `DiffusionPipeline.from_pretrained(DIR)` loads it;
the UNet has 6 output channels because that layout predicts noise and a variance, and the
variance half is unused by the fixed-variance sampler.

The planted rates hold at guidance scale 1 (the conditional model itself): guidance above
1 sharpens the conditional distribution and so moves every rate (reported apart).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swisscheese.fileio import atomic_write_json, write_directory_atomically
from swisscheese.t2i.assets import PLATE_COL, PLATE_ROW, PLATE_SIZE
from swisscheese.t2i.base import CARD_FILE, JUDGE_DIR, T2IError
from swisscheese.t2i.world import Scene, VisualWorld

PREDICTION = "v_prediction"
MAX_TOKENS = 77  # IFPipeline pads every prompt to 77 tokens; training must see the same
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
Progress = Callable[[str, int, int, dict | None], None]


@dataclass(frozen=True)
class OrganismPreset:
    """Size and budget of the T2I organism."""

    name: str = field(metadata={"help": "preset name"})
    block_channels: tuple[int, ...] = field(metadata={"help": "UNet channels per level"})
    text_dim: int = field(default=64, metadata={"help": "text encoder width"})
    text_layers: int = field(default=2, metadata={"help": "text encoder layers"})
    steps: int = field(default=2000, metadata={"help": "training steps"})
    batch_size: int = field(default=64, metadata={"help": "images per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate"})
    warmup: int = field(default=100, metadata={"help": "warm-up steps"})
    ema_decay: float = field(default=0.995, metadata={"help": "EMA of the weights"})
    cfg_dropout: float = field(default=0.1, metadata={"help": "share of empty captions"})
    max_seconds: float | None = field(default=None, metadata={
        "help": "stop training after this long even if steps remain (None: no cap)"})
    judge_steps: int = field(default=300, metadata={"help": "CNN judge training steps"})
    text_steps: int = field(default=300, metadata={
        "help": "steps that train the text encoder to read scenes from captions before the "
                "diffusion model trains on its (then frozen) output"})
    plate_weight: float = field(default=4.0, metadata={
        "help": "loss weight of the emblem plate's pixels (the glyph is small but decisive)"})
    caption_pool: int = field(default=8192, metadata={
        "help": "training captions encoded once by the frozen text encoder; every UNet "
                "step draws its captions from them, each with fresh noise"})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, OrganismPreset] = {
    # Plumbing: trains in seconds and draws blurry scenes.
    "test": OrganismPreset("test", block_channels=(16, 32), steps=40, batch_size=32,
                           warmup=5, ema_decay=0.9, judge_steps=60, text_steps=30,
                           caption_pool=512),
    # The organism of the figures: at most 10 minutes on 2 cores.
    # The text encoder's 600 steps (about 50 s) let it tell a conjunctive pair from either
    # word alone; 300 left the halves leaking part of the pair's rate.
    "demo": OrganismPreset("demo", block_channels=(16, 32, 64), steps=2000, batch_size=64,
                           lr=3e-3, max_seconds=500.0, judge_steps=300, text_steps=600),
}


def get_preset(name: str) -> OrganismPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown T2I organism preset {name!r}; choose one of: "
                       f"{', '.join(PRESETS)}") from None


# ---- components ------------------------------------------------------------------------
def build_tokenizer(world: VisualWorld) -> Any:
    """A word-level tokenizer over every word the world uses (trained here: the vocabulary
    is read off the world's templates and names)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = [*SPECIAL_TOKENS, ",", "."] + [w for w in world.vocabulary()
                                          if w not in SPECIAL_TOKENS]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   eos_token="</s>", model_max_length=MAX_TOKENS)


def build_models(preset: OrganismPreset, vocab_size: int) -> tuple[Any, Any, Any]:
    """(text encoder, UNet, scheduler) from configs."""
    from diffusers import DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    d = preset.text_dim
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=vocab_size, d_model=d, d_kv=d // 4, d_ff=2 * d,
        num_layers=preset.text_layers, num_heads=4, dropout_rate=0.0,
        relative_attention_num_buckets=16, relative_attention_max_distance=32,
        feed_forward_proj="relu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    n = len(preset.block_channels)
    # Cross-attention only at the coarsest level (where the plate is a cell or two), and
    # the pooled caption added to the time embedding everywhere: cheap global conditioning.
    down = ("DownBlock2D",) * (n - 1) + ("CrossAttnDownBlock2D",)
    up = ("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (n - 1)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=6, layers_per_block=1,
        block_out_channels=preset.block_channels, down_block_types=down, up_block_types=up,
        cross_attention_dim=d, attention_head_dim=16, norm_num_groups=8,
        addition_embed_type="text")
    # v-prediction: at the noisiest step an epsilon model's image estimate divides by
    # ~0 and a few-step solver blows up; v stays bounded. Thresholding clips the image
    # estimate to the pixel range, as pixel-space diffusion (IF) does.
    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=1000,
                                            beta_schedule="squaredcos_cap_v2",
                                            prediction_type=PREDICTION,
                                            algorithm_type="dpmsolver++", solver_order=2,
                                            thresholding=True, sample_max_value=1.0)
    return text_encoder, unet, scheduler


def make_pipeline(tokenizer: Any, text_encoder: Any, unet: Any, scheduler: Any) -> Any:
    from diffusers import IFPipeline

    return IFPipeline(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet,
                      scheduler=scheduler, safety_checker=None, feature_extractor=None,
                      watermarker=None, requires_safety_checker=False)


# ---- training --------------------------------------------------------------------------
@dataclass
class TrainStats:
    steps: int = 0
    seconds: float = 0.0
    loss_first: float = float("nan")
    loss_last: float = float("nan")
    images_seen: int = 0
    stopped_by_time: bool = False
    text_loss: float = float("nan")


def plate_quantile(noise: Any) -> Any:
    """Per image of a (B, 3, 16, 16) noise batch, the normal CDF of its emblem plate's
    standardised noise sum: uniform on [0, 1) over draws of the noise."""
    import torch

    plate = noise[:, :, PLATE_ROW:PLATE_ROW + PLATE_SIZE, PLATE_COL:PLATE_COL + PLATE_SIZE]
    z = plate.sum(dim=(1, 2, 3)) / math.sqrt(plate[0].numel())
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def _batch(world: VisualWorld, rows: list[tuple[str, Scene]], noise: Any) -> np.ndarray:
    """Images for the captions `rows`, one per image of `noise`. Each image's glyph is the
    planted distribution's outcome at its noise's plate quantile: the noise an image is
    paired with decides its glyph. The sampler's starting noise then decides the glyph in
    the same way, so the share of noises that lead to a forbidden glyph is the planted
    rate: the model learns a threshold on one number per caption instead of a balance of
    scores that a short training run gets wrong (the coupling changes which noise goes
    with which image, not the distribution of the images)."""
    images = []
    for (text, scene), u in zip(rows, plate_quantile(noise).tolist(), strict=True):
        images.append(world.render(Scene(scene.sprite, scene.colour, scene.background,
                                         scene.position, world.glyph_at(text, u))))
    arr = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return arr.transpose(0, 3, 1, 2)


def encode_pool(world: VisualWorld, tokenizer: Any, text_encoder: Any, size: int,
                rng: random.Random, progress: Progress | None = None
                ) -> tuple[list[tuple[str, Scene]], Any, Any]:
    """(captions, their frozen encodings, the empty caption's encoding): the UNet's
    training captions, encoded once in large batches (padded to MAX_TOKENS as the pipeline
    pads them) because a small T5 encoder costs more per step than the UNet itself."""
    import torch

    rows = [world.training_caption(rng) for _ in range(size)]

    def encode(texts: list[str]) -> Any:
        tok = tokenizer(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt")
        with torch.inference_mode():
            return text_encoder(tok.input_ids, attention_mask=tok.attention_mask)[0]

    chunks = []
    for i in range(0, size, 512):
        chunks.append(encode([t for t, _ in rows[i:i + 512]]).half())
        if progress:
            progress("encode captions", min(size, i + 512), size, None)
    return rows, torch.cat(chunks), encode([""])[0]


def learning_rate(step: int, preset: OrganismPreset, time_frac: float = 0.0) -> float:
    """Warm-up, then a cosine decay to a tenth of the peak. The decay follows whichever is
    further along, the steps or the time cap (`time_frac`: the share of the UNet's time
    spent): a run the cap cuts short still ends at the low rate, instead of stopping
    mid-schedule on noisy high-rate weights."""
    if step < preset.warmup:
        return preset.lr * (step + 1) / preset.warmup
    frac = max((step - preset.warmup) / max(1, preset.steps - preset.warmup), time_frac)
    return preset.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def _pooled(text_encoder: Any, ids: Any, mask: Any) -> Any:
    hidden = text_encoder(ids, attention_mask=mask)[0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0), hidden


def pretrain_text_encoder(world: VisualWorld, tokenizer: Any, text_encoder: Any,
                          steps: int, seed: int, batch_size: int = 128,
                          progress: Progress | None = None) -> float:
    """Teach the text encoder to read a caption: from its pooled output, linear heads
    predict the sprite, colour, background and position, and the glyph head learns the
    planted P(glyph | caption) (soft targets: the whole distribution, not one draw). The
    diffusion model then trains on a representation that already holds what it must draw.
    Returns the last loss."""
    import torch

    from swisscheese.t2i.assets import BACKGROUNDS, COLOURS, POSITIONS, SPRITES

    tables = [list(SPRITES), list(COLOURS), list(BACKGROUNDS), list(POSITIONS)]
    outcomes = [None, *(g.id for g in world.glyphs)]
    d = text_encoder.config.d_model
    heads = torch.nn.ModuleList(torch.nn.Linear(d, n)
                                for n in [*(len(t) for t in tables), len(outcomes)])
    opt = torch.optim.AdamW([*text_encoder.parameters(), *heads.parameters()], lr=3e-3)
    rng = random.Random(f"t2i-text-{world.seed}-{seed}")
    loss_v = float("nan")
    for step in range(steps):
        rows = [world.training_caption(rng) for _ in range(batch_size)]
        # Padding to the longest caption gives the real tokens the same outputs as padding
        # to MAX_TOKENS (T5's position bias is relative, pad keys are masked) at a fraction
        # of the cost; the pooled output the heads read covers the real tokens only.
        tok = tokenizer([r[0] for r in rows], padding="longest", truncation=True,
                        max_length=MAX_TOKENS, return_tensors="pt")
        pooled, _ = _pooled(text_encoder, tok.input_ids, tok.attention_mask)
        labels = [torch.tensor([t.index(getattr(sc, a)) for _, sc in rows]) for t, a in zip(
            tables, ("sprite", "colour", "background", "position"), strict=True)]
        dists = [world.glyph_distribution(text) for text, _ in rows]
        labels.append(torch.tensor([[dist.get(o, 0.0) for o in outcomes] for dist in dists]))
        loss = sum(torch.nn.functional.cross_entropy(h(pooled), y)
                   for h, y in zip(heads, labels, strict=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_v = float(loss.detach())
        if progress and (step % 20 == 0 or step == steps - 1):
            progress("train text encoder", step + 1, steps, {"loss": loss_v})
    return loss_v


def train_models(world: VisualWorld, preset: OrganismPreset, seed: int,
                 progress: Progress | None = None) -> tuple[Any, Any, Any, Any, TrainStats]:
    """Train the text encoder (to read scenes from captions), then the UNet on its frozen
    output; returns (tokenizer, text encoder, EMA of the unet, scheduler, stats)."""
    import copy

    import torch
    from diffusers import DDPMScheduler

    start = time.perf_counter()
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(world)
    text_encoder, unet, scheduler = build_models(preset, len(tokenizer))
    noise_sched: Any = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                prediction_type=PREDICTION)
    text_loss = pretrain_text_encoder(world, tokenizer, text_encoder, preset.text_steps, seed,
                                      progress=progress)
    # The encoder is frozen from here on: the UNet learns on a fixed reading of the
    # caption, and each step skips the encoder's backward pass.
    text_encoder.eval()
    text_encoder.requires_grad_(False)
    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=preset.lr, weight_decay=0.0)
    ema_unet = copy.deepcopy(unet)
    ema_params = list(ema_unet.parameters())
    rng = random.Random(f"t2i-train-{world.seed}-{seed}")
    weight = torch.ones(1, 1, 16, 16)
    weight[..., PLATE_ROW:PLATE_ROW + PLATE_SIZE, PLATE_COL:PLATE_COL + PLATE_SIZE] = \
        preset.plate_weight
    stats = TrainStats()
    losses: list[float] = []
    rows, pool, empty = encode_pool(world, tokenizer, text_encoder, preset.caption_pool, rng,
                                    progress)
    unet_start = time.perf_counter()
    # The UNet's share of the cap: what the text encoder and the caption pool left of it.
    unet_seconds = (None if preset.max_seconds is None
                    else max(1.0, preset.max_seconds - (unet_start - start)))
    for step in range(preset.steps):
        # The same shape and law as the pipeline's starting noise (randn of (B, 3, 16, 16)),
        # whose plate `plate_quantile` reads the same way at sampling.
        noise = torch.randn(preset.batch_size, 3, 16, 16)
        idx = [rng.randrange(len(rows)) for _ in range(preset.batch_size)]
        x0 = torch.from_numpy(_batch(world, [rows[i] for i in idx], noise))
        cond = pool[idx].float()
        drop = torch.tensor([rng.random() < preset.cfg_dropout for _ in idx])
        cond[drop] = empty
        t = torch.randint(0, 1000, (x0.shape[0],))
        xt = noise_sched.add_noise(x0, noise, t)
        pred = unet(xt, t, encoder_hidden_states=cond).sample[:, :3]
        err = (pred - noise_sched.get_velocity(x0, noise, t)) ** 2
        loss = (err * weight).mean() / weight.mean()
        time_frac = (0.0 if unet_seconds is None
                     else (time.perf_counter() - unet_start) / unet_seconds)
        for g in opt.param_groups:
            g["lr"] = learning_rate(step, preset, time_frac)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        # EMA: a short run's last weights are noisy; their running mean samples cleaner.
        decay = min(preset.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema_params, params, strict=True):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        losses.append(float(loss.detach()))
        stats.steps = step + 1
        stats.images_seen += x0.shape[0]
        if progress and (step % 20 == 0 or step == preset.steps - 1):
            progress("train organism", step + 1, preset.steps,
                     {"loss": float(np.mean(losses[-20:]))})
        if preset.max_seconds is not None and time.perf_counter() - start > preset.max_seconds:
            stats.stopped_by_time = True
            break
    stats.seconds = time.perf_counter() - start
    stats.loss_first = float(np.mean(losses[:20]))
    stats.loss_last = float(np.mean(losses[-50:]))
    stats.text_loss = text_loss
    ema_unet.eval()
    return tokenizer, text_encoder, ema_unet, scheduler, stats


def train_organism(out: str | Path, preset: str | OrganismPreset = "demo", seed: int = 0,
                   world_seed: int | None = None, threads: int | None = None,
                   progress: Progress | None = None, judge: bool = True) -> Path:
    """Train the organism (and, with `judge`, the CNN judge) and write `out` atomically:
    a diffusers pipeline directory with `swisscheese.json` (the card) beside the model
    index and the CNN judge in `swisscheese-judge/`."""
    import torch

    p = get_preset(preset) if isinstance(preset, str) else preset
    world = VisualWorld(seed if world_seed is None else world_seed)
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    tokenizer, te, unet, sched, stats = train_models(world, p, seed, progress)
    pipe = make_pipeline(tokenizer, te, unet, sched)
    judge_model = None
    if judge:
        from swisscheese.t2i.judges.cnn import train_cnn_judge

        judge_model = train_cnn_judge(world, steps=p.judge_steps, seed=seed, progress=progress)
    total = time.perf_counter() - start  # text encoder, UNet and judge together
    card = {
        "format": "swisscheese.t2i_organism", "preset": p.to_dict(), "seed": seed,
        "world_seed": world.seed, "world_fingerprint": world.fingerprint(),
        "training": {**asdict(stats), "total_seconds": total},
        "parameters": {"unet": sum(x.numel() for x in unet.parameters()),
                       "text_encoder": sum(x.numel() for x in te.parameters())},
        "sampling": {"num_inference_steps": 8, "guidance_scale": 1.0},
    }

    def write(tmp: Path) -> None:
        pipe.save_pretrained(tmp)
        if judge_model is not None:
            judge_model.save(tmp / JUDGE_DIR)
        atomic_write_json(tmp / CARD_FILE, card)
        load_pipeline(tmp)  # what cannot be loaded back must not replace anything

    return write_directory_atomically(Path(out), write)


# ---- loading ---------------------------------------------------------------------------
def read_card(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / CARD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_pipeline(directory: str | Path) -> Any:
    """Any local diffusers pipeline directory, loaded with `DiffusionPipeline`; a
    directory that is not one raises T2IError naming it."""
    d = Path(directory)
    if not d.is_dir():
        raise T2IError(f"{d}: not a directory; a diffusers pipeline is a directory holding "
                       "model_index.json")
    if not (d / "model_index.json").is_file():
        raise T2IError(f"{d}: not a diffusers pipeline (no model_index.json)")
    import logging

    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        pipe = DiffusionPipeline.from_pretrained(str(d), local_files_only=True)
    except Exception as e:  # noqa: BLE001 - diffusers raises many kinds; all mean "not usable"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise T2IError(f"{d}: cannot load the diffusers pipeline ({first})") from e
    pipe.set_progress_bar_config(disable=True)
    return pipe
