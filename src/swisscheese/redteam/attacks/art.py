"""ART-style search: prompts the input classifier passes as safe that still elicit harm.

In the spirit of automated red teaming against a guard (Samvelyan et al.'s Rainbow
Teaming, Anthropic's ART for constitutional classifiers): the attacker mutates prompts,
the *input classifier* filters the candidates (only those scoring below the bundle's input
threshold survive, the ones a deployment would let through), the survivors go to the
target and the judge scores its replies, and the best-scored survivors are the parents of
the next round. Candidates the classifier flags are never sent: they would only be
refused, and the search is for the holes of that layer.

The input classifier is the guard bundle's, read exactly as the guard reads a conversation
(normalized text, `render_conversation`), so "passes" here means "passes the guard". The
bundle is `bundle` (a directory or a loaded GuardBundle) or, when the target is a
`GuardedChatModel`, its own; with neither the attack is unsupported.

Every sent candidate becomes an attempt with `meta["input_score"]`; the counts of the
search (`candidates`, `passed_input`, `elicited`) are in every attempt's `meta["art"]` and
the best attempt carries `meta["best"]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swisscheese.models.base import ChatModel
from swisscheese.redteam.attacks.pair import (
    Attacker,
    AttackerError,
    Feedback,
    Proposal,
    TargetProbe,
    error_attempt,
    feedback_of,
    make_attacker,
)
from swisscheese.redteam.base import (
    Attack,
    AttackUnsupported,
    Attempt,
    Behaviour,
    Judge,
)


def input_scorer(bundle: Any) -> Any:
    """score(prompts) -> input-classifier scores, read as the guard reads a conversation."""
    from swisscheese.classifiers.base import render_conversation
    from swisscheese.guard.pipeline import normalized_messages

    def score(prompts: list[str]) -> list[float]:
        texts = [render_conversation(normalized_messages([{"role": "user", "content": p}]))
                 for p in prompts]
        return [float(s) for s in bundle.input_scores(texts)]

    return score


class ARTAttack(Attack):
    """Rounds of mutation, input-classifier filtering and judge ranking.

    Each round every one of the `beam` best parents (the behaviour's own prompt at first)
    gets `branching` proposals from the attacker; at most `max_queries` prompts reach the
    target in all. With `stop_on_success` the search ends at the first jailbreak that
    passed the input classifier; without it, it runs all rounds to count how many it finds.
    """

    name = "art"
    family = "art"

    def __init__(self, attacker: Attacker | ChatModel | str | None = None,
                 bundle: Any = None, rounds: int = 4, branching: int = 6, beam: int = 3,
                 max_queries: int | None = 60, stop_on_success: bool = False,
                 max_new_tokens: int = 192, seed: int = 0, world: Any = None) -> None:
        if min(rounds, branching, beam) < 1:
            raise ValueError("rounds, branching and beam must all be >= 1")
        self.attacker = make_attacker(attacker, world=world, seed=seed)
        if isinstance(bundle, str | Path):
            from swisscheese.bundles import load_bundle

            bundle = load_bundle(bundle)
        self.bundle = bundle
        self.rounds = rounds
        self.branching = branching
        self.beam = beam
        self.max_queries = max_queries
        self.stop_on_success = stop_on_success
        self.max_new_tokens = max_new_tokens
        self.seed = seed

    def _bundle(self, target: ChatModel) -> Any:
        if self.bundle is not None:
            return self.bundle
        guard = getattr(target, "guard", None)
        if guard is not None and getattr(guard, "bundle", None) is not None:
            return guard.bundle
        raise AttackUnsupported(
            f"art searches for prompts the input classifier passes, but target "
            f"{getattr(target, 'name', target)!r} has no guard bundle and none was given "
            "(set bundle: DIR in the attack's config)")

    def run(self, behaviour: Behaviour, target: ChatModel, judge: Judge) -> list[Attempt]:
        bundle = self._bundle(target)
        score_inputs = input_scorer(bundle)
        threshold = float(bundle.thresholds["input"])
        probe = TargetProbe(self.name, behaviour, target, judge, self.max_new_tokens,
                            self.max_queries)
        seen: set[str] = set()
        parents: list[Feedback | None] = [None]
        pool: list[Feedback] = []
        flagged: list[Feedback] = []
        lowest: tuple[str, float] | None = None  # the candidate closest to passing
        counts = {"candidates": 0, "passed_input": 0, "elicited": 0, "threshold": threshold}
        for r in range(self.rounds):
            cands: list[tuple[Proposal, int]] = []
            for pi, parent in enumerate(parents):
                try:
                    props = self.attacker.propose(behaviour, [parent] if parent else [],
                                                  self.branching, seed=self.seed + 7919 * r + pi)
                except AttackerError as e:
                    probe.attempts.append(error_attempt(self.name, behaviour, target,
                                                        f"art/r{r}/p{pi}", str(e)))
                    continue
                for p in props:
                    if p.prompt not in seen:
                        seen.add(p.prompt)
                        cands.append((p, pi))
            if not cands:
                break
            scores = score_inputs([p.prompt for p, _ in cands])
            counts["candidates"] += len(cands)
            for (p, _), s in zip(cands, scores, strict=True):
                if lowest is None or s < lowest[1]:
                    lowest = (p.prompt, s)
                if s >= threshold:
                    flagged.append(Feedback(p, "", None, "flagged by the input classifier",
                                            input_score=s, input_flagged=True))
            passing = [(p, pi, s) for (p, pi), s in zip(cands, scores, strict=True)
                       if s < threshold]
            counts["passed_input"] += len(passing)
            sent = probe.send([p.prompt for p, _, _ in passing],
                              [f"art/r{r}/c{ci}" for ci in range(len(passing))],
                              [{"round": r, "parent": pi, "input_score": s,
                                "improvement": p.improvement,
                                **({"recipe": p.meta["recipe"]} if "recipe" in p.meta else {})}
                               for p, pi, s in passing])
            for (p, _, _), a in zip(passing, sent, strict=False):
                pool.append(feedback_of(p, a))
                counts["elicited"] += probe.success(a)
            if len(sent) < len(passing) or (self.stop_on_success and counts["elicited"]):
                break
            ranked = sorted(pool, key=lambda fb: fb.rank(), reverse=True)
            # Without a survivor yet, disguise the candidates that came closest to passing.
            closest = sorted(flagged, key=lambda fb: fb.input_score or 0.0)
            parents = list(ranked[: self.beam]) or list(closest[: self.beam]) or [None]
        if not probe.attempts and lowest is not None:
            probe.attempts.append(self._blocked(behaviour, target, judge, lowest))
        for a in probe.attempts:
            a.meta["art"] = dict(counts)
        return probe.finish()

    def _blocked(self, behaviour: Behaviour, target: ChatModel, judge: Judge,
                 lowest: tuple[str, float]) -> Attempt:
        """Nothing passed the input classifier: a failed attack, not an error. The attempt
        is the candidate closest to passing, answered as the guard answers a flagged
        prompt (its refusal), and judged like any other reply."""
        from swisscheese.guard.pipeline import DEFAULT_REFUSAL

        guard = getattr(target, "guard", None)
        refusal = getattr(guard, "refusal", DEFAULT_REFUSAL)
        a = Attempt(behaviour.id, self.name, getattr(target, "name", "target"), "art/blocked",
                    [{"role": "user", "content": lowest[0]}], refusal,
                    meta={"input_score": lowest[1], "blocked_by_input": True})
        try:
            a.verdict = judge.judge(behaviour, refusal)
        except Exception as e:  # noqa: BLE001 - a judge failure is an error, not a failure
            a.error = f"judge: {type(e).__name__}: {e}"
        return a
