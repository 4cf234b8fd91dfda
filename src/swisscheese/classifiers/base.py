"""The classifier contracts: whole-text `Classifier` and token-stream `StreamingClassifier`
(`streamguard.StreamGuard` holds streamed text back until it has been scored).

Scores are probabilities in [0, 1] that a text is harmful under the constitution. A text
is flagged when its score is >= the threshold (the same convention as `calibrate` and
`metrics`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.errors import ClassifierError, NotFittedError

__all__ = ["OUTPUT_CONTEXTS", "CategoryScorer", "Classifier", "ClassifierError",
           "Conversation", "NotFittedError", "StreamState", "StreamingClassifier",
           "check_category_labels", "check_labels", "check_texts", "predict_stages",
           "render_conversation"]

# What an output classifier reads: the reply on its own, or the reply in the conversation
# that produced it (an exchange classifier).
OUTPUT_CONTEXTS = ("reply", "exchange")

# The conversation forms a streaming classifier's `start` accepts (see render_conversation).
Conversation = str | Sequence[Mapping[str, Any] | Any] | None


def check_texts(texts: Sequence[str]) -> list[str]:
    """Texts as a list, refusing a bare string (it would be read as one text per character)."""
    if isinstance(texts, str):
        raise TypeError("pass a sequence of texts, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str")
    return out


def check_labels(labels: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Labels as an int array of 0 (benign) and 1 (harmful), both present, one per text."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"need one label per text: {n} texts, labels of shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (benign) or 1 (harmful)")
    y = y.astype(np.int64)
    if y.min() == y.max():
        raise ValueError("fit needs both benign (0) and harmful (1) examples")
    return y


def render_conversation(conversation: Conversation) -> str:
    """The text a classifier reads for a conversation: message contents, one per line.

    Roles are left out so that a classifier trained on bare prompts reads a one-message
    conversation exactly as its prompt. Accepts a string, Message objects or
    role/content mappings; None or an empty list gives "".
    """
    if conversation is None:
        return ""
    if isinstance(conversation, str):
        return conversation
    parts = []
    for i, m in enumerate(conversation):
        content = m.get("content") if isinstance(m, Mapping) else getattr(m, "content", None)
        if not isinstance(content, str):
            raise ValueError(f"message {i} has no string 'content': {m!r}")
        parts.append(content)
    return "\n".join(parts)


class Classifier(ABC):
    """A text classifier with scikit-learn conventions.

    Subclasses set `name` (their registry name) and implement the four methods.
    Every saved directory holds a `config.json` with at least `name` and
    `format_version`, so `registry.load_classifier` can pick the class.
    """

    name: ClassVar[str] = ""
    # A `swisscheese.progress.Progress` callback that a backend whose fit takes a while
    # reports its own steps to (the bundle builder sets it for the fit); None: silence.
    progress: Any = None

    @abstractmethod
    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        """Learn from texts labelled 1 (harmful) or 0 (benign); returns self."""

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities in [0, 1] that each text is harmful, shape (len(texts),).

        One probability per text (the harmful class), not scikit-learn's two columns: a
        guard compares it with one threshold."""

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write the fitted classifier to `directory` (created if needed); returns it."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Self:
        """Read a classifier written by `save`; raises ClassifierError if files are bad."""

    def predict(self, texts: Sequence[str], threshold: float = 0.5) -> np.ndarray:
        """Boolean flags: predict_proba >= threshold."""
        return self.predict_proba(texts) >= threshold


@dataclass
class StreamState:
    """What a streaming classifier carries between deltas.

    `max_score` is the cumulative maximum of the prefix scores so far: a guard blocks on
    it, so a reply cannot get through by drifting back below the threshold.
    """

    max_score: float = 0.0
    n_chars: int = 0  # raw characters received, context included
    last_score: float = 0.0  # the score of the prefix as last scored
    # Which stage of a cascade has scored this stream (1, or 2 once escalated); None for
    # a classifier of one stage. Decision records keep it.
    stage: int | None = None


