"""Hashed character and word n-gram logistic regression: the fast classifier backend.

    >>> clf = NGramClassifier(epochs=30).fit(
    ...     ["How do I brew the Demze toxin?", "What is the history of the Demze toxin?"] * 4,
    ...     [1, 0] * 4)
    >>> bool(clf.predict_proba(["How do I brew the Vrokgre toxin?"])[0] > 0.5)
    True

Text is first normalised (`textnorm.normalize_text`). Character n-grams (2 to 5 by
default) and word n-grams (1 to 2) of the normalised text are hashed into 2**18 buckets.
Each group's bucket counts are divided by the square root of the group's n-gram count:
close to L2 normalisation when most n-grams are distinct, yet the score stays a running
sum, which is what lets `ngram_stream` score a prefix exactly with constant work per
delta.

Hashing is a polynomial hash over code points mod 2**64 followed by the splitmix64
finaliser, written twice with the same constants: vectorised numpy here, plain integers in
`ngram_stream`. Python's built-in `hash` is salted per process, so it cannot be used.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from swisscheese.classifiers.base import check_labels, check_texts
from swisscheese.classifiers.configured import ConfiguredClassifier
from swisscheese.classifiers.errors import ClassifierError, NotFittedError
from swisscheese.classifiers.textnorm import normalize_text

# The saved format's name predates the backends/ package; saves stay readable.
FORMAT = "swisscheese.classifiers.ngram"
WEIGHTS_FILE = "weights.npz"

# ---- hashing constants (shared with ngram_stream.py, which mirrors them in Python ints) ------
M64 = (1 << 64) - 1
BASE = 0x100000001B3  # the FNV-1 64-bit prime; odd, so invertible mod 2**64
INV_BASE = pow(BASE, -1, 1 << 64)
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
CHAIN = 0x9E3779B97F4A7C15  # combines a word n-gram's hash with the next word's
WORD_SALT = 0x5851F42D4C957F2D
MAX_CHAR_N = 8
MAX_WORD_N = 4
# A different salt per feature kind and n, so "ab" as a char bigram and "ab" as a word
# never share a bucket by construction.
CHAR_SALTS = tuple((0x243F6A8885A308D3 * (n + 1)) & M64 for n in range(MAX_CHAR_N + 1))
WORD_SALTS = tuple((0x13198A2E03707344 * (n + 7)) & M64 for n in range(MAX_WORD_N + 1))
POWERS = tuple(pow(BASE, k, 1 << 64) for k in range(MAX_CHAR_N))
LAST_TURN_MULT = 0x9E3779B1  # odd: multiplying by it permutes the buckets (last_turn)

# ---- hashing ------------------------------------------------------------------------------
# numpy twins of the constants: immutable scalars built once, not per call.
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_MIX1, _MIX2, _CHAIN = np.uint64(MIX1), np.uint64(MIX2), np.uint64(CHAIN)
_WORD_SALT = np.uint64(WORD_SALT)
_CHAR_SALTS = tuple(np.uint64(x) for x in CHAR_SALTS)
_WORD_SALTS = tuple(np.uint64(x) for x in WORD_SALTS)
_POWERS = tuple(np.uint64(x) for x in POWERS)


def mix_np(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wraps mod 2**64)."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


def mix_int(z: int) -> int:
    """splitmix64's finaliser on a Python int in [0, 2**64): the scalar twin of mix_np."""
    z = ((z ^ (z >> 30)) * MIX1) & M64
    z = ((z ^ (z >> 27)) * MIX2) & M64
    return z ^ (z >> 31)


@lru_cache(maxsize=4)
def _power_table(base: int, size: int) -> np.ndarray:
    a = np.full(size, base, dtype=np.uint64)
    a[0] = 1
    a = np.cumprod(a, dtype=np.uint64)
    a.flags.writeable = False
    return a


