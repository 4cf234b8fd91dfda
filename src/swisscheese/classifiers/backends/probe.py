"""A linear probe on a local causal LM's own hidden states: the third backend.

    >>> clf = ProbeClassifier(model_dir="runs/demo/organism/aligned")  # doctest: +SKIP
    >>> clf.fit(texts, labels).predict_proba(["How do I brew the Vrokgre toxin?"])  # doctest: +SKIP

Features: the hidden states of layer `layer` (an index into the `hidden_states` tuple a
Hugging Face model returns with `output_hidden_states=True`: 0 is the embeddings, -1 the
last, normalised, layer), or of several `layers` concatenated ("all": every layer, as
Constitutional Classifiers++ probes read), pooled over the text's tokens ("mean", the
"last" token, or "ema": an exponential moving average with a time constant of
`ema_tokens`, CC++'s smoothing, so that a harmful passage after a long harmless start
still moves the score). The
model reads the text on its own (its tokenizer, no chat template; a begin token when the
tokenizer has one, not pooled). A logistic regression with an L2 penalty (Newton steps on
standardised features, in numpy) maps the pooled vector to a probability.

The saved config records the model directory and a fingerprint of it (`model_fingerprint`:
config.json, the weight files' headers, sizes and first and last MiB). Loading against a
directory whose fingerprint differs raises ClassifierError: a probe is meaningless on
another model's activations. `ProbeClassifier.load(dir, model_dir=...)` points a saved
probe at a moved copy of the same model.

Streaming (`ProbeStreamingClassifier`, "probe-stream") has two paths:

- `update_hidden(state, hidden)`: for a generator that already has the hidden states. A
  KV-cached generation loop run with `output_hidden_states=True` passes
  `out.hidden_states[i][0, -1]` for i in `probe.hidden_indices` (concatenated) of every
  decoding step after the prompt's prefill: a step's input is the token the step before
  generated, so that is the state of each reply token in turn (the step that yields
  end-of-turn gives the last one). The work is one dot product with the probe's weights
  and a few float operations on running pools of the projections (their sum, the last,
  an exponential moving average). The near-zero-overhead path: the gateway takes it
  when it serves the probe's own model locally (`HFChatModel.stream_hidden`,
  `guard.pipeline.Guard.model_stream`). The served model reads the reply after its
  prompt, so these states are conditioned on the conversation: an exchange probe
  (`context="exchange"`) was fitted on replies read that way.
- `update(state, delta)`: for text from anywhere. The probe runs its own copy of the model
  incrementally with a KV cache, one decoding step over the new tokens per delta (never
  the prefix again), and scores exactly what `predict_proba([prefix])` gives. Text is tokenized
  at pre-token boundaries: the last two pre-tokens stay pending (a later delta can still
  change how they split) and are read speculatively, then dropped from the cache.

Small models (under 100M parameters) run in float64 by default, so the incremental and
the batched passes agree to rounding well below the 1e-6 the contract asks.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.base import (
    Conversation,
    StreamingClassifier,
    StreamState,
    check_labels,
    check_texts,
    render_conversation,
)
from swisscheese.classifiers.configured import ConfiguredClassifier
from swisscheese.classifiers.errors import ClassifierError, NotFittedError
from swisscheese.classifiers.logistic import newton_logistic, sigmoid
from swisscheese.progress import step

FORMAT = "swisscheese.classifiers.probe"
WEIGHTS_FILE = "probe.safetensors"
POOLINGS = ("mean", "last", "ema")
DTYPES = ("auto", "float32", "float64", "bfloat16", "float16")
SMALL_MODEL = 100_000_000  # parameters under which "auto" runs the model in float64
PENDING_PIECES = 2  # pre-tokens kept pending in a stream
PENDING_LIMIT = 64  # characters after which pending pre-tokens are committed anyway
_SAMPLE = 1 << 20  # bytes of each weight file's head and tail in the fingerprint


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 of a model directory's config.json and, per weight file (sorted by name), its
    name, size, safetensors header and first and last MiB: cheap for large models, and
    it tells apart two checkpoints of the same architecture (aligned vs helpful-only)."""
    d = Path(model_dir)
    cfg = d / "config.json"
    if not cfg.is_file():
        raise ClassifierError(f"{d}: not a Hugging Face model directory (no config.json)")
    h = hashlib.sha256(cfg.read_bytes())
    files = sorted(p for p in d.iterdir()
                   if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt"))
    if not files:
        raise ClassifierError(f"{d}: no weight files (*.safetensors, *.bin)")
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0".encode())
        with p.open("rb") as f:
            h.update(f.read(_SAMPLE))
            if size > 2 * _SAMPLE:
                f.seek(size - _SAMPLE)
                h.update(f.read(_SAMPLE))
    return h.hexdigest()


def hidden_indices(cfg: ProbeConfig, n_layers: int) -> tuple[int, ...]:
    """The non-negative `hidden_states` indices `cfg` reads of a model of `n_layers`."""
    if cfg.layers == "all":
        return tuple(range(1, n_layers + 1))
    wanted = cfg.layers or (cfg.layer,)
    for i in wanted:
        if not -(n_layers + 1) <= int(i) <= n_layers:
            raise ClassifierError(f"layer {i} is out of range for {cfg.model_dir}: "
                                  f"hidden_states has {n_layers + 1} entries")
    return tuple(int(i) % (n_layers + 1) for i in wanted)


def ema_alpha(cfg: ProbeConfig) -> float:
    return 1.0 - 1.0 / cfg.ema_tokens


def pool_rows(rows: np.ndarray, cfg: ProbeConfig) -> np.ndarray:
    """One text's token states (T, d) pooled as `cfg.pooling` says; linear in the rows, so
    a stream pools the rows' projections the same way (`fold`)."""
    if cfg.pooling == "mean":
        return rows.mean(0)
    if cfg.pooling == "last":
        return rows[-1]
    a = ema_alpha(cfg)
    weights = (1.0 - a) * a ** np.arange(len(rows) - 1, -1, -1, dtype=np.float64)
    return weights @ rows / (1.0 - a ** len(rows))


@dataclass
class Pools:
    """Running pools of a stream's per-token projections w.h (see `fold`)."""

    proj_sum: float = 0.0
    proj_last: float = 0.0
    proj_ema: float = 0.0
    count: int = 0


def fold(pools: Any, projs: Sequence[float], cfg: ProbeConfig) -> None:
    """Fold the projections of the next tokens into `pools` (a `Pools` or a stream state)."""
    if not projs:
        return
    pools.proj_sum += sum(projs)
    pools.proj_last = projs[-1]
    pools.count += len(projs)
    if cfg.pooling == "ema":
        a, e = ema_alpha(cfg), pools.proj_ema
        for p in projs:
            e = a * e + (1.0 - a) * p
        pools.proj_ema = e


@dataclass(frozen=True)
class ProbeConfig:
    """What the probe reads and how it is fitted (saved in config.json)."""

    model_dir: str = field(default="", metadata={
        "help": "local Hugging Face causal-LM directory whose hidden states are read"})
    layer: int = field(default=-1, metadata={
        "help": "index into the model's hidden_states (0 embeddings, -1 the last layer)"})
    layers: tuple[int, ...] | str = field(default=(), metadata={
        "help": "several hidden_states indices whose states are concatenated, or 'all' "
                "(every layer after the embeddings, as CC++'s probes read); () reads "
                "`layer` alone"})
    pooling: str = field(default="mean", metadata={
        "help": "'mean' over the text's tokens, the 'last' token's state, or 'ema': an "
                "exponential moving average over tokens (CC++'s smoothing), so a harmful "
                "passage late in a long reply is not averaged away"})
    ema_tokens: float = field(default=16.0, metadata={
        "help": "pooling 'ema': the average's time constant in tokens (>= 1)"})
    l2: float = field(default=1.0, metadata={
        "help": "L2 penalty on the weights of the standardised features"})
    class_weight: str | None = field(default="balanced", metadata={
        "help": "'balanced' weighs each class by n / (2 * n_class); None weighs texts equally"})
    max_tokens: int = field(default=512, metadata={
        "help": "tokens of each text read (also capped by the model's context)"})
    max_train_texts: int = field(default=6000, metadata={
        "help": "fit on a seeded sample of at most this many texts (each costs a forward "
                "pass of the model)"})
    batch_size: int = field(default=32, metadata={"help": "texts per forward pass"})
    dtype: str = field(default="auto", metadata={
        "help": "dtype of the probe's own model copy; 'auto' is float64 under 100M "
                "parameters, else the checkpoint's"})
    device: str = field(default="cpu", metadata={"help": "torch device of that copy"})
    seed: int = field(default=0, metadata={"help": "seed of the training sample"})
    context: str = field(default="reply", metadata={
        "help": "streaming only: 'reply' reads the reply on its own; 'exchange' reads it "
                "after the conversation in the model's chat template (prefilled once at "
                "start(), as the served model reads it), so its states are in context"})

    def __post_init__(self) -> None:
        if self.context not in ("reply", "exchange"):
            raise ValueError(f"context must be 'reply' or 'exchange', got {self.context!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if isinstance(self.layers, list):  # as JSON gives it (--param layers=[1,2])
            object.__setattr__(self, "layers", tuple(self.layers))
        if not (self.layers == "all" or isinstance(self.layers, tuple) and all(
                isinstance(x, int) and not isinstance(x, bool) for x in self.layers)):
            raise ValueError(f"layers must be a list of hidden_states indices or 'all', got "
                             f"{self.layers!r}")
        if not self.ema_tokens >= 1:
            raise ValueError(f"ema_tokens must be >= 1, got {self.ema_tokens}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be 'balanced' or None, got "
                             f"{self.class_weight!r}")
        if self.l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {self.l2}")
        if min(self.max_tokens, self.max_train_texts, self.batch_size) < 1:
            raise ValueError("max_tokens, max_train_texts and batch_size must be >= 1")


class _LM:
    """The probe's own copy of the model and tokenizer, loaded once, on first use."""

    def __init__(self, cfg: ProbeConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from swisscheese.models.base import ModelLoadError
        from swisscheese.models.hf import check_model_dir

        hf_logging.disable_progress_bar()
        try:
            path = check_model_dir(cfg.model_dir)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path)
        except ModelLoadError as e:
            raise ClassifierError(f"probe model: {e}") from None
        except Exception as e:  # noqa: BLE001 - corrupt files surface in many exception types
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ClassifierError(f"probe model {cfg.model_dir}: cannot load ({first})") from None
        n_params = sum(p.numel() for p in model.parameters())
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = "float64" if n_params < SMALL_MODEL else ""
        if dtype:
            model = model.to(getattr(torch, dtype))
        # The decoder stack only: the probe needs hidden states, not next-token logits.
        self.model = model.base_model.to(cfg.device).eval()
        self.config = model.config
        self.device = cfg.device
        self.dtype = next(self.model.parameters()).dtype
        n_layers = int(getattr(model.config, "num_hidden_layers", 0))
        self.layers = hidden_indices(cfg, n_layers)
        self.hidden_size = int(model.config.hidden_size) * len(self.layers)
        ctx = int(getattr(model.config, "max_position_embeddings", cfg.max_tokens + 1))
        self.bos = self.tokenizer.bos_token_id
        self.max_tokens = max(1, min(cfg.max_tokens, ctx - (self.bos is not None)))
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        pre = getattr(backend, "pre_tokenizer", None) if backend is not None else None
        norm = getattr(backend, "normalizer", None) if backend is not None else None
        # Offsets of pre-tokens are offsets into the raw text only without a normalizer.
        self.pre_tokenizer = pre if norm is None else None
        # transformers 5 renamed the cache argument; older releases only know the old name.
        fwd = inspect.signature(self.model.forward).parameters
        self.cache_kw = "cache" if "cache" in fwd else "past_key_values"

    def ids(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def hidden(self, batch: list[list[int]]) -> np.ndarray:
        """Pooled-ready hidden states: a (B, T, d) float64 array, right-padded with zeros."""
        import torch

        lens = [len(x) for x in batch]
        width = max(lens)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, x in enumerate(batch):
            ids[r, : len(x)] = torch.tensor(x)
            mask[r, : len(x)] = 1
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                             output_hidden_states=True, use_cache=False)
        return torch.cat([out.hidden_states[i] for i in self.layers], -1).to(
            torch.float64).cpu().numpy()


class ProbeClassifier(ConfiguredClassifier):
    """Input classifier: logistic regression on a local causal LM's pooled hidden states.

    `ProbeClassifier(model_dir=DIR, layer=-1, pooling="mean")`; a model directory is
    required. After `fit`, `coef_` and `intercept_` score raw pooled states.
    """

    name: ClassVar[str] = "probe"
    config_class: ClassVar[type] = ProbeConfig
    format: ClassVar[str] = FORMAT
    weights_file: ClassVar[str] = WEIGHTS_FILE
    # Construction needs model_dir (the contract tests and the CLI look for this flag).
    needs_model_dir: ClassVar[bool] = True
    config: ProbeConfig

    def _init_state(self) -> None:
        if not self.config.model_dir:
            raise ValueError(f"{self.name} needs model_dir: the local causal-LM directory "
                             "whose hidden states it reads (--probe-model on the CLI)")
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.mean_: np.ndarray | None = None  # feature mean: an empty text's features
        self.fingerprint: str | None = None
        self._lm: _LM | None = None
        self._coef_t: Any = None  # ((device, dtype), coef_ as a tensor), for update_hidden

    def is_fitted(self) -> bool:
        return self.coef_ is not None

    @property
    def lm(self) -> _LM:
        if self._lm is None:
            self._lm = _LM(self.config)
        return self._lm

    @property
    def hidden_indices(self) -> tuple[int, ...]:
        """Which entries of the model's `hidden_states` the probe reads (non-negative, in
        the order their states are concatenated); from the model's config.json, without
        loading the model."""
        if self._lm is not None:
            return self._lm.layers
        path = Path(self.config.model_dir) / "config.json"
        try:
            n_layers = int(json.loads(path.read_text())["num_hidden_layers"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ClassifierError(f"{path}: cannot read num_hidden_layers ({e})") from e
        return hidden_indices(self.config, n_layers)

    # ---- features ----------------------------------------------------------------------
    def _token_ids(self, text: str) -> list[int]:
        return self.lm.ids(text)[: self.lm.max_tokens]

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """Pooled hidden states of each text, (n, hidden size) float64; a text without
        tokens gets zeros (and is scored as the mean training text, see `fit`)."""
        return self._features(texts)[0]

    def _prefix_ids(self, conversation: Conversation) -> list[int]:
        """The conversation as the served model reads it before its reply (its chat
        template with the generation prompt), at most half of max_tokens from its end;
        [] for no conversation."""
        if not conversation:
            return []
        tok = self.lm.tokenizer
        msgs: list[dict[str, Any]] = []
        for m in ([conversation] if isinstance(conversation, str) else conversation):
            if isinstance(m, str):
                msgs.append({"role": "user", "content": m})
            elif isinstance(m, Mapping):
                msgs.append({"role": m["role"], "content": m["content"]})
            else:
                msgs.append({"role": m.role, "content": m.content})
        text = (tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                if getattr(tok, "chat_template", None) else render_conversation(msgs) + "\n")
        return self.lm.ids(text)[-(self.lm.max_tokens // 2):]

    def _features(self, texts: Sequence[str], prefixes: Sequence[list[int]] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(pooled states of each text's tokens, which texts have no tokens); with
        `prefixes`, each text is read after its prefix (the conversation's tokens)."""
        lm = self.lm
        texts = check_texts(texts)
        pre = list(prefixes) if prefixes is not None else [[] for _ in texts]
        # A prefix takes room from the reply, as it does in the stream's cache.
        seqs = [self.lm.ids(t)[: lm.max_tokens - len(p)] for t, p in zip(texts, pre,
                                                                           strict=True)]
        out = np.zeros((len(seqs), lm.hidden_size))
        empty = np.array([not s for s in seqs], dtype=bool)
        order = sorted((i for i in range(len(seqs)) if seqs[i]),
                       key=lambda i: len(seqs[i]) + len(pre[i]))
        skip = 1 if lm.bos is not None else 0
        for s in range(0, len(order), self.config.batch_size):
            step(self.progress, "probe: the model reads texts", s, len(order))
            idx = order[s:s + self.config.batch_size]
            batch = [([lm.bos] if skip else []) + pre[i] + seqs[i] for i in idx]
            h = lm.hidden(batch)
            for r, i in enumerate(idx):
                n, lead = len(seqs[i]), skip + len(pre[i])
                rows = h[r, lead:lead + n]
                out[i] = pool_rows(rows, self.config)
        step(self.progress, "probe: the model reads texts", len(order), len(order))
        return out, empty

    # ---- fit / score -------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        """L2-penalised logistic regression by Newton's method on standardised features."""
        texts = check_texts(texts)
        return self._fit_pairs(texts, check_labels(labels, len(texts)), None)

    def _fit_pairs(self, texts: list[str], y: np.ndarray,
                   conversations: Sequence[Conversation] | None) -> Self:
        cfg = self.config
        keep = list(range(len(texts)))
        if len(texts) > cfg.max_train_texts:
            # A stratified sample, so a rare class is not lost to chance.
            rng = random.Random(f"swisscheese-probe-{cfg.seed}")
            keep = []
            for label in (0, 1):
                idx = [i for i in range(len(texts)) if y[i] == label]
                k = max(1, round(cfg.max_train_texts * len(idx) / len(texts)))
                keep += rng.sample(idx, min(k, len(idx)))
            keep.sort()
            texts, y = [texts[i] for i in keep], y[keep]
        self.fingerprint = model_fingerprint(cfg.model_dir)
        prefixes = (None if conversations is None
                    else [self._prefix_ids(conversations[i]) for i in keep])
        x, empty = self._features(texts, prefixes)
        nonempty = ~empty
        mu = x[nonempty].mean(0) if nonempty.any() else np.zeros(x.shape[1])
        x[~nonempty] = mu
        sd = x.std(0)
        sd[sd < 1e-8] = 1.0
        z = (x - mu) / sd
        n = len(y)
        if cfg.class_weight == "balanced":
            n_pos = float(y.sum())
            sw = np.where(y == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))
        else:
            sw = np.ones(n)
        w, b = newton_logistic(z, y.astype(np.float64), sw, cfg.l2)
        self.coef_ = w / sd
        self._coef_t = None
        self.intercept_ = float(b - self.coef_ @ mu)
        self.mean_ = mu
        return self

    def _check_fitted(self) -> np.ndarray:
        if self.coef_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")
        return self.coef_

    def empty_logit(self) -> float:
        """The logit of a text without tokens: that of the mean training features."""
        coef = self._check_fitted()
        assert self.mean_ is not None
        return float(self.intercept_ + coef @ self.mean_)

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        coef = self._check_fitted()
        texts = check_texts(texts)
        if not texts:
            return np.zeros(0)
        x, empty = self._features(texts)
        z = x @ coef + self.intercept_
        z[empty] = self.empty_logit()
        return z

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return sigmoid(self.decision_function(texts))

    # ---- persistence -------------------------------------------------------------------
    def _save_weights(self, directory: Path) -> dict[str, Any]:
        """probe.safetensors, and the fingerprint of the model it reads."""
        assert self.fingerprint is not None
        return {**super()._save_weights(directory), "model_fingerprint": self.fingerprint}

    def _write_weights(self, path: Path) -> None:
        from safetensors.numpy import save_file

        coef = self._check_fitted()
        assert self.mean_ is not None
        save_file({"coef": coef, "intercept": np.array([self.intercept_]),
                   "mean": self.mean_}, str(path))

    @classmethod
    def _loaded_config(cls, config: Any, cpath: Path, meta: dict[str, Any],
                       model_dir: str | Path | None = None, **options: Any) -> Any:
        """`model_dir` points a saved probe at a moved copy of the same model: the
        fingerprint must still match."""
        if options:
            raise TypeError(f"{cls.__name__}.load takes model_dir only, got {sorted(options)}")
        if model_dir is not None:
            config = replace(config, model_dir=str(model_dir))
        want = meta.get("model_fingerprint")
        if not isinstance(want, str):
            raise ClassifierError(f"{cpath}: needs 'model_fingerprint'")
        if not Path(config.model_dir).is_dir():
            raise ClassifierError(f"{cpath}: the probe's model directory {config.model_dir} "
                                  "does not exist (pass model_dir= to load a moved copy)")
        got = model_fingerprint(config.model_dir)
        if got != want:
            raise ClassifierError(
                f"{cpath}: model {config.model_dir} has fingerprint {got[:16]}, but the probe "
                f"was trained on a model with fingerprint {want[:16]}; a probe only reads the "
                "hidden states of the model it was trained on")
        return config

    def _read_weights(self, path: Path) -> None:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            w = load_file(str(path))
        except (OSError, SafetensorError, ValueError) as e:
            raise ClassifierError(f"{path}: not a readable safetensors file ({e})") from e
        if set(w) != {"coef", "intercept", "mean"} or w["intercept"].shape != (1,) or (
                w["coef"].ndim != 1 or w["coef"].shape != w["mean"].shape):
            raise ClassifierError(f"{path}: expected tensors coef (d,), mean (d,) and "
                                  f"intercept (1,), got "
                                  f"{ {k: tuple(v.shape) for k, v in w.items()} }")
        if not all(np.isfinite(v).all() for v in w.values()):
            raise ClassifierError(f"{path}: weights hold NaN or infinity")
        self.coef_ = np.asarray(w["coef"], dtype=np.float64)
        self.intercept_ = float(w["intercept"][0])
        self.mean_ = np.asarray(w["mean"], dtype=np.float64)

    def _load_weights(self, directory: Path, cpath: Path, meta: dict[str, Any]) -> None:
        super()._load_weights(directory, cpath, meta)
        self.fingerprint = meta["model_fingerprint"]  # checked by _loaded_config


# ---- streaming ----------------------------------------------------------------------------
@dataclass
class ProbeStreamState(StreamState):
    """Stream state: the running sum of projections w.h (or the last one) and the count;
    for the plain `update` path also the model's KV cache and the pending text."""

    proj_sum: float = 0.0
    proj_last: float = 0.0
    proj_ema: float = 0.0  # pooling 'ema': the (uncorrected) moving average
    count: int = 0
    mode: str = ""  # "text" or "hidden", fixed by the first update
    coef_t: Any = None  # the weights as a tensor matching this stream's hidden states
    cache: Any = None
    n_cached: int = 0  # tokens in the cache (the begin token included)
    pending: str = ""
    prefix: list[int] = field(default_factory=list)  # exchange: the conversation's tokens
    conversation: Conversation = None  # exchange: tokenized into `prefix` on first update


class ProbeStreamingClassifier(ProbeClassifier, StreamingClassifier):
    """ProbeClassifier that scores a reply while it streams; see the module docstring for
    its two paths, `update_hidden` (states the generator already has: one dot product)
    and `update` (runs the probe's own model copy with a KV cache). One stream uses one
    path. `start` ignores the conversation (the probe was fitted on replies on their own)
    unless the config says `context="exchange"`: then the probe was fitted on replies read
    after their conversations (`fit_exchanges`), and `start` keeps the conversation's
    tokens, which the text path prefills into its model's cache once, so each reply token
    is read in context (the hidden-state path's states are in context already: the
    generator read the prompt).
    """

    name: ClassVar[str] = "probe-stream"
    contexts: ClassVar[tuple[str, ...]] = ("reply", "exchange")

    @property
    def output_context(self) -> str:
        return str(self.config.context)

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
        return self._fit_pairs(texts, check_labels(labels, len(texts)), list(conversations))

    def predict_exchange(self, conversations: Sequence[Conversation],
                         replies: Sequence[str]) -> np.ndarray:
        if self.config.context != "exchange":
            return super().predict_exchange(conversations, replies)
        coef = self._check_fitted()
        texts = check_texts(replies)
        if len(conversations) != len(texts):
            raise ValueError(f"need one conversation per reply: {len(conversations)} "
                             f"conversations, {len(texts)} replies")
        if not texts:
            return np.zeros(0)
        x, empty = self._features(texts, [self._prefix_ids(c) for c in conversations])
        z = x @ coef + self.intercept_
        z[empty] = self.empty_logit()
        return sigmoid(z)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.config.context == "exchange":
            return self.predict_exchange([None] * len(check_texts(texts)), texts)
        return super().predict_proba(texts)

    def start(self, conversation: Conversation = None) -> ProbeStreamState:
        self._check_fitted()
        state = ProbeStreamState()
        if self.config.context == "exchange":
            # Tokenized on the first text update: the hidden-state path never needs it
            # (nor the probe's own model copy that tokenizing loads).
            state.conversation = conversation
        return state

    def _logit(self, proj_sum: float, proj_last: float, proj_ema: float, count: int) -> float:
        if count == 0:
            return self.empty_logit()
        pooling = self.config.pooling
        if pooling == "mean":
            return self.intercept_ + proj_sum / count
        if pooling == "last":
            return self.intercept_ + proj_last
        # The average started at zero: dividing by the weight it has gathered removes that.
        return self.intercept_ + proj_ema / (1.0 - ema_alpha(self.config) ** count)

    # ---- the generator's own hidden states ---------------------------------------------
    def reads_states_of(self, model_dir: str | Path) -> bool:
        """Whether `model_dir` holds the model this probe was fitted on (the same
        fingerprint), so that its generation's hidden states can go to `update_hidden`."""
        try:
            return self.fingerprint == model_fingerprint(model_dir)
        except ClassifierError:
            return False

    def update_hidden(self, state: ProbeStreamState, hidden: Any, text: str = ""
                      ) -> tuple[ProbeStreamState, float]:
        """Feed the hidden state(s) of the newly generated token(s) at `hidden_indices`:
        a vector (d,) or rows (k, d), numpy or torch (any device). Returns (state, score
        of the reply so far); keeps the cumulative maximum like `update`.

        The first call checks the input and keeps the weights as a tensor of its dtype
        and device in the state; later calls with a torch vector cost one dot product,
        one read of the result and a few float operations. `text`, the reply text of
        these states, is not read (the states are that text); composites pass it on.
        """
        w = state.coef_t
        if w is not None and hidden.ndim == 1:
            fold(state, [float(hidden @ w)], self.config)
        else:
            self._feed_hidden(state, hidden)
        z = self._logit(state.proj_sum, state.proj_last, state.proj_ema, state.count)
        score = 0.5 * (1.0 + math.tanh(0.5 * z))
        state.last_score = score  # what finish() reports, as after update()
        if score > state.max_score:
            state.max_score = score
        return state, score

    def _feed_hidden(self, state: ProbeStreamState, hidden: Any) -> None:
        """The general case of update_hidden: checks, numpy input, several rows."""
        if state.mode == "text":
            raise ValueError("this stream is fed text with update(); one stream uses one path")
        state.mode = "hidden"
        if hasattr(hidden, "detach"):
            h = hidden.detach()
            w = self._torch_coef(h)
            if h.ndim == 1 and not hidden.requires_grad:
                state.coef_t = w  # the fast path is safe for the rest of the stream
            rows = (h @ w).reshape(-1).tolist()
        else:
            rows = np.atleast_1d(np.asarray(hidden, dtype=np.float64) @ self._check_fitted())
            rows = rows.reshape(-1).tolist()
        fold(state, rows, self.config)

    def _torch_coef(self, like: Any) -> Any:
        """The weights as a tensor on `like`'s device and float dtype, kept for reuse."""
        import torch

        dtype = like.dtype if like.is_floating_point() else torch.float32
        key = (like.device, dtype)
        if self._coef_t is None or self._coef_t[0] != key:
            self._coef_t = (key, torch.as_tensor(self._check_fitted(), dtype=dtype,
                                                 device=like.device))
        return self._coef_t[1]

    # ---- text: the probe runs the model itself -----------------------------------------
    def _split_pending(self, text: str) -> int:
        """How many leading characters of the pending text are final: everything before
        the last PENDING_PIECES pre-tokens (or, over PENDING_LIMIT characters, before the
        last one; one pre-token longer than that is committed whole)."""
        pre = self.lm.pre_tokenizer
        if pre is not None:
            starts = [a for _, (a, _) in pre.pre_tokenize_str(text)]
        else:  # no usable pre-tokenizer: word starts after whitespace
            starts = [i for i in range(len(text))
                      if (i == 0 or text[i - 1].isspace()) and not text[i].isspace()]
        if len(starts) > PENDING_PIECES:
            cut = starts[-PENDING_PIECES]
        else:
            cut = 0
        if len(text) - cut > PENDING_LIMIT:
            cut = starts[-1] if len(starts) > 1 and len(text) - starts[-1] <= PENDING_LIMIT \
                else len(text)
        return cut

    def _advance(self, state: StreamState, delta: str) -> float:
        import torch

        if not isinstance(state, ProbeStreamState):
            raise TypeError(f"expected the ProbeStreamState that start() returns, got "
                            f"{type(state).__name__}")
        if state.mode == "hidden":
            raise ValueError("this stream is fed hidden states with update_hidden(); one "
                             "stream uses one path")
        state.mode = "text"
        lm = self.lm
        coef = self._check_fitted()
        text = state.pending + delta
        cut = self._split_pending(text)
        skip = 1 if lm.bos is not None else 0
        room = lm.max_tokens + skip - state.n_cached if state.cache is not None else \
            lm.max_tokens + skip
        committed = lm.ids(text[:cut])
        pending = lm.ids(text[cut:])
        state.pending = text[cut:]
        if state.cache is None:
            from transformers import DynamicCache

            if state.conversation is not None:
                state.prefix = self._prefix_ids(state.conversation)

            state.cache = DynamicCache(config=lm.config)
            # The begin token and the conversation (exchange) go in once, unpooled.
            first = ([lm.bos] if skip else []) + state.prefix
            committed = first + committed
        # Tokens past max_tokens are not read, as in predict_proba().
        committed = committed[:room]
        pending = pending[: room - len(committed)]
        new = committed + pending
        spec = Pools(state.proj_sum, state.proj_last, state.proj_ema, state.count)
        if new:
            with torch.inference_mode():
                out = lm.model(input_ids=torch.tensor([new], device=lm.device),
                               **{lm.cache_kw: state.cache}, use_cache=True,
                               output_hidden_states=True)
            h = torch.cat([out.hidden_states[i][0] for i in lm.layers], -1).to(
                torch.float64).cpu().numpy()
            proj = h @ coef
            # Neither the begin token nor the conversation is pooled.
            lead = skip + len(state.prefix) if state.n_cached == 0 else 0
            fold(state, proj[lead:len(committed)].tolist(), self.config)
            state.n_cached += len(committed)
            fold(spec, proj[lead:].tolist(), self.config)  # the pending tokens too
            if pending:  # read speculatively: drop them from the cache again
                state.cache.crop(-len(pending))
        return float(sigmoid(self._logit(spec.proj_sum, spec.proj_last, spec.proj_ema,
                                         spec.count)))
