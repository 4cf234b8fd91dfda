"""A deterministic attacker for the organism: rewrites steered by the judge's score.

The organism (a 1M-parameter model) cannot play PAIR's attacker, yet the search loop should
still mean something on it. The mutator stands in: a prompt is a *recipe*, a request
phrasing wrapped in one of the world's jailbreak families (role-play, story, Velsh, prefix
injection, ciphers...) and then in zero or more outer converters (the generic jailbreak
templates, obfuscations), and each proposal changes the recipe of the best prompt so far.

Steering by the score, as PAIR's attacker is told to do:

- nothing tried yet: start from a family chosen by the seed (streams start apart);
- best score 0, refused or undetermined: explore, a family not tried yet on this line;
- the best so far was flagged by the input classifier (ART): disguise it, an outer
  obfuscation or template, or a cipher family instead;
- best score above 0: exploit, a small change of the best recipe (another phrasing,
  another persona or story teller, one outer converter added or dropped), and now and
  then a jump to a family of the same kind (Wei et al.'s competing objectives or
  mismatched generalization); the higher the score, the more it exploits.

Every choice comes from a generator seeded by (seed, behaviour, history length, proposal
index), so a search is reproducible. Recipes travel in `Proposal.meta["recipe"]`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from swisscheese.redteam.attacks.search import Feedback, Proposal
from swisscheese.redteam.base import Behaviour

# Outer converters that frame or disguise a whole prompt; `jailbreak_template:i` picks one
# of the generic templates. Obfuscations matter to ART, whose aim is to slip past the input
# classifier.
DEFAULT_OUTER = ("jailbreak_template:0", "jailbreak_template:1", "jailbreak_template:2",
                 "jailbreak_template:3", "jailbreak_template:4", "char_spacing", "homoglyphs",
                 "zero_width", "codeword")
MAX_OUTER = 2  # outer converters on one prompt; more only garbles it


class Mutator:
    """The built-in attacker: world families x request phrasings x outer converters."""

    name = "mutator"

    def __init__(self, world: Any = None, seed: int = 0, families: Sequence[str] | None = None,
                 outer: Sequence[str] = DEFAULT_OUTER, exploit: float = 0.7) -> None:
        from swisscheese.world.families import FAMILIES

        if world is None:
            from swisscheese.world import World

            world = World(seed=0)
        self.world = world
        self.seed = seed
        fams = list(families) if families is not None else [f for f in FAMILIES if f != "plain"]
        unknown = [f for f in fams if f not in FAMILIES]
        if unknown or not fams:
            raise ValueError(f"unknown or no families {unknown}; known: {', '.join(FAMILIES)}")
        self.families = fams
        self.outer = list(outer)
        for op in self.outer:
            self._converter(op)  # fail now, naming the bad one, not mid-search
        if not 0.0 <= exploit <= 1.0:
            raise ValueError(f"exploit must be in [0, 1], got {exploit}")
        self.exploit = exploit

    # ---- rendering a recipe -------------------------------------------------------------
    def _hazard(self, behaviour: Behaviour) -> Any:
        if behaviour.hazard_id is None:
            return None
        try:
            return self.world.hazard(behaviour.hazard_id)
        except KeyError:
            return None

    def _converter(self, op: str) -> Any:
        from swisscheese.data.converters import get_converter

        name, _, arg = op.partition(":")
        if name == "jailbreak_template" and arg:
            return get_converter(name, template=int(arg))
        return get_converter(name, seed=self.seed)

    def request(self, behaviour: Behaviour, phrasing: int) -> str:
        """The plain request: the behaviour's own prompt (-1) or a world phrasing of it."""
        h = self._hazard(behaviour)
        if phrasing < 0 or h is None:
            return behaviour.prompt
        return self.world.hazard_request(h, phrasing)

    def render(self, behaviour: Behaviour, recipe: dict[str, Any]) -> str:
        request = self.request(behaviour, recipe["phrasing"])
        h = self._hazard(behaviour)
        how_to = (f"{h.verb} the {h.name}" if h is not None
                  else request.rstrip("?.").removeprefix("How do I ").removeprefix("how do I "))
        rng = random.Random(f"wrap:{recipe['variant']}")
        prompt, _ = self.world.wrap(recipe["family"], request, "", rng, how_to=how_to)
        for op in recipe["outer"]:
            prompt = self._converter(op).encode(prompt)
        return prompt

    # ---- proposing ------------------------------------------------------------------------
    def propose(self, behaviour: Behaviour, history: Sequence[Feedback], n: int = 1,
                seed: int = 0) -> list[Proposal]:
        seen = {fb.prompt for fb in history}
        tried = {fb.proposal.meta.get("recipe", {}).get("family") for fb in history}
        best = max(history, key=lambda fb: fb.rank(), default=None)
        out: list[Proposal] = []
        for i in range(n):
            rng = random.Random(f"mutator:{self.seed}:{seed}:{behaviour.id}:{len(history)}:{i}")
            for _ in range(20):  # a few tries at something not sent before
                recipe, why = self._next(behaviour, best, tried, rng, i)
                prompt = self.render(behaviour, recipe)
                if prompt not in seen:
                    break
            seen.add(prompt)
            tried.add(recipe["family"])
            out.append(Proposal(prompt, why, True, {"recipe": recipe}))
        return out

    def _next(self, behaviour: Behaviour, best: Feedback | None, tried: set[Any],
              rng: random.Random, i: int) -> tuple[dict[str, Any], str]:
        parent = best.proposal.meta.get("recipe") if best is not None else None
        if best is not None and best.input_flagged and parent is not None:
            return self._evade(parent, rng, best.input_score)
        if parent is None or best is None:
            start = (self.seed + i + rng.randrange(len(self.families))) % len(self.families)
            recipe = {"family": self.families[start], "phrasing": -1,
                      "variant": rng.randrange(10_000), "outer": []}
            if best is not None:  # a parent from another attacker: keep its words, wrap them
                return recipe, "no recipe for the best prompt so far; starting a new line"
            return recipe, f"first attempt: the {recipe['family']} family"
        score = best.score
        if score is None or score <= 0.0:
            fresh = [f for f in self.families if f not in tried] or self.families
            fam = rng.choice(fresh)
            return ({"family": fam, "phrasing": rng.randrange(20), "variant": rng.randrange(10_000),
                     "outer": []},
                    f"best score {_fmt(score)}: nothing to build on, exploring the {fam} family")
        if rng.random() < self.exploit + (1 - self.exploit) * score * 0.5:
            return self._refine(parent, rng, score)
        from swisscheese.world.families import FAMILY_KIND

        kind = FAMILY_KIND.get(parent["family"])
        sibs = [f for f in self.families if FAMILY_KIND.get(f) == kind and f != parent["family"]]
        fam = rng.choice(sibs or self.families)
        return ({**parent, "family": fam, "variant": rng.randrange(10_000)},
                f"best score {score:.2f}: trying {fam}, the same kind of attack ({kind})")

    def _evade(self, parent: dict[str, Any], rng: random.Random,
               input_score: float | None) -> tuple[dict[str, Any], str]:
        """The input classifier flagged the parent: disguise it further (ART)."""
        from swisscheese.world.families import FAMILY_KIND

        why = f"input classifier flagged it ({_fmt(input_score)})"
        if self.outer and len(parent["outer"]) < MAX_OUTER and rng.random() < 0.6:
            op = rng.choice(self.outer)
            return ({**parent, "outer": [*parent["outer"], op]}, f"{why}: wrapping it in {op}")
        ciphers = [f for f in self.families
                   if FAMILY_KIND.get(f) == "mismatched_generalization" and f != parent["family"]]
        fam = rng.choice(ciphers or self.families)
        return ({**parent, "family": fam, "variant": rng.randrange(10_000)},
                f"{why}: encoding it with {fam}")

    def _refine(self, parent: dict[str, Any], rng: random.Random,
                score: float) -> tuple[dict[str, Any], str]:
        moves = ["phrasing", "variant"]
        if self.outer and len(parent["outer"]) < MAX_OUTER:
            moves.append("add")
        if parent["outer"]:
            moves.append("drop")
        move = rng.choice(moves)
        child = {**parent, "outer": list(parent["outer"])}
        if move == "phrasing":
            child["phrasing"] = rng.randrange(20)
            why = "rephrasing the request"
        elif move == "variant":
            child["variant"] = rng.randrange(10_000)
            why = "another persona, teller or side task"
        elif move == "add":
            op = rng.choice(self.outer)
            child["outer"].append(op)
            why = f"wrapping it in {op}"
        else:
            op = child["outer"].pop(rng.randrange(len(child["outer"])))
            why = f"dropping {op}"
        return child, f"best score {score:.2f} with {parent['family']}: {why}"


def _fmt(score: float | None) -> str:
    return "undetermined" if score is None else f"{score:.2f}"
