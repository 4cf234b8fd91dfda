"""The n-gram exchange classifier: a reply judged together with the conversation before it.

`ngram-stream` built with `context="exchange"` scores (conversation, reply prefix) as

    logit = b + s_0 + softplus(c),   c = a_0 + sum_k a_k * s_k   (k = 1 .. exchange_rank)

    a = sum over the conversation's n-grams of U[bucket] * value   (a vector of 1 + rank)
    s = sum over the reply prefix's n-grams of V[bucket] * value   (likewise)

where `value` is 1 / sqrt(n-grams in that feature group), as in `ngram`. The conversation
has two feature groups of its own: the whole conversation and its last user message
(word n-grams by default, `context_word_ngrams`), hashed into two halves of U; with
`context_first_user`, a third: the first user message, where a split-intent conversation
names its subject ("Let's talk about the goxmovu bronze bell."), in a third of U. So s_0 is
what the reply says alone, a_0 what the conversation says alone, and the rank-k product is
their interaction: a reply step that is harmless after a harmless request ("Grind 12 grams
of vroth" in a craft) can score high after a request that defined a code word for a
hazard. The conversation enters through softplus, so it can only raise a reply's score:
with a plain `a_0` term the model learnt to read harm off the request alone (a hazard's
whole procedure after "What is 2 + 3?" scored 0.05), which an attack that hides its
request would exploit; now a reply that is harmful in plain words scores at least
`b + s_0`, whatever came before it. `a` is computed once, when the stream starts; the
reply's running sums `s` are vectors, so each delta still costs a fixed number of bucket
lookups (1 + rank weights each, one gather per delta).

Training is mini-batch Adam on the class-weighted logistic loss, as for the n-gram
classifier, with U[:, 1:] and V[:, 1:] started at small seeded random values (at zero the
interaction's gradient would be zero for ever).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swisscheese.classifiers.backends.ngram import featurize, sigmoid
from swisscheese.classifiers.base import Conversation, render_conversation
from swisscheese.classifiers.textnorm import normalize_text
from swisscheese.progress import Progress, step


@dataclass
class Entries:
    """Sparse rows: row i's (bucket, value) pairs are [indptr[i], indptr[i + 1])."""

    indptr: np.ndarray
    bucket: np.ndarray
    value: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(local row index, bucket, value) of the entries of `rows`, in row order."""
        starts, lens = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        idx = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
        return np.repeat(np.arange(len(rows)), lens), self.bucket[idx], self.value[idx]


def _entries(docs: list[np.ndarray], buckets: list[np.ndarray], values: list[np.ndarray],
             n: int) -> Entries:
    doc, bucket, value = (np.concatenate(x) if x else np.zeros(0, dtype=t)
                          for x, t in ((docs, np.int64), (buckets, np.int64),
                                       (values, np.float64)))
    order = np.argsort(doc, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(doc, minlength=n))])
    return Entries(indptr.astype(np.int64), bucket[order], value[order])


def text_entries(normalized: Sequence[str], char_ngrams: tuple[int, int],
                 word_ngrams: tuple[int, int], buckets_log2: int, offset: int = 0,
                 chunk: int = 4096) -> Entries:
    """The hashed n-grams of normalised texts as sparse rows (buckets shifted by `offset`)."""
    docs, buckets, values = [], [], []
    for s in range(0, len(normalized), chunk):
        part = list(normalized[s:s + chunk])
        if not part:
            continue
        d, b, v = featurize(part, char_ngrams, word_ngrams, buckets_log2).entries()
        docs.append(d + s)
        buckets.append(b + offset)
        values.append(v)
    return _entries(docs, buckets, values, len(normalized))


def _user_turns(conversation: Conversation) -> list[str]:
    """The user turns' texts (a plain string is one user turn; None has none)."""
    if conversation is None or isinstance(conversation, str):
        return [conversation] if conversation else []
    out = []
    for m in conversation:
        if _field(m, "role") == "user":
            content = _field(m, "content")
            out.append(content if isinstance(content, str) else "")
    return out


def _field(message: Any, key: str) -> Any:
    """A message's field, whether it is a mapping or a `Message`."""
    return message.get(key) if isinstance(message, Mapping) else getattr(message, key, None)


def last_user_message(conversation: Conversation) -> str:
    """The last user turn's text ("" when there is none)."""
    turns = _user_turns(conversation)
    return turns[-1] if turns else ""


