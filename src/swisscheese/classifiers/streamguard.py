"""`StreamGuard`: releases a streamed reply only once it is scored and old enough."""

from __future__ import annotations

from typing import Any

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
        self._unscored = ""  # hidden-state path: text whose states have not come yet

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
        if self._crossed():
            return "", True
        self._held += delta
        return self._release(self.classifier.pending_chars(self.state))

    def push_hidden(self, delta: str, hidden: Any) -> tuple[str, bool]:
        """The served model's own states (a probe's `update_hidden`): `hidden` holds the
        states of the reply tokens read in this generation step, i.e. the text pushed
        before `delta` (passed along, for an ensemble's text members), or None; `delta`
        waits, unscored, for the next step's states. Returns (text newly safe to
        release, blocked)."""
        if self.blocked:
            return "", True
        if hidden is not None:
            self.state, _ = self.classifier.update_hidden(  # type: ignore[attr-defined]
                self.state, hidden, self._unscored)
            if self._crossed():
                return "", True
            self._held += self._unscored
            self._unscored = ""
        self._unscored += delta
        return self._release(self.classifier.pending_chars(self.state))

    def _crossed(self) -> bool:
        if self.state.max_score >= self.threshold:
            self.blocked = True
            self._held = self._unscored = ""
        return self.blocked

    def _release(self, unread: int) -> tuple[str, bool]:
        calm = self.calm_below is not None and self.state.max_score < self.calm_below
        # Release only what lies before the newest `hold_back` characters (all of it while
        # the stream is calm), and never text the score has not read yet (a backend that
        # scores in chunks lags by up to a chunk; states come a step after their text).
        hold = max(0, self.hold_back - len(self._unscored))
        n_out = max(0, len(self._held) - (unread if calm else max(unread, hold)))
        out, self._held = self._held[:n_out], self._held[n_out:]
        self._n_released += len(out)
        return out, False

    def flush(self) -> tuple[str, bool]:
        """End of stream: release the held tail (it has been scored) unless blocked."""
        if self.blocked:
            return "", True
        if self._unscored:  # a hidden-state stream that ended before its last states came
            self.blocked = True
            self._held = self._unscored = ""
            raise RuntimeError("the stream ended before the hidden states of its last text "
                               "came; that text was never scored")
        # What a chunked backend has not read yet is scored before it goes out.
        self.state, _ = self.classifier.finish(self.state)
        if self._crossed():
            return "", True
        out, self._held = self._held, ""
        self._n_released += len(out)
        return out, False
