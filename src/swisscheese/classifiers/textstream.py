"""`normalize_text` one delta at a time, for streaming backends that read normalised text.

`NormalizedStream` turns raw deltas into the characters `ngram.normalize_text` would give
for the whole text, split into a committed part (final: no later delta can change it) and
a pending part (what the text would end with if it ended now). The concatenation of
everything committed plus the current pending part equals `normalize_text(prefix)`, so a
backend that folds committed characters into its state and scores the pending ones
speculatively scores every prefix exactly as the whole-text path does.

Only NFKC can reach back across a delta boundary (a combining accent after a letter), so
raw characters wait until a stable starter follows them, as in `streaming`; whitespace is
collapsed here with one bit of state. The pending part is at most PENDING_LIMIT raw
characters, so the work per delta stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from swisscheese.classifiers.ngram import fold_chars, is_stable_start, strip_invisible
from swisscheese.classifiers.streaming import PENDING_LIMIT


def collapse_spaces(text: str, last_space: bool) -> tuple[str, bool]:
    """Map each whitespace run to one " ", continuing a run when `last_space`; returns the
    text and whether it ends in a space."""
    out: list[str] = []
    for ch in text:
        if ch.isspace():
            if last_space:
                continue
            out.append(" ")
            last_space = True
        else:
            out.append(ch)
            last_space = False
    return "".join(out), last_space


@dataclass(slots=True)
class NormalizedStream:
    """Incremental `normalize_text(text, fold_confusables)` (see the module docstring).

    The leading space that `normalize_text` adds is returned by `begin()`; call it once
    before the first `push`.
    """

    fold_confusables: bool = True
    pending: str = ""  # stripped raw characters not yet NFKC-stable
    last_space: bool = False

    def begin(self) -> str:
        self.last_space = True
        return " "

    def push(self, delta: str) -> str:
        """Take a raw delta; return the newly committed normalised characters."""
        raw = strip_invisible(delta)
        if not raw:
            return ""
        pending = self.pending + raw
        cut = next((i for i in range(len(pending) - 1, 0, -1) if is_stable_start(pending[i])),
                   0)
        if cut == 0 and len(pending) > PENDING_LIMIT:
            cut = len(pending) - 1
        self.pending = pending[cut:]
        if not cut:
            return ""
        text, self.last_space = collapse_spaces(
            fold_chars(pending[:cut], self.fold_confusables), self.last_space)
        return text

    def peek(self) -> str:
        """The normalised pending characters, as if the text ended now (state unchanged)."""
        if not self.pending:
            return ""
        return collapse_spaces(fold_chars(self.pending, self.fold_confusables),
                               self.last_space)[0]
