"""The n-gram classifier as a streaming output classifier: O(len(delta)) per update.

The state holds running sums, never the text: per feature group the sum of the bucket
weights of the n-grams seen and their count (the score is a function of those alone, see
`ngram`), the last few normalised characters (to form n-grams across delta boundaries),
the hash of the word being typed and the chained hashes of the previous words (for word
n-grams), and the raw characters that NFKC might still merge with what comes next. So
the score after every delta equals `predict_proba([prefix])` up to float rounding, while the
state stays the same size however long the reply grows.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar

from swisscheese.classifiers.backends.ngram import (
    BASE,
    CHAIN,
    CHAR_SALTS,
    M64,
    WORD_SALT,
    WORD_SALTS,
    NGramClassifier,
    mix_int,
)
from swisscheese.classifiers.base import (
    Conversation,
    StreamingClassifier,
    StreamState,
    render_conversation,
)
from swisscheese.classifiers.textnorm import (
    PENDING_LIMIT,
    fold_chars,
    is_stable_start,
    strip_invisible,
)


@dataclass(slots=True)
class RunningSums:
    """Everything the score needs about the normalised text committed so far."""

    tail: str = ""  # the last (largest char n - 1) normalised characters
    last_space: bool = False  # for collapsing whitespace runs across deltas
    char_sum: float = 0.0
    char_n: int = 0
    word_sum: float = 0.0
    word_n: int = 0
    open_hash: int = 0  # polynomial hash of the word being typed
    open_pow: int = 1  # BASE ** (its length), mod 2**64
    open_len: int = 0
    prev: tuple[int, ...] = ()  # chained hashes G_1..G_{n-1} ending at the previous word


@dataclass
class NGramStreamState(StreamState):
    """Stream state of NGramStreamingClassifier; its size does not depend on the length."""

    sums: RunningSums = field(default_factory=RunningSums)
    pending: str = ""  # stripped raw characters not yet NFKC-stable


class NGramStreamingClassifier(NGramClassifier, StreamingClassifier):
    """NGramClassifier that can also score a reply delta by delta.

    `fit`, `predict_proba`, `save` and `load` are NGramClassifier's (a saved "ngram" directory
    loads here too). With `stream_context=True` in the config, `start(conversation)`
    reads the rendered conversation plus a newline as the beginning of the text;
    otherwise the reply is scored on its own. `state.max_score` is the maximum of the
    scores `update` has returned.
    """

    name: ClassVar[str] = "ngram-stream"

    def start(self, conversation: Conversation = None) -> NGramStreamState:
        self._check_fitted()
        state = NGramStreamState()
        self._feed(state.sums, " ")  # the leading space normalize_text adds
        if self.config.stream_context:
            context = render_conversation(conversation)
            if context:
                self._advance(state, context + "\n")
        return state

    def _advance(self, state: StreamState, delta: str) -> float:
        if not isinstance(state, NGramStreamState):
            raise TypeError(f"expected the NGramStreamState that start() returns, got "
                            f"{type(state).__name__}")
        raw = strip_invisible(delta)
        if raw:
            pending = state.pending + raw
            # Commit everything before the last stable start; keep the rest, which a later
            # delta may still change under NFKC (a combining accent, a Hangul vowel).
            cut = next((i for i in range(len(pending) - 1, 0, -1)
                        if is_stable_start(pending[i])), 0)
            if cut == 0 and len(pending) > PENDING_LIMIT:
                cut = len(pending) - 1
            if cut:
                self._feed(state.sums, fold_chars(pending[:cut], self.config.fold_confusables))
            state.pending = pending[cut:]
        return self._prefix_score(state)

    def _prefix_score(self, state: NGramStreamState) -> float:
        """Score of committed text + pending text, as if the text ended here."""
        sums = copy.copy(state.sums)
        if state.pending:
            self._feed(sums, fold_chars(state.pending, self.config.fold_confusables))
        word_sum, word_n = sums.word_sum, sums.word_n
        if sums.open_len:  # the word being typed counts, as it would at the end of a text
            s, n, _ = self._word_grams(sums)
            word_sum, word_n = word_sum + s, word_n + n
        z = (self.intercept_ + sums.char_sum / math.sqrt(max(sums.char_n, 1))
             + word_sum / math.sqrt(max(word_n, 1)))
        return 0.5 * (1.0 + math.tanh(0.5 * z))

    def _word_grams(self, sums: RunningSums) -> tuple[float, int, tuple[int, ...]]:
        """(weight sum, count, new chain) of the word n-grams ending at the open word."""
        coef = self._check_fitted()
        shift = 64 - self.config.buckets_log2
        lo, hi = self.config.word_ngrams
        g1 = mix_int(sums.open_hash ^ WORD_SALT)
        chain = [g1]
        for prev_g in sums.prev[: hi - 1]:  # G_n = mix(G_{n-1}(previous word) * CHAIN + G_1)
            chain.append(mix_int((prev_g * CHAIN + g1) & M64))
        total, count = 0.0, 0
        for n in range(lo, min(hi, len(chain)) + 1):
            total += coef.item((chain[n - 1] ^ WORD_SALTS[n]) >> shift)  # already mixed
            count += 1
        return total, count, tuple(chain[: hi - 1])

    def _feed(self, sums: RunningSums, text: str) -> None:
        """Fold already NFKC-folded characters into the running sums, one at a time."""
        coef = self._check_fitted()
        shift = 64 - self.config.buckets_log2
        c_lo, c_hi = self.config.char_ngrams
        w_hi = self.config.word_ngrams[1]
        for ch in text:
            if ch.isspace():
                if sums.last_space:
                    continue
                ch, sums.last_space = " ", True
            else:
                sums.last_space = False
            window = sums.tail + ch
            if c_hi:
                # h_n = window[-n] + BASE * h_{n-1}: the hash of the n chars ending here.
                h = 0
                for n in range(1, min(c_hi, len(window)) + 1):
                    h = (ord(window[-n]) + BASE * h) & M64
                    if n >= c_lo:
                        sums.char_sum += coef.item(mix_int(h ^ CHAR_SALTS[n]) >> shift)
                        sums.char_n += 1
            sums.tail = window[-(c_hi - 1):] if c_hi > 1 else ""
            if not w_hi:
                continue
            if ch.isalnum():
                sums.open_hash = (sums.open_hash + ord(ch) * sums.open_pow) & M64
                sums.open_pow = (sums.open_pow * BASE) & M64
                sums.open_len += 1
            elif sums.open_len:
                s, n, chain = self._word_grams(sums)
                sums.word_sum += s
                sums.word_n += n
                sums.prev = chain
                sums.open_hash, sums.open_pow, sums.open_len = 0, 1, 0
