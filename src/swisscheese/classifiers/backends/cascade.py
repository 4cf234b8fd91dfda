"""A two-stage cascade: a cheap classifier screens every text and only texts it finds
suspicious reach an expensive one (Constitutional Classifiers++).

    >>> clf = CascadeClassifier(stage1="ngram", stage2="transformer")  # doctest: +SKIP

The score of a text is stage 2's when stage 1's score reaches the escalation threshold
`escalate_at`, else stage 1's squeezed below `FLOOR`:

    score(x) = s2(x)                       if s1(x) >= escalate_at
             = FLOOR * s1(x) / escalate_at  otherwise

so every text stage 1 clears scores under FLOOR, below any threshold a bundle calibrates
on benign traffic unless fewer than target-FPR of benign texts escalate. Benign traffic
then costs stage 1 plus stage 2 on the escalated share only.

`escalate_at` is calibrated so that the cascade loses almost no harmful text stage 2
would catch: stage 1 is fitted on a seeded stratified part of the training texts and
`escalate_at` is the threshold at which it escalates `escalate_recall` of the harmful
texts of the other part, lowered where needed so that at least `escalate_share` of that
part's benign texts escalate too; stage 2 is fitted on all of them. The share is a
margin bought with compute: harmful texts of the other part are of the hazards stage 1
was fitted on, so its recall on them overstates its recall on new hazards (on the
organism, with the plain n-gram as stage 1, recall 0.995 there escalated 0.985 of the
test split's harmful prompts; with 5% of benign escalated, all of them). The input
cascade's default is 0.02: with the default stage 1 (the n-gram that also reads the last
message), escalating 2%, 3% or only what the recall asks of val benign texts all kept the
test TPR at stage 2's (1.000), a sweep read on the test split, so the margin was set
after seeing it; fresh benign traffic escalates somewhat more than the calibration part.
The streaming one's default is 0.
`escalation_rate` (saved) is the share of the calibration part's benign texts that
escalate: roughly the cascade's stage-2 cost on benign traffic.

The streaming twin (`cascade-stream`) scores each prefix p of a reply the same way,
score(p) = s2(p) if s1(p) >= escalate_at else FLOOR * s1(p) / escalate_at, so its last
score is the whole reply's. Stage 1 reads every delta; stage 2 starts at the first prefix
that stage 1 escalates, reads that prefix once (the only time a delta's work depends on
the reply's length) and then every delta. For the stop rate, `escalate_at` is
calibrated on stage 1's cumulative maximum over the first `escalate_prefix` of each
harmful reply, fed in `CALIBRATION_CHUNK`-character pieces as the gateway streams.
`state.stage` says whether stage 2 ran. An exchange cascade (`context="exchange"`) is
made of exchange members, each given the conversation.

The saved directory holds config.json (members, settings, `escalate_at`) and stage1/ and
stage2/, each member in its own format.
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
from swisscheese.classifiers.persist import CONFIG_FILE, read_config, write_config

FORMAT = "swisscheese.classifiers.cascade"
FORMAT_VERSION = 1
STAGES = ("stage1", "stage2")
FLOOR = 1e-3
CALIBRATION_CHUNK = 4
# The input cascade's default stages: stage 1 is the organism bundle's default input
# classifier (the decoding n-gram that also reads the last message apart; the organism
# recipe's DEFAULT_INPUT_PARAMS is this), stage 2 an ensemble: see CascadeClassifier.
DEFAULT_STAGE1: dict[str, Any] = {"last_turn": True}
DEFAULT_STAGE2: dict[str, Any] = {
    "members": ["decoding", "decoding"],
    "members_params": [dict(DEFAULT_STAGE1), {"base": "encoder"}]}


def escalation_threshold(harmful_scores: np.ndarray, recall: float) -> float:
    """The largest threshold at which at least `recall` of `harmful_scores` escalate
    (score >= threshold)."""
    s = np.sort(np.asarray(harmful_scores, dtype=np.float64))
    k = int(np.floor((1.0 - recall) * len(s) + 1e-9))
    return float(s[min(k, len(s) - 1)])


def share_threshold(benign_scores: np.ndarray, share: float) -> float:
    """The largest threshold at which at least `share` of `benign_scores` escalate (1.0
    when `share` is 0 or there are none: no constraint)."""
    s = np.sort(np.asarray(benign_scores, dtype=np.float64))[::-1]
    if share <= 0.0 or not len(s):
        return 1.0
    k = int(np.ceil(share * len(s) - 1e-9))
    return float(s[min(max(k, 1), len(s)) - 1])


def escalation_at(harmful_scores: np.ndarray, benign_scores: np.ndarray, recall: float,
                  share: float) -> float:
    """Stage 1's escalation threshold: at least `recall` of the harmful scores and at
    least `share` of the benign ones escalate."""
    return min(escalation_threshold(harmful_scores, recall),
               share_threshold(benign_scores, share))


def squeeze(s1: np.ndarray, escalate_at: float) -> np.ndarray:
    """Stage 1's scores of texts it clears, mapped below FLOOR in the same order."""
    return FLOOR * np.asarray(s1, dtype=np.float64) / max(escalate_at, 1e-12)


