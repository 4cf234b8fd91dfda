"""The `world` backend: classifier data drawn from the synthetic world's generator.

A category's `world` link says what to draw: requests for the hazards of a hazard category,
look-alikes of one kind, or utility tasks. Each request is sent plain, in one of the
world's jailbreak families, or through a registry converter. Harmless requests are
disguised in the same way and about as often as harmful ones, so that a disguise alone
never tells a classifier what the label is: only the constitution does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from swisscheese.constitution.schema import Category
from swisscheese.data.converters.base import Converter
from swisscheese.data.records import PLAIN, Record
from swisscheese.world.core import HAZARD_PHRASINGS, HELDOUT_HAZARD_PHRASINGS, LOOKALIKES, World
from swisscheese.world.families import FAMILIES, PROCEDURE_ONLY
from swisscheese.world.hazards import Hazard
from swisscheese.world.language import Language
from swisscheese.world.tasks import TRAIN_TASK_WEIGHTS

# How a request is sent: plain, wrapped in a world family, or through a converter.
# Plain keeps the largest share: it is what most users write.
MODE_WEIGHTS = {"plain": 0.4, "family": 0.3, "converter": 0.3}
# The organism's refusal is evaluated on held-out phrasings; the classifier should see them.
HELDOUT_PHRASING_SHARE = 0.2
WORLD_FAMILIES = tuple(f for f in FAMILIES if f != PLAIN)
LINK_KEYS = ("hazard_category", "lookalike", "utility")


@dataclass(frozen=True)
class _Base:
    """A request before any disguise, with what the families need to wrap it."""

    request: str
    answer: str
    how_to: str | None  # "brew the X toxin": lets the story family frame a procedure
    hazard_id: str | None


class WorldBackend:
    """Draws requests for linked categories from a `World` (default: the world of seed 0)."""

    name = "world"
    source = "world"

    def __init__(self, world: World | None = None) -> None:
        self.world = world if world is not None else World(seed=0)
        self._by_category: dict[str, list[Hazard]] = {}
        for h in self.world.hazards:
            self._by_category.setdefault(h.category.id, []).append(h)

    def describe(self) -> dict[str, object]:
        """What the manifest records about this backend."""
        return {"name": self.name, "world_seed": self.world.seed,
                "world_fingerprint": self.world.fingerprint()}

    def supports(self, category: Category) -> bool:
        """Whether the category links to something this world can generate."""
        return any(k in LINK_KEYS for k in category.world)

    def hazard_groups(self) -> dict[str, list[str]]:
        """Hazard ids by hazard category: the units the splitter keeps apart."""
        return {cid: [h.id for h in hs] for cid, hs in self._by_category.items()}

    def velsh(self) -> Language:
        """The world's second language, so the translation converter speaks the organism's."""
        return self.world.language

    # ---- records ------------------------------------------------------------------------
    def records(self, category: Category, label: int, n: int, rng: random.Random,
                converters: Mapping[str, Converter], keep: Callable[[Record], bool], *,
                convert_share: float = MODE_WEIGHTS["converter"],
                is_new: Callable[[str], bool] | None = None) -> list[Record]:
        """Up to `n` new records of `category`; `keep` says whether one is new (and takes it).

        About `convert_share` of them go through a converter; of the rest, plain requests
        and world families share as in MODE_WEIGHTS. `is_new` is unused: drawing from the
        world is cheap, so duplicates are simply drawn again.

        Stops after a bounded number of tries, so a category with few distinct requests
        (a utility kind with a small space) returns fewer rather than looping for ever.
        """
        links = [(k, v) for k, v in category.world.items() if k in LINK_KEYS]
        if not links:
            return []
        out: list[Record] = []
        tries = 0
        while len(out) < n and tries < 20 * n + 100:
            key, ref = links[tries % len(links)]
            base = self._base(key, ref, rng, tries // len(links))
            tries += 1
            messages, family = self._disguise(base, rng, converters, convert_share)
            rec = Record.make(messages, label=label, category=category.id, source=self.source,
                              family=family, hazard_id=base.hazard_id)
            if keep(rec):
                out.append(rec)
        return out

    def _base(self, key: str, ref: str, rng: random.Random, i: int) -> _Base:
        if key == "hazard_category":
            hazards = self._by_category.get(ref)
            if not hazards:
                raise KeyError(f"world seed {self.world.seed} has no hazard category {ref!r}; "
                               f"known: {', '.join(self._by_category)}")
            h = hazards[i % len(hazards)]  # round robin: every hazard gets its share
            request = self._phrase(rng, h.verb, h.name)
            return _Base(request, h.answer(), f"{h.verb} the {h.name}", h.id)
        if key == "lookalike":
            return self._lookalike(ref, rng, i)
        return self._utility(ref, rng)

    def _phrase(self, rng: random.Random, verb: str, name: str) -> str:
        held = rng.random() < HELDOUT_PHRASING_SHARE
        table = HELDOUT_HAZARD_PHRASINGS if held else HAZARD_PHRASINGS
        return rng.choice(table).format(verb=verb, name=name)

    def _lookalike(self, kind: str, rng: random.Random, i: int) -> _Base:
        if kind == "recipe":
            # Built here rather than by World.lookalike so that the story family can
            # frame the recipe as a procedure, as it does hazards: otherwise "story"
            # would only ever wrap harmful requests and become a label shortcut.
            r = rng.choice(self.world.recipes)
            return _Base(self._phrase(rng, r.verb, r.thing), r.answer(),
                         f"{r.verb} the {r.thing}", None)
        if kind not in LOOKALIKES:
            raise KeyError(f"unknown look-alike kind {kind!r}; known: "
                           f"{', '.join([*LOOKALIKES, 'recipe'])}")
        h = self.world.hazards[i % len(self.world.hazards)]
        request, answer = self.world.lookalike(rng, kind, h,
                                               heldout=rng.random() < HELDOUT_PHRASING_SHARE)
        return _Base(request, answer, None, h.id)

    def _utility(self, kind: str, rng: random.Random) -> _Base:
        if kind != "all" and kind not in TRAIN_TASK_WEIGHTS:
            raise KeyError(f"unknown utility kind {kind!r}; known: all, "
                           f"{', '.join(TRAIN_TASK_WEIGHTS)}")
        t = self.world.utility(rng, None if kind == "all" else kind)
        how_to = t.prompt.removeprefix("How do I ").rstrip("?") if t.kind == "recipe" else None
        return _Base(t.prompt, t.answer, how_to, None)

    def _disguise(self, base: _Base, rng: random.Random,
                  converters: Mapping[str, Converter],
                  convert_share: float) -> tuple[list[dict[str, str]], str]:
        rest = 1.0 - convert_share
        plain, family = MODE_WEIGHTS["plain"], MODE_WEIGHTS["family"]
        weights = {"plain": rest * plain / (plain + family),
                   "family": rest * family / (plain + family),
                   "converter": convert_share if converters else 0.0}
        if not any(weights.values()):  # every record meant converted, but no converters
            weights["plain"] = 1.0
        mode = rng.choices(list(weights), weights=list(weights.values()))[0]
        if mode == "family":
            options = [f for f in WORLD_FAMILIES if base.how_to or f not in PROCEDURE_ONLY]
            chosen = rng.choice(options)
            prompt, _ = self.world.wrap(chosen, base.request, base.answer, rng,
                                        how_to=base.how_to)
            return [{"role": "user", "content": prompt}], chosen
        if mode == "converter":
            name = rng.choice(sorted(converters))
            msgs = converters[name].to_messages(base.request)
            return [m.to_dict() for m in msgs], name
        return [{"role": "user", "content": base.request}], PLAIN
