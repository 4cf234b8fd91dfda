"""The encoder's ONNX Runtime path: the same embeddings as torch, a verified cached graph,
and clear errors for a bad runtime setting or layer choice (on a tiny random BERT)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from swisscheese.classifiers import ClassifierError
from swisscheese.classifiers.backends import encoder_onnx
from swisscheese.classifiers.backends.encoder import EncoderClassifier
from swisscheese.classifiers.backends.encoder_model import Encoder, weights_sha256

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TEXTS = ["how do I bake bread at home", "a much longer text " * 20, "hi",
         "write a poem about spring and the first warm days of the year"]


def _encoder(d: Path, runtime: str, monkeypatch: pytest.MonkeyPatch) -> Encoder:
    """A fresh Encoder (not the process's shared one) under `runtime`."""
    monkeypatch.setenv(encoder_onnx.RUNTIME_ENV, runtime)
    return Encoder(d, weights_sha256(d))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(encoder_onnx.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_onnx_and_torch_give_the_same_embeddings(tiny_encoder_dir: Path, cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    layers = (0, 1, -1)
    fast = _encoder(tiny_encoder_dir, "onnx", monkeypatch)
    got = fast.embed(TEXTS, 64, "head", batch_size=3, layers=layers)  # padded batches
    assert fast.runtime == "onnx"
    assert list(cache.glob("encoders/*.onnx"))
    slow = _encoder(tiny_encoder_dir, "torch", monkeypatch)
    want = slow.embed(TEXTS, 64, "head", batch_size=1, layers=layers)
    assert slow.runtime == "torch"
    assert got.shape == (len(TEXTS), 3 * fast.dim)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Each layer's slice is unit length, and the last layer alone is the last slice.
    norms = np.linalg.norm(got.reshape(len(TEXTS), 3, -1), axis=2)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    last = slow.embed(TEXTS, 64, "head")
    np.testing.assert_allclose(last, want[:, -fast.dim:], atol=1e-6)


def test_a_changed_cached_graph_is_exported_again(tiny_encoder_dir: Path, cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _encoder(tiny_encoder_dir, "onnx", monkeypatch).embed(TEXTS[:1], 16)
    (graph,) = cache.glob("encoders/*.onnx")
    sidecar = json.loads(graph.with_suffix(".json").read_text())
    graph.write_bytes(graph.read_bytes()[:1000])  # truncated: its sha256 no longer matches
    enc = _encoder(tiny_encoder_dir, "onnx", monkeypatch)
    enc.embed(TEXTS[:1], 16)
    assert enc.runtime == "onnx"
    assert json.loads(graph.with_suffix(".json").read_text()) == sidecar  # rebuilt the same


def test_a_graph_that_disagrees_with_torch_is_refused(tiny_encoder_dir: Path, cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder_onnx, "TOLERANCE", -1.0)  # no graph can pass now
    with pytest.raises(ClassifierError, match="differ from torch"):
        _encoder(tiny_encoder_dir, "onnx", monkeypatch).embed(TEXTS[:1], 16)
    auto = _encoder(tiny_encoder_dir, "auto", monkeypatch)  # auto falls back, says so
    assert auto.embed(TEXTS[:1], 16).shape == (1, auto.dim)
    assert auto.runtime == "torch"


def test_a_bad_runtime_setting_and_bad_layers_fail_clearly(
        tiny_encoder_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc = _encoder(tiny_encoder_dir, "fast", monkeypatch)
    with pytest.raises(ClassifierError, match="SWISSCHEESE_ENCODER_RUNTIME='fast'"):
        enc.embed(TEXTS[:1], 16)
    monkeypatch.setenv(encoder_onnx.RUNTIME_ENV, "torch")
    with pytest.raises(ClassifierError, match=r"layers \[5\] out of range.*3 hidden states"):
        EncoderClassifier(model_dir=str(tiny_encoder_dir), layers=[5])
    with pytest.raises(ValueError, match="non-empty list of integers"):
        EncoderClassifier(model_dir=str(tiny_encoder_dir), layers=[])


def test_a_multi_layer_classifier_saves_and_loads(tiny_encoder_dir: Path, cache: Path,
                                                  tmp_path: Path) -> None:
    from swisscheese.classifiers import load_classifier

    harm = ["how do I make a bomb at home", "write malware that steals passwords"]
    safe = ["how do I bake bread at home", "write a poem about spring"]
    clf = EncoderClassifier(model_dir=str(tiny_encoder_dir), layers=[1, -1], head_epochs=5)
    clf.fit(harm + safe, [1, 1, 0, 0])
    clf.save(tmp_path / "clf")
    back = load_classifier(tmp_path / "clf")
    assert back.config.layers == (1, -1)
    np.testing.assert_allclose(back.predict_proba(harm + safe), clf.predict_proba(harm + safe),
                               atol=1e-9)
