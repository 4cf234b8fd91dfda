"""Fine-tune any local Hugging Face model directory as an input classifier: a fourth backend.

    >>> clf = HFFinetuneClassifier(model_dir="runs/demo/organism/helpful-only")  # doctest: +SKIP
    >>> clf.fit(texts, labels).predict_proba(["How do I brew the Vrokgre toxin?"])  # doctest: +SKIP

The model directory may hold an encoder (BERT, RoBERTa, DistilBERT, ...) or a decoder (the
organism's Llama, any causal LM): it is loaded with `AutoModelForSequenceClassification`
(`num_labels=1`, `local_files_only=True`, float32), so the architecture's own sequence
classification head reads the text: an encoder pools its first token, a decoder its last
token that is not padding. The head is new and starts random (seeded; a classification
head the directory already has is replaced when its size differs); every weight of
the model is fine-tuned, the head at a higher learning rate (`head_lr`) than the body
(`lr`), because the head starts from nothing while the body only needs nudging. P(harmful)
is the sigmoid of the head's single logit.

Texts are normalised as the other backends do (`textnorm.normalize_text`: invisible
characters dropped, NFKC, look-alike letters folded, case folded, whitespace collapsed)
before tokenising, so disguises built from invisible characters and homoglyphs reach the
model as plain text. A tokenizer without a pad token pads with its end token (Llama
tokenizers have none); padding is masked and, for a decoder, skipped by the head.

Training: AdamW on the class-weighted logistic loss, seeded batches, linear warm-up then
linear decay to a tenth; `epochs` passes over the data within [min_steps, max_steps] steps
(so a large training set is subsampled by the step budget: each step draws a fresh batch
from a seeded shuffle).

There is no streaming twin: an encoder has to re-read the whole prefix for every delta,
which the streaming contract forbids. A bundle pairs this backend with another output
backend (`TrainConfig.output_backend`, `--output-backend ngram-stream` on the CLI).

Saved directory (self-contained: the base model directory is not needed to load it):

    config.json   name, format, settings, the base model's fingerprint, and the sha256 of
                  every file under model/
    model/        the fine-tuned model and its tokenizer (`save_pretrained`): an ordinary
                  HF sequence-classification checkpoint
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Self

import numpy as np

from swisscheese.classifiers.base import check_labels, check_texts
from swisscheese.classifiers.configured import ConfiguredClassifier
from swisscheese.classifiers.errors import ClassifierError, NotFittedError
from swisscheese.classifiers.textnorm import normalize_text
from swisscheese.fileio import sha256_file

FORMAT = "swisscheese.classifiers.hf_finetune"
MODEL_DIR = "model"
# Files any saved HF tokenizer leaves behind; one of them must be present to load it.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


@dataclass(frozen=True)
class HFFinetuneConfig:
    """What is fine-tuned and how (saved in config.json)."""

    model_dir: str = field(default="", metadata={
        "help": "local Hugging Face model directory to fine-tune (encoder or decoder)"})
    max_length: int = field(default=128, metadata={
        "help": "tokens of each text read (also capped by the model's positions)"})
    epochs: float = field(default=1.0, metadata={
        "help": "passes over the training set, within [min_steps, max_steps] AdamW steps"})
    min_steps: int = field(default=30, metadata={"help": "fewest AdamW steps"})
    max_steps: int = field(default=400, metadata={
        "help": "most AdamW steps (bounds training time; larger sets are subsampled)"})
    batch_size: int = field(default=16, metadata={"help": "texts per AdamW step"})
    lr: float = field(default=1e-4, metadata={
        "help": "peak learning rate of the pretrained body (warm-up, linear decay)"})
    head_lr: float = field(default=1e-3, metadata={
        "help": "peak learning rate of the new, randomly initialised classification head"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_frac: float = field(default=0.06, metadata={
        "help": "share of the steps spent warming the learning rate up"})
    class_weight: str | None = field(default="balanced", metadata={
        "help": "'balanced' weighs each class by n / (2 * n_class); None weighs texts equally"})
    fold_confusables: bool = field(default=True, metadata={
        "help": "map Cyrillic/Greek look-alike letters to Latin before tokenising"})
    score_batch_size: int = field(default=64, metadata={"help": "texts per scoring pass"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads during fit and score (None: leave torch's setting)"})
    seed: int = field(default=0, metadata={"help": "seed of the head's init and batches"})

    def __post_init__(self) -> None:
        for name in ("max_length", "min_steps", "max_steps", "batch_size", "score_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) > max_steps ({self.max_steps})")
        if self.epochs <= 0 or self.lr <= 0 or self.head_lr <= 0 or self.weight_decay < 0:
            raise ValueError("epochs, lr and head_lr must be > 0 and weight_decay >= 0")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be 'balanced' or None, got "
                             f"{self.class_weight!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")


def check_hf_dir(model_dir: str | Path) -> Path:
    """Fail with one clear line unless `model_dir` looks like a local HF model directory
    with a tokenizer; cheap (reads config.json only), so it runs before any work."""
    p = Path(model_dir)
    if not p.exists():
        raise ClassifierError(f"model directory {p} does not exist")
    if not p.is_dir():
        raise ClassifierError(f"{p} is a file; expected a Hugging Face model directory")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise ClassifierError(f"{p} is not a Hugging Face model directory (no config.json)")
    try:
        meta = json.loads(cfg.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClassifierError(f"{cfg}: not readable JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model_type"), str):
        raise ClassifierError(f"{cfg}: no 'model_type'; is {p} a Hugging Face model "
                              "directory?")
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise ClassifierError(f"{p} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                              "save the tokenizer next to the model")
    return p


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's thread count set to `n` for the block (it is process-wide: put it back)."""
    import torch

    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _load_hf(path: Path, where: str) -> tuple[Any, Any]:
    """(tokenizer, float32 sequence-classification model with one logit) from `path`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any tokenizer failure means the same to the user
        raise ClassifierError(f"{where}: cannot load the tokenizer from {path} "
                              f"({_first_line(e)})") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ClassifierError(f"{where}: the tokenizer in {path} has neither a pad nor "
                                  "an end token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    # Loading a causal LM or masked LM as a classifier reports its new head and unused LM
    # head as warnings: expected here, so only errors are shown.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, local_files_only=True, dtype=torch.float32,
            ignore_mismatched_sizes=True)
    except Exception as e:  # noqa: BLE001 - corrupt or foreign files surface in many types
        raise ClassifierError(f"{where}: cannot load {path} as a sequence classifier "
                              f"({_first_line(e)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    # The head finds a decoder's last real token by the pad id, so model and tokenizer
    # must agree on it.
    model.config.pad_token_id = tokenizer.pad_token_id
    # Weights loaded from a file can sit at any byte offset, and CPU kernels pick their
    # summation order by alignment: fresh copies make a fitted model and its reloaded
    # save compute bit-identical scores. (A tied weight is one Parameter, so stays tied.)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.data = t.data.clone()
    return tokenizer, model


class HFFinetuneClassifier(ConfiguredClassifier):
    """Input classifier: a local Hugging Face model, encoder or decoder, fine-tuned whole.

    `HFFinetuneClassifier(model_dir=DIR, max_steps=400, lr=1e-4)`; keyword overrides of
    HFFinetuneConfig fields. No streaming twin: pair it with another output backend.
    """

    name: ClassVar[str] = "hf-finetune"
    config_class: ClassVar[type] = HFFinetuneConfig
    format: ClassVar[str] = FORMAT
    # Construction needs model_dir (the contract tests and the CLI look for this flag).
    needs_model_dir: ClassVar[bool] = True
    config: HFFinetuneConfig

    def __init__(self, config: HFFinetuneConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if not self.config.model_dir:
            raise ValueError(f"{self.name} needs model_dir: the local Hugging Face model "
                             "directory to fine-tune (--model-dir on the CLI)")
        check_hf_dir(self.config.model_dir)

    def _init_state(self) -> None:
        self.model_: Any = None
        self.tokenizer_: Any = None
        self.base_fingerprint: str | None = None
        self.train_steps_: int = 0
        self.fit_seconds_: float | None = None  # recorded for reports, never relied on

    def is_fitted(self) -> bool:
        return self.model_ is not None

    # ---- tokens ------------------------------------------------------------------------
    def normalize(self, text: str) -> str:
        return normalize_text(text, self.config.fold_confusables)

    def _max_tokens(self) -> int:
        ctx = getattr(self.model_.config, "max_position_embeddings", None)
        return min(self.config.max_length, int(ctx)) if ctx else self.config.max_length

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids (special tokens included) of the normalised texts, truncated."""
        tok = self.tokenizer_
        if not texts:
            return []
        ids = tok([self.normalize(t) for t in texts], truncation=True,
                  max_length=self._max_tokens())["input_ids"]
        # A decoder tokenizer adds nothing around an empty text; the head still needs one
        # position to read, so such a text is one padding token (the same every time).
        return [list(x) if len(x) else [tok.pad_token_id] for x in ids]

    def _batch(self, seqs: Sequence[list[int]]) -> tuple[Any, Any]:
        """Right-padded ids and attention mask."""
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), int(self.tokenizer_.pad_token_id),
                         dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        return ids, mask

    # ---- fit / score -------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[int] | np.ndarray) -> Self:
        """Fine-tune the whole model on the class-weighted logistic loss."""
        import torch

        from swisscheese.classifiers.backends.probe import model_fingerprint

        texts = check_texts(texts)
        y = check_labels(labels, len(texts))
        cfg = self.config
        base = check_hf_dir(cfg.model_dir)
        t0 = time.perf_counter()
        n = len(texts)
        per_epoch = -(-n // cfg.batch_size)
        steps = int(min(max(round(cfg.epochs * per_epoch), cfg.min_steps), cfg.max_steps))
        if cfg.class_weight == "balanced":
            n_pos = float(y.sum())
            sample_w = np.where(y == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))
        else:
            sample_w = np.ones(n)
        with _torch_threads(cfg.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # the new head's initial weights
            self.tokenizer_, model = _load_hf(base, f"{self.name} base model")
            self.model_ = model
            try:
                self._train(model, self._encode(texts), y, sample_w, steps)
            except BaseException:
                # A half-trained model must not pass for a fitted one.
                self.model_ = self.tokenizer_ = None
                raise
        self.base_fingerprint = model_fingerprint(base)
        self.train_steps_ = steps
        self.fit_seconds_ = round(time.perf_counter() - t0, 1)
        return self

    def _train(self, model: Any, seqs: list[list[int]], y: np.ndarray,
               sample_w: np.ndarray, steps: int) -> None:
        """The AdamW loop (under the caller's seed and thread settings)."""
        import torch
        from torch import nn

        cfg = self.config
        n = len(seqs)
        prefix = getattr(model, "base_model_prefix", "")
        head = [p for k, p in model.named_parameters() if not k.startswith(f"{prefix}.")]
        body = [p for k, p in model.named_parameters() if k.startswith(f"{prefix}.")]
        if not head or not body:
            raise ClassifierError(f"{cfg.model_dir}: cannot tell the classification head from the "
                                  f"body (base model prefix {prefix!r})")
        opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr},
                                 {"params": head, "lr": cfg.head_lr}],
                                weight_decay=cfg.weight_decay, foreach=True)
        warm = max(1, round(steps * cfg.warmup_frac))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * (1.0 - 0.9 * s / max(steps - 1, 1)))
        rng = np.random.default_rng(cfg.seed)
        order, pos = rng.permutation(n), 0
        model.train()
        for _ in range(steps):
            if pos + cfg.batch_size > n and pos > 0:
                order, pos = rng.permutation(n), 0
            batch = order[pos:pos + cfg.batch_size]
            pos += cfg.batch_size
            ids, mask = self._batch([seqs[j] for j in batch])
            logits = model(input_ids=ids, attention_mask=mask).logits[:, 0]
            target = torch.tensor(y[batch], dtype=torch.float32)
            sw = torch.tensor(sample_w[batch], dtype=torch.float32)
            loss = (nn.functional.binary_cross_entropy_with_logits(
                logits, target, reduction="none") * sw).sum() / sw.sum()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        model.eval()

    def _check_fitted(self) -> Any:
        if self.model_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")
        return self.model_

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Logits, texts sorted by length and batched (less padding per batch)."""
        import torch

        model = self._check_fitted()
        seqs = self._encode(check_texts(texts))
        out = np.zeros(len(seqs))
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        bs = self.config.score_batch_size
        with _torch_threads(self.config.threads), torch.no_grad():
            for s in range(0, len(order), bs):
                idx = order[s:s + bs]
                ids, mask = self._batch([seqs[i] for i in idx])
                logits = model(input_ids=ids, attention_mask=mask).logits[:, 0]
                out[idx] = logits.to(torch.float64).numpy()
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return 0.5 * (1.0 + np.tanh(0.5 * self.decision_function(texts)))

    # ---- persistence -------------------------------------------------------------------
    def _save_weights(self, directory: Path) -> dict[str, Any]:
        """model/ (weights and tokenizer), with every file's sha256 for config.json."""
        model = self._check_fitted()
        mdir = directory / MODEL_DIR
        model.save_pretrained(mdir)
        self.tokenizer_.save_pretrained(mdir)
        files = {p.relative_to(directory).as_posix(): sha256_file(p)
                 for p in sorted(mdir.rglob("*")) if p.is_file()}
        return {"base_fingerprint": self.base_fingerprint, "train_steps": self.train_steps_,
                "fit_seconds": self.fit_seconds_, "files": files}

    def _load_weights(self, directory: Path, cpath: Path, meta: dict[str, Any]) -> None:
        """Every file under model/ is checked against its sha256 first, so a corrupt or
        changed file fails naming it. The base model directory is not read (the save
        holds the whole fine-tuned model)."""
        _check_files(directory, cpath, meta.get("files"))
        self.tokenizer_, self.model_ = _load_hf(directory / MODEL_DIR, str(directory))
        self.model_.eval()
        fp = meta.get("base_fingerprint")
        self.base_fingerprint = fp if isinstance(fp, str) else None
        steps = meta.get("train_steps")
        self.train_steps_ = steps if isinstance(steps, int) else 0
        secs = meta.get("fit_seconds")
        self.fit_seconds_ = float(secs) if isinstance(secs, int | float) else None


