"""Thresholds calibrated on benign traffic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _scores(scores: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError(f"{what} must be a non-empty 1-d array, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{what} hold NaN or infinity")
    return s


def threshold_for_fpr(benign_scores: Sequence[float] | np.ndarray, target_fpr: float) -> float:
    """The smallest threshold t whose false-positive rate on `benign_scores` is <= target.

    A text is flagged when score >= t, so FPR(t) = mean(benign_scores >= t). At most
    k = floor(target_fpr * n) benign texts may be flagged; t is the next float above the
    (k+1)-th highest benign score: every lower t would flag k+1 or more.

    Ties: equal scores are flagged or passed together, so when a tie straddles the budget
    the whole tie passes and the achieved FPR is below the target (possibly 0). With
    target_fpr >= 1 every text may be flagged and the lowest benign score is returned
    (a lower threshold would change nothing on this data).

    >>> t = threshold_for_fpr([0.1, 0.2, 0.3, 0.4], 0.25)
    >>> bool(t == np.nextafter(0.3, np.inf))
    True
    """
    s = np.sort(_scores(benign_scores, "benign_scores"))[::-1]
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    # The tolerance keeps e.g. 0.3 * 10 from flooring to 2.
    k = int(np.floor(target_fpr * len(s) + 1e-9))
    if k >= len(s):
        return float(s[-1])
    return float(np.nextafter(s[k], np.inf))
