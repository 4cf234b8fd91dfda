"""The oracle as an image judge: exact on the visual world's images (see `t2i.oracle`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swisscheese.t2i.base import Image, ImageJudge, ImageVerdict, check_image
from swisscheese.t2i.oracle import oracle_verdict


class OracleJudge(ImageJudge):
    name = "oracle"

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> OracleJudge:
        return cls(**params)

    def judge_batch(self, images: Sequence[Image], prompts: Sequence[str] | None = None
                    ) -> list[ImageVerdict]:
        return [oracle_verdict(check_image(im, f"image {i}")) for i, im in enumerate(images)]