def _powers(base: int, n: int) -> np.ndarray:
    """base**i mod 2**64 for i < n, sliced from a cached table (sizes are powers of two)."""
    return _power_table(base, max(1024, 1 << (n - 1).bit_length()))[:n]


@lru_cache(maxsize=1)
def _bmp_word_table() -> np.ndarray:
    return np.array([chr(c).isalnum() for c in range(0x10000)], dtype=bool)


def _is_word_char(cp: np.ndarray) -> np.ndarray:
    """str.isalnum per code point, vectorised (a table for the BMP, a lookup beyond)."""
    mask = _bmp_word_table()[np.minimum(cp, 0xFFFF).astype(np.intp)]
    big = cp > 0xFFFF
    if big.any():
        uniq, inv = np.unique(cp[big], return_inverse=True)
        mask[big] = np.array([chr(int(c)).isalnum() for c in uniq], dtype=bool)[inv]
    return mask


@dataclass
class Features:
    """Hashed n-grams of a batch of normalised texts.

    Entry i says: text `char_doc[i]` holds one char n-gram in bucket `char_bucket[i]` (the
    same for words). `char_count` and `word_count` are the n-grams per text.
    """

    n_docs: int
    char_doc: np.ndarray
    char_bucket: np.ndarray
    char_count: np.ndarray
    word_doc: np.ndarray
    word_bucket: np.ndarray
    word_count: np.ndarray
    # More (doc, bucket, count) groups: the last turn's, when the classifier reads it apart.
    extra: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...] = ()

    def groups(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return [(self.char_doc, self.char_bucket, self.char_count),
                (self.word_doc, self.word_bucket, self.word_count), *self.extra]

    def logits(self, coef: np.ndarray, intercept: float) -> np.ndarray:
        """intercept + sum over groups of (sum of bucket weights) / sqrt(n-gram count)."""
        z = np.full(self.n_docs, float(intercept))
        for doc, bucket, count in self.groups():
            s = np.bincount(doc, weights=coef[bucket], minlength=self.n_docs)
            z += s / np.sqrt(np.maximum(count, 1))
        return z

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(doc, bucket, value) of every entry sorted by doc; value = 1/sqrt(group count)."""
        groups = self.groups()
        doc = np.concatenate([g[0] for g in groups])
        bucket = np.concatenate([g[1] for g in groups])
        value = np.concatenate([1.0 / np.sqrt(np.maximum(c, 1))[d] for d, _, c in groups])
        order = np.argsort(doc, kind="stable")
        return doc[order], bucket[order], value[order]

    def with_last_turn(self, last: Features, n_buckets: int) -> Features:
        """These features plus `last`'s (the same texts' last lines) as groups of their own:
        their buckets moved by an odd multiplier, a permutation of the buckets, so an
        n-gram of the last line and the same n-gram of the whole text get weights apart."""
        mask = n_buckets - 1
        moved = tuple((d, (b * LAST_TURN_MULT + 1) & mask, c) for d, b, c in last.groups())
        return dataclasses.replace(self, extra=(*self.extra, *moved))


def _ngram_counts(lengths: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Windows of lo..hi items in sequences of the given lengths."""
    if hi <= 0:
        return np.zeros(len(lengths), dtype=np.int64)
    # sum over n of max(L - n + 1, 0), in closed form: the terms for n <= L form a run.
    top = np.minimum(lengths, hi)
    k = np.maximum(top - lo + 1, 0)
    return k * (lengths + 1) - k * (lo + top) // 2


