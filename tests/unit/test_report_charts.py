"""The report's charts fit the page: every bar drawn inside the SVG's width (wrapped onto
more panels when needed), slanted labels and the legend counted, long labels shortened;
and the layer section describes any set of targets, the exchange arm included."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from swisscheese.redteam.report import build_report, layer_section, load_run
from swisscheese.report.svg import CHAR_W, MAX_WIDTH, bar_chart, heat_map, interval_chart

FAMILIES = [f"family_number_{i}" for i in range(23)]
TARGETS = ["helpful-only", "aligned", "aligned+input", "aligned+output",
           "aligned+input+output", "aligned+input+exchange"]


def _width(svg: str) -> float:
    m = re.match(r'<svg [^>]*width="(\d+)" height="(\d+)" viewBox="0 0 (\d+) (\d+)"', svg)
    assert m, svg[:200]
    assert m.group(1) == m.group(3) and m.group(2) == m.group(4)
    return float(m.group(1))


def test_bar_chart_wraps_groups_and_keeps_every_bar_inside() -> None:
    data = {f: {t: (i + j) % 10 / 10 for j, t in enumerate(TARGETS)}
            for i, f in enumerate(FAMILIES)}
    svg = bar_chart(data, TARGETS, "ASR per family")
    width = _width(svg)
    assert width <= MAX_WIDTH
    bars = re.findall(r'<rect class="bar" data-group="([^"]+)" data-series="([^"]+)" '
                      r'data-value="([0-9.]+)" x="([0-9.]+)" y="[0-9.]+" width="([0-9.]+)"', svg)
    assert len(bars) == len(FAMILIES) * len(TARGETS)
    assert {(g, s) for g, s, *_ in bars} == {(f, t) for f in FAMILIES for t in TARGETS}
    for g, s, v, x, w in bars:
        assert float(x) + float(w) <= width, (g, s)
        assert float(v) == pytest.approx(data[g][s])
    # More than one panel: the groups did not fit on one line.
    panels = {round(float(m)) for m in re.findall(r'<line x1="40.0" x2="[0-9.]+" y1="([0-9.]+)"',
                                                  svg)}
    assert len(panels) > 5
    # Every slanted group label ends inside the drawing (50 degrees: cos of its length).
    labels = re.findall(r'<text class="group-label" transform="translate\(([0-9.]+),[^>]*>'
                        r'<title>([^<]+)</title>', svg)
    assert len(labels) == len(FAMILIES)
    reach = math.cos(math.radians(50)) * CHAR_W
    assert all(float(x) + len(name) * reach <= width for x, name in labels)


def test_long_labels_are_shortened_with_the_full_name_kept() -> None:
    long = "a-very-long-family-name-that-would-run-off-the-page-" * 2
    svg = bar_chart({long: {"s": 0.5}}, ["s"], "t")
    assert f"<title>{long}</title>" in svg
    assert "\u2026" in svg and _width(svg) <= MAX_WIDTH


def test_heat_map_fits_with_many_columns() -> None:
    cols = [f"target-with-a-long-name-{i}" for i in range(12)]
    values = {(r, c): 0.5 for r in FAMILIES for c in cols}
    svg = heat_map(FAMILIES, cols, values, "ASR")
    width = _width(svg)
    assert width <= MAX_WIDTH
    cells = re.findall(r'<rect class="cell" [^>]* x="([0-9.]+)" y="[0-9.]+" width="([0-9.]+)"',
                       svg)
    assert len(cells) == len(FAMILIES) * len(cols)
    assert all(float(x) + float(w) <= width for x, w in cells)


def _run(root: Path) -> Path:
    root.mkdir(parents=True)
    asr = {"helpful-only": 0.9, "aligned": 0.5, "aligned+input": 0.4, "aligned+output": 0.3,
           "aligned+input+output": 0.2, "aligned+input+exchange": 0.0}
    (root / "summary.json").write_text(json.dumps({"targets": {
        t: {"asr": {"code_words": a, "roleplay": a / 2}, "overrefusal": 0.0,
            "universal": {"template": None, "levels_passed": 0}} for t, a in asr.items()}}))
    (root / "attempts.jsonl").write_text("")
    aligned = "runs/demo/organism/aligned"
    info = {
        "helpful-only": {"model": "runs/demo/organism/helpful-only", "layers": []},
        "aligned": {"model": aligned, "layers": []},
        "aligned+input": {"model": aligned, "layers": ["input"], "bundle": "B1"},
        "aligned+output": {"model": aligned, "layers": ["output"], "bundle": "B1",
                           "output_context": "reply"},
        "aligned+input+output": {"model": aligned, "layers": ["input", "output"],
                                 "bundle": "B1", "output_context": "reply"},
        "aligned+input+exchange": {"model": aligned, "layers": ["input", "output"],
                                   "bundle": "B2", "output_context": "exchange"},
    }
    (root / "details.json").write_text(json.dumps({"target_info": info}))
    return root


def test_layer_section_takes_any_targets_and_names_the_output_kind(tmp_path: Path) -> None:
    rep = build_report(load_run(_run(tmp_path / "RUN")))
    rows = {r["target"]: r for r in rep["layers"]}
    assert rows["aligned+output"]["label"] == "output only (reply output classifier)"
    assert rows["aligned+input+exchange"]["label"] == \
        "input + output (exchange output classifier)"
    assert rows["aligned+input+exchange"]["bundle"] == "B2"
    # Every guarded target against the same model unguarded; aligned against helpful-only.
    assert {n: r["compared_with"] for n, r in rows.items()} == {
        "helpful-only": None, "aligned": "helpful-only", "aligned+input": "aligned",
        "aligned+output": "aligned", "aligned+input+output": "aligned",
        "aligned+input+exchange": "aligned"}
    assert rows["aligned+input+exchange"]["reduction"] == pytest.approx(0.375)
    html = layer_section(rep)
    assert "input + output (exchange output classifier)" in html
    assert html.count('<rect class="bar"') == 2 * 6


def test_runs_without_details_are_described_from_builtin_names(tmp_path: Path) -> None:
    root = _run(tmp_path / "RUN")
    (root / "details.json").unlink()
    rows = {r["target"]: r for r in build_report(load_run(root))["layers"]}
    assert rows["aligned+output"]["label"] == "output only"
    assert rows["aligned+input"]["compared_with"] == "aligned"
    assert rows["aligned+input+exchange"]["label"] == "unguarded"  # not a built-in name
    (root / "details.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"details\.json: top level: expected an object"):
        load_run(root)


def test_interval_chart_keeps_long_labels_on_the_page() -> None:
    long = "sft countermeasure after jailbreak-tuning with every writer " * 2
    svg = interval_chart([("wo 3", 0.5, 0.4, 0.6), (long, 0.2, 0.1, 0.3)], "ASR")
    width = _width(svg)
    assert width <= MAX_WIDTH
    # The label is shortened on the chart (the tooltip keeps all of it) and its column is
    # wide enough: its right edge sits left of the plot, its left edge inside the SVG.
    labels = re.findall(r'<text x="([\d.]+)"[^>]*text-anchor="end"[^>]*>([^<]*)</text>', svg)
    assert labels and all(len(t) <= 30 for _, t in labels)
    assert all(float(x) - len(t) * CHAR_W >= 0 for x, t in labels)
    assert long.strip() in svg  # in the <title>
