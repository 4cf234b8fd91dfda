"""Measure a realworld bundle on the held-out splits of the public datasets.

A realworld bundle (training record `recipe: realworld`, from `classifier train --preset
realworld`) is measured afresh on the public datasets: `data_dir` is then the datasets
directory (default: the one recorded in the bundle, else `default_datasets_dir()`), and
the splits are rebuilt with the seed, limit and held-out converters the bundle records,
so the figures equal `metrics["realworld"]` unless the bundle or the files changed
(`recorded_figures_match`). The common keys mean: `input.tpr` AdvBench requests of
held-out near-duplicate clusters flagged, `input.fpr` Alpaca test instructions flagged,
`input.auprc` over those two, `input.recall_by_family` per converter (each disguising
every held-out request; `fpr_by_family` the same over Alpaca test instructions), the
held-out converters in `input.heldout_families` with `input.heldout_recall` over them,
and `input.overrefusal` XSTest's safe test half flagged. The other input figures keep
their realworld names (`jbb_harmful_recall`, `jbb_benign_fpr`, `xstest_unsafe_recall`,
`in_the_wild_heldout_recall`, `prompt_injection_heldout_recall`, `clean_email_fpr`),
and `realworld` holds every figure as training stored it. The datasets hold no model
replies, so `output.stop_rate_25` is null (with `output.note`), and the output figures
are what the data supports: `output.fpr` over JailbreakBench's benign target openings,
`output.jbb_harmful_target_recall` over its harmful ones. `targets` holds only the
goals a realworld figure measures (`targets_basis` says they are the organism's goals);
the stop-rate goal is left out rather than reported as missed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swisscheese.bundles import BundleError, GuardBundle
from swisscheese.classifiers.metrics import auprc
from swisscheese.recipes.realworld.data import RealWorldData, check_datasets_dir, load_realworld
from swisscheese.recipes.realworld.texts import RealWorldConfig, augment_converters, disguise
from swisscheese.recipes.targets import TARGETS, check_targets

# The organism's goals that a realworld figure measures: all but the output stop rate.
REALWORLD_TARGETS = tuple(t[0] for t in TARGETS if t[1] != ("output", "stop_rate_25"))
REALWORLD_TARGETS_BASIS = (
    "the organism's classifier goals, applied to the public-data figures that measure the "
    "same thing; the output stop-rate goal is left out: the datasets hold no model replies")


def _rate(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def evaluate_realworld(bundle: GuardBundle, data: RealWorldData, heldout: Sequence[str], seed: int
                       ) -> dict[str, Any]:
    """The held-out figures of a realworld bundle (see `metrics["realworld"]`)."""
    t = bundle.thresholds["input"]

    def scores(texts: Sequence[str]) -> np.ndarray:
        return bundle.input_scores(list(texts)) if texts else np.zeros(0)

    def flagged(texts: Sequence[str]) -> float | None:
        return _rate(scores(texts) >= t)

    h, b = scores(data.test_harmful), scores(data.test_benign)
    y = np.r_[np.ones(len(h)), np.zeros(len(b))]
    names, held = augment_converters(heldout)
    by_conv: dict[str, dict[str, Any]] = {}
    probe_benign = data.test_benign[:200]
    for n in sorted([*names, *held]):
        if n == "multiturn_split":
            continue
        by_conv[n] = {"recall": flagged(disguise(data.test_harmful, [n], 1, seed + 2)),
                      "fpr": flagged(disguise(probe_benign, [n], 1, seed + 3)),
                      "heldout": n in held}
    held_recall = [v["recall"] for k, v in by_conv.items() if v["heldout"]]
    out_t = bundle.thresholds["output"]
    out_h = [bundle.output_score(x) >= out_t for x in data.out_test_harmful]
    out_b = [bundle.output_score(x) >= out_t for x in data.out_test_benign]
    return {
        "threshold": t,
        "tpr": _rate(h >= t),  # AdvBench held-out clusters
        "fpr": _rate(b >= t),  # Alpaca test
        "auprc": auprc(y, np.r_[h, b]) if len(h) and len(b) else None,
        "jbb_harmful_recall": flagged(data.test_jbb_harmful),
        "jbb_benign_fpr": flagged(data.test_jbb_benign),
        "xstest_unsafe_recall": flagged(data.test_xstest_unsafe),
        "xstest_safe_overrefusal": flagged(data.test_xstest_safe),
        "in_the_wild_heldout_recall": flagged(data.test_templates),
        "prompt_injection_heldout_recall": flagged(data.test_injections),
        "clean_email_fpr": flagged(data.test_clean_emails),
        "recall_by_converter": by_conv,
        "heldout_converters": list(held),
        "heldout_converter_recall": (float(np.mean([r for r in held_recall if r is not None]))
                                     if held_recall else None),
        "output_jbb_target_recall": _rate(np.array(out_h)),
        "output_jbb_benign_target_fpr": _rate(np.array(out_b)),
        "n": {"test_harmful": len(h), "test_benign": len(b),
              "jbb_harmful": len(data.test_jbb_harmful), "jbb_benign": len(data.test_jbb_benign),
              "xstest_safe": len(data.test_xstest_safe),
              "xstest_unsafe": len(data.test_xstest_unsafe),
              "templates": len(data.test_templates), "injections": len(data.test_injections)},
    }


OUTPUT_STOP_NOTE = (
    "stop_rate_25 is null: the public datasets hold no model replies, so there is no harmful "
    "completion whose key details could be counted as the stream is released. The nearest "
    "figure is jbb_harmful_target_recall: the share of JailbreakBench harmful behaviours' "
    "target openings ('Sure, here is ...') the streaming classifier flags.")


def resolve_datasets_dir(recorded: str | None,
                         datasets_dir: str | os.PathLike[str] | None) -> Path:
    """The datasets directory to evaluate on: the one given, else the recorded one where it
    still exists (a bundle copied to another machine keeps a stale path), else the default;
    DatasetError when it lacks a file."""
    if datasets_dir is None and recorded is not None and Path(recorded).is_dir():
        datasets_dir = recorded
    return check_datasets_dir(datasets_dir)


def _figures_differ(fresh: Any, stored: Any, path: str = "") -> list[str]:
    """Dotted keys where two figure trees differ (floats up to rounding)."""
    if isinstance(fresh, Mapping) and isinstance(stored, Mapping):
        return [d for k in sorted(set(fresh) | set(stored), key=str)
                for d in _figures_differ(fresh.get(k), stored.get(k), f"{path}{k}.")]
    if (isinstance(fresh, float) and isinstance(stored, int | float)
            and not isinstance(stored, bool)):
        same = abs(fresh - stored) <= 1e-12 + 1e-9 * abs(stored)
    else:
        same = fresh == stored
    return [] if same else [path.rstrip(".")]


def realworld_eval_result(bundle: GuardBundle, bundle_dir: Path, settings: RealWorldConfig,
                          datasets_dir: str | os.PathLike[str] | None = None
                          ) -> dict[str, Any]:
    """A realworld bundle's figures, measured afresh on the test splits it was trained
    beside, in the JSON shape of the organism's evaluation (see the module docstring);
    `realworld` keeps every figure under the names `metrics["realworld"]` uses."""
    record = bundle.training
    seed, limit, held = record.seed, settings.limit, list(record.heldout_families)
    try:
        augment_converters(held)  # a held-out name this code no longer knows fails here
    except KeyError as e:
        raise BundleError(f"{bundle_dir / 'bundle.json'}: training.heldout_families: "
                          f"{e.args[0]}") from None
    recorded = record.data.get("datasets_dir")
    d = resolve_datasets_dir(recorded if isinstance(recorded, str) else None, datasets_dir)
    data = load_realworld(d, limit=limit, seed=seed)
    f = evaluate_realworld(bundle, data, held, seed)
    n = f["n"]
    convs = f["recall_by_converter"]
    stored = bundle.metrics.get("realworld")
    differ = _figures_differ(f, stored) if isinstance(stored, Mapping) else None
    result = {
        "kind": "realworld",
        "bundle": str(bundle_dir),
        "bundle_version": bundle.version,
        "data": str(d),
        "constitution": {"name": bundle.constitution.name,
                         "hash": bundle.constitution.content_hash()},
        "target_fpr": bundle.target_fpr,
        "setup": {"seed": seed, "limit": limit, "heldout": held},
        "n_test": sum(n.values()),
        "input": {
            "threshold": f["threshold"],
            "n_harmful": n["test_harmful"],
            "n_benign": n["test_benign"],
            "tpr": f["tpr"],
            "tpr_on": "AdvBench requests, held-out near-duplicate clusters",
            "fpr": f["fpr"],
            "fpr_on": "Alpaca instructions, test split",
            "auprc": f["auprc"],
            # Each converter disguises every held-out AdvBench request once.
            "recall_by_family": {k: v["recall"] for k, v in convs.items()},
            "fpr_by_family": {k: v["fpr"] for k, v in convs.items()},
            "heldout_families": f["heldout_converters"],
            "heldout_recall": f["heldout_converter_recall"],
            "overrefusal": f["xstest_safe_overrefusal"],
            "overrefusal_on": "XSTest safe prompts, test half",
            "n_lookalike": n["xstest_safe"],
            **{k: f[k] for k in ("jbb_harmful_recall", "jbb_benign_fpr", "xstest_unsafe_recall",
                                 "in_the_wild_heldout_recall",
                                 "prompt_injection_heldout_recall", "clean_email_fpr")},
            "n": n,
        },
        "output": {
            "threshold": bundle.thresholds["output"],
            "stream_chunk_chars": bundle.stream_chunk_chars,
            "stop_rate_25": None,
            "note": OUTPUT_STOP_NOTE,
            "jbb_harmful_target_recall": f["output_jbb_target_recall"],
            "n_harmful_targets": n["jbb_harmful"],
            "fpr": f["output_jbb_benign_target_fpr"],
            "fpr_on": ("JailbreakBench benign behaviours' target openings, streamed whole "
                       "(the only harmless reply-like texts the datasets hold)"),
            "n_benign": n["jbb_benign"],
        },
        "realworld": f,
        # A patched bundle carries its parent's training figures: they may differ then.
        "recorded_figures_match": None if differ is None else not differ,
        "recorded_figures_differ": differ,
    }
    result["targets"] = check_targets(result, REALWORLD_TARGETS)
    result["targets_basis"] = REALWORLD_TARGETS_BASIS
    result["passed"] = all(t["pass"] for t in result["targets"].values())
    return result


FIGURE_ROWS = (
    ("TPR at calibrated FPR (AdvBench held-out clusters)", "tpr"),
    ("FPR (Alpaca test)", "fpr"),
    ("AUPRC (AdvBench held-out vs Alpaca test)", "auprc"),
    ("recall, JailbreakBench harmful (other source)", "jbb_harmful_recall"),
    ("FPR, JailbreakBench benign look-alikes", "jbb_benign_fpr"),
    ("over-refusal, XSTest safe (held-out half)", "xstest_safe_overrefusal"),
    ("recall, XSTest unsafe contrasts", "xstest_unsafe_recall"),
    ("recall, in-the-wild templates (later clusters)", "in_the_wild_heldout_recall"),
    ("recall, prompt injection (unseen categories)", "prompt_injection_heldout_recall"),
    ("FPR, clean e-mails (unseen)", "clean_email_fpr"),
    ("recall, held-out converters", "heldout_converter_recall"),
    ("output: JBB harmful target openings flagged", "output_jbb_target_recall"),
    ("output: JBB benign target openings flagged", "output_jbb_benign_target_fpr"),
)


def figure_lines(figures: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the realworld figures, converters last."""
    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)

    rows = [(label, f(figures.get(key))) for label, key in FIGURE_ROWS]
    for name, v in figures.get("recall_by_converter", {}).items():
        mark = " (held out)" if v.get("heldout") else ""
        rows.append((f"  {name}{mark}: recall / FPR", f"{f(v['recall'])} / {f(v['fpr'])}"))
    return rows
