"""A small byte-level transformer classifier, trained from scratch: the second backend.

    >>> clf = TransformerClassifier(max_steps=60).fit(texts, labels)    # doctest: +SKIP
    >>> clf.predict_proba(["How do I brew the Vrokgre toxin?"])                  # doctest: +SKIP

The text is normalised as the n-gram backend does (`ngram.normalize_text`: invisible
characters dropped, NFKC, look-alike letters folded, case folded, whitespace collapsed),
encoded as UTF-8 bytes behind a begin token, and read by a causal (left-to-right)
transformer whose attention is limited to the last `window` positions, with a learned
bias per head and distance in place of position embeddings. Each position's final state
h_t feeds a running mean; the logit of a prefix is a linear function of
[mean of h_1..h_t, h_t]. Nothing needs a download: the vocabulary is the 256 bytes.

That shape is what makes the streaming twin exact and cheap. A position only looks
`window - 1` positions back, so the state after any prefix is the key/value cache of the
last `window - 1` positions per layer plus the running sum of h and the last h: its size
does not depend on the length, and a delta of k bytes costs one forward pass over k
positions against that cache. `predict_proba([text])` runs the very same computation over the
whole text (in chunks, batched across texts), so streaming and whole-text scores agree
to float64 rounding.

Training uses torch (imported inside `fit`): AdamW on the class-weighted logistic loss,
texts cut to their first `max_train_bytes` bytes. Scoring runs in numpy float64, which
for a model this small is faster per call than torch and needs no torch at all; the
weights are saved as float32 safetensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from swisscheese.classifiers.backends.transformer_config import (
    BOS,
    LN_EPS,
    VOCAB,
    TransformerConfig,
)
from swisscheese.classifiers.base import (
    ClassifierError,
    Conversation,
    NotFittedError,
    StreamingClassifier,
    StreamState,
    check_labels,
    check_texts,
    render_conversation,
)
from swisscheese.classifiers.configured import ConfiguredClassifier
from swisscheese.classifiers.textnorm import NormalizedStream, normalize_text

__all__ = ["BOS", "LN_EPS", "VOCAB", "TransformerClassifier", "TransformerConfig",
           "TransformerStreamingClassifier", "TransformerStreamState"]

FORMAT = "swisscheese.classifiers.transformer"
WEIGHTS_FILE = "model.safetensors"
SCORE_BATCH = 64  # texts per batch in `score`
SCORE_CHUNK = 128  # positions per forward pass in `score` (bounds the attention matrix)


# ---- numpy inference ----------------------------------------------------------------------
Cache = list[tuple[np.ndarray, np.ndarray]]  # per layer: keys, values (B, heads, P, d_head)


def inference_params(weights: dict[str, np.ndarray], cfg: TransformerConfig
                     ) -> dict[str, np.ndarray]:
    """float64 weights with every LayerNorm's gain and bias folded into the linear map
    after it, and the attention scale into the queries: the same function, fewer numpy
    calls per position (a stream pays them per delta)."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    d = cfg.d_model
    scale = np.ones(3 * d)
    scale[:d] = 1.0 / math.sqrt(d // cfg.n_heads)
    out = {"emb": w["emb"], "avg": np.full((d, 1), 1.0 / d)}
    for i in range(cfg.n_layers):
        g, b = w[f"h{i}.ln1_g"], w[f"h{i}.ln1_b"]
        out[f"h{i}.qkv_w"] = g[:, None] * w[f"h{i}.qkv_w"] * scale
        out[f"h{i}.qkv_b"] = (b @ w[f"h{i}.qkv_w"] + w[f"h{i}.qkv_b"]) * scale
        g, b = w[f"h{i}.ln2_g"], w[f"h{i}.ln2_b"]
        out[f"h{i}.fc_w"] = g[:, None] * w[f"h{i}.fc_w"]
        out[f"h{i}.fc_b"] = b @ w[f"h{i}.fc_w"] + w[f"h{i}.fc_b"]
        for k in ("proj_w", "proj_b", "out_w", "out_b", "rel_bias"):
            out[f"h{i}.{k}"] = w[f"h{i}.{k}"]
    # The head reads [mean of h, last h] with h = xhat * g + b: fold g and b in too.
    g, b = w["lnf_g"], w["lnf_b"]
    hw = w["head_w"]
    out["head_w"] = np.concatenate([hw[:d] * g, hw[d:] * g])
    out["head_b"] = np.array([w["head_b"][0] + (hw[:d] + hw[d:]) @ b])
    if "ctx_w" in w:  # the exchange head reads the states themselves (not folded)
        out["ctx_w"], out["lnf_g"], out["lnf_b"] = w["ctx_w"], g, b
    return out


def _normalize(x: np.ndarray, avg: np.ndarray) -> np.ndarray:
    """LayerNorm without gain and bias (folded into the next map); means as matmuls,
    which cost less per call than ndarray.mean."""
    xc = x - x @ avg
    return xc / np.sqrt((xc * xc) @ avg + LN_EPS)


class AttentionBias:
    """The additive attention bias (relative-position bias, -inf outside the causal
    window) for T new positions after P cached ones, per layer; memoised, since a stream
    asks for the same few shapes again and again."""

    def __init__(self, params: dict[str, np.ndarray], cfg: TransformerConfig) -> None:
        self.rel = [params[f"h{i}.rel_bias"] for i in range(cfg.n_layers)]
        self.window = cfg.window
        self.memo: dict[tuple[int, int], list[np.ndarray]] = {}

    def get(self, t: int, n_past: int) -> list[np.ndarray]:
        key = (t, n_past)
        hit = self.memo.get(key)
        if hit is None:
            w = self.window
            dist = np.arange(t)[:, None] + n_past - np.arange(n_past + t)[None, :]
            ok = (dist >= 0) & (dist < w)
            hit = [np.where(ok, rel[:, np.clip(dist, 0, w - 1)], -np.inf) for rel in self.rel]
            if len(self.memo) >= 512:
                self.memo.clear()
            self.memo[key] = hit
        return hit


def empty_cache(cfg: TransformerConfig, batch: int) -> Cache:
    dh = cfg.d_model // cfg.n_heads
    z = np.zeros((batch, cfg.n_heads, 0, dh))
    return [(z, z) for _ in range(cfg.n_layers)]


def forward(params: dict[str, np.ndarray], cfg: TransformerConfig, bias: AttentionBias,
            ids: np.ndarray, cache: Cache) -> tuple[np.ndarray, Cache]:
    """Normalised final states (B, T, d) of T new positions after the cached ones, and
    the keys and values of cached + new positions (trim them with `trim_cache`). Pure:
    `cache` is not modified."""
    b, t = ids.shape
    d, nh = cfg.d_model, cfg.n_heads
    dh = d // nh
    avg = params["avg"]
    x = params["emb"][ids]
    full: Cache = []
    biases = bias.get(t, cache[0][0].shape[2])
    for i in range(cfg.n_layers):
        a = _normalize(x, avg)
        qkv = (a @ params[f"h{i}.qkv_w"] + params[f"h{i}.qkv_b"]
               ).reshape(b, t, 3, nh, dh).transpose(2, 0, 3, 1, 4)
        k0, v0 = cache[i]
        keys = np.concatenate([k0, qkv[1]], axis=2)
        vals = np.concatenate([v0, qkv[2]], axis=2)
        att = qkv[0] @ keys.transpose(0, 1, 3, 2) + biases[i]
        att = np.exp(att - att.max(-1, keepdims=True))
        y = ((att / att.sum(-1, keepdims=True)) @ vals).transpose(0, 2, 1, 3).reshape(b, t, d)
        x = x + y @ params[f"h{i}.proj_w"] + params[f"h{i}.proj_b"]
        a = _normalize(x, avg)
        x = x + (np.maximum(a @ params[f"h{i}.fc_w"] + params[f"h{i}.fc_b"], 0.0)
                 @ params[f"h{i}.out_w"] + params[f"h{i}.out_b"])
        full.append((keys, vals))
    return _normalize(x, avg), full


def trim_cache(full: Cache, upto: int, window: int) -> Cache:
    """The cache after the first `upto` positions of `full`: their last window - 1."""
    lo = max(0, upto - (window - 1))
    return [(k[:, :, lo:upto], v[:, :, lo:upto]) for k, v in full]


def head_logit(params: dict[str, np.ndarray], total: np.ndarray, count: np.ndarray | int,
               last: np.ndarray) -> np.ndarray:
    """Logit from the running sum of states, their count and the last state."""
    mean = total / np.maximum(np.asarray(count, dtype=np.float64), 1.0)[..., None]
    return np.concatenate([mean, last], axis=-1) @ params["head_w"] + params["head_b"][0]


def context_logit(params: dict[str, np.ndarray], c: np.ndarray, mean: np.ndarray,
                  last: np.ndarray) -> np.ndarray:
    """The exchange head's term: u.c + v.(c * mean) + q.(c * last), where c is the
    conversation's mean state and mean and last are the reply's (normalised, before the
    final gain and bias, as `forward` returns them)."""
    g, b, u = params["lnf_g"], params["lnf_b"], params["ctx_w"]
    d = len(g)
    m, h = mean * g + b, last * g + b
    return c @ u[:d] + (c * m) @ u[d:2 * d] + (c * h) @ u[2 * d:]


def text_ids(normalized: str) -> list[int]:
    """BOS then the UTF-8 bytes (lone surrogates pass through, so any str encodes)."""
    return [BOS, *normalized.encode("utf-8", errors="surrogatepass")]


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


# ---- the classifier -----------------------------------------------------------------------
class TransformerClassifier(ConfiguredClassifier):
    """Input classifier: a small causal byte-level transformer trained from scratch.

    Build with a TransformerConfig or keyword overrides of its fields:
    `TransformerClassifier(d_model=32, max_steps=300)`. See the module docstring for the
    architecture; `weights_` holds the float32 weights after `fit` or `load`.
    """

    name: ClassVar[str] = "transformer"
    config_class: ClassVar[type] = TransformerConfig
    format: ClassVar[str] = FORMAT
    weights_file: ClassVar[str] = WEIGHTS_FILE
    config: TransformerConfig

    def _init_state(self) -> None:
        self.weights_: dict[str, np.ndarray] | None = None
        self._params: dict[str, np.ndarray] = {}  # folded float64 copies used for scoring
        self._bias: AttentionBias | None = None

    def is_fitted(self) -> bool:
        return self.weights_ is not None

    def _set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.weights_ = weights
        self._params = inference_params(weights, self.config)
        self._bias = AttentionBias(self._params, self.config)

    def _check_fitted(self) -> dict[str, np.ndarray]:
        if self.weights_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")
        return self._params

    @property
    def bias(self) -> AttentionBias:
        """The attention bias tables of the fitted weights."""
        if self._bias is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")
        return self._bias

    def normalize(self, text: str) -> str:
        return normalize_text(text, self.config.fold_confusables)

    # ---- fit / score -------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        texts = check_texts(texts)
        y = check_labels(labels, len(texts))
        cap = self.config.max_train_bytes
        seqs = [text_ids(self.normalize(t))[:cap] for t in texts]
        from swisscheese.classifiers.backends.transformer_torch import train_weights

        self._set_weights(train_weights(self.config, seqs, y, progress=self.progress))
        return self

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Logits of whole texts: texts sorted by length, batched, and read in chunks of
        SCORE_CHUNK positions against the cache, as a stream would be."""
        params = self._check_fitted()
        seqs = [text_ids(self.normalize(t)) for t in check_texts(texts)]
        total, lens, last = self._pooled(seqs)
        return head_logit(params, total, lens, last)

    def _pooled(self, seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sum of final states, count, last state) of each id sequence."""
        params = self._check_fitted()
        cfg = self.config
        n = len(seqs)
        totals, lasts = np.zeros((n, cfg.d_model)), np.zeros((n, cfg.d_model))
        all_lens = np.array([len(x) for x in seqs], dtype=np.int64)
        order = sorted(range(n), key=lambda i: len(seqs[i]))
        for s in range(0, n, SCORE_BATCH):
            idx = order[s:s + SCORE_BATCH]
            lens = all_lens[idx]
            ids = np.zeros((len(idx), lens.max()), dtype=np.int64)
            for r, i in enumerate(idx):
                ids[r, : lens[r]] = seqs[i]
            cache = empty_cache(cfg, len(idx))
            total = np.zeros((len(idx), cfg.d_model))
            last = np.zeros((len(idx), cfg.d_model))
            for c in range(0, ids.shape[1], SCORE_CHUNK):
                # Padding sits after each text's end, so no real position attends to it.
                h, full = forward(params, cfg, self.bias, ids[:, c:c + SCORE_CHUNK], cache)
                cache = trim_cache(full, full[0][0].shape[2], cfg.window)
                pos = np.arange(c, c + h.shape[1])
                total += (h * (pos[None, :] < lens[:, None])[..., None]).sum(1)
                ends = (lens - 1 >= c) & (lens - 1 < c + h.shape[1])
                last[ends] = h[ends, lens[ends] - 1 - c]
            totals[idx], lasts[idx] = total, last
        return totals, all_lens, lasts

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return _sigmoid(self.decision_function(texts))

    # ---- persistence -------------------------------------------------------------------
    def _write_weights(self, path: Path) -> None:
        from safetensors.numpy import save_file

        assert self.weights_ is not None
        save_file(self.weights_, str(path))

    def _read_weights(self, path: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            weights = load_file(str(path))
        except (OSError, SafetensorError, ValueError) as e:
            raise ClassifierError(f"{path}: not a readable safetensors file ({e})") from e
        want = self.config.param_shapes()
        got = {k: tuple(v.shape) for k, v in weights.items()}
        if got != want:
            diff = sorted(set(want.items()) ^ set(got.items()))[:4]
            raise ClassifierError(f"{path}: tensors do not match the config beside it "
                                  f"(first differences: {diff})")
        if not all(np.isfinite(v).all() for v in weights.values()):
            raise ClassifierError(f"{path}: weights hold NaN or infinity")
        self._set_weights({k: np.asarray(v, dtype=np.float32) for k, v in weights.items()})


# ---- streaming ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Point:
    """The model's state after some prefix: cache, running sum of states, count, last."""

    cache: Cache
    total: np.ndarray
    count: int
    last: np.ndarray


@dataclass
class TransformerStreamState(StreamState):
    """Stream state: the model's state at the end of the committed text (`base`) and at
    the end of committed + pending text (`tip`, what the score reads), the pending bytes
    `tip` includes, and the text normaliser."""

    base: Point | None = None
    tip: Point | None = None
    tip_bytes: bytes = b""
    text: NormalizedStream = field(default_factory=NormalizedStream)
    context: np.ndarray | None = None  # exchange: the conversation's mean state


class TransformerStreamingClassifier(TransformerClassifier, StreamingClassifier):
    """TransformerClassifier that also scores a reply delta by delta, with constant work.

    `fit`, `predict_proba`, `save` and `load` are TransformerClassifier's (a saved "transformer"
    directory loads here too). The reply is scored on its own (`start` ignores the
    conversation), unless the config says `context="exchange"`: then `start` runs the
    model once over the end of the conversation and keeps its mean state, which the
    head crosses with the reply's states (fit with `fit_exchanges`).
    Each `update` runs the model once, over the new bytes only, against a
    cache of the last `window - 1` positions per layer. Characters that NFKC may still
    merge with the next delta (almost always just the last one) are read into `tip`
    but not into `base`; in the rare case that the next delta changes them, the stream
    goes on from `base` instead.
    """

    name: ClassVar[str] = "transformer-stream"
    contexts: ClassVar[tuple[str, ...]] = ("reply", "exchange")

    @property
    def output_context(self) -> str:
        return str(self.config.context)

    # ---- the exchange classifier ------------------------------------------------------
    def _context_ids(self, conversation: Conversation) -> list[int]:
        """BOS and the last context_bytes bytes of the normalised conversation."""
        ids = text_ids(self.normalize(render_conversation(conversation)))
        return [BOS, *ids[1:][-self.config.context_bytes:]]

    def _context_states(self, conversations: Sequence[Conversation]) -> np.ndarray:
        """Each conversation's mean final state (after the final gain and bias)."""
        params = self._check_fitted()
        total, lens, _ = self._pooled([self._context_ids(c) for c in conversations])
        return total / lens[:, None] * params["lnf_g"] + params["lnf_b"]

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        if self.config.context == "exchange":
            return self.fit_exchanges([None] * len(check_texts(texts)), texts, labels)
        return super().fit(texts, labels)

    def fit_exchanges(self, conversations: Sequence[Conversation], replies: Sequence[str],
                      labels: Sequence[int] | np.ndarray) -> Self:
        if self.config.context != "exchange":
            return super().fit_exchanges(conversations, replies, labels)
        texts = check_texts(replies)
        if len(conversations) != len(texts):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(texts)} replies")
        y = check_labels(labels, len(texts))
        cap = self.config.max_train_bytes
        seqs = [text_ids(self.normalize(t))[:cap] for t in texts]
        ctx = [self._context_ids(c) for c in conversations]
        from swisscheese.classifiers.backends.transformer_torch import train_weights

        self._set_weights(train_weights(self.config, seqs, y, ctx, progress=self.progress))
        return self

    def predict_exchange(self, conversations: Sequence[Conversation],
                         replies: Sequence[str]) -> np.ndarray:
        if self.config.context != "exchange":
            return super().predict_exchange(conversations, replies)
        params = self._check_fitted()
        texts = check_texts(replies)
        if len(conversations) != len(texts):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(texts)} replies")
        total, lens, last = self._pooled([text_ids(self.normalize(t)) for t in texts])
        c = self._context_states(conversations)
        z = head_logit(params, total, lens, last) + context_logit(
            params, c, total / lens[:, None], last)
        return _sigmoid(z)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.config.context == "exchange":
            return self.predict_exchange([None] * len(check_texts(texts)), texts)
        return super().predict_proba(texts)

    # ---- streaming --------------------------------------------------------------------
    def start(self, conversation: Conversation = None) -> TransformerStreamState:
        self._check_fitted()
        cfg = self.config
        state = TransformerStreamState(text=NormalizedStream(cfg.fold_confusables))
        if cfg.context == "exchange":
            state.context = self._context_states([conversation])[0]
        empty = Point(empty_cache(cfg, 1), np.zeros(cfg.d_model), 0, np.zeros(cfg.d_model))
        first = bytes(text_ids(state.text.begin())[1:])  # the leading space, after BOS
        state.base = state.tip = self._extend(empty, [BOS, *first], len(first) + 1)[0]
        return state

    def _extend(self, start: Point, ids: Sequence[int], cut: int) -> tuple[Point, Point]:
        """(state after all of `ids`, state after the first `cut` of them), one pass."""
        if not ids:
            return start, start
        h, full = forward(self._params, self.config, self.bias, np.array([ids]), start.cache)
        n0, w = start.cache[0][0].shape[2], self.config.window
        end = Point(trim_cache(full, n0 + len(ids), w), start.total + h[0].sum(0),
                    start.count + len(ids), h[0, -1])
        if cut == len(ids):
            return end, end
        if cut == 0:
            return end, start
        mid = Point(trim_cache(full, n0 + cut, w), start.total + h[0, :cut].sum(0),
                    start.count + cut, h[0, cut - 1])
        return end, mid

    def _advance(self, state: StreamState, delta: str) -> float:
        if not isinstance(state, TransformerStreamState) or state.tip is None:
            raise TypeError(f"expected the TransformerStreamState that start() returns, got "
                            f"{type(state).__name__}")
        assert state.base is not None
        committed = state.text.push(delta).encode("utf-8", errors="surrogatepass")
        new = committed + state.text.peek().encode("utf-8", errors="surrogatepass")
        old = state.tip_bytes
        if len(committed) >= len(old) and new.startswith(old):
            # The usual case: what tip read speculatively still stands.
            tip, base = self._extend(state.tip, list(new[len(old):]), len(committed) - len(old))
        else:
            tip, base = self._extend(state.base, list(new), len(committed))
        state.tip, state.base, state.tip_bytes = tip, base, new[len(committed):]
        z = head_logit(self._params, tip.total, tip.count, tip.last)
        if state.context is not None:
            z = z + context_logit(self._params, state.context, tip.total / tip.count, tip.last)
        return float(_sigmoid(z))
