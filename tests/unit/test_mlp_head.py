"""The mlp head (classifiers.mlp): it learns what a linear head cannot, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from swisscheese.classifiers.logistic import fit_standardized, sigmoid
from swisscheese.classifiers.mlp import MLPWeights, fit_mlp


def _xor(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two informative features whose product's sign is the label (no line separates it),
    plus six of noise, shifted and scaled so the standardisation matters."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return x * 3.0 + 5.0, y


def test_the_mlp_learns_a_rule_no_linear_head_can() -> None:
    x, y = _xor(800, 0)
    xt, yt = _xor(400, 1)
    sw = np.ones(len(y))
    mlp = fit_mlp(x, y, sw, hidden=32, epochs=60, lr=1e-2, dropout=0.0, seed=0)
    w, b = fit_standardized(x, y, sw, l2=1.0)
    mlp_acc = float(((sigmoid(mlp.logits(xt)) >= 0.5) == yt).mean())
    lin_acc = float(((sigmoid(xt @ w + b) >= 0.5) == yt).mean())
    assert mlp_acc >= 0.9 > 0.7 >= lin_acc


def test_the_mlp_is_deterministic_and_its_tensors_round_trip() -> None:
    x, y = _xor(200, 2)
    a = fit_mlp(x, y, np.ones(len(y)), hidden=8, epochs=3, noise=0.5, seed=3)
    b = fit_mlp(x, y, np.ones(len(y)), hidden=8, epochs=3, noise=0.5, seed=3)
    np.testing.assert_array_equal(a.logits(x), b.logits(x))
    c = fit_mlp(x, y, np.ones(len(y)), hidden=8, epochs=3, noise=0.5, seed=4)
    assert not np.allclose(a.logits(x), c.logits(x))
    again = MLPWeights.from_tensors(a.tensors(), "here")
    np.testing.assert_array_equal(again.logits(x), a.logits(x))
    bad = {**a.tensors(), "w2": np.zeros(3)}
    with pytest.raises(ValueError, match=r"here: expected tensors w1"):
        MLPWeights.from_tensors(bad, "here")
    nan = {**a.tensors(), "b2": np.array([np.nan])}
    with pytest.raises(ValueError, match="here: weights hold NaN"):
        MLPWeights.from_tensors(nan, "here")
