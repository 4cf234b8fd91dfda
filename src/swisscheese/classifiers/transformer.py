"""A small byte-level transformer classifier, trained from scratch: the second backend.

    >>> clf = TransformerClassifier(max_steps=60).fit(texts, labels)    # doctest: +SKIP
    >>> clf.score(["How do I brew the Vrokgre toxin?"])                  # doctest: +SKIP

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
positions against that cache. `score([text])` runs the very same computation over the
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
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.base import (
    Classifier,
    ClassifierError,
    Conversation,
    NotFittedError,
    StreamingClassifier,
    StreamState,
    check_labels,
    check_texts,
)
from swisscheese.classifiers.ngram import normalize_text
from swisscheese.classifiers.registry import register
from swisscheese.classifiers.savedir import (
    checked_weights_path,
    config_entry,
    read_config,
    sha256_file,
    write_config,
)
from swisscheese.classifiers.textstream import NormalizedStream

FORMAT = "swisscheese.classifiers.transformer"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
BOS = 256  # the begin token, after the 256 byte values
VOCAB = 257
LN_EPS = 1e-5
SCORE_BATCH = 64  # texts per batch in `score`
SCORE_CHUNK = 128  # positions per forward pass in `score` (bounds the attention matrix)


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes and training settings of the byte-level transformer (saved in config.json)."""

    d_model: int = field(default=48, metadata={"help": "width of the residual stream"})
    n_layers: int = field(default=2, metadata={"help": "transformer blocks"})
    n_heads: int = field(default=4, metadata={"help": "attention heads (divide d_model)"})
    d_ff: int = field(default=128, metadata={"help": "width of each block's MLP"})
    window: int = field(default=64, metadata={
        "help": "positions (bytes) each position attends to, itself included; the stream "
                "state holds window - 1 cached positions per layer"})
    fold_confusables: bool = field(default=True, metadata={
        "help": "map Cyrillic/Greek look-alike letters to Latin before reading"})
    max_train_bytes: int = field(default=256, metadata={
        "help": "training reads each text's first max_train_bytes bytes (scoring reads all)"})
    epochs: float = field(default=3.0, metadata={
        "help": "passes over the training set, within [min_steps, max_steps] Adam steps"})
    min_steps: int = field(default=40, metadata={"help": "fewest Adam steps"})
    max_steps: int = field(default=1200, metadata={
        "help": "most Adam steps (bounds training time on large sets)"})
    batch_size: int = field(default=32, metadata={"help": "texts per Adam step"})
    lr: float = field(default=3e-3, metadata={
        "help": "peak AdamW learning rate (warm-up, then linear decay to a tenth)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    class_weight: str | None = field(default="balanced", metadata={
        "help": "'balanced' weighs each class by n / (2 * n_class); None weighs texts equally"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation and shuffling"})

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "window", "max_train_bytes",
                     "min_steps", "max_steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) > max_steps ({self.max_steps})")
        if self.epochs <= 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("epochs and lr must be > 0 and weight_decay >= 0")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be 'balanced' or None, got "
                             f"{self.class_weight!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransformerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every weight's name and shape (the safetensors file must hold exactly these)."""
        d, f, h = self.d_model, self.d_ff, self.n_heads
        shapes: dict[str, tuple[int, ...]] = {"emb": (VOCAB, d)}
        for i in range(self.n_layers):
            shapes.update({
                f"h{i}.ln1_g": (d,), f"h{i}.ln1_b": (d,),
                f"h{i}.qkv_w": (d, 3 * d), f"h{i}.qkv_b": (3 * d,),
                f"h{i}.proj_w": (d, d), f"h{i}.proj_b": (d,),
                f"h{i}.rel_bias": (h, self.window),
                f"h{i}.ln2_g": (d,), f"h{i}.ln2_b": (d,),
                f"h{i}.fc_w": (d, f), f"h{i}.fc_b": (f,),
                f"h{i}.out_w": (f, d), f"h{i}.out_b": (d,),
            })
        shapes.update({"lnf_g": (d,), "lnf_b": (d,), "head_w": (2 * d,), "head_b": (1,)})
        return shapes


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


def text_ids(normalized: str) -> list[int]:
    """BOS then the UTF-8 bytes (lone surrogates pass through, so any str encodes)."""
    return [BOS, *normalized.encode("utf-8", errors="surrogatepass")]


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


# ---- training (torch) ---------------------------------------------------------------------
def _train(cfg: TransformerConfig, seqs: list[list[int]], y: np.ndarray
           ) -> dict[str, np.ndarray]:
    """Fit the model with torch; returns float32 numpy weights named as `param_shapes`."""
    import torch
    from torch import nn

    d, nh, w = cfg.d_model, cfg.n_heads, cfg.window
    dh = d // nh

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d, eps=LN_EPS), nn.LayerNorm(d, eps=LN_EPS)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, cfg.d_ff), nn.Linear(cfg.d_ff, d)
            self.rel_bias = nn.Parameter(torch.zeros(nh, w))

        def forward(self, x: torch.Tensor, bias_idx: torch.Tensor, ok: torch.Tensor
                    ) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, nh, dh).permute(2, 0, 3, 1, 4)
            bias = self.rel_bias[:, bias_idx].masked_fill(~ok, float("-inf"))
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + bias, dim=-1)
            x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
            return x + self.out(torch.relu(self.fc(self.ln2(x))))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(VOCAB, d)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.lnf = nn.LayerNorm(d, eps=LN_EPS)
            self.head = nn.Linear(2 * d, 1)
            nn.init.normal_(self.emb.weight, std=0.1)

        def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            t = ids.shape[1]
            dist = torch.arange(t)[:, None] - torch.arange(t)[None, :]
            ok = (dist >= 0) & (dist < w)
            x = self.emb(ids)
            for blk in self.blocks:
                x = blk(x, dist.clamp(0, w - 1), ok)
            h = self.lnf(x)
            mask = (torch.arange(t)[None, :] < lengths[:, None]).to(h.dtype)
            mean = (h * mask[..., None]).sum(1) / lengths[:, None].to(h.dtype)
            last = h[torch.arange(len(ids)), lengths - 1]
            return self.head(torch.cat([mean, last], dim=-1)).squeeze(-1)

    n = len(seqs)
    per_epoch = -(-n // cfg.batch_size)
    steps = int(min(max(round(cfg.epochs * per_epoch), cfg.min_steps), cfg.max_steps))
    if cfg.class_weight == "balanced":
        n_pos = float(y.sum())
        sample_w = np.where(y == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))
    else:
        sample_w = np.ones(n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = Net()
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                foreach=True)
        warm = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * (1.0 - 0.9 * s / max(steps - 1, 1)))
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(n)
        pos = 0
        net.train()
        for _ in range(steps):
            if pos + cfg.batch_size > n:
                order, pos = rng.permutation(n), 0
            batch = order[pos:pos + cfg.batch_size]
            pos += cfg.batch_size
            lens = [len(seqs[j]) for j in batch]
            ids = torch.zeros((len(batch), max(lens)), dtype=torch.long)
            for r, j in enumerate(batch):
                ids[r, : lens[r]] = torch.tensor(seqs[j])
            logits = net(ids, torch.tensor(lens))
            target = torch.tensor(y[batch], dtype=torch.float32)
            sw = torch.tensor(sample_w[batch], dtype=torch.float32)
            loss = (nn.functional.binary_cross_entropy_with_logits(
                logits, target, reduction="none") * sw).sum() / sw.sum()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()

    out: dict[str, np.ndarray] = {"emb": net.emb.weight.detach().numpy()}
    for i, blk in enumerate(net.blocks):
        for name, lin in (("qkv", blk.qkv), ("proj", blk.proj), ("fc", blk.fc),
                          ("out", blk.out)):
            out[f"h{i}.{name}_w"] = lin.weight.detach().numpy().T  # numpy computes x @ W
            out[f"h{i}.{name}_b"] = lin.bias.detach().numpy()
        for name, ln in (("ln1", blk.ln1), ("ln2", blk.ln2)):
            out[f"h{i}.{name}_g"] = ln.weight.detach().numpy()
            out[f"h{i}.{name}_b"] = ln.bias.detach().numpy()
        out[f"h{i}.rel_bias"] = blk.rel_bias.detach().numpy()
    out["lnf_g"], out["lnf_b"] = net.lnf.weight.detach().numpy(), net.lnf.bias.detach().numpy()
    out["head_w"] = net.head.weight.detach().numpy()[0]
    out["head_b"] = net.head.bias.detach().numpy()
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


