"""The n-gram classifier as a streaming output classifier: O(len(delta)) per update.

With `context="exchange"` it is the exchange classifier of `ngram_exchange`: the
conversation given to `start` is encoded once, and the running sums below are vectors.

The state holds running sums, never the text: per feature group the sum of the bucket
weights of the n-grams seen and their count (the score is a function of those alone, see
`ngram`), the last few normalised characters (to form n-grams across delta boundaries),
the hash of the word being typed and the chained hashes of the previous words (for word
n-grams), and the raw characters that NFKC might still merge with what comes next. So
the score after every delta equals `predict_proba([prefix])` up to float rounding, while the
state stays the same size however long the reply grows.

Per delta the work is a dictionary lookup per character: the summed weights of the char
n-grams ending at a character depend only on the last few characters, and those of a
finished word only on its chain of hashes, so both are cached (bounded) as tuples of
Python floats; on vectors of 1 + rank numbers, numpy's per-call cost would dominate.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.backends.ngram import (
    BASE,
    CHAIN,
    CHAR_SALTS,
    M64,
    WORD_SALT,
    WORD_SALTS,
    NGramClassifier,
    mix_int,
    sigmoid,
)
from swisscheese.classifiers.backends.ngram_exchange import (
    ExchangeWeights,
    context_entries,
    context_groups,
    exchange_logits,
    fit_exchange,
    text_entries,
)
from swisscheese.classifiers.base import (
    Conversation,
    StreamingClassifier,
    StreamState,
    check_labels,
    check_texts,
    render_conversation,
)
from swisscheese.classifiers.errors import ClassifierError, NotFittedError
from swisscheese.classifiers.textnorm import (
    PENDING_LIMIT,
    fold_chars,
    is_stable_start,
    strip_invisible,
)

# Entries the two row caches may hold together before they are emptied (a few MB).
ROW_CACHE_LIMIT = 1 << 16


def _plus(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


@dataclass(slots=True)
class RunningSums:
    """Everything the score needs about the normalised text committed so far."""

    tail: str = ""  # the last (largest char n - 1) normalised characters
    last_space: bool = False  # for collapsing whitespace runs across deltas
    # Weight sums as tuples of floats: one for the reply-only classifier, 1 + rank for
    # the exchange classifier (immutable, so a shallow copy of the sums is a snapshot).
    char_sum: tuple[float, ...] = (0.0,)
    char_n: int = 0
    word_sum: tuple[float, ...] = (0.0,)
    word_n: int = 0
    open_hash: int = 0  # polynomial hash of the word being typed
    open_pow: int = 1  # BASE ** (its length), mod 2**64
    open_len: int = 0
    prev: tuple[int, ...] = ()  # chained hashes G_1..G_{n-1} ending at the previous word

    def snapshot(self) -> RunningSums:
        """A copy (the sums are never changed in place); `copy.copy` costs 4x more."""
        return RunningSums(self.tail, self.last_space, self.char_sum, self.char_n,
                           self.word_sum, self.word_n, self.open_hash, self.open_pow,
                           self.open_len, self.prev)


@dataclass
class NGramStreamState(StreamState):
    """Stream state of NGramStreamingClassifier; its size does not depend on the length."""

    sums: RunningSums = field(default_factory=RunningSums)
    pending: str = ""  # stripped raw characters not yet NFKC-stable
    context: tuple[float, ...] | None = None  # exchange: the conversation's vector a
    # The last speculative score's work: the pending text as folded then, and the sums
    # after it. The next delta usually commits exactly that text first, so it resumes
    # from these sums instead of folding the same characters in again.
    spec: tuple[str, RunningSums] | None = None


class NGramStreamingClassifier(NGramClassifier, StreamingClassifier):
    """NGramClassifier that can also score a reply delta by delta.

    `fit`, `predict_proba`, `save` and `load` are NGramClassifier's (a saved "ngram" directory
    loads here too). With `stream_context=True` in the config, `start(conversation)`
    reads the rendered conversation plus a newline as the beginning of the text; with
    `context="exchange"` it is the exchange classifier (`ngram_exchange`: fit it with
    `fit_exchanges`, score with `predict_exchange`; `fit` and `predict_proba` read texts
    as replies to an empty conversation); otherwise the reply is scored on its own.
    `state.max_score` is the maximum of the scores `update` has returned.
    """

    name: ClassVar[str] = "ngram-stream"
    contexts: ClassVar[tuple[str, ...]] = ("reply", "exchange")

    def _init_state(self) -> None:
        super()._init_state()
        self.exchange_: ExchangeWeights | None = None
        self._rows_of: np.ndarray | None = None  # the table the caches below were read from
        self._char_rows: dict[str, tuple[tuple[float, ...], int]] = {}
        self._word_rows: dict[tuple[int, ...], tuple[tuple[float, ...], int]] = {}

    @property
    def output_context(self) -> str:
        return "exchange" if self.config.context == "exchange" or self.config.stream_context \
            else "reply"

    def is_fitted(self) -> bool:
        return (self.exchange_ if self.config.context == "exchange" else self.coef_) \
            is not None

    def _exchange(self) -> ExchangeWeights:
        if self.exchange_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit_exchanges() "
                                 "or load()")
        return self.exchange_

    def _table(self) -> np.ndarray:
        """The reply weights: a vector of bucket weights, or the exchange model's V."""
        return self._exchange().reply if self.config.context == "exchange" \
            else self._check_fitted()

    # ---- fit / score on (conversation, reply) pairs -------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        if self.config.context == "exchange":
            return self.fit_exchanges([None] * len(check_texts(texts)), texts, labels)
        return super().fit(texts, labels)

    def fit_exchanges(self, conversations: Sequence[Conversation], replies: Sequence[str],
                      labels: Sequence[int] | np.ndarray) -> Self:
        replies = check_texts(replies)
        if len(conversations) != len(replies):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(replies)} replies")
        if self.config.context != "exchange":
            return super().fit(self._joined(conversations, replies), labels)
        y = check_labels(labels, len(replies)).astype(np.float64)
        ctx, conv_of = self._contexts(conversations)
        c = self.config
        reps = text_entries([self.normalize(r) for r in replies], c.char_ngrams, c.word_ngrams,
                            c.buckets_log2)
        self.exchange_ = fit_exchange(c, ctx, conv_of, reps, y, self.progress)
        return self

    def predict_exchange(self, conversations: Sequence[Conversation],
                         replies: Sequence[str]) -> np.ndarray:
        """Probabilities that each reply, after its conversation, is harmful."""
        replies = check_texts(replies)
        if len(conversations) != len(replies):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(replies)} replies")
        if self.config.context != "exchange":
            return super().predict_proba(self._joined(conversations, replies))
        w = self._exchange()
        ctx, conv_of = self._contexts(conversations)
        c = self.config
        reps = text_entries([self.normalize(r) for r in replies], c.char_ngrams, c.word_ngrams,
                            c.buckets_log2)
        return sigmoid(exchange_logits(w, ctx, conv_of, reps))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.config.context == "exchange":
            return self.predict_exchange([None] * len(check_texts(texts)), texts)
        return super().predict_proba(texts)

    def _joined(self, conversations: Sequence[Conversation], replies: list[str]) -> list[str]:
        """What the reply-only paths read: the reply, or with stream_context the rendered
        conversation, a newline and the reply (as `start` then the deltas read them)."""
        if not self.config.stream_context:
            return replies
        out = []
        for conv, r in zip(conversations, replies, strict=True):
            context = render_conversation(conv)
            out.append(f"{context}\n{r}" if context else r)
        return out

    def _contexts(self, conversations: Sequence[Conversation]) -> tuple[Any, np.ndarray]:
        """The distinct conversations' context rows, and which row each item reads."""
        keys: dict[str, int] = {}
        distinct: list[Conversation] = []
        conv_of = np.zeros(len(conversations), dtype=np.int64)
        for i, conv in enumerate(conversations):
            key = repr(conv) if not isinstance(conv, str) else conv
            if key not in keys:
                keys[key] = len(distinct)
                distinct.append(conv)
            conv_of[i] = keys[key]
        return context_entries(distinct, self.config), conv_of

    # ---- streaming --------------------------------------------------------------------
    def start(self, conversation: Conversation = None) -> NGramStreamState:
        self._table()  # fitted?
        state = NGramStreamState()
        if self.config.context == "exchange":
            state.sums.char_sum = state.sums.word_sum = (0.0,) * self._exchange().width
            state.context = tuple(self._exchange().context_vector(
                context_entries([conversation], self.config))[0].tolist())
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
                self._commit(state, fold_chars(pending[:cut], self.config.fold_confusables))
            state.pending = pending[cut:]
        return self._prefix_score(state)

    def _commit(self, state: NGramStreamState, text: str) -> None:
        """Fold committed (folded) `text` into the sums, resuming from the speculative
        sums when `text` begins with what they were fed (feeding A then B is feeding
        A + B: the sums are a left fold over characters)."""
        spec, state.spec = state.spec, None
        if spec is not None and spec[0] and text.startswith(spec[0]):
            state.sums, text = spec[1], text[len(spec[0]):]
        self._feed(state.sums, text)

    def _prefix_score(self, state: NGramStreamState) -> float:
        """Score of committed text + pending text, as if the text ended here."""
        sums = state.sums
        if state.pending:
            sums = sums.snapshot()
            folded = fold_chars(state.pending, self.config.fold_confusables)
            self._feed(sums, folded)
            state.spec = (folded, sums)  # not changed below: the open word is local
        word_sum, word_n = sums.word_sum, sums.word_n
        if sums.open_len:  # the word being typed counts, as it would at the end of a text
            row, n = self._word_row(sums)
            word_sum, word_n = _plus(word_sum, row), word_n + n
        cn, wn = 1.0 / math.sqrt(max(sums.char_n, 1)), 1.0 / math.sqrt(max(word_n, 1))
        s = [c * cn + w * wn for c, w in zip(sums.char_sum, word_sum, strict=True)]
        if state.context is not None:
            z = self._exchange().logit_one(state.context, s)
        else:
            z = self.intercept_ + s[0]
        return 0.5 * (1.0 + math.tanh(0.5 * z))

    def _weigh(self, buckets: list[int]) -> tuple[float, ...]:
        """The summed reply weights of `buckets`: one float, or an exchange vector."""
        table = self._table()
        if table.ndim == 2:
            return tuple(table[buckets].sum(0).tolist()) if buckets \
                else (0.0,) * table.shape[1]
        total = 0.0
        for b in buckets:
            total += table.item(b)
        return (total,)

    def _caches(self) -> None:
        """Empty the row caches when the weights they were read from were replaced (a
        refit or a load), or when they are full."""
        table = self._table()
        if self._rows_of is not table or len(self._char_rows) + len(self._word_rows) \
                > ROW_CACHE_LIMIT:
            self._rows_of = table
            self._char_rows, self._word_rows = {}, {}

    def _char_row(self, window: str) -> tuple[tuple[float, ...], int]:
        """(summed weights, count) of the char n-grams ending at `window`'s last char;
        `window` is the last (largest n) characters, which decide them."""
        hit = self._char_rows.get(window)
        if hit is not None:
            return hit
        shift = 64 - self.config.buckets_log2
        c_lo, c_hi = self.config.char_ngrams
        buckets, h = [], 0
        for n in range(1, min(c_hi, len(window)) + 1):
            # h_n = window[-n] + BASE * h_{n-1}: the hash of the n chars ending here.
            h = (ord(window[-n]) + BASE * h) & M64
            if n >= c_lo:
                buckets.append(mix_int(h ^ CHAR_SALTS[n]) >> shift)
        hit = self._char_rows[window] = (self._weigh(buckets), len(buckets))
        return hit

    def _word_row(self, sums: RunningSums) -> tuple[tuple[float, ...], int]:
        """(summed weights, count) of the word n-grams ending at the open word, which its
        hash and the chain of the words before it decide."""
        key = (sums.open_hash, *sums.prev)
        hit = self._word_rows.get(key)
        if hit is None:
            buckets, _ = self._word_grams(sums)
            hit = self._word_rows[key] = (self._weigh(buckets), len(buckets))
        return hit

    def _chain(self, sums: RunningSums) -> tuple[list[int], tuple[int, ...]]:
        """(G_1..G_n of the open word, the chain the next word reads)."""
        hi = self.config.word_ngrams[1]
        g1 = mix_int(sums.open_hash ^ WORD_SALT)
        chain = [g1]
        for prev_g in sums.prev[: hi - 1]:  # G_n = mix(G_{n-1}(previous word) * CHAIN + G_1)
            chain.append(mix_int((prev_g * CHAIN + g1) & M64))
        return chain, tuple(chain[: hi - 1])

    def _word_grams(self, sums: RunningSums) -> tuple[list[int], tuple[int, ...]]:
        """(buckets, new chain) of the word n-grams ending at the open word."""
        shift = 64 - self.config.buckets_log2
        lo, hi = self.config.word_ngrams
        chain, nxt = self._chain(sums)
        buckets = [(chain[n - 1] ^ WORD_SALTS[n]) >> shift  # already mixed
                   for n in range(lo, min(hi, len(chain)) + 1)]
        return buckets, nxt

    def _feed(self, sums: RunningSums, text: str) -> None:
        """Fold already NFKC-folded characters into the running sums, one at a time."""
        self._caches()
        c_hi = self.config.char_ngrams[1]
        w_hi = self.config.word_ngrams[1]
        char_sum, char_n = list(sums.char_sum), sums.char_n
        word_sum, word_n = sums.word_sum, sums.word_n
        for ch in text:
            if ch.isspace():
                if sums.last_space:
                    continue
                ch, sums.last_space = " ", True
            else:
                sums.last_space = False
            window = sums.tail + ch
            if c_hi:
                row, n = self._char_row(window[-c_hi:])
                for j, x in enumerate(row):
                    char_sum[j] += x
                char_n += n
            sums.tail = window[-(c_hi - 1):] if c_hi > 1 else ""
            if not w_hi:
                continue
            if ch.isalnum():
                sums.open_hash = (sums.open_hash + ord(ch) * sums.open_pow) & M64
                sums.open_pow = (sums.open_pow * BASE) & M64
                sums.open_len += 1
            elif sums.open_len:
                row, n = self._word_row(sums)
                word_sum, word_n = _plus(word_sum, row), word_n + n
                sums.prev = self._chain(sums)[1]
                sums.open_hash, sums.open_pow, sums.open_len = 0, 1, 0
        sums.char_sum, sums.char_n = tuple(char_sum), char_n
        sums.word_sum, sums.word_n = word_sum, word_n

    # ---- persistence ------------------------------------------------------------------
    def _write_weights(self, path: Path) -> None:
        if self.config.context != "exchange":
            super()._write_weights(path)
            return
        w = self._exchange()
        with path.open("wb") as f:
            np.savez_compressed(f, bias=np.array([w.bias]), context=w.context, reply=w.reply)

    def _read_weights(self, path: Path) -> None:
        if self.config.context != "exchange":
            super()._read_weights(path)
            return
        try:
            with np.load(path, allow_pickle=False) as z:
                bias, ctx, rep = (np.asarray(z[k], dtype=np.float64)
                                  for k in ("bias", "context", "reply"))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise ClassifierError(f"{path}: not a readable exchange weights archive ({e})") \
                from e
        width = 1 + self.config.exchange_rank
        want = ((1,), (context_groups(self.config) * self.n_buckets, width),
                (self.n_buckets, width))
        if (bias.shape, ctx.shape, rep.shape) != want:
            raise ClassifierError(f"{path}: bias, context and reply have shapes "
                                  f"{bias.shape}, {ctx.shape}, {rep.shape}; config says "
                                  f"{want}")
        if not all(np.isfinite(x).all() for x in (bias, ctx, rep)):
            raise ClassifierError(f"{path}: weights hold NaN or infinity")
        self.exchange_ = ExchangeWeights(float(bias[0]), ctx, rep)
