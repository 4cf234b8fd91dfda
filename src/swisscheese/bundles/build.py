"""Fit both classifiers of a guard bundle and calibrate their thresholds on benign traffic."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from swisscheese.bundles.bundle import (
    DEFAULT_STREAM_CHUNK,
    GuardBundle,
    is_prob,
    stream_max_score,
)
from swisscheese.bundles.record import TrainingRecord
from swisscheese.classifiers.base import (
    CategoryScorer,
    Conversation,
    StreamingClassifier,
    check_texts,
)
from swisscheese.classifiers.calibrate import threshold_for_fpr
from swisscheese.classifiers.registry import CATEGORY_SCORERS, get_classifier, streaming_twin
from swisscheese.constitution import Constitution
from swisscheese.progress import Progress, step

# Harmful training texts whose scores give the bundle's training-set figures, at most.
TRAIN_FIGURE_N = 500
T = TypeVar("T")


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


BenignTexts = Sequence[str] | Mapping[str, Sequence[str]]


def _sources(texts: BenignTexts, which: str) -> dict[str, list[str]]:
    """Benign calibration texts by source (one unnamed source for a plain list)."""
    groups = ({str(k): check_texts(v) for k, v in texts.items()} if isinstance(texts, Mapping)
              else {"all": check_texts(texts)})
    if not groups or any(not v for v in groups.values()):
        raise ValueError(f"{which} must not be empty (nor any of its sources): the thresholds "
                         "are calibrated on them")
    return groups


def calibrate_sources(scores: Mapping[str, np.ndarray], target_fpr: float, which: str,
                      source_fpr: Mapping[str, float] | None = None
                      ) -> tuple[float, dict[str, float]]:
    """The smallest threshold with FPR <= target_fpr on every benign source at once (the
    largest of the per-source thresholds; `source_fpr` may give a source a target of
    its own), and the FPR it gives on each source: a mix of sources is calibrated so
    that no one of them pays for the others."""
    goals = dict(source_fpr or {})
    t = max(calibrate(v, goals.get(k, target_fpr), f"{which} ({k})")
            for k, v in scores.items())
    return t, {k: float(np.mean(v >= t)) for k, v in scores.items()}


def _output_pairs(clf: StreamingClassifier, name: str, texts: Sequence[str],
                  calib: Sequence[str], train_convs: Sequence[Conversation] | None,
                  cal_convs: Sequence[Conversation] | None
                  ) -> tuple[list[Conversation], list[Conversation]]:
    """The conversation of every output training and calibration text: an exchange
    classifier needs both (ValueError without them); a reply classifier reads the replies
    alone (None for each)."""
    if clf.output_context == "exchange" and (train_convs is None or cal_convs is None):
        raise ValueError(f"output classifier {name!r} is an exchange classifier: it is "
                         "fitted and calibrated on (conversation, reply) pairs; pass "
                         "output_train_conversations and benign_output_conversations")
    none: list[Conversation] = [None]
    train = list(train_convs) if train_convs is not None else none * len(texts)
    cal = list(cal_convs) if cal_convs is not None else none * len(calib)
    if len(cal) != len(calib) or len(train) != len(texts):
        raise ValueError("need one conversation per output text: "
                         f"{len(train)} for {len(texts)} training texts, "
                         f"{len(cal)} for {len(calib)} calibration texts")
    return train, cal


def _fit_categories(categories: Categories, backend: str, params: Mapping[str, Any] | None,
                    texts: Sequence[str]) -> CategoryScorer:
    """The category scorer (its own backend, or the input backend's) fitted on `texts`."""
    scorer = CATEGORY_SCORERS.create(categories.backend or backend, **dict(params or {}))
    return scorer.fit(texts, categories.labels,  # type: ignore[no-any-return]
                      categories.names)


@dataclass(frozen=True)
class Categories:
    """What a bundle's category scorer learns: a label matrix over the input training
    texts, one column per harmful category of the constitution (`names`)."""

    labels: np.ndarray
    names: tuple[str, ...]
    backend: str = ""  # a CATEGORY_SCORERS name; "" : the input backend's
    thresholds: Mapping[str, float] = field(default_factory=dict)


def build_bundle(
    constitution: Constitution,
    train_texts: Sequence[str],
    train_labels: Sequence[int] | np.ndarray,
    benign_calibration_texts: BenignTexts,
    output_train_texts: Sequence[str],
    output_train_labels: Sequence[int] | np.ndarray,
    benign_output_texts: Sequence[str],
    *,
    target_fpr: float = 0.005,
    backend: str = "ngram",
    output_backend: str | None = None,
    input_params: Mapping[str, Any] | None = None,
    output_params: Mapping[str, Any] | None = None,
    version: int = 1, parent_version: int | None = None, notes: str = "",
    stream_chunk_chars: int = DEFAULT_STREAM_CHUNK,
    training: TrainingRecord | None = None,
    output_train_conversations: Sequence[Conversation] | None = None,
    benign_output_conversations: Sequence[Conversation] | None = None,
    categories: Categories | None = None,
    source_fpr: Mapping[str, float] | None = None,
    progress: Progress | None = None,
) -> GuardBundle:
    """Fit both classifiers, calibrate their thresholds on benign traffic, and bundle them.

    The input classifier (registry name `backend`, constructor kwargs `input_params`) is
    fitted on prompts; the output classifier (`output_backend`, default the streaming twin
    of `backend`) on replies. Each threshold is the smallest whose false-positive rate on
    the benign calibration set is <= `target_fpr`; for the output, on the cumulative-max
    streaming score. `output_train_conversations` and `benign_output_conversations` give
    each reply's conversation: an exchange output classifier (output_context "exchange")
    needs them, is fitted on the pairs (`fit_exchanges`) and calibrated with each reply
    streamed after its conversation; a reply-only one reads the replies alone.
    `benign_calibration_texts` may map source names to texts: the input threshold then
    keeps every source at the target, or at its own in `source_fpr` (see
    `calibrate_sources`). `progress` hears each phase and a backend's steps in its fit.
    The calibration texts should be held out of training, or the FPR will be optimistic.
    `categories` adds a per-category scorer fitted on the input training texts. `metrics`
    records the output kind, the calibration FPRs (per source) and set sizes and the
    detection rate on (a sample of) the harmful training texts (a training-set figure).
    """
    if not is_prob(target_fpr):
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr!r}")
    calib_in = _sources(benign_calibration_texts, "benign_calibration_texts")
    calib_out = _sources(benign_output_texts, "benign_output_texts")["all"]
    out_name = output_backend or streaming_twin(backend, input_params)
    input_clf = get_classifier(backend, **dict(input_params or {}))
    output_clf = get_classifier(out_name, **dict(output_params or {}))
    if not isinstance(output_clf, StreamingClassifier):
        raise ValueError(f"output backend {out_name!r} is not a streaming classifier")
    train_convs, cal_convs = _output_pairs(  # checked before anything is fitted
        output_clf, out_name, output_train_texts, calib_out, output_train_conversations,
        benign_output_conversations)
    input_clf.progress = output_clf.progress = progress
    _phase(progress, "fit input", lambda: input_clf.fit(train_texts, train_labels))
    _phase(progress, "fit output", lambda: output_clf.fit_exchanges(
        train_convs, output_train_texts, output_train_labels))
    scorer = None if categories is None else _fit_categories(categories, backend,
                                                             input_params, train_texts)
    in_scores = _phase(progress, "calibrate input", lambda: {
        k: input_clf.predict_proba(v) for k, v in calib_in.items()})
    t_in, in_fpr = calibrate_sources(in_scores, target_fpr, "input", source_fpr)
    out_scores = stream_scores(output_clf, calib_out, cal_convs, stream_chunk_chars,
                               progress, "calibrate output")
    t_out = calibrate(out_scores, target_fpr, "output")
    metrics = _train_metrics(input_clf, output_clf, train_texts, train_labels,
                             output_train_texts, output_train_labels, train_convs, t_in,
                             t_out, stream_chunk_chars, progress)
    input_clf.progress = output_clf.progress = None
    metrics["input"] |= _calibration_metrics(in_scores, t_in) | (
        {"calibration_fpr_by_source": in_fpr}
        if isinstance(benign_calibration_texts, Mapping) else {})
    metrics["output"] |= _calibration_metrics({"all": out_scores}, t_out)
    return GuardBundle(
        version=version, constitution=constitution, input=input_clf, output=output_clf,
        thresholds={"input": t_in, "output": t_out}, target_fpr=float(target_fpr),
        training=training or TrainingRecord.manual(), metrics=metrics,
        parent_version=parent_version, notes=notes, stream_chunk_chars=stream_chunk_chars,
        categories=scorer, category_thresholds=dict(categories.thresholds) if categories else {})