# ---- the classifier -----------------------------------------------------------------------
@register
class TransformerClassifier(Classifier):
    """Input classifier: a small causal byte-level transformer trained from scratch.

    Build with a TransformerConfig or keyword overrides of its fields:
    `TransformerClassifier(d_model=32, max_steps=300)`. See the module docstring for the
    architecture; `weights_` holds the float32 weights after `fit` or `load`.
    """

    name: ClassVar[str] = "transformer"

    def __init__(self, config: TransformerConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or TransformerConfig(), **overrides)
        self.weights_: dict[str, np.ndarray] | None = None
        self._params: dict[str, np.ndarray] = {}  # folded float64 copies used for scoring
        self._bias: AttentionBias | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def _set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.weights_ = weights
        self._params = inference_params(weights, self.config)
        self._bias = AttentionBias(self._params, self.config)

    def _check_fitted(self) -> dict[str, np.ndarray]:
        if self.weights_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")
        return self._params

    def normalize(self, text: str) -> str:
        return normalize_text(text, self.config.fold_confusables)

    # ---- fit / score -------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        texts = check_texts(texts)
        y = check_labels(labels, len(texts))
        cap = self.config.max_train_bytes
        seqs = [text_ids(self.normalize(t))[:cap] for t in texts]
        self._set_weights(_train(self.config, seqs, y))
        return self

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Logits of whole texts: texts sorted by length, batched, and read in chunks of
        SCORE_CHUNK positions against the cache, as a stream would be."""
        params = self._check_fitted()
        seqs = [text_ids(self.normalize(t)) for t in check_texts(texts)]
        out = np.zeros(len(seqs))
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        cfg = self.config
        for s in range(0, len(order), SCORE_BATCH):
            idx = order[s:s + SCORE_BATCH]
            lens = np.array([len(seqs[i]) for i in idx])
            ids = np.zeros((len(idx), lens.max()), dtype=np.int64)
            for r, i in enumerate(idx):
                ids[r, : lens[r]] = seqs[i]
            cache = empty_cache(cfg, len(idx))
            total = np.zeros((len(idx), cfg.d_model))
            last = np.zeros((len(idx), cfg.d_model))
            for c in range(0, ids.shape[1], SCORE_CHUNK):
                # Padding sits after each text's end, so no real position attends to it.
                h, full = forward(params, cfg, self._bias, ids[:, c:c + SCORE_CHUNK], cache)
                cache = trim_cache(full, full[0][0].shape[2], cfg.window)
                pos = np.arange(c, c + h.shape[1])
                total += (h * (pos[None, :] < lens[:, None])[..., None]).sum(1)
                ends = (lens - 1 >= c) & (lens - 1 < c + h.shape[1])
                last[ends] = h[ends, lens[ends] - 1 - c]
            out[idx] = head_logit(params, total, lens, last)
        return out

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return _sigmoid(self.decision_function(texts))

    # ---- persistence -------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors, then config.json with its sha256 (last, so a crash
        mid-save leaves no config pointing at missing weights)."""
        from safetensors.numpy import save_file

        self._check_fitted()
        assert self.weights_ is not None
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        wpath = d / WEIGHTS_FILE
        save_file(self.weights_, str(wpath))
        meta = {"name": self.name, "format": FORMAT, "format_version": FORMAT_VERSION,
                "weights_file": WEIGHTS_FILE, "weights_sha256": sha256_file(wpath),
                "config": asdict(self.config)}
        write_config(d, meta)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        d = Path(directory)
        cpath = d / CONFIG_FILE
        meta = read_config(cpath, FORMAT, FORMAT_VERSION)
        config = config_entry(cpath, meta, TransformerConfig.from_dict)
        wpath = checked_weights_path(d, cpath, meta)
        try:
            weights = load_file(str(wpath))
        except (OSError, SafetensorError, ValueError) as e:
            raise ClassifierError(f"{wpath}: not a readable safetensors file ({e})") from e
        want = config.param_shapes()
        got = {k: tuple(v.shape) for k, v in weights.items()}
        if got != want:
            diff = sorted(set(want.items()) ^ set(got.items()))[:4]
            raise ClassifierError(f"{wpath}: tensors do not match the config in {cpath} "
                                  f"(first differences: {diff})")
        if not all(np.isfinite(v).all() for v in weights.values()):
            raise ClassifierError(f"{wpath}: weights hold NaN or infinity")
        obj = cls(config)
        obj._set_weights({k: np.asarray(v, dtype=np.float32) for k, v in weights.items()})
        return obj


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