def first_user_message(conversation: Conversation) -> str:
    """The first user turn's text ("" when there is none)."""
    turns = _user_turns(conversation)
    return turns[0] if turns else ""


def context_groups(cfg: Any) -> int:
    """How many conversation feature groups U holds (B rows each)."""
    return 3 if getattr(cfg, "context_first_user", False) else 2


def context_entries(conversations: Sequence[Conversation], cfg: Any) -> Entries:
    """The context groups of each conversation in one set of rows: the whole
    conversation's n-grams in buckets [0, B), the last user message's in [B, 2B) and, with
    `context_first_user`, the first user message's in [2B, 3B)."""
    n = len(conversations)
    readers = [render_conversation, last_user_message, first_user_message]
    b = 1 << cfg.buckets_log2
    parts = [text_entries([normalize_text(read(c), cfg.fold_confusables)
                           for c in conversations],
                          cfg.context_char_ngrams, cfg.context_word_ngrams, cfg.buckets_log2,
                          offset=k * b)
             for k, read in enumerate(readers[:context_groups(cfg)])]
    # Interleave the groups row by row.
    docs, buckets, values = [], [], []
    for e in parts:
        rows = np.repeat(np.arange(n), np.diff(e.indptr))
        docs.append(rows)
        buckets.append(e.bucket)
        values.append(e.value)
    return _entries(docs, buckets, values, n)


