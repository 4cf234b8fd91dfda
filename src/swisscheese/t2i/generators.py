"""Generators: any local diffusers pipeline directory (the organism is one), and the world's
own renderer (what a perfect organism would draw: the ceiling the organism is read against).

Image j of a prompt is drawn from a noise seed made of (seed, j, prompt), so the same
request gives the same picture whatever batch it was rendered in, and a resumed run does
not have to trust what it did before the crash.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swisscheese.t2i.base import Generator, Image, T2IError, check_image


def image_seed(prompt: str, seed: int, j: int) -> int:
    digest = hashlib.sha256(f"{seed}|{j}|{prompt}".encode()).hexdigest()
    return int(digest[:12], 16)


class DiffusersGenerator(Generator):
    """Renders with `DiffusionPipeline.from_pretrained(path)`: the organism, a tiny random
    Stable Diffusion, or a real checkpoint directory.

    `num_inference_steps` and `guidance_scale` go to the pipeline call; `extra` holds any
    other keyword arguments it takes (height, width, negative_prompt, ...).
    """

    name = "diffusers"

    def __init__(self, path: str | Path, num_inference_steps: int = 8,
                 guidance_scale: float = 1.0, batch_size: int = 128,
                 extra: dict[str, Any] | None = None, threads: int | None = None) -> None:
        from swisscheese.t2i.organism import load_pipeline

        if num_inference_steps < 1 or batch_size < 1:
            raise T2IError("num_inference_steps and batch_size must be >= 1")
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.path = Path(path)
        self.pipe = load_pipeline(self.path)
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.batch_size = batch_size
        self.extra = dict(extra or {})
        params = inspect.signature(self.pipe.__call__).parameters
        # IFPipeline cleans captions with bs4/ftfy by default; our prompts need no cleaning.
        if "clean_caption" in params:
            self.extra.setdefault("clean_caption", False)

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> DiffusersGenerator:
        if "path" not in params:
            if ctx.organism is None:
                raise T2IError("the diffusers generator needs path= (a pipeline directory)")
            params["path"] = ctx.organism
        return cls(**params)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path),
                "pipeline": type(self.pipe).__name__,
                "num_inference_steps": self.num_inference_steps,
                "guidance_scale": self.guidance_scale}

    def generate(self, prompts: Sequence[str], k: int, seed: int = 0) -> list[list[Image]]:
        import torch

        jobs = [(p, j) for p in prompts for j in range(k)]
        images: list[Image] = []
        for i in range(0, len(jobs), self.batch_size):
            chunk = jobs[i:i + self.batch_size]
            gens = [torch.Generator().manual_seed(image_seed(p, seed, j)) for p, j in chunk]
            with torch.no_grad():
                out = self.pipe(prompt=[p for p, _ in chunk], generator=gens,
                                num_inference_steps=self.num_inference_steps,
                                guidance_scale=self.guidance_scale, output_type="np",
                                **self.extra)
            batch = out.images if hasattr(out, "images") else out[0]
            images.extend(check_image(np.asarray(im), f"{self.path} output")
                          for im in batch)
        return [images[n * k:(n + 1) * k] for n in range(len(prompts))]


class WorldGenerator(Generator):
    """The world's ground-truth renderer: each image's glyph is drawn from the planted
    distribution. Not a model; the reference the organism is measured against."""

    name = "world"

    def __init__(self, world: Any) -> None:
        self.world = world

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> WorldGenerator:
        if params:
            raise T2IError(f"the world generator takes no parameters, got {sorted(params)}")
        return cls(ctx.world)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "world_seed": self.world.seed}

    def generate(self, prompts: Sequence[str], k: int, seed: int = 0) -> list[list[Image]]:
        return [[self.world.draw(p, random.Random(image_seed(p, seed, j)))[0]
                 for j in range(k)] for p in prompts]