class _CascadeBase:
    """Members, settings and persistence shared by the input and streaming cascades."""

    name: ClassVar[str] = ""
    composite: ClassVar[bool] = True
    staged: ClassVar[bool] = True  # its decisions say which stage made them
    streaming: ClassVar[bool] = False
    defaults: ClassVar[tuple[str, str]] = ("ngram", "transformer")
    # Options of a stage left to its default name (a named stage takes its own).
    default_params: ClassVar[tuple[dict[str, Any] | None, dict[str, Any] | None]] = (
        None, None)
    default_share: ClassVar[float] = 0.0

    def __init__(self, stage1: str | None = None, stage2: str | None = None, *,
                 escalate_recall: float = 0.995, escalate_share: float | None = None,
                 calibration_fraction: float = 0.25,
                 escalate_prefix: float = 0.25, seed: int = 0, model_dir: str | None = None,
                 context: str = "reply", stage1_params: dict[str, Any] | None = None,
                 stage2_params: dict[str, Any] | None = None) -> None:
        check_context(self.name, context, self.streaming)
        share = self.default_share if escalate_share is None else escalate_share
        if not isinstance(share, int | float) or not 0.0 <= float(share) < 1.0:
            raise ValueError(f"escalate_share must be in [0, 1), got {share!r}")
        self.settings: dict[str, Any] = {
            "escalate_recall": check_fraction(escalate_recall, "escalate_recall"),
            "escalate_share": float(share),
            "calibration_fraction": check_fraction(calibration_fraction,
                                                   "calibration_fraction"),
            "escalate_prefix": check_fraction(escalate_prefix, "escalate_prefix"),
            "seed": int(seed), "context": context}
        names = (stage1 or self.defaults[0], stage2 or self.defaults[1])
        params = tuple(p if p is not None or given else dflt for p, given, dflt in zip(
            (stage1_params, stage2_params), (stage1, stage2), self.default_params,
            strict=True))
        self.members: dict[str, Any] = {
            key: build_member(n, p, seed=int(seed), model_dir=model_dir, context=context,
                              streaming=self.streaming, nested_ok=True)
            for key, n, p in zip(STAGES, names, params, strict=True)}
        self.escalate_at: float | None = None
        self.escalation_rate: float | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(stage1={self.members['stage1'].name!r}, "
                f"stage2={self.members['stage2'].name!r}, escalate_at={self.escalate_at})")

    @property
    def stage1(self) -> Any:
        return self.members["stage1"]

    @property
    def stage2(self) -> Any:
        return self.members["stage2"]

    def _threshold(self) -> float:
        if self.escalate_at is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit first")
        return self.escalate_at

    def _combine(self, s1: np.ndarray, score2: Any) -> tuple[np.ndarray, np.ndarray]:
        """(scores, stages) from stage 1's scores; `score2(indices)` scores the escalated."""
        t = self._threshold()
        up = np.flatnonzero(s1 >= t)
        scores = squeeze(s1, t)
        if len(up):
            scores[up] = score2(up)
        stages = np.ones(len(s1), dtype=np.int64)
        stages[up] = 2
        return scores, stages

    def predict_stages(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(scores, the stage that decided each text: 1 or 2); a streaming cascade reads
        the replies alone here."""
        x = check_texts(texts)
        self._threshold()
        if not x:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        s1 = self.stage1.predict_proba(x)
        return self._combine(s1, lambda up: self.stage2.predict_proba([x[i] for i in up]))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_stages(texts)[0]

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        t = self._threshold()
        members = save_members(d, self.members)
        write_config(d, {"name": self.name, "format": FORMAT, "format_version": FORMAT_VERSION,
                         "members": members, "settings": self.settings, "escalate_at": t,
                         "escalation_rate": self.escalation_rate})
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        d = Path(directory)
        cpath = d / CONFIG_FILE
        meta = read_config(cpath, FORMAT, FORMAT_VERSION)
        settings, t = meta.get("settings"), meta.get("escalate_at")
        keys = {"escalate_recall", "calibration_fraction", "escalate_prefix", "seed", "context"}
        if isinstance(settings, dict) and set(settings) == keys:
            settings = {**settings, "escalate_share": 0.0}  # saved before the share existed
        if not isinstance(settings, dict) or set(settings) != keys | {"escalate_share"}:
            raise ClassifierError(f"{cpath}: bad 'settings' entry {settings!r}")
        if not isinstance(t, int | float) or not 0.0 <= t <= 1.0:
            raise ClassifierError(f"{cpath}: 'escalate_at' must be a probability, got {t!r}")
        obj = cls.__new__(cls)
        obj.settings = settings
        obj.members = load_members(d, cpath, meta.get("members"), STAGES)
        obj.escalate_at, obj.escalation_rate = float(t), meta.get("escalation_rate")
        return obj


class CascadeClassifier(_CascadeBase, Classifier):
    """Input classifier: stage 1 screens, stage 2 scores what stage 1 escalates.

    `CascadeClassifier(stage1="decoding", stage2="ensemble", escalate_recall=0.995,
    escalate_share=0.02, calibration_fraction=0.25, seed=0, model_dir=None,
    stage1_params=None, stage2_params=None)`; see the module docstring. The default
    stage 1 is the organism bundle's default input classifier (the n-gram behind the
    decoders); the default stage 2 (`DEFAULT_STAGE2`) stacks the decoding n-gram that
    also reads the last message apart (`last_turn`) with the decoding MiniLM encoder
    (the packaged, sha256-pinned one, mlp head): on the organism it reached TPR 1.000 on
    trained families where the byte transformer at its default training reached 0.151.
    """

    name: ClassVar[str] = "cascade"
    defaults: ClassVar[tuple[str, str]] = ("decoding", "ensemble")
    default_params: ClassVar[tuple[dict[str, Any] | None, dict[str, Any] | None]] = (
        DEFAULT_STAGE1, DEFAULT_STAGE2)
    default_share: ClassVar[float] = 0.02
    # A configuration that fits in a blink, for smoke runs and the contract tests.
    smoke_params: ClassVar[dict[str, Any]] = {
        "stage2": "ngram", "stage2_params": {"char_ngrams": (1, 3)}}

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        x = check_texts(texts)
        y = check_labels(labels, len(x))
        fit_idx, cal_idx = calibration_split(y, self.settings["calibration_fraction"],
                                             self.settings["seed"])
        self.stage1.fit([x[i] for i in fit_idx], y[fit_idx])
        s1 = self.stage1.predict_proba([x[i] for i in cal_idx])
        self.escalate_at = escalation_at(s1[y[cal_idx] == 1], s1[y[cal_idx] == 0],
                                         self.settings["escalate_recall"],
                                         self.settings["escalate_share"])
        self.escalation_rate = float(np.mean(s1[y[cal_idx] == 0] >= self.escalate_at))
        self.stage2.fit(x, y)
        return self



@dataclass
class CascadeStreamState(StreamState):
    """The two stages' states; the prefix is kept until stage 2 starts (it reads it once)."""

    s1: StreamState = field(default_factory=StreamState)
    s2: StreamState | None = None
    conversation: Conversation = None
    prefix: list[str] = field(default_factory=list)