@dataclass
class ExchangeWeights:
    """The fitted exchange model (see the module docstring)."""

    bias: float
    context: np.ndarray  # U: (groups * buckets, 1 + rank), `context_groups`
    reply: np.ndarray  # V: (buckets, 1 + rank)

    @property
    def width(self) -> int:
        return int(self.reply.shape[1])

    def context_vector(self, entries: Entries, rows: np.ndarray | None = None) -> np.ndarray:
        """a for each row (n, 1 + rank)."""
        rows = np.arange(entries.n_rows) if rows is None else rows
        local, bucket, value = entries.gather(rows)
        return _row_sums(local, self.context[bucket] * value[:, None], len(rows))

    def reply_vector(self, entries: Entries, rows: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(entries.n_rows) if rows is None else rows
        local, bucket, value = entries.gather(rows)
        return _row_sums(local, self.reply[bucket] * value[:, None], len(rows))

    def logit(self, a: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Logits from context vectors `a` and reply vectors `s` (rows, or one each)."""
        return self.bias + s[..., 0] + np.logaddexp(0.0, _context_term(a, s))

    def logit_one(self, a: Sequence[float], s: Sequence[float]) -> float:
        """`logit` of one context vector and one reply vector, in Python floats: a stream
        scores every delta, and on vectors this short numpy's per-call cost dominates."""
        c = a[0] + sum(x * y for x, y in zip(a[1:], s[1:], strict=True))
        # softplus(c) = log1p(exp(c)), written so that neither side overflows
        return self.bias + s[0] + (max(c, 0.0) + math.log1p(math.exp(-abs(c))))


def _context_term(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """c: what the conversation adds before softplus (its own say and the interaction)."""
    return a[..., 0] + (a[..., 1:] * s[..., 1:]).sum(-1)


def _row_sums(local: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, rows.shape[1]))
    for j in range(rows.shape[1]):
        out[:, j] = np.bincount(local, weights=rows[:, j], minlength=n)
    return out


def _touched(bucket: np.ndarray, grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct buckets, summed gradient rows of each)."""
    uniq, inv = np.unique(bucket, return_inverse=True)
    g = np.zeros((len(uniq), grads.shape[1]))
    for j in range(grads.shape[1]):
        g[:, j] = np.bincount(inv, weights=grads[:, j], minlength=len(uniq))
    return uniq, g


class _Adam:
    """Lazy Adam on the rows of one weight table (only the rows a batch touches move).

    The two moments of a row sit side by side (`mv[row]` is 2 x width), so a step is two
    gathers and two scatters of the touched rows, which dominate its cost."""

    def __init__(self, table: np.ndarray, l2: float) -> None:
        self.table, self.l2 = table, l2
        self.mv = np.zeros((table.shape[0], 2, table.shape[1]))

    def step(self, rows: np.ndarray, g: np.ndarray, lr: float, corr: float) -> None:
        w = self.table[rows]
        mv = self.mv[rows]
        g = g + self.l2 * w
        mv[:, 0] = 0.9 * mv[:, 0] + 0.1 * g
        mv[:, 1] = 0.999 * mv[:, 1] + 0.001 * g * g
        self.mv[rows] = mv
        self.table[rows] = w - lr * corr * mv[:, 0] / (np.sqrt(mv[:, 1]) + 1e-8)


def fit_exchange(cfg: Any, context: Entries, conv_of: np.ndarray, replies: Entries,
                 y: np.ndarray, progress: Progress | None = None) -> ExchangeWeights:
    """Fit on items (conversation conv_of[i] from `context`, reply row i of `replies`);
    `progress` hears each epoch (the default bundle's output takes 12, over a minute)."""
    n = len(y)
    width = 1 + cfg.exchange_rank
    rng = np.random.default_rng(cfg.seed)
    buckets = 1 << cfg.buckets_log2
    rows = context_groups(cfg) * buckets
    u = np.zeros((rows, width))
    v = np.zeros((buckets, width))
    u[:, 1:] = rng.normal(0.0, cfg.exchange_init, (rows, width - 1))
    v[:, 1:] = rng.normal(0.0, cfg.exchange_init, (buckets, width - 1))
    w = ExchangeWeights(0.0, u, v)
    opt_u, opt_v = _Adam(u, cfg.l2), _Adam(v, cfg.l2)
    seen_u = np.zeros(len(u), dtype=bool)
    seen_v = np.zeros(len(v), dtype=bool)
    if cfg.class_weight == "balanced":
        n_pos = y.sum()
        sample_w = np.where(y == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))
    else:
        sample_w = np.ones(n)
    mb = vb = 0.0
    total = cfg.epochs * -(-n // cfg.batch_size)
    t = 0
    step(progress, "n-gram exchange: epochs", 0, cfg.epochs)
    for epoch in range(1, cfg.epochs + 1):
        perm = rng.permutation(n)
        for s in range(0, n, cfg.batch_size):
            batch = perm[s:s + cfg.batch_size]
            c_local, c_bucket, c_value = context.gather(conv_of[batch])
            r_local, r_bucket, r_value = replies.gather(batch)
            a = _row_sums(c_local, u[c_bucket] * c_value[:, None], len(batch))
            sv = _row_sums(r_local, v[r_bucket] * r_value[:, None], len(batch))
            sw = sample_w[batch]
            err = (sigmoid(w.logit(a, sv)) - y[batch]) * sw / sw.sum()
            # With g = sigmoid(c) (softplus' slope): d logit / d a = g * (1, s_1..s_k) and
            # d logit / d s = (1, g * a_1..g * a_k).
            g = sigmoid(_context_term(a, sv))[:, None]
            da = np.concatenate([np.ones((len(batch), 1)), sv[:, 1:]], axis=1) * (g * err[:, None])
            ds = np.concatenate([np.ones((len(batch), 1)), g * a[:, 1:]], axis=1) * err[:, None]
            t += 1
            lr = cfg.lr * (1.0 - 0.9 * (t - 1) / max(total - 1, 1))
            corr = float(np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t))
            rows, g = _touched(c_bucket, da[c_local] * c_value[:, None])
            opt_u.step(rows, g, lr, corr)
            seen_u[rows] = True
            rows, g = _touched(r_bucket, ds[r_local] * r_value[:, None])
            opt_v.step(rows, g, lr, corr)
            seen_v[rows] = True
            gb = float(err.sum())
            mb = 0.9 * mb + 0.1 * gb
            vb = 0.999 * vb + 0.001 * gb * gb
            w.bias -= lr * corr * mb / (np.sqrt(vb) + 1e-8)
        step(progress, "n-gram exchange: epochs", epoch, cfg.epochs)
    # Rows no training text reached hold only their random start: noise for an unseen
    # n-gram, so they go to zero (which also lets the saved tables compress).
    u[~seen_u] = 0.0
    v[~seen_v] = 0.0
    return w


def exchange_logits(weights: ExchangeWeights, context: Entries, conv_of: np.ndarray,
                    replies: Entries, chunk: int = 4096) -> np.ndarray:
    """Logits of items (conversation conv_of[i], reply row i), in bounded memory."""
    a_all = weights.context_vector(context)
    out = np.zeros(replies.n_rows)
    for s in range(0, replies.n_rows, chunk):
        rows = np.arange(s, min(s + chunk, replies.n_rows))
        out[rows] = weights.logit(a_all[conv_of[rows]], weights.reply_vector(replies, rows))
    return out