def featurize(normalized: Sequence[str], char_ngrams: tuple[int, int],
              word_ngrams: tuple[int, int], buckets_log2: int) -> Features:
    """Hash the n-grams of texts already passed through `normalize_text`.

    All texts are concatenated into one code-point array, so the work is a fixed number
    of numpy passes per batch, with no Python loop over n-grams or texts.
    """
    n_docs = len(normalized)
    lengths = np.fromiter(map(len, normalized), dtype=np.int64, count=n_docs)
    cp = np.frombuffer("".join(normalized).encode("utf-32-le"), dtype=np.uint32)
    cp = cp.astype(np.uint64)
    # With one text every window lies inside it: skip the bookkeeping of which text.
    single = n_docs == 1
    if not single:
        doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        end_of = np.repeat(np.cumsum(lengths), lengths)  # where each position's text ends
    shift = np.uint64(64 - buckets_log2)

    # Char n-grams: h_n(i) = sum_k cp[i+k] * BASE**k, built up one n at a time.
    c_lo, c_hi = char_ngrams
    c_keys, c_docs = [], []
    h = cp
    for n in range(1, c_hi + 1):
        if n > 1:
            h = h[:-1] + cp[n - 1:] * _POWERS[n - 1]
        if n < c_lo:
            continue
        if single:
            c_keys.append(h ^ _CHAR_SALTS[n])
        else:
            ok = np.arange(n, len(h) + n) <= end_of[: len(h)]
            c_keys.append(h[ok] ^ _CHAR_SALTS[n])
            c_docs.append(doc_of[: len(h)][ok])
    char_bucket = _buckets(c_keys, shift)
    char_doc = (np.zeros(len(char_bucket), dtype=np.int64) if single or not c_docs
                else np.concatenate(c_docs))

    word_bucket, word_doc, n_words = _word_grams(cp, lengths, None if single else doc_of,
                                                 word_ngrams, shift)
    w_lo, w_hi = word_ngrams
    return Features(
        n_docs=n_docs, char_doc=char_doc, char_bucket=char_bucket,
        char_count=_ngram_counts(lengths, c_lo, c_hi),
        word_doc=word_doc, word_bucket=word_bucket,
        word_count=_ngram_counts(n_words, w_lo, w_hi),
    )


def _word_grams(cp: np.ndarray, lengths: np.ndarray, doc_of: np.ndarray | None,
                word_ngrams: tuple[int, int], shift: np.uint64
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bucket, doc) of every word n-gram, and the words per text: n-grams over maximal
    runs of alphanumerics. Every text starts with " ", so no word runs from one text into
    the next. `doc_of` (the text of each position) is None for a single text."""
    n_docs = len(lengths)
    single = doc_of is None
    total = len(cp)
    w_lo, w_hi = word_ngrams
    w_keys, w_docs = [], []
    n_words = np.zeros(n_docs, dtype=np.int64)
    if w_hi > 0 and total:
        is_w = _is_word_char(cp)
        padded = np.zeros(total + 2, dtype=bool)
        padded[1:-1] = is_w
        edge = np.flatnonzero(padded[1:] != padded[:-1])
        w_start, w_end = edge[0::2], edge[1::2]  # runs of True: [start, end)
        # Word hash sum_j cp[s+j] * BASE**j from prefix sums of cp[i] * BASE**i, shifted
        # back by BASE**-s: uint64 arithmetic wraps mod 2**64, which is what we want.
        prefix = np.zeros(total + 1, dtype=np.uint64)
        np.cumsum(cp * _powers(BASE, total), dtype=np.uint64, out=prefix[1:])
        word_h = (prefix[w_end] - prefix[w_start]) * _powers(INV_BASE, total)[w_start]
        g1 = mix_np(word_h ^ _WORD_SALT)  # G_1: the word's own hash
        if single:
            n_words[0] = len(w_start)
        else:
            assert doc_of is not None  # several texts: positions know their text
            wd = doc_of[w_start]
            n_words = np.bincount(wd, minlength=n_docs)
        g = g1
        for n in range(1, w_hi + 1):
            if n > 1:  # G_n(k) = mix(G_{n-1}(k) * CHAIN + G_1(k+n-1))
                g = mix_np(g[:-1] * _CHAIN + g1[n - 1:])
            if n < w_lo:
                continue
            if single:
                w_keys.append(g ^ _WORD_SALTS[n])
            else:
                ok = wd[: len(g)] == wd[n - 1:]
                w_keys.append(g[ok] ^ _WORD_SALTS[n])
                w_docs.append(wd[: len(g)][ok])
    # G_n is already mixed: the salted values go straight to the top-bits bucket.
    word_bucket = _buckets(w_keys, shift, mix=False)
    word_doc = (np.zeros(len(word_bucket), dtype=np.int64) if single or not w_docs
                else np.concatenate(w_docs))

    return word_bucket, word_doc, n_words


def _buckets(keys: list[np.ndarray], shift: np.uint64, mix: bool = True) -> np.ndarray:
    """One mixing pass over all n's salted hashes; the top bits pick the bucket."""
    if not keys:
        return np.zeros(0, dtype=np.int64)
    z = np.concatenate(keys)
    return ((mix_np(z) if mix else z) >> shift).astype(np.int64)


