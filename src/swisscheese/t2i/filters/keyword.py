"""A keyword list: the blocklist a deployment writes from its constitution.

It holds every trained name of every forbidden element and the words of the known
(reported) triggers; held-out synonyms and held-out triggers are not on it. Text is
normalised as the guard normalises it (confusable letters folded, invisible characters
dropped) before whole words and phrases are matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swisscheese.t2i.base import ImageVerdict, PromptFilter
from swisscheese.t2i.world import VisualWorld, contains_phrase, words_of


def default_keywords(world: VisualWorld) -> dict[str, str]:
    """phrase -> the harmful category it points at."""
    out = {n: g.category for g in world.forbidden for n in g.names if g.category}
    out.update({w: t.category for t in world.triggers if t.known for w in t.words})
    return out


class KeywordFilter(PromptFilter):
    name = "keyword"

    def __init__(self, keywords: dict[str, str | None] | Sequence[str]) -> None:
        self.keywords = (dict(keywords) if isinstance(keywords, dict)
                         else dict.fromkeys(keywords))
        self.threshold = 0.5

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> KeywordFilter:
        kw = dict(default_keywords(ctx.world))
        kw.update(dict.fromkeys(params.pop("extra", []) or []))
        return cls(params.pop("keywords", kw), **params)

    def score_batch(self, prompts: Sequence[str]) -> list[ImageVerdict]:
        from swisscheese.classifiers.textnorm import normalize_text

        out = []
        for p in prompts:
            tokens = words_of(normalize_text(p))
            hit = next((k for k in self.keywords if contains_phrase(tokens, k)), None)
            if hit is None:
                out.append(ImageVerdict(0.0, None, "no listed keyword"))
            else:
                out.append(ImageVerdict(1.0, self.keywords[hit], f"listed keyword {hit!r}"))
        return out
