"""Classifier measures: TPR and FPR at a threshold, and AUPRC (average precision).

Conventions throughout: label 1 is harmful (positive), and a text is flagged when its
score is >= the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _check(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and y_score {s.shape} must be 1-d, equal length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0 (benign) and 1 (harmful) only")
    if np.isnan(s).any():
        raise ValueError("y_score holds NaN")
    return y.astype(bool), s


def _rate(flags: np.ndarray, what: str) -> float:
    if len(flags) == 0:
        raise ValueError(f"no {what} examples: the rate is undefined")
    return float(flags.mean())


def tpr_at_threshold(y_true: ArrayLike, y_score: ArrayLike, threshold: float) -> float:
    """Share of harmful texts (label 1) with score >= threshold."""
    y, s = _check(y_true, y_score)
    return _rate(s[y] >= threshold, "harmful (label 1)")


def fpr_at_threshold(y_true: ArrayLike, y_score: ArrayLike, threshold: float) -> float:
    """Share of benign texts (label 0) with score >= threshold."""
    y, s = _check(y_true, y_score)
    return _rate(s[~y] >= threshold, "benign (label 0)")


def auprc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision.

    AP = sum over distinct score thresholds t (high to low) of
    (recall(t) - recall(previous t)) * precision(t); tied scores enter together, as in
    scikit-learn's average_precision_score.

    >>> round(auprc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]), 4)
    0.8333
    """
    y, s = _check(y_true, y_score)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError("auprc needs at least one harmful (label 1) example")
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    # The last index of each run of equal scores: one point of the curve per threshold.
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