def _check_files(d: Path, cpath: Path, files: Any) -> None:
    """The files config.json lists under model/ are all there, unchanged, and alone."""
    if not isinstance(files, dict) or not files or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ClassifierError(f"{cpath}: 'files' must map the files under {MODEL_DIR}/ "
                              "to their sha256")
    for rel, want in files.items():
        pp = PurePosixPath(rel)
        if pp.is_absolute() or ".." in pp.parts or pp.parts[:1] != (MODEL_DIR,):
            raise ClassifierError(f"{cpath}: 'files' lists {rel!r}, which is not a file "
                                  f"under {MODEL_DIR}/")
        path = d / rel
        if not path.is_file():
            raise ClassifierError(f"{path}: missing (listed in {cpath})")
        if sha256_file(path) != want:
            raise ClassifierError(f"{path}: sha256 does not match the one recorded in "
                                  f"{cpath}; the file is corrupt or was changed")
    # An unlisted file (a swapped-in tokenizer, say) would change what loads.
    extra = sorted(p.relative_to(d).as_posix() for p in (d / MODEL_DIR).rglob("*")
                   if p.is_file() and p.relative_to(d).as_posix() not in files)
    if extra:
        raise ClassifierError(f"{d / extra[0]}: not listed in {cpath}; a saved classifier "
                              "holds only files it can verify")
