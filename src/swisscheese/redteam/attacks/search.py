"""What a search attack's attacker proposes and learns from: `Proposal`, `Feedback`, and
the `Attacker` protocol that PAIR, TAP and ART drive (an LLM attacker or the built-in
mutator)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from swisscheese.redteam.base import Behaviour


@dataclass
class Proposal:
    """A prompt an attacker proposes. `parsed` is False when the attacker's reply was not the
    JSON it was asked for and the raw text became the prompt; `meta` is the attacker's own
    (the mutator keeps its recipe there)."""

    prompt: str
    improvement: str = ""
    parsed: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Feedback:
    """One proposal, the target's reply and the judge's score: what the attacker learns from.

    `score` None means undetermined or an error (`error` says which), or, with
    `input_score` set at or above the input threshold, that the guard's input classifier
    flagged the prompt so it was never sent (ART tells its attacker so)."""

    proposal: Proposal
    response: str
    score: float | None
    reason: str = ""
    error: str | None = None
    input_score: float | None = None
    input_flagged: bool = False

    @property
    def prompt(self) -> str:
        return self.proposal.prompt

    def rank(self) -> float:
        """For sorting: an undetermined score ranks below every real one."""
        return -1.0 if self.score is None else self.score


@runtime_checkable
class Attacker(Protocol):
    """Proposes `n` new prompts for a behaviour from what earlier prompts got.

    `history` is one line of search (a PAIR stream, a TAP branch), oldest first; `seed`
    makes the proposals of sampling attackers reproducible.
    """

    name: str

    def propose(self, behaviour: Behaviour, history: Sequence[Feedback], n: int = 1,
                seed: int = 0) -> list[Proposal]: ...
