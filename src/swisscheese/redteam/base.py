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
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

from swisscheese.models.base import ChatModel

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


T = TypeVar("T", bound=type)


class Registry(dict[str, type]):
    """name -> plugin class; an unknown name raises an error listing the registered ones."""

    def __init__(self, kind: str, base: type) -> None:
        super().__init__()
        self.kind = kind
        self.base = base

    def register(self, cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"only {self.base.__name__} subclasses can be registered")
        name = getattr(cls, "name", "")
        if not name:
            raise ValueError(f"{cls.__name__} needs a non-empty `name`")
        if name in self and self[name] is not cls:
            raise ValueError(f"{self.kind} name {name!r} is already taken by "
                             f"{self[name].__name__}")
        self[name] = cls
        return cls

    def get_class(self, name: str) -> type:
        try:
            return self[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: "
                           f"{', '.join(sorted(self))}") from None

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get_class(name)(**kwargs)


ATTACKS = Registry("attack", Attack)
JUDGES = Registry("judge", Judge)
register_attack: Callable[[T], T] = ATTACKS.register
register_judge: Callable[[T], T] = JUDGES.register