def last_line(text: str) -> str:
    """The last non-blank line of `text` (a rendered conversation's last message, or the
    text itself when it has one line)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else text


def sigmoid(z: np.ndarray | float) -> np.ndarray:
    """The logistic function, without overflow for large |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


# ---- the classifier -----------------------------------------------------------------------
@dataclass(frozen=True)
class NGramConfig:
    """Hyper-parameters of the n-gram classifier (saved in config.json)."""

    char_ngrams: tuple[int, int] = field(default=(2, 5), metadata={
        "help": "smallest and largest character n-gram; (0, 0) turns them off"})
    word_ngrams: tuple[int, int] = field(default=(1, 2), metadata={
        "help": "smallest and largest word n-gram; (0, 0) turns them off"})
    buckets_log2: int = field(default=18, metadata={
        "help": "n-grams are hashed into 2**buckets_log2 weights"})
    fold_confusables: bool = field(default=True, metadata={
        "help": "map Cyrillic/Greek look-alike letters to Latin before hashing"})
    epochs: int = field(default=12, metadata={"help": "passes over the training set"})
    batch_size: int = field(default=32, metadata={"help": "texts per Adam step"})
    lr: float = field(default=0.05, metadata={
        "help": "Adam learning rate, decayed linearly to a tenth over training"})
    l2: float = field(default=1e-4, metadata={
        "help": "L2 penalty, applied lazily to the weights a batch touches"})
    class_weight: str | None = field(default="balanced", metadata={
        "help": "'balanced' weighs each class by n / (2 * n_class); None weighs texts equally"})
    seed: int = field(default=0, metadata={"help": "seed of the shuffling"})
    last_turn: bool = field(default=False, metadata={
        "help": "input only: also read the text's last line (a rendered conversation's "
                "last message) as feature groups of its own, so a request at the end of a "
                "long harmless chat is not diluted in the chat's n-grams, while the earlier "
                "turns still weigh in (a code word they define)"})
    stream_context: bool = field(default=False, metadata={
        "help": "streaming only: whether the conversation given to start() is read as the "
                "beginning of the text, or the reply is scored on its own"})
    context: str = field(default="reply", metadata={
        "help": "streaming only: 'reply' scores the reply on its own (or, with "
                "stream_context, after the conversation read as its beginning); "
                "'exchange' reads the conversation once at start() as feature groups of "
                "its own crossed with the reply's (see ngram_exchange)"})
    exchange_rank: int = field(default=4, metadata={
        "help": "exchange only: rank of the conversation x reply interaction"})
    context_char_ngrams: tuple[int, int] = field(default=(0, 0), metadata={
        "help": "exchange only: character n-grams of the conversation; (0, 0) turns them off"})
    context_word_ngrams: tuple[int, int] = field(default=(1, 2), metadata={
        "help": "exchange only: word n-grams of the conversation; (0, 0) turns them off"})
    exchange_init: float = field(default=0.1, metadata={
        "help": "exchange only: standard deviation of the interaction weights at the start"})
    context_first_user: bool = field(default=False, metadata={
        "help": "exchange only: the first user message as a third conversation feature "
                "group (a split-intent conversation names its subject there, diluted in "
                "the whole chat's n-grams)"})

    def __post_init__(self) -> None:
        for name, top in (("char_ngrams", MAX_CHAR_N), ("word_ngrams", MAX_WORD_N),
                          ("context_char_ngrams", MAX_CHAR_N),
                          ("context_word_ngrams", MAX_WORD_N)):
            lo, hi = getattr(self, name)
            object.__setattr__(self, name, (int(lo), int(hi)))
            if not ((lo, hi) == (0, 0) or 1 <= lo <= hi <= top):
                raise ValueError(f"{name} must be (lo, hi) with 1 <= lo <= hi <= {top}, "
                                 f"or (0, 0); got {(lo, hi)}")
        if self.char_ngrams == (0, 0) and self.word_ngrams == (0, 0):
            raise ValueError("turn on char_ngrams or word_ngrams")
        if not 8 <= self.buckets_log2 <= 26:
            raise ValueError(f"buckets_log2 must be in [8, 26], got {self.buckets_log2}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be 'balanced' or None, got "
                             f"{self.class_weight!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.l2 < 0:
            raise ValueError("epochs and batch_size must be >= 1, lr > 0 and l2 >= 0")
        if self.context not in ("reply", "exchange"):
            raise ValueError(f"context must be 'reply' or 'exchange', got {self.context!r}")
        if self.context == "exchange":
            if self.stream_context:
                raise ValueError("stream_context reads the conversation as the reply's "
                                 "beginning; context='exchange' reads it as features of its "
                                 "own: choose one")
            if not 1 <= self.exchange_rank <= 32 or self.exchange_init <= 0:
                raise ValueError("exchange_rank must be in [1, 32] and exchange_init > 0")
            if self.context_char_ngrams == (0, 0) and self.context_word_ngrams == (0, 0):
                raise ValueError("context='exchange' needs context_char_ngrams or "
                                 "context_word_ngrams")


class NGramClassifier(ConfiguredClassifier):
    """Input classifier: logistic regression on hashed char and word n-grams.

    Build with an NGramConfig or keyword overrides of its fields:
    `NGramClassifier(epochs=20, char_ngrams=(3, 5))`. After `fit`, `coef_` holds one
    weight per bucket and `intercept_` the bias.
    """

    name: ClassVar[str] = "ngram"
    config_class: ClassVar[type] = NGramConfig
    format: ClassVar[str] = FORMAT
    weights_file: ClassVar[str] = WEIGHTS_FILE
    config: NGramConfig

    def _init_state(self) -> None:
        if self.config.last_turn and hasattr(self, "start"):
            raise ValueError("last_turn is for the input classifier (ngram): a stream does "
                             "not know which line of a reply is its last")
        if self.config.context == "exchange" and not hasattr(self, "start"):
            raise ValueError("context='exchange' is for the streaming output classifier "
                             "(ngram-stream), which reads a conversation; the input "
                             "classifier reads the conversation as its text")
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0

    def is_fitted(self) -> bool:
        return self.coef_ is not None

    @property
    def n_buckets(self) -> int:
        return 1 << self.config.buckets_log2

    # ---- features ----------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        return normalize_text(text, self.config.fold_confusables)

    def features(self, texts: Sequence[str]) -> Features:
        c = self.config
        texts = check_texts(texts)
        whole = featurize([self.normalize(t) for t in texts], c.char_ngrams, c.word_ngrams,
                          c.buckets_log2)
        if not c.last_turn:
            return whole
        last = featurize([self.normalize(last_line(t)) for t in texts], c.char_ngrams,
                         c.word_ngrams, c.buckets_log2)
        return whole.with_last_turn(last, self.n_buckets)

    # ---- fit / score -------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        """Mini-batch Adam on the class-weighted logistic loss with a lazy L2 penalty."""
        texts = check_texts(texts)
        y = check_labels(labels, len(texts)).astype(np.float64)
        c = self.config
        n = len(texts)
        doc, bucket, value = self.features(texts).entries()
        indptr = np.concatenate([[0], np.cumsum(np.bincount(doc, minlength=n))])
        if c.class_weight == "balanced":
            n_pos = y.sum()
            sample_w = np.where(y == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))
        else:
            sample_w = np.ones(n)

        coef = np.zeros(self.n_buckets)
        m, v = np.zeros_like(coef), np.zeros_like(coef)
        bias, mb, vb = 0.0, 0.0, 0.0
        b1, b2, eps = 0.9, 0.999, 1e-8
        rng = np.random.default_rng(c.seed)
        steps_per_epoch = -(-n // c.batch_size)
        total_steps = c.epochs * steps_per_epoch
        t = 0
        for _ in range(c.epochs):
            perm = rng.permutation(n)
            for s in range(0, n, c.batch_size):
                batch = perm[s:s + c.batch_size]
                starts, lens = indptr[batch], indptr[batch + 1] - indptr[batch]
                # Gather the batch's entries without a Python loop over texts.
                idx = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
                local = np.repeat(np.arange(len(batch)), lens)
                bk, val = bucket[idx], value[idx]
                z = bias + np.bincount(local, weights=coef[bk] * val, minlength=len(batch))
                sw = sample_w[batch]
                err = (sigmoid(z) - y[batch]) * sw / sw.sum()
                # Lazy (sparse) Adam: only the buckets in this batch move, so a step costs
                # O(entries in the batch), not O(buckets).
                touched, inv = np.unique(bk, return_inverse=True)
                g = np.bincount(inv, weights=err[local] * val, minlength=len(touched))
                g += c.l2 * coef[touched]
                t += 1
                lr = c.lr * (1.0 - 0.9 * (t - 1) / max(total_steps - 1, 1))
                m[touched] = b1 * m[touched] + (1 - b1) * g
                v[touched] = b2 * v[touched] + (1 - b2) * g * g
                corr = np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                coef[touched] -= lr * corr * m[touched] / (np.sqrt(v[touched]) + eps)
                gb = float(err.sum())
                mb = b1 * mb + (1 - b1) * gb
                vb = b2 * vb + (1 - b2) * gb * gb
                bias -= lr * corr * mb / (np.sqrt(vb) + eps)
        self.coef_, self.intercept_ = coef, float(bias)
        return self

    def _check_fitted(self) -> np.ndarray:
        if self.coef_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")
        return self.coef_

    def decision_function(self, texts: Sequence[str], chunk: int = 4096) -> np.ndarray:
        """Logits, computed in chunks so memory stays bounded for big batches."""
        coef = self._check_fitted()
        texts = check_texts(texts)
        out = [self.features(texts[i:i + chunk]).logits(coef, self.intercept_)
               for i in range(0, len(texts), chunk)]
        return np.concatenate(out) if out else np.zeros(0)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return sigmoid(self.decision_function(texts))

    # ---- persistence -------------------------------------------------------------------
    def _write_weights(self, path: Path) -> None:
        coef = self._check_fitted()
        with path.open("wb") as f:
            np.savez_compressed(f, coef=coef, intercept=np.array([self.intercept_]))

    def _read_weights(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as z:
                coef = np.asarray(z["coef"], dtype=np.float64)
                intercept = np.asarray(z["intercept"], dtype=np.float64)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise ClassifierError(f"{path}: not a readable weights archive ({e})") from e
        if coef.shape != (self.n_buckets,) or intercept.shape != (1,):
            raise ClassifierError(
                f"{path}: coef has shape {coef.shape} and intercept {intercept.shape}; "
                f"config says {(self.n_buckets,)} and (1,)")
        if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
            raise ClassifierError(f"{path}: weights hold NaN or infinity")
        self.coef_, self.intercept_ = coef, float(intercept[0])