def _phase(progress: Progress | None, phase: str, work: Callable[[], T]) -> T:
    step(progress, phase, 0, 1)
    out = work()
    step(progress, phase, 1, 1)
    return out


def stream_scores(clf: StreamingClassifier, replies: Sequence[str],
                  conversations: Sequence[Conversation], chunk: int,
                  progress: Progress | None, phase: str) -> np.ndarray:
    """The cumulative-max streaming score of each reply after its conversation, fed
    `chunk` characters at a time as the gateway streams."""
    clf.prefetch(replies, conversations, chunk)
    out = np.zeros(len(replies))
    every = max(1, len(replies) // 100)
    for i, (t, c) in enumerate(zip(replies, conversations, strict=True)):
        out[i] = stream_max_score(clf, t, c, chunk)
        if i % every == 0:
            step(progress, phase, i, len(replies))
    step(progress, phase, len(replies), len(replies))
    return out


def _calibration_metrics(scores: Mapping[str, np.ndarray], t: float) -> dict[str, Any]:
    """The FPR the threshold `t` gives on all the benign calibration scores, and their
    number."""
    flags = np.concatenate([v >= t for v in scores.values()])
    return {"calibration_fpr": float(np.mean(flags)), "calibration_n": len(flags)}


def _train_metrics(input_clf: Any, output_clf: StreamingClassifier,
                   train_texts: Sequence[str], train_labels: Sequence[int] | np.ndarray,
                   output_train_texts: Sequence[str],
                   output_train_labels: Sequence[int] | np.ndarray,
                   train_convs: Sequence[Conversation], t_in: float, t_out: float,
                   chunk: int, progress: Progress | None = None) -> dict[str, Any]:
    """Detection on (a seeded sample of at most TRAIN_FIGURE_N of) the harmful training
    texts: optimistic, but a quick sanity figure; streaming every training reply would
    cost a slow backend as much as its fit."""
    in_pos = _sample([t for t, y in zip(check_texts(train_texts), np.asarray(train_labels),
                                        strict=True) if y == 1])
    out_pos = _sample([(c, t) for c, t, y in zip(train_convs, check_texts(output_train_texts),
                                                 np.asarray(output_train_labels), strict=True)
                       if y == 1])
    in_tpr = float(np.mean(input_clf.predict_proba(in_pos) >= t_in))
    out = stream_scores(output_clf, [t for _, t in out_pos], [c for c, _ in out_pos], chunk,
                        progress, "training figures")
    return {"input": {"train_n": len(train_texts), "train_tpr": in_tpr,
                      "train_tpr_n": len(in_pos)},
            "output": {"kind": output_clf.output_context, "train_n": len(output_train_texts),
                       "train_tpr": float(np.mean(out >= t_out)), "train_tpr_n": len(out_pos)}}


def _sample(items: list[Any]) -> list[Any]:
    if len(items) <= TRAIN_FIGURE_N:
        return items
    idx = sorted(random.Random(0).sample(range(len(items)), TRAIN_FIGURE_N))
    return [items[i] for i in idx]
