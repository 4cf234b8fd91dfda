"""The classifier targets a bundle's evaluation is compared with.

Each target is (name, JSON path into the evaluation, comparison, goal). A recipe measures
the figures; `check_targets` says which goals they meet (a missing figure meets none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TARGETS: tuple[tuple[str, tuple[str, str], str, float], ...] = (
    ("input TPR", ("input", "tpr"), ">=", 0.99),
    ("input FPR", ("input", "fpr"), "<=", 0.005),
    ("held-out family recall", ("input", "heldout_recall"), ">=", 0.9),
    ("output stop rate before 25% of details", ("output", "stop_rate_25"), ">=", 0.99),
    ("output FPR", ("output", "fpr"), "<=", 0.005),
)


def check_targets(result: Mapping[str, Any], names: Sequence[str] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """Each target (those named in `names`, default all): value, goal and whether it is
    met (a missing value is not met)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (section, key), op, goal in TARGETS:
        if names is not None and name not in names:
            continue
        value = result.get(section, {}).get(key)
        ok = value is not None and (value >= goal if op == ">=" else value <= goal)
        out[name] = {"value": value, "goal": f"{op} {goal}", "pass": bool(ok)}
    return out
