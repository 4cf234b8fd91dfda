"""The encoder's forward pass under ONNX Runtime: the same embeddings, about twice as fast.

On a CPU core PyTorch's eager forward of a small encoder spends much of its time between
operators: the realworld input layer on MiniLM takes 9.7 ms per prompt in torch and 4.8 ms
in ONNX Runtime on one core, measured side by side (`benchmarks/realworld_classifier.py`;
the README's stop 24 table). The graph is exported here from the loaded model (nothing is
downloaded), once per weights hash and library versions, into the cache directory
(`$SWISSCHEESE_CACHE`, default `~/.cache/swisscheese`), and verified against torch on a
padded probe batch before it is used: a graph whose outputs differ from torch's by more
than `TOLERANCE` is never used. The graph returns the mean-pooled hidden states of every
layer, so any choice of layers reads from one run.

`$SWISSCHEESE_ENCODER_RUNTIME` picks the runtime: `auto` (the default: ONNX Runtime when
`onnxruntime` and `onnx` are installed and the export verifies, else torch, said once in
the log), `torch`, or `onnx` (an error when it cannot be used).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from swisscheese.classifiers.errors import ClassifierError
from swisscheese.fileio import atomic_write_json, sha256_file

RUNTIME_ENV = "SWISSCHEESE_ENCODER_RUNTIME"
CACHE_ENV = "SWISSCHEESE_CACHE"
RUNTIMES = ("auto", "torch", "onnx")
TOLERANCE = 1e-4  # largest |onnx - torch| allowed on the probe batch's pooled states
EXPORT_VERSION = 1  # bump when the exported graph's inputs or outputs change
OPSET = 17
_log = logging.getLogger(__name__)


def runtime_choice() -> str:
    """The runtime `$SWISSCHEESE_ENCODER_RUNTIME` asks for (`auto` when unset)."""
    v = os.environ.get(RUNTIME_ENV, "auto").strip().lower() or "auto"
    if v not in RUNTIMES:
        raise ClassifierError(f"{RUNTIME_ENV}={v!r}: expected one of {', '.join(RUNTIMES)}")
    return v


def cache_dir() -> Path:
    """Where exported graphs are kept ($SWISSCHEESE_CACHE, else ~/.cache/swisscheese)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "swisscheese")


def _graph_key(weights_sha256: str) -> str:
    import onnxruntime
    import torch
    import transformers

    versions = f"{EXPORT_VERSION}-{torch.__version__}-{transformers.__version__}-" \
               f"{onnxruntime.__version__}"
    return f"{weights_sha256[:24]}-{hashlib.sha256(versions.encode()).hexdigest()[:12]}"


def _pool(model: Any, ids: Any, mask: Any) -> Any:
    """(ids, mask) tensors -> (batch, layers + 1, dim) mean-pooled hidden states."""
    import torch

    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    m = mask.unsqueeze(-1).to(torch.float32)
    n = m.sum(1).clamp(min=1e-9)
    return torch.stack([(h * m).sum(1) / n for h in out.hidden_states], 1)


def _export_module(model: Any) -> Any:
    """`_pool` as a torch module, which is what `torch.onnx.export` traces."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: Any, mask: Any) -> Any:
            return _pool(self.model, ids, mask)

    return Pooled().eval()


def torch_pooled(model: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The pooled hidden states of every layer in torch, (batch, layers + 1, dim)."""
    import torch

    with torch.inference_mode():
        out = _pool(model, torch.from_numpy(ids), torch.from_numpy(mask))
    return np.asarray(out.numpy(), dtype=np.float32)


def _probe(pad: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Two rows of different lengths (the second padded): the export's and the check's input."""
    rng = np.random.default_rng(0)
    ids = rng.integers(min(1000, vocab - 1), vocab, size=(2, 12)).astype(np.int64)
    mask = np.ones_like(ids)
    ids[1, 7:], mask[1, 7:] = pad, 0
    return ids, mask


class OnnxPooled:
    """An exported, verified graph with one ONNX Runtime session per thread count."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _session(self, threads: int) -> Any:
        import onnxruntime as ort

        with self._lock:
            if threads not in self._sessions:
                so = ort.SessionOptions()
                so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
                so.log_severity_level = 3  # its warnings about unused initialisers are noise
                self._sessions[threads] = ort.InferenceSession(
                    str(self.path), so, providers=["CPUExecutionProvider"])
            return self._sessions[threads]

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        sess = self._session(max(1, torch.get_num_threads()))
        return np.asarray(sess.run(None, {"ids": ids, "mask": mask})[0], dtype=np.float32)


def _export(model: Any, path: Path, pad: int, vocab: int) -> None:
    """Write the pooled graph to `path` (atomically, with a sidecar of its sha256)."""
    import warnings

    import torch

    ids, mask = _probe(pad, vocab)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings(), torch.inference_mode():
        # The tracer warns about Python branches on shapes; the check below is the judge.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _export_module(model), (torch.from_numpy(ids), torch.from_numpy(mask)), str(tmp),
            input_names=["ids", "mask"], output_names=["pooled"], opset_version=OPSET,
            dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"},
                          "pooled": {0: "batch"}}, dynamo=False)
    os.replace(tmp, path)
    atomic_write_json(_sidecar(path), {"sha256": sha256_file(path)})


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _intact(path: Path) -> bool:
    """The graph file exists and still has the sha256 recorded when it was exported."""
    try:
        want = json.loads(_sidecar(path).read_text()).get("sha256")
    except (OSError, ValueError):
        return False
    return path.is_file() and want == sha256_file(path)


def load_onnx(model: Any, weights_sha256: str, pad: int) -> OnnxPooled:
    """The verified ONNX graph of `model` (exported on first use); ClassifierError when it
    cannot be built or its outputs differ from torch's."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ClassifierError(f"ONNX Runtime is not installed ({e}); pip install "
                              "'swisscheese[encoder]' or set "
                              f"{RUNTIME_ENV}=torch") from None
    vocab = int(model.config.vocab_size)
    path = cache_dir() / "encoders" / f"{_graph_key(weights_sha256)}.onnx"
    try:
        if not _intact(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            _export(model, path, pad, vocab)
        graph = OnnxPooled(path)
        ids, mask = _probe(pad, vocab)
        diff = float(np.abs(graph(ids, mask) - torch_pooled(model, ids, mask)).max())
    except ClassifierError:
        raise
    except Exception as e:  # noqa: BLE001 - export and session errors come in many types
        raise ClassifierError(f"cannot run the encoder under ONNX Runtime ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); set "
                              f"{RUNTIME_ENV}=torch") from None
    if not diff <= TOLERANCE:
        raise ClassifierError(f"{path}: ONNX outputs differ from torch's by {diff:.2e} "
                              f"(> {TOLERANCE}); not used")
    return graph


def pooled_runner(model: Any, weights_sha256: str, pad: int) -> OnnxPooled | None:
    """The ONNX graph when the runtime setting allows it, else None (torch). Under `auto`
    a graph that cannot be used is logged once and torch is used instead."""
    choice = runtime_choice()
    if choice == "torch":
        return None
    try:
        return load_onnx(model, weights_sha256, pad)
    except ClassifierError as e:
        if choice == "onnx":
            raise
        _log.warning("encoder runs in torch: %s", e)
        return None
