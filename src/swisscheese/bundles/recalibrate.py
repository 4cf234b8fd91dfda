"""Recalibrate a bundle's thresholds on a large set of benign traffic, for both layers at once.

A bundle's own thresholds come from its validation split: a few hundred texts, enough for an
FPR of 0.5% but not for 0.05% (one flagged text in 2,000). Given benign conversations with
the replies they got (a file in `classify`'s input format: `prompt` or `messages`, and
`response`), `recalibrate_bundle` sets both thresholds so that the guarded system, which
refuses when either layer flags, stays within `target_fpr` on that traffic: the input layer
gets `input_share` of the budget and the output layer the rest (the budgets add up, so the
union cannot exceed the target on the calibration set). The split needs no harmful data,
which is why it is a fixed share and not an optimum. The result is the next bundle version
(version + 1, parent_version set), everything but the thresholds unchanged, with what was
done recorded in `metrics["recalibration"]`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swisscheese.bundles.build import calibrate, stream_scores
from swisscheese.bundles.bundle import (
    BundleError,
    GuardBundle,
    load_bundle,
    now_iso,
    save_bundle,
)
from swisscheese.bundles.classify import Row, read_rows
from swisscheese.fileio import refuse_nonempty_dir, sha256_file
from swisscheese.progress import Progress, step


@dataclass(frozen=True)
class Recalibration:
    """What `recalibrate_bundle` did (also stored in the new bundle's metrics)."""

    source: str
    source_sha256: str
    target_fpr: float
    input_share: float
    n_input: int
    n_output: int
    before: dict[str, float]
    after: dict[str, float]
    fpr_input: float
    fpr_output: float | None
    fpr_guarded: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def min_texts(budget: float) -> int:
    """The fewest benign texts on which an FPR of `budget` means something: one flagged
    text must not exceed it."""
    return math.ceil(1.0 / budget - 1e-9)


def _check(target_fpr: float, input_share: float) -> None:
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    if not 0.0 < input_share <= 1.0:
        raise ValueError(f"input_share must be in (0, 1], got {input_share} (1: the input "
                         "layer takes the whole budget and the output threshold stays)")


def _check_size(path: Path, layer: str, n: int, budget: float) -> None:
    need = min_texts(budget)
    if n < need:
        raise ValueError(f"{path}: {n} benign {layer} texts cannot calibrate an FPR of "
                         f"{budget:g} (at least {need:,} are needed, so that one flagged "
                         "text stays within it)")


def budgets(target_fpr: float, input_share: float) -> tuple[float, float]:
    """(input layer's FPR budget, output layer's): they add up to `target_fpr`; the output's
    is 0 when the input layer takes it all (its threshold then stays)."""
    b_in = target_fpr * input_share
    return b_in, target_fpr - b_in


def split_thresholds(s_in: np.ndarray, s_out: np.ndarray | None, target_fpr: float,
                     input_share: float = 0.5) -> tuple[float, float | None]:
    """(input threshold, output threshold or None) on benign scores: `input_share` of
    `target_fpr` to the input layer, the rest to the output layer (None when the input
    layer takes it all), so that the union stays within `target_fpr` on these texts."""
    b_in, b_out = budgets(target_fpr, input_share)
    t_in = calibrate(s_in, b_in, "input")
    if b_out <= 0 or s_out is None:
        return t_in, None
    return t_in, calibrate(s_out, b_out, "output")


def _layer_scores(parent: GuardBundle, rows: list[Row], with_output: bool,
                  progress: Progress | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input scores of every row, output scores (0 where no reply), which rows have a
    reply); the output layer is only run `with_output`."""
    step(progress, "score conversations", 0, len(rows))
    s_in = parent.input_scores([r[2] for r in rows])
    step(progress, "score conversations", len(rows), len(rows))
    answered = np.array([r[3] is not None for r in rows], dtype=bool)
    s_out = np.zeros(len(rows))
    if with_output:
        idx = np.flatnonzero(answered)
        s_out[idx] = stream_scores(parent.output, [rows[i][3] or "" for i in idx],
                                   [rows[i][4] for i in idx], parent.stream_chunk_chars,
                                   progress, "stream replies")
    return s_in, s_out, answered


def _check_rows(src: Path, rows: list[Row], b_in: float, b_out: float) -> None:
    _check_size(src, "conversations", len(rows), b_in)
    if b_out > 0:
        answered = sum(r[3] is not None for r in rows)
        if not answered:
            raise ValueError(f"{src}: no row has a 'response', so the output layer cannot be "
                             "calibrated; add the replies, or pass input_share 1 to "
                             "calibrate the input layer alone")
        _check_size(src, "replies", answered, b_out)


def recalibrate_bundle(bundle_dir: str | os.PathLike[str], benign: str | os.PathLike[str],
                       out: str | os.PathLike[str], *, target_fpr: float,
                       input_share: float = 0.5, progress: Progress | None = None
                       ) -> Recalibration:
    """Write `out`: the bundle at `bundle_dir` with both thresholds calibrated on the benign
    file `benign` (see the module docstring). Everything is read and checked before anything
    is written; ValueError (or ClassifyError / BundleError) with what is wrong otherwise."""
    _check(target_fpr, input_share)
    src, out_dir = Path(benign), Path(out)
    refuse_nonempty_dir(out_dir, "choose a new directory for the recalibrated bundle",
                        error=BundleError)
    parent = load_bundle(bundle_dir)
    rows = read_rows(src)
    b_in, b_out = budgets(target_fpr, input_share)
    _check_rows(src, rows, b_in, b_out)
    s_in, s_out, answered = _layer_scores(parent, rows, b_out > 0, progress)
    t_in, t_fit = split_thresholds(s_in, s_out[answered] if b_out > 0 else None, target_fpr,
                                   input_share)
    t_out = parent.thresholds["output"] if t_fit is None else t_fit
    flag_in, flag_out = s_in >= t_in, (s_out >= t_out) & answered
    rec = Recalibration(
        source=str(src), source_sha256=sha256_file(src), target_fpr=target_fpr,
        input_share=input_share, n_input=len(rows),
        n_output=int(answered.sum()) if b_out > 0 else 0,
        before=dict(parent.thresholds), after={"input": t_in, "output": t_out},
        fpr_input=float(flag_in.mean()),
        fpr_output=float(flag_out[answered].mean()) if b_out > 0 else None,
        fpr_guarded=float((flag_in | flag_out).mean()))
    new = dataclasses.replace(
        parent, version=parent.version + 1, parent_version=parent.version,
        thresholds=dict(rec.after), target_fpr=target_fpr,
        metrics={**parent.metrics, "recalibration": rec.to_dict()},
        notes=f"v{parent.version} recalibrated on {len(rows)} benign conversations of {src} "
              f"at FPR {target_fpr:g} for both layers together (input share {input_share:g})",
        training=parent.training.relinked(out_dir), created=now_iso())
    try:
        save_bundle(new, out_dir)
    except OSError as e:
        raise BundleError(f"{out_dir}: cannot write the recalibrated bundle ({e})") from None
    return rec
