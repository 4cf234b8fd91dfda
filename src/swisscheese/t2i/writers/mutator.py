"""The built-in writer: rewrites prompts in the world's own vocabulary, no LLM needed.

It reads a prompt as slots (sprite, colour, background, position, up to four mood words,
up to four objects, a style), then edits a few: replaces a word, adds one, drops one. The
guide sets the step: after a hit it makes one edit (stay close to what worked); after a
miss it moves away: a fresh group of `group` mood words and `group` objects (keeping the
guide's `keep` words) and one more edit; with the guide off (no hit count) one or two
edits. It knows nothing of the planted triggers; it prefers the words tried least beside
the words the prompt already holds, then the words used least, so every regrouped prompt
tests many word pairs no earlier prompt held: a group test, which is how a hole that only
two words together open is found within a small budget. It never uses the `avoid` words.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from swisscheese.t2i.assets import ADJECTIVES, BACKGROUNDS, COLOURS, POSITIONS, PROPS, STYLES
from swisscheese.t2i.base import Guidance, Proposal, Writer
from swisscheese.t2i.world import SPRITES, Scene, VisualWorld, contains_phrase, words_of

MAX_LIST = 4


@dataclass
class Slots:
    sprite: str | None = None
    colour: str | None = None
    background: str | None = None
    position: str | None = None
    adjectives: list[str] = field(default_factory=list)
    props: list[str] = field(default_factory=list)
    style: str | None = None

    def words(self) -> list[str]:
        return [w for w in (self.sprite, self.colour, self.background, self.position,
                            self.style, *self.adjectives, *self.props) if w]


def read_slots(world: VisualWorld, text: str) -> Slots:
    tokens = words_of(text)

    def first(table: dict[str, tuple[str, ...]]) -> str | None:
        return next((k for k, names in table.items()
                     if any(contains_phrase(tokens, n) for n in names)), None)

    syn = world.synonyms
    return Slots(
        sprite=first({k: syn[k] for k in SPRITES}),
        colour=first({k: syn[k] for k in COLOURS}),
        background=first({k: syn[k] for k in BACKGROUNDS}),
        position=first({k: (*v[0], k) for k, v in POSITIONS.items()}),
        adjectives=[a for a in ADJECTIVES if contains_phrase(tokens, a)][:MAX_LIST],
        props=[p for p in PROPS if contains_phrase(tokens, p)][:MAX_LIST],
        style=next((s for s in STYLES if contains_phrase(tokens, s)), None))


class MutatorWriter(Writer):
    name = "mutator"

    def __init__(self, world: VisualWorld, seed: int = 0, group: int = MAX_LIST) -> None:
        if not 0 <= group <= MAX_LIST:
            raise ValueError(f"mutator: group must be in [0, {MAX_LIST}], got {group!r}")
        self.world = world
        self.seed = seed
        self.group = group
        self.used: Counter[str] = Counter()
        self.pairs: Counter[frozenset[str]] = Counter()

    @classmethod
    def from_config(cls, ctx: Any, **params: Any) -> MutatorWriter:
        return cls(ctx.world, **params)

    def observe(self, prompt: str) -> None:
        words = read_slots(self.world, prompt).words()
        self.used.update(words)
        self.pairs.update(frozenset((a, b)) for i, a in enumerate(words) for b in words[i + 1:])

    def _pick(self, options: list[str], rng: random.Random, avoid: set[str],
              context: Sequence[str] = ()) -> str | None:
        """The option least tried beside `context` (then least used; ties at random),
        never an avoided word."""
        allowed = [o for o in options if o not in avoid and not set(words_of(o)) & avoid]
        if not allowed:
            return None

        def cost(o: str) -> tuple[int, int]:
            return (sum(self.pairs[frozenset((o, c))] for c in context), self.used[o])

        low = min(cost(o) for o in allowed)
        return rng.choice([o for o in allowed if cost(o) == low])

    def _edit(self, s: Slots, rng: random.Random, avoid: set[str], keep: set[str]) -> None:
        kind = rng.choice(("sprite", "colour", "background", "position", "adjective",
                           "adjective", "prop", "prop", "style"))
        tables = {"sprite": list(SPRITES), "colour": list(COLOURS),
                  "background": list(BACKGROUNDS), "position": list(POSITIONS)}
        if kind in tables:
            if getattr(s, kind) not in keep:
                cur = getattr(s, kind)
                ctx = [w for w in s.words() if w != cur]
                setattr(s, kind, self._pick(tables[kind], rng, avoid | {cur or ""}, ctx))
            return
        if kind == "style":
            if s.style in keep:
                return
            ctx = [w for w in s.words() if w != s.style]
            s.style = None if s.style and rng.random() < 0.4 else \
                self._pick(list(STYLES), rng, avoid | {s.style or ""}, ctx)
            return
        items, pool = ((s.adjectives, ADJECTIVES) if kind == "adjective" else
                       (s.props, PROPS))
        droppable = [w for w in items if w not in keep]
        op = rng.random()
        if items and droppable and (op < 0.3 or len(items) >= MAX_LIST and op < 0.6):
            items.remove(rng.choice(droppable))
        if len(items) < MAX_LIST:
            w = self._pick([p for p in pool if p not in items], rng, avoid, s.words())
            if w:
                items.append(w)

    def _regroup(self, s: Slots, rng: random.Random, avoid: set[str], keep: set[str]) -> None:
        """A fresh group of mood words and objects, each the one tried least beside the
        words chosen so far (the kept words first)."""
        s.adjectives = [a for a in s.adjectives if a in keep]
        s.props = [p for p in s.props if p in keep]
        for _ in range(2 * self.group):
            lists = [(items, pool) for items, pool in ((s.adjectives, ADJECTIVES),
                                                       (s.props, PROPS))
                     if len(items) < self.group]
            if not lists:
                return
            items, pool = lists[0] if len(lists) == 1 or len(lists[0][0]) <= len(
                lists[1][0]) else lists[1]
            # Pairs among the modifiers: the scene words are few and in every prompt, so
            # counting them beside a word would drown the pairs not tried yet.
            mods = [*s.adjectives, *s.props, *([s.style] if s.style else [])]
            w = self._pick([p for p in pool if p not in items], rng, avoid, mods)
            if w is None:
                return
            items.append(w)

    def propose(self, prompt: str, guidance: Guidance, category: str, n: int = 1,
                seed: int = 0) -> list[Proposal]:
        out = []
        for i in range(n):
            rng = random.Random(f"mutator-{self.seed}-{seed}-{i}-{prompt}")
            s = read_slots(self.world, prompt)
            avoid, keep = set(guidance.avoid), set(guidance.keep)
            # Drop avoided words the prompt already holds: the loop wants other holes.
            s.adjectives = [a for a in s.adjectives if a not in avoid]
            s.props = [p for p in s.props if p not in avoid]
            if s.style in avoid:
                s.style = None
            note = ""
            if guidance.hits is None:
                edits = rng.choice((1, 2))
            elif guidance.hits > 0:
                edits = 1
            else:
                edits = 1 if self.group else rng.choice((2, 3))
                if self.group:
                    self._regroup(s, rng, avoid, keep)
                    note = "regrouped, "
            for _ in range(edits):
                self._edit(s, rng, avoid, keep)
            out.append(Proposal(self._caption(s, rng), f"{note}{edits} edit(s)"))
        return out

    def _caption(self, s: Slots, rng: random.Random) -> str:
        scene = Scene(s.sprite or rng.choice(list(SPRITES)),
                      s.colour or rng.choice(list(COLOURS)),
                      s.background or rng.choice(list(BACKGROUNDS)),
                      s.position or rng.choice(list(POSITIONS)))
        return self.world.caption(scene, rng, adjective=" ".join(s.adjectives),
                                  prop=" and a ".join(s.props), style=s.style or "",
                                  p_adj=0.0, p_prop=0.0, p_style=0.0)
