"""An ensemble: several classifiers' scores combined by a stacked logistic rule, e.g. a
probe on the served model's activations with an external n-gram classifier
(Constitutional Classifiers++ ensembles its probes with a classifier this way).

    >>> clf = EnsembleClassifier(members=("probe", "ngram"), model_dir=DIR)  # doctest: +SKIP

    score(x) = sigmoid(b + sum_i w_i * logit(s_i(x)))

The members are fitted on a seeded stratified part of the training texts, the weights
(w, b) by L2-penalised, class-balanced logistic regression on the members' logits over
the other part (so the rule learns how far to trust each member on texts none of them was
fitted on), and then every member is refitted on all the texts. A bundle calibrates the
threshold of the combined score on benign traffic as for any classifier.

The streaming twin (`ensemble-stream`) streams every member and combines their prefix
scores the same way after each delta, so its last score is the whole reply's; an exchange
ensemble (`context="exchange"`) is made of exchange members. The work per delta is the
sum of the members'.

The saved directory holds config.json (members, weights) and m0/, m1/, ..., each member
in its own format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.backends.composite import (
    build_member,
    calibration_split,
    check_context,
    check_fraction,
    load_members,
    logit,
    save_members,
)
from swisscheese.classifiers.base import (
    Classifier,
    Conversation,
    StreamingClassifier,
    StreamState,
    check_labels,
    check_texts,
)
from swisscheese.classifiers.errors import ClassifierError, NotFittedError
from swisscheese.classifiers.logistic import balanced_weights, newton_logistic, sigmoid
from swisscheese.classifiers.persist import CONFIG_FILE, read_config, write_config

FORMAT = "swisscheese.classifiers.ensemble"
FORMAT_VERSION = 1


class _EnsembleBase:
    """Members, the stacked rule and persistence shared by both ensembles."""

    name: ClassVar[str] = ""
    composite: ClassVar[bool] = True
    # A cascade's stage may be an ensemble (its members are plain classifiers).
    nestable: ClassVar[bool] = True
    streaming: ClassVar[bool] = False
    default_members: ClassVar[tuple[str, ...]] = ("ngram", "transformer")

    def __init__(self, members: Sequence[str] | None = None, *,
                 members_params: Sequence[dict[str, Any] | None] | None = None,
                 calibration_fraction: float = 0.25, l2: float = 1.0, seed: int = 0,
                 model_dir: str | None = None, context: str = "reply") -> None:
        names = tuple(members or self.default_members)
        if len(names) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {list(names)}")
        params = list(members_params or [None] * len(names))
        if len(params) != len(names):
            raise ValueError(f"members_params has {len(params)} entries for {len(names)} "
                             "members")
        check_context(self.name, context, self.streaming)
        if l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {l2}")
        fraction = check_fraction(calibration_fraction, "calibration_fraction")
        self.settings: dict[str, Any] = {"calibration_fraction": fraction, "l2": float(l2),
                                         "seed": int(seed), "context": context}
        self.members: dict[str, Any] = {
            f"m{i}": build_member(n, p, seed=int(seed), model_dir=model_dir, context=context,
                                  streaming=self.streaming)
            for i, (n, p) in enumerate(zip(names, params, strict=True))}
        self.weights: np.ndarray | None = None
        self.bias = 0.0

    def __repr__(self) -> str:
        names = [m.name for m in self.members.values()]
        return f"{type(self).__name__}(members={names}, weights={self.weights})"

    def _rule(self) -> np.ndarray:
        if self.weights is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit first")
        return self.weights

    def combine(self, member_scores: np.ndarray) -> np.ndarray:
        """Combined scores from an (n, members) array of member scores."""
        return sigmoid(self.bias + logit(member_scores) @ self._rule())

    def _fit_rule(self, member_scores: np.ndarray, y: np.ndarray) -> None:
        """Stacked weights, none negative: a member's sign of harm never counts as a sign
        of innocence (on few calibration texts a noisy member can come out negative).
        Members that would be negative are dropped and the rest refitted; with none left,
        equal weights."""
        z, sw = logit(member_scores), balanced_weights(y)
        keep = np.ones(z.shape[1], dtype=bool)
        while keep.any():
            w, b = newton_logistic(z[:, keep], y.astype(np.float64), sw, self.settings["l2"])
            if (w >= 0).all():
                self.weights = np.zeros(z.shape[1])
                self.weights[keep], self.bias = w, b
                return
            keep[np.flatnonzero(keep)[w < 0]] = False
        self.weights, self.bias = np.full(z.shape[1], 1.0 / z.shape[1]), 0.0

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        w = self._rule()
        members = save_members(d, self.members)
        write_config(d, {"name": self.name, "format": FORMAT, "format_version": FORMAT_VERSION,
                         "members": members, "order": list(self.members),
                         "settings": self.settings, "weights": [float(v) for v in w],
                         "bias": self.bias})
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        d = Path(directory)
        cpath = d / CONFIG_FILE
        meta = read_config(cpath, FORMAT, FORMAT_VERSION)
        order, settings = meta.get("order"), meta.get("settings")
        w, b = meta.get("weights"), meta.get("bias")
        if not isinstance(order, list) or len(order) < 2 or not all(
                isinstance(k, str) for k in order):
            raise ClassifierError(f"{cpath}: 'order' must list at least two member keys")
        if not isinstance(w, list) or len(w) != len(order) or not all(
                isinstance(v, int | float) for v in w) or not isinstance(b, int | float):
            raise ClassifierError(f"{cpath}: 'weights' must be one number per member and "
                                  "'bias' a number")
        if not isinstance(settings, dict) or set(settings) != {
                "calibration_fraction", "l2", "seed", "context"}:
            raise ClassifierError(f"{cpath}: bad 'settings' entry {settings!r}")
        obj = cls.__new__(cls)
        obj.settings = settings
        obj.members = load_members(d, cpath, meta.get("members"), order)
        obj.weights, obj.bias = np.asarray(w, dtype=np.float64), float(b)
        return obj


class EnsembleClassifier(_EnsembleBase, Classifier):
    """Input classifier: members' scores combined by a stacked logistic rule.

    `EnsembleClassifier(members=("ngram", "transformer"), members_params=None,
    calibration_fraction=0.25, l2=1.0, seed=0, model_dir=None)`; see the module docstring.
    """

    name: ClassVar[str] = "ensemble"
    # A configuration that fits in a blink, for smoke runs and the contract tests.
    smoke_params: ClassVar[dict[str, Any]] = {
        "members": ("ngram", "ngram"), "members_params": [{}, {"char_ngrams": (1, 3)}]}

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        x = check_texts(texts)
        y = check_labels(labels, len(x))
        fit_idx, cal_idx = calibration_split(y, self.settings["calibration_fraction"],
                                             self.settings["seed"])
        part, cal = [x[i] for i in fit_idx], [x[i] for i in cal_idx]
        for m in self.members.values():
            m.fit(part, y[fit_idx])
        self._fit_rule(self._member_scores(cal), y[cal_idx])
        for m in self.members.values():
            m.fit(x, y)
        return self

    def _member_scores(self, x: list[str]) -> np.ndarray:
        return np.stack([m.predict_proba(x) for m in self.members.values()], axis=1)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        x = check_texts(texts)
        self._rule()
        if not x:
            return np.zeros(0)
        return self.combine(self._member_scores(x))


@dataclass
class EnsembleStreamState(StreamState):
    """Every member's stream state, in member order."""

    states: list[StreamState] = field(default_factory=list)


