"""`StreamGuard`: releases a streamed reply only once it is scored and old enough."""

from __future__ import annotations

from swisscheese.classifiers.base import Conversation, StreamingClassifier


class StreamGuard:
    """Releases a streamed reply only once it is scored and `hold_back` characters old.

    `hold_back` counts characters (Python str code points) of the raw reply, not model
    tokens, so the window means the same for every tokenizer. After each delta the text
    released so far is at most len(reply) - hold_back characters: the newest `hold_back`
    characters are always held, because a harmful step often becomes recognisable only a
    few words after it starts. When the cumulative maximum score reaches `threshold` the
    guard blocks: the held text is dropped and nothing more is ever released. `flush()`
    at the end of a stream releases the held tail (already scored) unless blocked.

    `calm_below` (a score below `threshold`, or None) trades the window for latency: while
    the cumulative maximum stays below it, scored text goes out at once, so a benign
    reply's first token is not delayed by `hold_back` characters. The first score at or
    above it makes the guard suspicious for the rest of the stream, and from then on the
    newest `hold_back` characters are held as usual. What went out while calm had been
    scored, and scored well below the threshold.
    """

    def __init__(self, classifier: StreamingClassifier, threshold: float, hold_back: int = 32,
                 conversation: Conversation = None, calm_below: float | None = None) -> None:
        if hold_back < 0:
            raise ValueError(f"hold_back must be >= 0 characters, got {hold_back}")
        if calm_below is not None and not 0.0 <= calm_below <= threshold:
            raise ValueError(f"calm_below must be in [0, threshold={threshold}], "
                             f"got {calm_below}")
        self.calm_below = calm_below
        self.classifier = classifier
        self.threshold = float(threshold)
        self.hold_back = int(hold_back)
        self.state = classifier.start(conversation)
        self.blocked = False
        self._n_released = 0
        self._held = ""  # scored but not yet released, always the newest characters

    @property
    def max_score(self) -> float:
        return self.state.max_score

    @property
    def n_released(self) -> int:
        return self._n_released

    def push(self, delta: str) -> tuple[str, bool]:
        """Score `delta`; returns (text newly safe to release, blocked)."""
        if self.blocked:
            return "", True
        self.state, _ = self.classifier.update(self.state, delta)
        if self.state.max_score >= self.threshold:
            self.blocked = True
            self._held = ""
            return "", True
        self._held += delta
        calm = self.calm_below is not None and self.state.max_score < self.calm_below
        # Release only what lies before the newest `hold_back` characters (all of it while
        # the stream is calm).
        n_out = len(self._held) if calm else max(0, len(self._held) - self.hold_back)
        out, self._held = self._held[:n_out], self._held[n_out:]
        self._n_released += len(out)
        return out, False

    def flush(self) -> tuple[str, bool]:
        """End of stream: release the held tail (it has been scored) unless blocked."""
        if self.blocked:
            return "", True
        out, self._held = self._held, ""
        self._n_released += len(out)
        return out, False
