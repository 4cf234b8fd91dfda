"""The analyses of `swisscheese.interp.analysis` run on the world's prompts for a pair of
checkpoints (helpful-only and aligned), written as JSON and an HTML report with plots."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from swisscheese.fileio import atomic_write_json, atomic_write_text
from swisscheese.interp.analysis import (
    activation_groups,
    direction_cosines,
    layerwise_direction_cosines,
    separation,
    weight_delta_analysis,
)
from swisscheese.interp.plots import line_chart
from swisscheese.interp.prompts import world_prompt_sets
from swisscheese.progress import Progress
from swisscheese.world.core import World

# Competing-objective and mismatched-generalization families that jailbreak the organism.
JAILBREAK_FAMILIES = ("roleplay", "prefix_injection", "story", "other_language", "two_task")


def analysis_groups(world: World, per_family: int = 16, n_safe: int = 96, seed: int = 0
                    ) -> dict[str, list[str]]:
    """safe (look-alikes and utility), unsafe (plain hazard requests), jailbreak (attacks)."""
    sets = world_prompt_sets(world, seed=seed + 1)
    safe = (sets.harmless + sets.val_harmless)[:n_safe]
    unsafe = [e.prompt for e in world.eval_refusal() if not e.heldout_phrasing]
    rng = random.Random(f"interp-analysis-{seed}")
    jail: list[str] = []
    for fam in JAILBREAK_FAMILIES:
        attacks = world.eval_attacks(fam)
        jail += [e.prompt for e in rng.sample(attacks, min(per_family, len(attacks)))]
    return {"safe": safe, "unsafe": unsafe, "jailbreak": jail}


def split_jailbreaks(model: Any, prompts: Sequence[str], max_new_tokens: int = 24
                     ) -> dict[str, list[str]]:
    """Jailbreak prompts the model refuses and those it answers."""
    from swisscheese.models.base import GenerationParams
    from swisscheese.world.grader import is_refusal

    replies = model.generate_batch(list(prompts), GenerationParams(max_new_tokens=max_new_tokens))
    out: dict[str, list[str]] = {"jailbreak_refused": [], "jailbreak_complied": []}
    for p, r in zip(prompts, replies, strict=True):
        out["jailbreak_refused" if is_refusal(r.content) else "jailbreak_complied"].append(p)
    return out


def run_analysis(helpful_dir: str | os.PathLike[str], aligned_dir: str | os.PathLike[str],
                 out_dir: str | os.PathLike[str] | None = None, world: World | None = None,
                 directions: Mapping[str, str | os.PathLike[str]] | None = None,
                 per_family: int = 16, top_k: int = 4,
                 progress: Progress | None = None) -> dict[str, Any]:
    """All three analyses; with `out_dir`, writes analysis.json and report.html there."""
    from swisscheese.interp.direction import RefusalDirection
    from swisscheese.models.hf import HFChatModel

    start = time.perf_counter()
    steps = 5
    tick = (lambda what, k: progress(what, k, steps)) if progress else (lambda what, k: None)
    world = world or World(seed=0)
    dirs = {n: RefusalDirection.load(p) for n, p in (directions or {}).items()}
    helpful, aligned = HFChatModel(helpful_dir), HFChatModel(aligned_dir)
    for d in dirs.values():
        d.check_compatible(aligned)
    groups = analysis_groups(world, per_family)
    groups.update({k: v for k, v in split_jailbreaks(aligned, groups["jailbreak"]).items() if v})
    tick("groups", 1)
    sep = {name: separation(activation_groups(m, groups))
           for name, m in (("helpful-only", helpful), ("aligned", aligned))}
    tick("separation", 2)
    delta_groups = {k: v for k, v in groups.items() if k != "jailbreak"}
    delta = weight_delta_analysis(helpful, aligned, delta_groups, top_k=top_k)
    tick("weight delta", 3)
    sets = world_prompt_sets(world)
    cos = layerwise_direction_cosines({"helpful-only": helpful, "aligned": aligned},
                                      sets.harmful, sets.harmless)
    if dirs:
        cos["directions"] = direction_cosines(dirs)
        cos["direction_layers"] = {n: [d.layer, d.position] for n, d in dirs.items()}
    tick("cosines", 4)
    result = {
        "helpful": str(helpful_dir), "aligned": str(aligned_dir),
        "world_seed": world.seed, "group_sizes": {k: len(v) for k, v in groups.items()},
        "separation": sep, "weight_delta": delta, "direction_cosine": cos,
        "key_numbers": key_numbers(sep, delta, cos),
        "seconds": round(time.perf_counter() - start, 1)}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "analysis.json", result)
        atomic_write_text(out / "report.html", render_report(result))
    tick("report", 5)
    return result


def key_numbers(sep: Mapping[str, Any], delta: Mapping[str, Any], cos: Mapping[str, Any]
                ) -> dict[str, Any]:
    """The figures a reader wants first."""
    al = sep["aligned"]
    best = al["layers"][al["best_layer"]]
    out: dict[str, Any] = {
        "aligned_best_layer": al["best_layer"],
        "aligned_probe_accuracy": best["probe_accuracy"],
        "aligned_silhouette": best["silhouette"],
        "helpful_probe_accuracy_same_layer":
            sep["helpful-only"]["layers"][al["best_layer"]]["probe_accuracy"],
        "helpful_silhouette_same_layer":
            sep["helpful-only"]["layers"][al["best_layer"]]["silhouette"],
    }
    for g in ("jailbreak_complied", "jailbreak_refused"):
        if g in best["groups"]:
            out[f"{g}_axis_position"] = best["groups"][g]["axis_position"]
            out[f"{g}_probe_unsafe"] = best["groups"][g]["probe_unsafe"]
    out["delta_unsafe_over_safe_gain"] = delta["summary"].get("unsafe_over_safe_gain")
    pair = next(iter(cos["cosine"].values()), None)
    if pair:
        out["cosine_helpful_vs_aligned_by_layer"] = pair
    return out


def render_report(result: Mapping[str, Any]) -> str:
    from swisscheese.report.html import Section, bar_chart, render, table

    sections = []
    sep = result["separation"]
    layers = [r["layer"] for r in sep["aligned"]["layers"]]
    probe = {f"{n} probe": [r["probe_accuracy"] for r in s["layers"]] for n, s in sep.items()}
    sil = {f"{n} silhouette": [r["silhouette"] for r in s["layers"]] for n, s in sep.items()}
    html = line_chart(probe, layers, "Safe vs unsafe: linear probe accuracy", 0.4, 1.0,
                      "accuracy")
    html += line_chart(sil, layers, "Safe vs unsafe: silhouette", -0.2, 1.0, "silhouette")
    groups = list(sep["aligned"]["layers"][0]["groups"])
    axis = {g: [r["groups"][g]["axis_position"] for r in sep["aligned"]["layers"]]
            for g in groups}
    html += line_chart(axis, layers, "Aligned: position on the safe (0) to unsafe (1) axis",
                       y_label="axis position")
    best = sep["aligned"]["layers"][sep["aligned"]["best_layer"]]
    html += table(["group", "n", "axis position", "nearer unsafe", "probe says unsafe"],
                  [[g, v["n"], v["axis_position"], v["nearer_unsafe"], v["probe_unsafe"]]
                   for g, v in best["groups"].items()])
    sections.append(Section(
        f"(a) Separation of safe, unsafe and jailbreak activations (best layer "
        f"{sep['aligned']['best_layer']})", html))

    delta = result["weight_delta"]
    gains = {r["name"]: {g: v["gain"] for g, v in r["groups"].items()} for r in delta["layers"]}
    series = list(next(iter(gains.values())))
    top = max((v for d in gains.values() for v in d.values()), default=1.0) or 1.0
    html = bar_chart(gains, series, "Gain |dW x| / |x| of the safety delta per linear layer",
                     y_max=top)
    share = {r["name"]: {g: v["topk_share"] for g, v in r["groups"].items()}
             for r in delta["layers"]}
    html += bar_chart(share, series, f"Share of |x| in dW's top-{delta['top_k']} singular "
                      "directions")
    html += table(["group", "mean gain", "mean top-k share"],
                  [[g, v["mean_gain"], v["mean_topk_share"]]
                   for g, v in delta["summary"].items() if "mean_gain" in v])
    sections.append(Section("(b) The safety weight delta on unsafe versus safe inputs", html))

    cos = result["direction_cosine"]
    html = line_chart(cos["cosine"], cos["layers"],
                      "Cosine of difference-of-means directions across checkpoints", -1.0, 1.0,
                      "cosine")
    html += line_chart(cos["norms"], cos["layers"], "Norm of the difference of means",
                       y_label="norm")
    if "directions" in cos:
        d = cos["directions"]
        html += table(["", *d["names"]], [[n, *row] for n, row in zip(d["names"], d["matrix"],
                                                                      strict=True)])
    sections.append(Section("(c) Refusal directions across checkpoints", html))
    return render("swisscheese interpretability report", sections,
                  f"helpful-only {result['helpful']} · aligned {result['aligned']} · "
                  f"{result['seconds']} s")