class EnsembleStreamingClassifier(_EnsembleBase, Classifier, StreamingClassifier):
    """Output classifier: streaming members, their prefix scores combined after each delta.

    `EnsembleStreamingClassifier(members=("ngram-stream", "transformer-stream"),
    context="reply", ...)`; see the module docstring.
    """

    name: ClassVar[str] = "ensemble-stream"
    streaming: ClassVar[bool] = True
    contexts: ClassVar[tuple[str, ...]] = ("reply", "exchange")
    default_members: ClassVar[tuple[str, ...]] = ("ngram-stream", "transformer-stream")
    smoke_params: ClassVar[dict[str, Any]] = {
        "members": ("ngram-stream", "ngram-stream"),
        "members_params": [{"epochs": 40}, {"char_ngrams": (1, 3), "epochs": 40}]}

    @property
    def output_context(self) -> str:
        return str(self.settings["context"])

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        x = check_texts(texts)
        return self._fit_pairs(None, x, labels)

    def fit_exchanges(self, conversations: Sequence[Conversation], replies: Sequence[str],
                      labels: Sequence[int] | np.ndarray) -> Self:
        if len(conversations) != len(replies):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(replies)} replies")
        return self._fit_pairs(list(conversations), check_texts(replies), labels)

    def _fit_pairs(self, convs: list[Conversation] | None, x: list[str],
                   labels: Sequence[int] | np.ndarray) -> Self:
        y = check_labels(labels, len(x))
        fit_idx, cal_idx = calibration_split(y, self.settings["calibration_fraction"],
                                             self.settings["seed"])

        def fit(idx: np.ndarray) -> None:
            for m in self.members.values():
                if convs is None:
                    m.fit([x[i] for i in idx], y[idx])
                else:
                    m.fit_exchanges([convs[i] for i in idx], [x[i] for i in idx], y[idx])

        fit(fit_idx)
        cal_convs = [None if convs is None else convs[i] for i in cal_idx]
        self._fit_rule(self._exchange_scores(cal_convs, [x[i] for i in cal_idx]), y[cal_idx])
        fit(np.arange(len(x)))
        return self

    def _exchange_scores(self, convs: Sequence[Conversation], x: list[str]) -> np.ndarray:
        return np.stack([m.predict_exchange(convs, x) for m in self.members.values()], axis=1)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        x = check_texts(texts)
        self._rule()
        if not x:
            return np.zeros(0)
        return self.combine(np.stack([m.predict_proba(x) for m in self.members.values()],
                                     axis=1))

    def predict_exchange(self, conversations: Sequence[Conversation],
                         replies: Sequence[str]) -> np.ndarray:
        x = check_texts(replies)
        if len(conversations) != len(x):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(x)} replies")
        self._rule()
        return self.combine(self._exchange_scores(list(conversations), x)) if x else np.zeros(0)

    def start(self, conversation: Conversation = None) -> EnsembleStreamState:
        self._rule()
        return EnsembleStreamState(states=[m.start(conversation)
                                           for m in self.members.values()])

    def _state(self, state: StreamState) -> EnsembleStreamState:
        if not isinstance(state, EnsembleStreamState):
            raise TypeError(f"expected the state start() returned, got {type(state).__name__}")
        return state

    def _advance(self, state: StreamState, delta: str) -> float:
        s = self._state(state)
        scores = []
        for i, m in enumerate(self.members.values()):
            s.states[i], sc = m.update(s.states[i], delta)
            scores.append(sc)
        return float(self.combine(np.array([scores]))[0])

    # ---- the served model's own hidden states (a probe member) --------------------------
    def _probe(self) -> Any:
        """The one member that reads hidden states, or None (none, or several)."""
        probes = [m for m in self.members.values() if callable(getattr(m, "update_hidden",
                                                                        None))]
        return probes[0] if len(probes) == 1 else None

    def reads_states_of(self, model_dir: str | Path) -> bool:
        """Whether the ensemble's one probe member was fitted on `model_dir`'s model, so a
        stream can feed it that model's generation states (`update_hidden`)."""
        probe = self._probe()
        return probe is not None and bool(probe.reads_states_of(model_dir))

    @property
    def hidden_indices(self) -> tuple[int, ...]:
        probe = self._probe()
        if probe is None:
            raise ClassifierError("this ensemble has no single probe member to read "
                                  "hidden states")
        return tuple(probe.hidden_indices)

    def update_hidden(self, state: StreamState, hidden: Any,
                      text: str = "") -> tuple[StreamState, float]:
        """The probe member reads `hidden`, the other members `text`, the reply text those
        states are of (`StreamGuard.push_hidden` passes it), so every member has read the
        same prefix when their scores are combined."""
        s = self._state(state)
        probe = self._probe()
        scores = []
        for i, m in enumerate(self.members.values()):
            if m is probe:
                s.states[i], sc = m.update_hidden(s.states[i], hidden)
            else:
                s.states[i], sc = m.update(s.states[i], text)
            scores.append(sc)
        score = float(self.combine(np.array([scores]))[0])
        s.n_chars += len(text)
        s.last_score = score
        s.max_score = max(s.max_score, score)
        return s, score

    def pending_chars(self, state: StreamState) -> int:
        s = self._state(state)
        return max(m.pending_chars(st) for m, st in zip(self.members.values(), s.states,
                                                         strict=True))

    def finish(self, state: StreamState) -> tuple[StreamState, float]:
        s = self._state(state)
        scores = []
        for i, m in enumerate(self.members.values()):
            s.states[i], sc = m.finish(s.states[i])
            scores.append(sc)
        score = float(self.combine(np.array([scores]))[0])
        s.last_score = score
        s.max_score = max(s.max_score, score)
        return s, score

    def prefetch(self, replies: Sequence[str], conversations: Sequence[Conversation],
                 chunk_chars: int) -> None:
        for m in self.members.values():
            m.prefetch(replies, conversations, chunk_chars)
