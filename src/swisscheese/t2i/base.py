"""The text-to-image red team's contracts: image verdicts, image judges, prompt filters,
writers and generators.

An image is a uint8 numpy array (H, W, 3). An `ImageJudge` scores one image: a graded
score in [0, 1] (how clearly it shows forbidden content), the harmful category it shows,
a reason, and None as the score when it cannot decide (undetermined: never a failed
attack, never a success). A `PromptFilter` scores a prompt the same way. A `Writer`
proposes the next prompt from the last one and the guide's instruction; a `Generator`
renders k images per prompt. None of these import torch at module level.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

Image = np.ndarray
# An organism directory: a diffusers pipeline, its card, and its CNN judge beside it.
CARD_FILE = "swisscheese.json"
JUDGE_DIR = "swisscheese-judge"


class T2IError(ValueError):
    """A text-to-image component that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class ImageVerdict:
    """A judge's reading of one image (or a filter's of one prompt).

    `score` in [0, 1], None when undetermined; `category` the harmful category the score
    is about (None when nothing harmful was seen); `instruction` an optional hint for the
    writer (a VLM judge gives one); `meta` judge-specific details.
    """

    score: float | None
    category: str | None = None
    reason: str = ""
    instruction: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.score is not None and not (math.isfinite(self.score)
                                           and 0.0 <= self.score <= 1.0):
            raise ValueError(f"a verdict's score must be in [0, 1] or None, got {self.score}")

    @property
    def determined(self) -> bool:
        return self.score is not None

    def flagged(self, threshold: float = 0.5, category: str | None = None) -> bool:
        """Whether this verdict flags the image (for `category`, when given)."""
        if self.score is None or self.score < threshold:
            return False
        return category is None or self.category == category

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageVerdict:
        return cls(score=d.get("score"), category=d.get("category"), reason=d.get("reason", ""),
                   instruction=d.get("instruction", ""), meta=dict(d.get("meta") or {}))


def undetermined(reason: str, **meta: Any) -> ImageVerdict:
    return ImageVerdict(None, None, reason, meta=meta)


def check_image(image: Any, where: str = "image") -> Image:
    """A uint8 (H, W, 3) array from an array or PIL image; raises T2IError otherwise."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise T2IError(f"{where}: expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.rint(arr * 255.0), 0, 255)
        arr = arr.astype(np.uint8)
    return arr[:, :, :3]


class ImageJudge(ABC):
    """Scores images. Subclasses set `name` and implement `judge_batch`.

    `threshold`: a score at or above it flags the image. `real_images`: whether the judge
    reads photographs (NudeNet, a VLM) rather than the organism's 16x16 glyph scenes.
    """

    name: ClassVar[str] = ""
    real_images: ClassVar[bool] = False
    threshold: float = 0.5

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> Any:
        """Build from a run config's parameters; `ctx` is a `T2IContext`."""
        return cls(**params)

    @abstractmethod
    def judge_batch(self, images: Sequence[Image], prompts: Sequence[str] | None = None
                    ) -> list[ImageVerdict]:
        """One verdict per image; `prompts[i]` is what image i was rendered from."""

    def judge(self, image: Image, prompt: str | None = None) -> ImageVerdict:
        return self.judge_batch([image], None if prompt is None else [prompt])[0]


class PromptFilter(ABC):
    """Scores prompts before anything is rendered: a high score blocks the prompt."""

    name: ClassVar[str] = ""
    threshold: float = 0.5

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> Any:
        """Build from a run config's parameters; `ctx` is a `T2IContext`."""
        return cls(**params)

    @abstractmethod
    def score_batch(self, prompts: Sequence[str]) -> list[ImageVerdict]:
        """One verdict per prompt (score None: the filter could not decide)."""

    def passes(self, verdict: ImageVerdict) -> bool:
        """Whether a prompt with this verdict gets through. Undetermined does not: a filter
        that cannot decide fails closed."""
        return verdict.score is not None and verdict.score < self.threshold


@dataclass(frozen=True)
class Guidance:
    """What the guide tells the writer about the last prompt's images.

    `text` is the instruction in words (what an LLM writer reads); `hits` of `k` images
    showed the target category (None when the guide is off); `avoid` are words the loop
    asks the writer not to use (holes it has already found), `keep` words to keep.
    """

    text: str = ""
    hits: int | None = None
    k: int | None = None
    score: float | None = None
    avoid: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


NO_GUIDANCE = Guidance()


@dataclass(frozen=True)
class Proposal:
    prompt: str
    note: str = ""


class Writer(ABC):
    """Proposes prompts: ART's writer LLM, or the built-in mutator."""

    name: ClassVar[str] = ""

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> Any:
        """Build from a run config's parameters; `ctx` is a `T2IContext`."""
        return cls(**params)

    @abstractmethod
    def propose(self, prompt: str, guidance: Guidance, category: str, n: int = 1,
                seed: int = 0) -> list[Proposal]:
        """`n` rewrites of `prompt` aimed at `category`, following `guidance`; `seed`
        makes a stochastic writer repeatable (a resumed run asks again)."""

    def observe(self, prompt: str) -> None:
        """Called for every prompt the loop records, fresh or replayed from the store, so
        a writer with a memory (the mutator's word counts) resumes in the same state."""
        return None


class Generator(ABC):
    """Renders k images per prompt, deterministically for a given seed."""

    name: ClassVar[str] = ""

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> Any:
        """Build from a run config's parameters; `ctx` is a `T2IContext`."""
        return cls(**params)

    @abstractmethod
    def generate(self, prompts: Sequence[str], k: int, seed: int = 0) -> list[list[Image]]:
        """For each prompt, `k` uint8 (H, W, 3) images; image j of a prompt depends only on
        (prompt, seed, j), so a resumed run renders the same pictures."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
