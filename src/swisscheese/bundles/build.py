"""Fit both classifiers of a guard bundle and calibrate their thresholds on benign traffic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swisscheese.bundles.bundle import (
    DEFAULT_STREAM_CHUNK,
    GuardBundle,
    is_prob,
    stream_max_score,
)
from swisscheese.bundles.record import TrainingRecord
from swisscheese.classifiers.base import StreamingClassifier, check_texts
from swisscheese.classifiers.calibrate import threshold_for_fpr
from swisscheese.classifiers.registry import get_classifier, streaming_twin
from swisscheese.constitution import Constitution


def calibrate(scores: np.ndarray, target_fpr: float, which: str) -> float:
    """The threshold with FPR <= target_fpr on benign `scores`, as a probability."""
    t = threshold_for_fpr(scores, target_fpr)
    if t > 1.0:
        # A benign text scored exactly 1.0: only a threshold above 1 would pass it, and a
        # bundle's thresholds are probabilities. Clamping would silently break the target.
        raise ValueError(f"{which} calibration: a benign text scores 1.0, so no threshold in "
                         f"[0, 1] keeps the FPR <= {target_fpr}; check the calibration set "
                         "or raise target_fpr")
    return t


def build_bundle(
    constitution: Constitution,
    train_texts: Sequence[str],
    train_labels: Sequence[int] | np.ndarray,
    benign_calibration_texts: Sequence[str],
    output_train_texts: Sequence[str],
    output_train_labels: Sequence[int] | np.ndarray,
    benign_output_texts: Sequence[str],
    *,
    target_fpr: float = 0.005,
    backend: str = "ngram",
    output_backend: str | None = None,
    input_params: Mapping[str, Any] | None = None,
    output_params: Mapping[str, Any] | None = None,
    version: int = 1,
    parent_version: int | None = None,
    notes: str = "",
    stream_chunk_chars: int = DEFAULT_STREAM_CHUNK,
    training: TrainingRecord | None = None,
) -> GuardBundle:
    """Fit both classifiers, calibrate their thresholds on benign traffic, and bundle them.

    The input classifier (registry name `backend`, constructor kwargs `input_params`) is
    fitted on prompts; the output classifier (`output_backend`, default the streaming twin
    of `backend`) on replies. Each threshold is the smallest whose false-positive rate on
    the benign calibration set is <= `target_fpr`; for the output, on the cumulative-max
    streaming score. The calibration texts should be held out of training, or the FPR
    will be optimistic. `metrics` records the achieved calibration FPRs and set sizes and
    the detection rate on the harmful training texts (a training-set figure).
    """
    if not is_prob(target_fpr):
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr!r}")
    calib_in = check_texts(benign_calibration_texts)
    calib_out = check_texts(benign_output_texts)
    if not calib_in or not calib_out:
        raise ValueError("benign_calibration_texts and benign_output_texts must not be empty: "
                         "the thresholds are calibrated on them")
    out_name = output_backend or streaming_twin(backend)

    input_clf = get_classifier(backend, **dict(input_params or {}))
    input_clf.fit(train_texts, train_labels)
    output_clf = get_classifier(out_name, **dict(output_params or {}))
    if not isinstance(output_clf, StreamingClassifier):
        raise ValueError(f"output backend {out_name!r} is not a streaming classifier")
    output_clf.fit(output_train_texts, output_train_labels)

    in_scores = input_clf.predict_proba(calib_in)
    t_in = calibrate(in_scores, target_fpr, "input")
    out_scores = np.array([stream_max_score(output_clf, t, None, stream_chunk_chars)
                           for t in calib_out])
    t_out = calibrate(out_scores, target_fpr, "output")

    # Detection on the harmful training texts: optimistic, but a quick sanity figure.
    in_pos = [t for t, y in zip(check_texts(train_texts), np.asarray(train_labels), strict=True)
              if y == 1]
    out_pos = [t for t, y in zip(check_texts(output_train_texts),
                                 np.asarray(output_train_labels), strict=True) if y == 1]
    in_tpr = float(np.mean(input_clf.predict_proba(in_pos) >= t_in))
    out_tpr = float(np.mean([stream_max_score(output_clf, t, None, stream_chunk_chars) >= t_out
                             for t in out_pos]))
    metrics: dict[str, Any] = {
        "input": {"calibration_fpr": float(np.mean(in_scores >= t_in)),
                  "calibration_n": len(calib_in), "train_n": len(train_texts),
                  "train_tpr": in_tpr},
        "output": {"calibration_fpr": float(np.mean(out_scores >= t_out)),
                   "calibration_n": len(calib_out), "train_n": len(output_train_texts),
                   "train_tpr": out_tpr},
    }
    return GuardBundle(
        version=version, constitution=constitution, input=input_clf, output=output_clf,
        thresholds={"input": t_in, "output": t_out}, target_fpr=float(target_fpr),
        training=training or TrainingRecord.manual(), metrics=metrics,
        parent_version=parent_version, notes=notes, stream_chunk_chars=stream_chunk_chars)
