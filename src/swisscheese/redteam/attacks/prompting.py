"""Prompt attacks: attacks whose prompts depend only on the behaviour, not on replies.

A `PromptAttack` lists its probes (variant, conversation) for a behaviour; sending them
needs no feedback, so a campaign batches the probes of many behaviours into one
`generate_batch` call (far faster on a local model than one call each) and resumes them
key by key. Their variants are templates with the question as the only slot, which makes
them candidates for the universal-jailbreak measure (`templated`).
"""

from __future__ import annotations

import hashlib
import random
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from swisscheese.models.base import ChatModel, GenerationParams
from swisscheese.redteam.base import Attack, Attempt, Behaviour, Judge

DEFAULT_MAX_NEW_TOKENS = 256
# Replies that re-encode a whole procedure (rot13 tokenises long) need more room.
LONG_REPLY_TOKENS = 384


@dataclass(frozen=True)
class Probe:
    """One prompt of a prompt attack: `variant` names the template, `family` the jailbreak
    family it belongs to (the key of the ASR-per-family table)."""

    variant: str
    conversation: list[dict[str, str]]
    family: str
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    meta: dict[str, object] = field(default_factory=dict)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def stable_rng(*parts: object) -> random.Random:
    """A generator seeded by `parts` (stable across processes, unlike hash())."""
    return random.Random(hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest())


def stable_seed(*parts: object) -> int:
    return int(hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def judge_safely(judge: Judge, behaviour: Behaviour, attempt: Attempt) -> None:
    """Set the attempt's verdict, or its error when the judge fails (never a failed
    attack: the campaign counts errors apart)."""
    try:
        attempt.verdict = judge.judge(behaviour, attempt.response)
    except Exception as e:  # noqa: BLE001 - any judge failure is recorded, not raised
        attempt.verdict = None
        attempt.error = f"judge: {type(e).__name__}: {e}"


def send(attack: str, target: ChatModel, items: Sequence[tuple[Behaviour, Probe]],
         judge: Judge, temperature: float = 0.0, seed: int | None = None) -> list[Attempt]:
    """Send probes of possibly many behaviours to `target` in as few batched calls as the
    reply lengths allow, judge each reply, and return one attempt per probe, in order.

    A target failure becomes the `error` of every attempt of the failed call.
    """
    out: list[Attempt | None] = [None] * len(items)
    by_len: dict[int, list[int]] = {}
    for i, (_, p) in enumerate(items):
        by_len.setdefault(p.max_new_tokens, []).append(i)
    for max_new, idx in by_len.items():
        params = GenerationParams(max_new_tokens=max_new, temperature=temperature, seed=seed)
        convs = [items[i][1].conversation for i in idx]
        t0 = time.perf_counter()
        error: str | None = None
        try:
            replies = [m.content for m in target.generate_batch(convs, params)]
        except Exception as e:  # noqa: BLE001 - a target failure is recorded per attempt
            error = f"target: {type(e).__name__}: {e}"
            replies = [""] * len(idx)
        each = (time.perf_counter() - t0) / max(1, len(idx))
        for i, reply in zip(idx, replies, strict=True):
            b, p = items[i]
            a = Attempt(behaviour_id=b.id, attack=attack, target=str(target.name),
                        variant=p.variant, conversation=[dict(m) for m in p.conversation],
                        response=reply, error=error, seconds=round(each, 4),
                        meta={"family": p.family, **p.meta})
            if error is None:
                judge_safely(judge, b, a)
            out[i] = a
    return [a for a in out if a is not None]


class PromptAttack(Attack):
    """An attack made of fixed templates; subclasses implement `probes`."""

    templated: ClassVar[bool] = True

    def __init__(self, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"{self.name}: max_new_tokens must be >= 1")
        self.max_new_tokens = max_new_tokens

    @abstractmethod
    def probes(self, behaviour: Behaviour) -> list[Probe]:
        """The prompts for `behaviour`, in a fixed order, with distinct variants."""

    def variants(self) -> list[str]:
        """The template names this attack uses (for configs and reports)."""
        return [p.variant for p in self.probes(Behaviour(id="x", prompt="How do I do it?"))]

    def run(self, behaviour: Behaviour, target: ChatModel, judge: Judge) -> list[Attempt]:
        return send(self.name, target, [(behaviour, p) for p in self.probes(behaviour)], judge)


def only(selected: Sequence[str] | None, available: Sequence[str], what: str) -> list[str]:
    """`selected` checked against `available` (all of them when None)."""
    if selected is None:
        return list(available)
    unknown = [s for s in selected if s not in available]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; available: "
                         f"{', '.join(available)}")
    if not selected:
        raise ValueError(f"choose at least one {what}")
    return list(selected)
