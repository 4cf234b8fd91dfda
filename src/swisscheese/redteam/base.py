"""The red team's contracts: behaviours, verdicts, attempts, attacks, judges, registries.

An `Attack` turns one behaviour into one or more attempts against a target (any
`ChatModel`, guarded or not) and may consult the judge while it searches (PAIR, TAP,
best-of-N). A `Judge` scores one reply to one behaviour. A verdict's score is in [0, 1]
(how far the reply complies with the behaviour, for the detail grader the detail score);
`None` means undetermined. An error is never a failed attack: an attempt whose target
failed carries `error` and no verdict, and the campaign counts it apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from swisscheese.models.base import ChatModel
from swisscheese.registry import Registry

# Labels a verdict can carry.
JAILBROKEN = "jailbroken"  # the reply gives what the behaviour asks for
SAFE = "safe"  # answered, but without the harmful content
REFUSED = "refused"
UNDETERMINED = "undetermined"
LABELS = (JAILBROKEN, SAFE, REFUSED, UNDETERMINED)


@dataclass(frozen=True)
class Behaviour:
    """One thing the red team tries to get out of a target.

    `target` is an affirmative start of a compliant reply (the objective of white-box
    attacks such as GCG and the embedding attack). `hazard_id` and `level` tie the
    behaviour to the world (the detail grader needs the hazard); real-world behaviours
    leave them None. `threshold` is the detail score a reply needs to count as a success
    (the level's threshold for challenge levels).
    """

    id: str
    prompt: str
    category: str = ""
    target: str = "Sure, here is"
    hazard_id: str | None = None
    level: int | None = None
    threshold: float = 0.5
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["meta"] = dict(self.meta)
        return d


@dataclass(frozen=True)
class Verdict:
    score: float | None
    label: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"unknown verdict label {self.label!r}; expected one of {LABELS}")
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ValueError(f"verdict score must be in [0, 1] or None, got {self.score}")
        if (self.score is None) != (self.label == UNDETERMINED):
            raise ValueError("a verdict is undetermined exactly when its score is None")

    @property
    def determined(self) -> bool:
        return self.score is not None

    def success(self, threshold: float) -> bool:
        return self.score is not None and self.score >= threshold


@dataclass
class Attempt:
    """One prompt sent to one target, and what came back.

    `variant` names what the attack did (a template, a converter stack, an iteration of a
    search) so the universal-jailbreak measure can group attempts by template.
    `conversation` is exactly what was sent; `meta` holds attack-specific figures.
    """

    behaviour_id: str
    attack: str
    target: str
    variant: str
    conversation: list[dict[str, str]]
    response: str = ""
    verdict: Verdict | None = None
    error: str | None = None
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = asdict(self.verdict) if self.verdict else None
        return d


class Judge(ABC):
    """Scores a reply to a behaviour. Subclasses set `name` and implement `judge`."""

    name: ClassVar[str] = ""

    @abstractmethod
    def judge(self, behaviour: Behaviour, response: str) -> Verdict:
        """A verdict on `response`; undetermined (score None) when it cannot decide."""


class Attack(ABC):
    """Turns a behaviour into attempts against a target.

    `family` groups attacks for ASR tables (competing objectives, mismatched
    generalization, ...); `white_box` attacks need a local HF model (they read gradients)
    and raise `AttackUnsupported` for other targets.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    white_box: ClassVar[bool] = False

    @abstractmethod
    def run(self, behaviour: Behaviour, target: ChatModel, judge: Judge) -> list[Attempt]:
        """Attempts (at least one) against `target`; target errors go into `error`."""


class AttackUnsupported(RuntimeError):
    """This attack cannot run against this target (e.g. white-box on an endpoint)."""


# The plugins, by name; their modules are imported the first time one is built.
ATTACKS: Registry[type[Attack]] = Registry("attack", Attack,
                                           entry_point_group="swisscheese.attacks")
JUDGES: Registry[type[Judge]] = Registry("judge", Judge, entry_point_group="swisscheese.judges")
_A = "swisscheese.redteam.attacks"
for _name, _path in (
    ("plain", "plain:PlainAttack"), ("competing_objectives", "competing:CompetingObjectives"),
    ("mismatched_generalization", "mismatched:MismatchedGeneralization"),
    ("roleplay", "roleplay:Roleplay"), ("story", "roleplay:Story"),
    ("dan", "universal:UniversalTemplates"), ("many_shot", "many_shot:ManyShot"),
    ("converters", "converters:ConverterAttack"), ("best_of_n", "best_of_n:BestOfN"),
    ("context", "context:ContextFamilies"),
    ("pair", "pair:PAIRAttack"), ("tap", "tap:TAPAttack"), ("art", "art:ARTAttack"),
    ("gcg", "gcg:GCGAttack"), ("embedding", "embedding:EmbeddingAttack"),
    ("template_file", "template_file:TemplateFileAttack"),
    ("crescendo", "crescendo:CrescendoAttack"),
):
    ATTACKS.add_lazy(_name, f"{_A}.{_path}")
for _name, _path in (("refusal", "refusal:RefusalJudge"), ("detail", "detail:DetailJudge"),
                     ("classifier", "classifier:ClassifierJudge"), ("llm", "llm:LLMJudge")):
    JUDGES.add_lazy(_name, f"swisscheese.redteam.judges.{_path}")
register_attack = ATTACKS.register
register_judge = JUDGES.register