class CascadeStreamingClassifier(_CascadeBase, Classifier, StreamingClassifier):
    """Output classifier: a streaming cascade of two streaming members.

    `CascadeStreamingClassifier(stage1="ngram-stream", stage2="transformer-stream",
    context="reply", escalate_prefix=0.25, ...)`; see the module docstring.
    """

    name: ClassVar[str] = "cascade-stream"
    streaming: ClassVar[bool] = True
    contexts: ClassVar[tuple[str, ...]] = ("reply", "exchange")
    defaults: ClassVar[tuple[str, str]] = ("ngram-stream", "transformer-stream")
    smoke_params: ClassVar[dict[str, Any]] = {
        "stage2": "ngram-stream", "stage1_params": {"epochs": 40},
        "stage2_params": {"char_ngrams": (1, 3), "epochs": 40}}

    @property
    def output_context(self) -> str:
        return str(self.settings["context"])

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        x = check_texts(texts)
        return self._fit_pairs([None] * len(x), x, labels, exchanges=False)

    def fit_exchanges(self, conversations: Sequence[Conversation], replies: Sequence[str],
                      labels: Sequence[int] | np.ndarray) -> Self:
        if len(conversations) != len(replies):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(replies)} replies")
        return self._fit_pairs(list(conversations), check_texts(replies), labels,
                               exchanges=True)

    def _fit_pairs(self, convs: list[Conversation], x: list[str],
                   labels: Sequence[int] | np.ndarray, exchanges: bool) -> Self:
        y = check_labels(labels, len(x))
        fit_idx, cal_idx = calibration_split(y, self.settings["calibration_fraction"],
                                             self.settings["seed"])

        def fit(member: Any, idx: np.ndarray) -> None:
            if exchanges:
                member.fit_exchanges([convs[i] for i in idx], [x[i] for i in idx], y[idx])
            else:
                member.fit([x[i] for i in idx], y[idx])

        fit(self.stage1, fit_idx)
        frac = self.settings["escalate_prefix"]
        early = [self._stage1_max(convs[i], x[i], frac) for i in cal_idx if y[i] == 1]
        whole = [self._stage1_max(convs[i], x[i], 1.0) for i in cal_idx if y[i] == 0]
        self.escalate_at = min(
            escalation_threshold(np.array(early), self.settings["escalate_recall"]),
            share_threshold(np.array(whole), self.settings["escalate_share"]))
        self.escalation_rate = float(np.mean(np.array(whole) >= self.escalate_at))
        fit(self.stage2, np.arange(len(x)))
        return self

    def _stage1_max(self, conversation: Conversation, reply: str, fraction: float) -> float:
        """Stage 1's cumulative maximum over the first `fraction` of `reply`, streamed in
        CALIBRATION_CHUNK-character pieces (the whole reply is finished)."""
        n = len(reply) if fraction >= 1.0 else max(
            min(len(reply), CALIBRATION_CHUNK), int(np.ceil(fraction * len(reply))))
        state = self.stage1.start(conversation)
        for i in range(0, n, CALIBRATION_CHUNK):
            state, _ = self.stage1.update(state, reply[i:min(i + CALIBRATION_CHUNK, n)])
        if n == len(reply):
            state, _ = self.stage1.finish(state)
        return float(state.max_score)

    def predict_exchange(self, conversations: Sequence[Conversation],
                         replies: Sequence[str]) -> np.ndarray:
        x = check_texts(replies)
        if len(conversations) != len(x):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(x)} replies")
        self._threshold()
        if not x:
            return np.zeros(0)
        convs = list(conversations)
        s1 = self.stage1.predict_exchange(convs, x)
        return self._combine(s1, lambda up: self.stage2.predict_exchange(
            [convs[i] for i in up], [x[i] for i in up]))[0]

    def start(self, conversation: Conversation = None) -> CascadeStreamState:
        self._threshold()
        return CascadeStreamState(s1=self.stage1.start(conversation),
                                  conversation=conversation, stage=1)

    def _state(self, state: StreamState) -> CascadeStreamState:
        if not isinstance(state, CascadeStreamState):
            raise TypeError(f"expected the state start() returned, got {type(state).__name__}")
        return state

    def _escalate(self, s: CascadeStreamState, delta: str) -> float:
        """Start stage 2 on the prefix so far (read once) and `delta`; its score."""
        s.s2 = self.stage2.start(s.conversation)
        s.stage = 2
        s.s2, score = self.stage2.update(s.s2, "".join(s.prefix) + delta)
        s.prefix = []
        return float(score)

    def _advance(self, state: StreamState, delta: str) -> float:
        s, t = self._state(state), self._threshold()
        s.s1, sc1 = self.stage1.update(s.s1, delta)
        if s.s2 is None and sc1 < t:
            s.prefix.append(delta)
            return float(squeeze(sc1, t))
        if s.s2 is None:
            sc2 = self._escalate(s, delta)
        else:
            s.s2, sc2 = self.stage2.update(s.s2, delta)
        return float(sc2) if sc1 >= t else float(squeeze(sc1, t))

    def pending_chars(self, state: StreamState) -> int:
        s = self._state(state)
        behind = self.stage1.pending_chars(s.s1)
        return max(behind, self.stage2.pending_chars(s.s2)) if s.s2 is not None else behind

    def finish(self, state: StreamState) -> tuple[StreamState, float]:
        s, t = self._state(state), self._threshold()
        s.s1, sc1 = self.stage1.finish(s.s1)
        sc2 = 0.0
        if s.s2 is None and sc1 >= t:
            self._escalate(s, "")
        if s.s2 is not None:
            s.s2, sc2 = self.stage2.finish(s.s2)
        score = float(sc2) if sc1 >= t else float(squeeze(sc1, t))
        s.last_score = score
        s.max_score = max(s.max_score, score)
        return s, score

    def prefetch(self, replies: Sequence[str], conversations: Sequence[Conversation],
                 chunk_chars: int) -> None:
        # Stage 1 only: precomputing stage 2 for every reply would spend what the cascade
        # exists to save.
        self.stage1.prefetch(replies, conversations, chunk_chars)
