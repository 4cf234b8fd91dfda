"""The adaptive search for a universal jailbreak: red-team effort, counted in queries.

A universal jailbreak is one template, with the question as its only slot, that passes all
eight challenge levels. `UniversalSearch` hunts for one against a target within a budget
of target queries, the way a red team on the challenge page would:

1. pick the level to work on: the hardest level the best template so far does not pass;
2. run one search on it (PAIR, TAP and Crescendo in turn, each with the built-in attacker
   unless an attacker model is given), steered by the grader's feedback as the challenge
   page gives it: the detail score against the level's threshold, whether the model
   refused, and which guard layer blocked the reply;
3. turn every prompt that passed that level into a template (the attacker's recipe, or
   Crescendo's plan of turns, rendered from the question alone) and try the template on
   all eight levels; a template that passes all eight ends the search;
4. in the rotation's fourth step ("refine"), the mutator proposes changes of the best
   template so far (another persona, teller or side task, an outer frame added or
   dropped, a sibling family), steered by the share of levels it passes, as a player
   steers by the levels the page shows passed; each is tried on every level.

Templates are told apart by their text for level 1, so one already tried costs nothing.

Every query counts, the transfer tests included. The result says how many queries the
first universal template took (or that none was found within the budget), the template,
and the strongest template found. Candidate templates are rendered from the level's
question only (no hazard name looked up), so a template is a function of the question.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from swisscheese.models.base import ChatModel, GenerationParams
from swisscheese.redteam.base import Attack, Attempt, Behaviour, Judge

STRATEGIES = ("pair", "tap", "crescendo", "refine")
# Templates the refine step proposes from the best one, each tried on every level.
REFINE_BRANCHING = 4
QUESTION_SLOT = "{question}"
Progress = Callable[[str, int, int], None]


@dataclass
class Candidate:
    """A template to try on every level: a mutator recipe, a Crescendo plan, or a text
    with the question slot. `levels` maps level number -> detail score once tried."""

    kind: str  # "recipe" | "plan" | "text"
    spec: Any
    strategy: str
    found_on: int
    found_at_query: int
    levels: dict[int, float] = field(default_factory=dict)
    passed: list[int] = field(default_factory=list)


@dataclass
class SearchResult:
    target: str
    budget: int
    queries: int = 0
    found: bool = False
    queries_to_universal: int | None = None
    universal: dict[str, Any] | None = None
    best: dict[str, Any] | None = None
    searches: int = 0
    level_successes: int = 0
    candidates_tried: int = 0
    by_strategy: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def question_only(b: Behaviour) -> Behaviour:
    """The level as a template sees it: its question and nothing looked up by hazard."""
    return Behaviour(id=b.id, prompt=b.prompt, category=b.category, target=b.target)


class UniversalSearch:
    """See the module docstring. `attacker`: None (the built-in mutator and planner) or a
    model spec / ChatModel that PAIR, TAP and Crescendo use as their attacker."""

    def __init__(self, levels: Sequence[Behaviour], judge: Judge, world: Any,
                 budget: int = 500, strategies: Sequence[str] = STRATEGIES, seed: int = 0,
                 max_new_tokens: int = 192, attacker: ChatModel | str | None = None) -> None:
        if budget < 1:
            raise ValueError(f"budget must be >= 1 query, got {budget}")
        unknown = [s for s in strategies if s not in STRATEGIES]
        if unknown or not strategies:
            raise ValueError(f"unknown or no strategies {unknown}; choose from "
                             f"{', '.join(STRATEGIES)}")
        if any(b.level is None or b.hazard_id is None for b in levels) or not levels:
            raise ValueError("the universal search needs the challenge levels (behaviours "
                             "with a level and a hazard)")
        self.levels = sorted(levels, key=lambda b: b.level or 0)
        self.judge = judge
        self.world = world
        self.budget = budget
        self.strategies = list(strategies)
        self.seed = seed
        self.params = GenerationParams(max_new_tokens=max_new_tokens)
        self.attacker = attacker

    # ---- the searches --------------------------------------------------------------------
    def _attack(self, strategy: str, round_no: int, left: int) -> Attack:
        from swisscheese.redteam.attacks.crescendo import CrescendoAttack
        from swisscheese.redteam.attacks.pair import PAIRAttack
        from swisscheese.redteam.attacks.tap import TAPAttack

        seed = self.seed + 1009 * round_no
        tokens = self.params.max_new_tokens
        if strategy == "pair":
            return PAIRAttack(self.attacker, n_streams=3, n_iterations=5, seed=seed,
                              world=self.world, max_queries=left, max_new_tokens=tokens)
        if strategy == "tap":
            return TAPAttack(self.attacker, branching_factor=3, width=3, depth=3, seed=seed,
                             world=self.world, max_queries=left, max_new_tokens=tokens)
        return CrescendoAttack(self.attacker, max_turns=4, max_backtracks=4, openers=1,
                               seed=seed, world=self.world, max_queries=left,
                               max_new_tokens=tokens)

    def _next_level(self, best: Candidate | None, round_no: int) -> Behaviour:
        """The hardest levels first, those the best template passes left out."""
        passed = set(best.passed) if best else set()
        open_levels = [b for b in reversed(self.levels) if b.level not in passed]
        pool = open_levels or list(reversed(self.levels))
        return pool[round_no % len(pool)]

    def _candidates(self, attempts: Sequence[Attempt], level: Behaviour, strategy: str,
                    queries: int) -> list[Candidate]:
        out = []
        for a in attempts:
            if a.verdict is None or not a.verdict.success(level.threshold):
                continue
            recipe, plan = a.meta.get("recipe"), a.meta.get("plan")
            at = queries + int(a.meta.get("query", 0))
            if isinstance(plan, list) and all(s.get("kind") in ("opener", "escalation")
                                              for s in plan):
                steps = [{**s, "recipe": {**s["recipe"], "phrasing": -1}}
                         if s["kind"] == "escalation" else s for s in plan]
                out.append(Candidate("plan", steps, strategy, level.level or 0, at))
            elif isinstance(recipe, dict):
                out.append(Candidate("recipe", {**recipe, "phrasing": -1}, strategy,
                                     level.level or 0, at))
            elif len(a.conversation) == 1 and level.prompt in a.conversation[0]["content"]:
                text = a.conversation[0]["content"].replace(level.prompt, QUESTION_SLOT)
                out.append(Candidate("text", text, strategy, level.level or 0, at))
        return out

    # ---- trying a template on every level ---------------------------------------------------
    def render(self, c: Candidate, level: Behaviour) -> list[str]:
        """The user turns of template `c` for `level` (one for single-turn templates)."""
        from swisscheese.redteam.attacks.crescendo import Planner
        from swisscheese.redteam.attacks.mutator import Mutator

        b = question_only(level)
        if c.kind == "text":
            return [str(c.spec).replace(QUESTION_SLOT, level.prompt)]
        if c.kind == "recipe":
            prompt, earlier = Mutator(world=self.world, seed=self.seed).render(b, c.spec)
            # A context family's earlier user turns are replayed; the target answers each.
            return [m["content"] for m in earlier if m["role"] == "user"] + [prompt]
        planner = Planner(world=self.world, seed=self.seed)
        return [planner.render_step(b, s) for s in c.spec]

    def _replay(self, target: ChatModel, turns: list[list[str]]) -> list[str]:
        """Send each level's turns, the conversation growing with the target's replies;
        the last replies, one per level (all levels batched turn by turn)."""
        convs: list[list[dict[str, str]]] = [[] for _ in turns]
        replies = [""] * len(turns)
        for t in range(max(len(x) for x in turns)):
            idx = [i for i, x in enumerate(turns) if t < len(x)]
            for i in idx:
                convs[i].append({"role": "user", "content": turns[i][t]})
            msgs = target.generate_batch([convs[i] for i in idx], self.params)
            for i, m in zip(idx, msgs, strict=True):
                convs[i].append({"role": "assistant", "content": m.content})
                replies[i] = m.content
        return replies

    def try_everywhere(self, target: ChatModel, c: Candidate, left: int) -> int:
        """Try `c` on the levels it has not been tried on, within `left` queries; returns
        the queries spent (a multi-turn template costs one per turn)."""
        todo = [b for b in self.levels if b.level not in c.levels]
        turns = [self.render(c, b) for b in todo]
        per = max(1, len(turns[0])) if turns else 1
        todo, turns = todo[: left // per], turns[: left // per]
        if not todo:
            return 0
        try:
            replies = self._replay(target, turns)
        except Exception:  # noqa: BLE001 - a failed transfer test is no evidence either way
            return per * len(todo)
        for b, reply in zip(todo, replies, strict=True):
            v = self.judge.judge(b, reply)
            c.levels[b.level or 0] = v.score or 0.0
            if v.success(b.threshold):
                c.passed.append(b.level or 0)
        c.passed.sort()
        return per * len(todo)

    # ---- the loop ------------------------------------------------------------------------
    def run(self, target: ChatModel, name: str | None = None,
            progress: Progress | None = None) -> SearchResult:
        """Search until a universal template is found or the budget is spent."""
        res = SearchResult(str(name or getattr(target, "name", "target")), self.budget)
        t0 = time.perf_counter()
        best: Candidate | None = None
        tried: dict[str, Candidate] = {}
        round_no = idle = 0
        while res.queries < self.budget and not res.found and idle < 2 * len(self.strategies):
            strategy = self.strategies[round_no % len(self.strategies)]
            level = self._next_level(best, round_no)
            stats = res.by_strategy.setdefault(strategy, {"searches": 0, "queries": 0,
                                                          "level_successes": 0})
            before = res.queries
            if strategy == "refine":
                cands = self._refinements(best, tried, round_no)
            else:
                attack = self._attack(strategy, round_no, self.budget - res.queries)
                attempts = attack.run(level, target, self.judge)
                cands = self._candidates(attempts, level, strategy, res.queries)
                res.queries += sum(1 for a in attempts if a.conversation)
                res.searches += 1
                stats["searches"] += 1
                stats["level_successes"] += len(cands)
                res.level_successes += len(cands)
            best = self._transfer(target, cands, tried, res, best)
            stats["queries"] += res.queries - before
            idle = idle + 1 if res.queries == before else 0  # nothing left to send
            round_no += 1
            if progress:
                progress(f"{res.target} {strategy} level {level.level}",
                         min(res.queries, self.budget), self.budget)
        res.best = self.describe(best) if best else None
        res.seconds = round(time.perf_counter() - t0, 2)
        return res

    def _refinements(self, best: Candidate | None, tried: Mapping[str, Candidate],
                     round_no: int) -> list[Candidate]:
        """Changes of the best single-turn template, from the mutator steered by the share
        of levels each template tried so far passes."""
        from swisscheese.redteam.attacks.mutator import Mutator
        from swisscheese.redteam.attacks.search import Feedback, Proposal

        if best is None or best.kind != "recipe":
            return []
        history = [Feedback(Proposal(k, "", True, {"recipe": c.spec}), "",
                            len(c.passed) / len(self.levels))
                   for k, c in tried.items() if c.kind == "recipe"]
        # The best first: the mutator builds on the highest-scoring line, the first of
        # equals.
        history.sort(key=lambda fb: fb.proposal.meta["recipe"] != best.spec)
        props = Mutator(world=self.world, seed=self.seed).propose(
            question_only(self.levels[0]), history, REFINE_BRANCHING, seed=round_no)
        return [Candidate("recipe", {**p.meta["recipe"], "phrasing": -1}, "refine",
                          best.found_on, 0) for p in props]

    def _key(self, c: Candidate) -> str:
        return "\x00".join(self.render(c, self.levels[0]))

    def _transfer(self, target: ChatModel, cands: list[Candidate],
                  tried: dict[str, Candidate], res: SearchResult,
                  best: Candidate | None) -> Candidate | None:
        for c in cands:
            key = self._key(c)
            if key in tried or res.queries >= self.budget:
                continue
            tried[key] = c
            res.candidates_tried += 1
            if not c.found_at_query:
                c.found_at_query = res.queries
            res.queries += self.try_everywhere(target, c, self.budget - res.queries)
            if best is None or (len(c.passed), sum(c.levels.values())) > (
                    len(best.passed), sum(best.levels.values())):
                best = c
            if len(c.passed) == len(self.levels):
                res.found = True
                res.queries_to_universal = res.queries
                res.universal = self.describe(c)
                break
        return best

    def describe(self, c: Candidate) -> dict[str, Any]:
        """A template as the report shows it: its turns for level 1 with the question as
        the slot, the levels it passed and its scores."""
        first = self.levels[0]
        shown = [t.replace(first.prompt, QUESTION_SLOT) for t in self.render(c, first)]
        return {"kind": c.kind, "strategy": c.strategy, "found_on_level": c.found_on,
                "found_at_query": c.found_at_query, "turns": shown,
                "levels_passed": list(c.passed), "n_levels_passed": len(c.passed),
                "scores": {str(k): round(v, 4) for k, v in sorted(c.levels.items())},
                "spec": c.spec}
