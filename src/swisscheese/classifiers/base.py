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

__all__ = ["Classifier", "ClassifierError", "Conversation", "NotFittedError", "StreamState",
           "StreamingClassifier", "check_labels", "check_texts", "render_conversation"]

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


class StreamingClassifier(ABC):
    """Scores a reply while it streams, with constant work per delta.

    `update` never re-reads the prefix: the state keeps just enough (running sums and a
    fixed window of recent characters) to score prefix + delta. The state is updated in
    place and returned; `copy.deepcopy` it to branch a stream.
    """

    name: ClassVar[str] = ""

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
        state.max_score = max(state.max_score, score)
        return state, score

    @abstractmethod
    def _advance(self, state: StreamState, delta: str) -> float:
        """Backend hook: fold `delta` into `state` and return the prefix score."""

    def save(self, directory: str | Path) -> Path:
        """Write the fitted classifier (the backends' `Classifier` side implements it; a
        bundle saves its output classifier through this)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")
