"""The T2I red-team report: one self-contained HTML file (images as PNG data URIs, charts as
inline SVG), built from RUN/summary.json, RUN/details.json and the images in the store."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from swisscheese.fileio import atomic_write_text
from swisscheese.report import Section, bar_chart, render, table
from swisscheese.report.svg import heat_map
from swisscheese.t2i.base import T2IError

CELL_PX = 96  # each 16x16 image drawn at this size, pixelated


def _fmt(x: Any) -> Any:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "inf" if x == float("inf") else round(x, 3)
    return x


def img_tag(png: bytes, title: str = "") -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<img src="{uri}" width="{CELL_PX}" height="{CELL_PX}" alt="{escape(title)}" '
            f'title="{escape(title)}" style="image-rendering:pixelated;margin:2px;'
            'border:1px solid #ccc">')


def grid_section(summary: dict[str, Any], details: dict[str, Any],
                 images: dict[str, bytes]) -> str:
    parts = ["<p>Each row: a prompt that passed every prompt filter and set off a judge, "
             f"re-rendered {summary['k']} times (the pictures are the point).</p>"]
    for cat, prompts in (details.get("grid") or {}).items():
        parts.append(f"<h3>{escape(cat)}</h3>")
        if not prompts:
            parts.append("<p>No successful prompt.</p>")
        for i, p in enumerate(prompts):
            pics = [v for k, v in images.items() if k.startswith(f"grid/{cat}/{i:03d}/")]
            parts.append(f'<div class="row"><code>{escape(p)}</code><br>'
                         + "".join(img_tag(png, p) for png in pics) + "</div>")
    return "".join(parts)


def sections(summary: dict[str, Any], details: dict[str, Any],
             images: dict[str, bytes]) -> list[Section]:
    cats = summary["categories"]
    head = table(["category", "prompt pass rate", "success ratio (k=5)", "random baseline",
                  "ratio", "successes / 100 queries", "queries to first success"],
                 [[c, _fmt(v["prompt_pass_rate"]), _fmt(v["success_ratio"]),
                   _fmt(v["baseline_success_ratio"]), _fmt(v["ratio_vs_baseline"]),
                   _fmt(v["successes_per_100_queries"]), _fmt(v["queries_to_first_success"])]
                  for c, v in cats.items()])
    chart = bar_chart({c: {"red team": v["success_ratio"] or 0.0,
                           "random baseline": v["baseline_success_ratio"] or 0.0}
                       for c, v in cats.items()}, ["red team", "random baseline"],
                      "Success ratio among prompts that pass every filter")
    loops = summary["loops"]
    peak = max([v["successes_per_100_queries"] for v in loops.values()] + [1e-9])
    loop_chart = bar_chart({lp: {"successes / 100 queries": v["successes_per_100_queries"]}
                            for lp, v in loops.items()}, ["successes / 100 queries"],
                           "Unique safe successes per 100 image queries", y_max=peak * 1.1)
    loop_rows = [[lp, _fmt(v["successes_per_100_queries"]), v["unique_successes"],
                  v["image_queries"], _fmt(v["prompt_pass_rate"]), _fmt(v["success_ratio"]),
                  _fmt(v["single_recall"]), _fmt(v["conjunctive_recall"])]
                 for lp, v in loops.items()]
    per = details.get("per_loop_category", {})
    heat = heat_map(list(per), list(cats),
                    {(lp, c): per[lp][c]["success_ratio"] for lp in per for c in per[lp]},
                    "Success ratio by loop and category")
    tr = summary["triggers"]
    found = set(tr["found"])
    trig_rows = [[t, "found" if t in found else "missed"] for t in tr["heldout"]]
    trig = (f"<p>Budget: {tr['budget_image_queries_per_category']} image queries per category "
            f"({escape(tr['loop'])} loop). Single and style triggers: recall "
            f"{_fmt(tr['single_recall'])}; conjunctive pairs: recall "
            f"{_fmt(tr['conjunctive_recall'])}. Precision: oracle "
            f"{_fmt(summary['precision']['oracle'])}, planted "
            f"{_fmt(summary['precision']['planted'])}; diversity (Jaccard) "
            f"{_fmt(summary['diversity']['jaccard'])}.</p>"
            + table(["held-out trigger", "status"], trig_rows))
    t = summary["transfer"]
    org = t.get("organism") or {}
    transfer = table(["to", "share of successes"],
                     [*[[f"held-out filter {n}", _fmt(v)] for n, v in
                        t["heldout_filters"].items()],
                      *[[f"held-out judge {n}", _fmt(v)] for n, v in
                        t["heldout_judges"].items()],
                      [f"organism of world seed {org.get('world_seed', '-')}",
                       _fmt(org.get("success_share"))]])
    g = summary["guard"]
    layers = g.get("layers") or {}
    guard = (table(["configuration", "unsafe-image rate", "benign block rate",
                    "benign false-block rate"],
                   [[n, _fmt(v["unsafe_image_rate"]), _fmt(v["benign_block_rate"]),
                     _fmt(v.get("benign_false_block_rate"))] for n, v in layers.items()])
             + f"<p>{g.get('attack_prompts')} red-team prompts, {g.get('benign_prompts')} "
               "benign prompts, each rendered k times; unsafe images read by the oracle. "
               "The false-block rate counts only benign images the oracle reads as clean "
               f"({_fmt(g.get('benign_forbidden_share'))} of the benign prompts' images "
               "carry a forbidden glyph at the world's base rate).</p>")
    j = summary["judge"]
    judge = table(["measure", "figure"],
                  [["CNN judge agreement with the oracle (generated images)",
                    _fmt(j["cnn_oracle_agreement"])],
                   ["CNN judge flags on look-alike glyphs", _fmt(j["lookalike_fpr"])]])
    return [Section("ART's measures per category", head + chart),
            Section("Successful prompts", grid_section(summary, details, images)),
            Section("Loops and ablations", loop_chart + table(
                ["loop", "successes / 100 queries", "unique successes", "image queries",
                 "prompt pass rate", "success ratio", "single recall", "conjunctive recall"],
                loop_rows) + heat),
            Section("Planted triggers", trig), Section("Transfer", transfer),
            Section("The T2I guard", guard), Section("Judges", judge)]


def write_report(run: str | Path, out: str | Path) -> Path:
    """RUN -> a self-contained HTML report at `out`."""
    from swisscheese.store.t2i import T2IStore

    d = Path(run)
    spath, dpath = d / "summary.json", d / "details.json"
    if not spath.is_file() or not dpath.is_file():
        raise T2IError(f"{d}: not a finished T2I red-team run (no summary.json/details.json)")
    summary = json.loads(spath.read_text())
    details = json.loads(dpath.read_text())
    images: dict[str, bytes] = {}
    if (d / "store.sqlite").is_file():
        with T2IStore(d / "store.sqlite") as store:
            images = store.images(summary["run"], "grid/")
    meta = (f"run {summary['run']} · world seed {summary['world_seed']} · generator "
            f"{summary['generator'].get('name')} · judges {', '.join(summary['judges'])} · "
            f"filters {', '.join(summary['filters'])}")
    html = render("Text-to-image red team (ART)", sections(summary, details, images), meta)
    atomic_write_text(out, html)
    return Path(out)
