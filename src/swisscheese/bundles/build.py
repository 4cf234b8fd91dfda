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
from swisscheese.classifiers.base import (
    Classifier,
    Conversation,
    StreamingClassifier,
    check_texts,
)
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
    output_train_conversations: Sequence[Conversation] | None = None,
    benign_output_conversations: Sequence[Conversation] | None = None,
) -> GuardBundle:
    """Fit both classifiers, calibrate their thresholds on benign traffic, and bundle them.

    The input classifier (registry name `backend`, constructor kwargs `input_params`) is
    fitted on prompts; the output classifier (`output_backend`, default the streaming twin
    of `backend`) on replies. Each threshold is the smallest whose false-positive rate on
    the benign calibration set is <= `target_fpr`; for the output, on the cumulative-max
    streaming score. The calibration texts should be held out of training, or the FPR
    will be optimistic. `output_train_conversations` and `benign_output_conversations`
    give each reply's conversation: an exchange output classifier (output_params
    context="exchange") needs them, is fitted on the pairs and calibrated with each reply
    streamed after its conversation; a reply-only one reads the replies alone.
    `metrics` records the achieved calibration FPRs and set sizes and
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
    output_clf, train_convs, cal_convs = _fit_output(
        out_name, output_params, output_train_texts, output_train_labels, calib_out,
        output_train_conversations, benign_output_conversations)

    in_scores = input_clf.predict_proba(calib_in)
    t_in = calibrate(in_scores, target_fpr, "input")
    out_scores = np.array([stream_max_score(output_clf, t, c, stream_chunk_chars)
                           for c, t in zip(cal_convs, calib_out, strict=True)])
    t_out = calibrate(out_scores, target_fpr, "output")
    metrics = _metrics(input_clf, output_clf, (t_in, t_out), (in_scores, out_scores),
                       (train_texts, train_labels),
                       (train_convs, output_train_texts, output_train_labels),
                       stream_chunk_chars)
    return GuardBundle(
        version=version, constitution=constitution, input=input_clf, output=output_clf,
        thresholds={"input": t_in, "output": t_out}, target_fpr=float(target_fpr),
        training=training or TrainingRecord.manual(), metrics=metrics,
        parent_version=parent_version, notes=notes, stream_chunk_chars=stream_chunk_chars)


def _fit_output(out_name: str, output_params: Mapping[str, Any] | None,
                texts: Sequence[str], labels: Sequence[int] | np.ndarray,
                calib_out: Sequence[str], train_conversations: Sequence[Conversation] | None,
                calib_conversations: Sequence[Conversation] | None,
                ) -> tuple[StreamingClassifier, list[Conversation], list[Conversation]]:
    """The fitted output classifier, with each training and calibration reply's
    conversation (None throughout for a reply-only classifier given none)."""
    output_clf = get_classifier(out_name, **dict(output_params or {}))
    if not isinstance(output_clf, StreamingClassifier):
        raise ValueError(f"output backend {out_name!r} is not a streaming classifier")
    exchange = output_clf.output_context == "exchange"
    if exchange and (train_conversations is None or calib_conversations is None):
        raise ValueError(f"output classifier {out_name!r} is an exchange classifier: it is "
                         "fitted and calibrated on (conversation, reply) pairs; pass "
                         "output_train_conversations and benign_output_conversations")
    train_convs = (list(train_conversations) if train_conversations is not None
                   else [None] * len(texts))
    cal_convs = (list(calib_conversations) if calib_conversations is not None
                 else [None] * len(calib_out))
    if len(cal_convs) != len(calib_out) or len(train_convs) != len(texts):
        raise ValueError("need one conversation per output text: "
                         f"{len(train_convs)} for {len(texts)} training texts, "
                         f"{len(cal_convs)} for {len(calib_out)} calibration texts")
    output_clf.fit_exchanges(train_convs, texts, labels)
    return output_clf, train_convs, cal_convs


def _metrics(input_clf: Classifier, output_clf: StreamingClassifier,
             thresholds: tuple[float, float], calib_scores: tuple[np.ndarray, np.ndarray],
             input_train: tuple[Sequence[str], Sequence[int] | np.ndarray],
             output_train: tuple[list[Conversation], Sequence[str], Sequence[int] | np.ndarray],
             stream_chunk_chars: int) -> dict[str, Any]:
    """Calibration FPRs and set sizes, and detection on the harmful training texts
    (optimistic, but a quick sanity figure)."""
    t_in, t_out = thresholds
    in_scores, out_scores = calib_scores
    train_texts, train_labels = input_train
    train_convs, output_train_texts, output_train_labels = output_train
    in_pos = [t for t, y in zip(check_texts(train_texts), np.asarray(train_labels), strict=True)
              if y == 1]
    out_pos = [(c, t) for c, t, y in zip(train_convs, check_texts(output_train_texts),
                                         np.asarray(output_train_labels), strict=True) if y == 1]
    in_tpr = float(np.mean(input_clf.predict_proba(in_pos) >= t_in))
    out_tpr = float(np.mean([stream_max_score(output_clf, t, c, stream_chunk_chars) >= t_out
                             for c, t in out_pos]))
    return {
        "input": {"calibration_fpr": float(np.mean(in_scores >= t_in)),
                  "calibration_n": len(in_scores), "train_n": len(train_texts),
                  "train_tpr": in_tpr},
        "output": {"kind": output_clf.output_context,
                   "calibration_fpr": float(np.mean(out_scores >= t_out)),
                   "calibration_n": len(out_scores), "train_n": len(output_train_texts),
                   "train_tpr": out_tpr},
    }