@register
class TransformerStreamingClassifier(TransformerClassifier, StreamingClassifier):
    """TransformerClassifier that also scores a reply delta by delta, with constant work.

    `fit`, `score`, `save` and `load` are TransformerClassifier's (a saved "transformer"
    directory loads here too). The reply is scored on its own: `start` ignores the
    conversation. Each `update` runs the model once, over the new bytes only, against a
    cache of the last `window - 1` positions per layer. Characters that NFKC may still
    merge with the next delta (almost always just the last one) are read into `tip`
    but not into `base`; in the rare case that the next delta changes them, the stream
    goes on from `base` instead.
    """

    name: ClassVar[str] = "transformer-stream"

    def start(self, conversation: Conversation = None) -> TransformerStreamState:
        self._check_fitted()
        cfg = self.config
        state = TransformerStreamState(text=NormalizedStream(cfg.fold_confusables))
        empty = Point(empty_cache(cfg, 1), np.zeros(cfg.d_model), 0, np.zeros(cfg.d_model))
        first = bytes(text_ids(state.text.begin())[1:])  # the leading space, after BOS
        state.base = state.tip = self._extend(empty, [BOS, *first], len(first) + 1)[0]
        return state

    def _extend(self, start: Point, ids: Sequence[int], cut: int) -> tuple[Point, Point]:
        """(state after all of `ids`, state after the first `cut` of them), one pass."""
        if not ids:
            return start, start
        h, full = forward(self._params, self.config, self._bias, np.array([ids]), start.cache)
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
        return float(_sigmoid(head_logit(self._params, tip.total, tip.count, tip.last)))