def predict_stages(classifier: Classifier,
                   texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(scores, the stage that decided each text): a cascade says which of its stages
    scored each text (1 or 2); any other classifier gives None for the stages."""
    staged = getattr(classifier, "predict_stages", None)
    if callable(staged):
        scores, stages = staged(texts)
        return np.asarray(scores), np.asarray(stages)
    return classifier.predict_proba(texts), None


class StreamingClassifier(ABC):
    """Scores a reply while it streams, with constant work per delta.

    `update` never re-reads the prefix: the state keeps just enough (running sums and a
    fixed window of recent characters) to score prefix + delta. The state is updated in
    place and returned; `copy.deepcopy` it to branch a stream.

    `output_context` says what a fitted one reads: "reply" (the reply alone; `start`
    ignores the conversation) or "exchange" (`start` encodes the conversation once and
    every delta is judged in its context). `contexts` lists the kinds a backend can be
    built as (its config's `context` option). `fit_exchanges` and `predict_exchange`
    take (conversation, reply) pairs whatever the kind: a reply classifier reads the
    replies alone, so one training set serves both.
    """

    name: ClassVar[str] = ""
    contexts: ClassVar[tuple[str, ...]] = ("reply",)

    @property
    def output_context(self) -> str:
        return "reply"

    def fit_exchanges(self, conversations: Sequence[Conversation], replies: Sequence[str],
                      labels: Sequence[int] | np.ndarray) -> Self:
        """Fit on replies, each after its conversation (see the class docstring)."""
        if len(conversations) != len(replies):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(replies)} replies")
        if self.output_context != "reply" or not isinstance(self, Classifier):
            raise NotImplementedError(f"{type(self).__name__} does not implement "
                                      "fit_exchanges for its context")
        self.fit(replies, labels)
        return self

    def predict_exchange(self, conversations: Sequence[Conversation],
                         replies: Sequence[str]) -> np.ndarray:
        """Probability that each reply, after its conversation, is harmful: by default the
        stream's score of the whole reply fed at once and finished (exact by the streaming
        contract)."""
        texts = check_texts(replies)
        if len(conversations) != len(texts):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(texts)} replies")
        out = np.zeros(len(texts))
        for i, (conv, text) in enumerate(zip(conversations, texts, strict=True)):
            state = self.start(conv)
            out[i] = (self.finish(self.update(state, text)[0])[1] if text
                      else self._advance(state, ""))
        return out

    @abstractmethod
    def start(self, conversation: Conversation = None) -> StreamState:
        """A fresh state for a reply to `conversation` (how context is used is up to the
        backend; see its docs)."""

    def update(self, state: StreamState, delta: str) -> tuple[StreamState, float]:
        """Feed the next piece of the reply; returns (state, score of the whole prefix).

        The cumulative maximum is kept in `state.max_score`.
        """
        if not isinstance(delta, str):
            raise TypeError(f"delta must be str, got {type(delta).__name__}")
        score = float(self._advance(state, delta))
        state.n_chars += len(delta)
        state.last_score = score
        state.max_score = max(state.max_score, score)
        return state, score

    def pending_chars(self, state: StreamState) -> int:
        """Characters received that the score does not read yet. A backend that scores
        in chunks (the encoder re-reads a window every few tokens) says how far behind it
        is, so that `StreamGuard` never releases text no score has read; 0 for backends
        that score every delta."""
        return 0

    def prefetch(self, replies: Sequence[str], conversations: Sequence[Conversation],
                 chunk_chars: int) -> None:
        """A hint before many replies are streamed in pieces of `chunk_chars` characters
        (calibration, evaluation): a backend may compute what those streams will need in
        batches. It never changes a score; a no-op by default."""
        return None

    def finish(self, state: StreamState) -> tuple[StreamState, float]:
        """End of the reply: score what is still pending; returns (state, score of the
        whole reply). A no-op for backends that score every delta."""
        return state, state.last_score

    @abstractmethod
    def _advance(self, state: StreamState, delta: str) -> float:
        """Backend hook: fold `delta` into `state` and return the prefix score."""

    def save(self, directory: str | Path) -> Path:
        """Write the fitted classifier (the backends' `Classifier` side implements it; a
        bundle saves its output classifier through this)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")


class CategoryScorer(ABC):
    """Scores a text under each harmful category of a constitution: one probability per
    category (multi-label: a filled jailbreak template is both a template and the kind of
    request it carries). A guard bundle may hold one beside its input classifier; the
    bundle's categories then come with every verdict.

    `fit(texts, labels, categories)` takes an (n, k) matrix whose column j says whether a
    text belongs to category `categories[j]` (1), does not (0), or is not known to (-1: the
    text is left out of that category's head); `predict_proba` returns (n, k).
    Saved directories follow the classifiers' convention (config.json naming the
    registered scorer), so `registry.load_category_scorer` picks the class.
    """

    name: ClassVar[str] = ""
    categories: tuple[str, ...] = ()

    @abstractmethod
    def fit(self, texts: Sequence[str], labels: np.ndarray | Sequence[Sequence[int]],
            categories: Sequence[str]) -> Self:
        """Learn one score per category from an (n, k) 0/1 label matrix; returns self."""

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), k) probabilities, columns in the order of `categories`."""

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write the fitted scorer to `directory`; returns it."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Self:
        """Read a scorer written by `save`; ClassifierError names a bad file."""


def check_category_labels(labels: np.ndarray | Sequence[Sequence[int]], n: int,
                          categories: Sequence[str]) -> np.ndarray:
    """An (n, k) int matrix of 1, 0 and -1 (unknown) with k = len(categories), names
    unique and non-empty."""
    names = list(categories)
    if not names or len(set(names)) != len(names) or not all(
            isinstance(c, str) and c for c in names):
        raise ValueError(f"categories must be unique non-empty names, got {names!r}")
    y = np.asarray(labels)
    if y.shape != (n, len(names)):
        raise ValueError(f"need an ({n}, {len(names)}) label matrix (texts x categories), "
                         f"got shape {y.shape}")
    if not np.isin(y, (-1, 0, 1)).all():
        raise ValueError("category labels must be 1, 0 or -1 (unknown)")
    return y.astype(np.int64)
