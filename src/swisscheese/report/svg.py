"""Small inline-SVG charts: grouped bars, a heat map, a histogram and intervals.

Plain strings, no scripts and no external assets, so a report is one self-contained file.
Every label goes through `html.escape`: names come from user configs and model output.

Every chart fits the report's column (`MAX_WIDTH` pixels): its width counts the slanted
labels' overhang and the legend, a bar chart with more groups than fit on one line wraps
them onto further panels, long labels are shortened (the full name stays in the
tooltip), and each `<svg>` carries a `viewBox` so that a narrower page scales it down
instead of cutting it off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

LOW = (255, 255, 255)
HIGH = (225, 87, 89)  # the palette's red: a hot cell is a hole in the cheese
PALETTE = ("#4e79a7", "#e15759", "#f28e2b", "#76b7b2", "#59a14f", "#b07aa1", "#edc948",
           "#9c755f")
# The report's text column: the page is at most 1100 px wide with 1em of padding.
MAX_WIDTH = 1060
# Average advance of a character of the 11 px sans-serif labels, generously rounded up
# (an estimate: the charts are drawn without measuring text).
CHAR_W = 6.6
MAX_LABEL = 30  # characters shown of a label; the tooltip has the whole of it


def text_width(text: str, size: float = 11.0) -> float:
    return len(text) * CHAR_W * size / 11.0


def short(label: str, limit: int = MAX_LABEL) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _svg_open(width: float, height: float, title: str) -> str:
    w, h = math.ceil(width), math.ceil(height)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" style="max-width:100%;height:auto" role="img" '
            f'aria-label="{escape(title)}">')


def colour(value: float | None, vmin: float = 0.0, vmax: float = 1.0) -> str:
    """White to red for `value` in [vmin, vmax]; grey for a missing value."""
    if value is None:
        return "#eeeeee"
    t = 0.0 if vmax <= vmin else max(0.0, min(1.0, (value - vmin) / (vmax - vmin)))
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(LOW, HIGH, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


# ---- grouped bars ----------------------------------------------------------------------

def _legend(series: Sequence[str], width: float) -> tuple[list[tuple[float, int, str]], int]:
    """(x, line, label) of each legend entry, wrapped to `width`, and the number of lines."""
    out, x, line = [], 0.0, 0
    for s in series:
        w = 14 + text_width(short(s)) + 18
        if x > 0 and x + w > width:
            x, line = 0.0, line + 1
        out.append((x, line, s))
        x += w
    return out, line + 1 if series else 0


def _bar_panel(groups: Sequence[str], data: Mapping[str, Mapping[str, float]],
               series: Sequence[str], y0: float, geo: dict[str, float], y_max: float,
               threshold: float | None) -> list[str]:
    """One row of groups: grid, bars and slanted group labels, starting at height y0."""
    left, top, h, bar_w, gap = geo["left"], geo["top"], geo["h"], geo["bar_w"], geo["gap"]
    right = left + (bar_w * len(series) + gap) * len(groups)
    base = y0 + top + h
    parts = []
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = base - frac * h
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y}" y2="{y}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4}" font-size="10" text-anchor="end">'
                     f"{frac * y_max:.2g}</text>")
    if threshold is not None:
        y = base - threshold / y_max * h
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y}" y2="{y}" stroke="#333" '
                     'stroke-dasharray="4 3"/>')
    for gi, g in enumerate(groups):
        x0 = left + gi * (bar_w * len(series) + gap) + gap / 2
        for si, s in enumerate(series):
            v = max(0.0, min(y_max, float(data[g].get(s, 0.0) or 0.0)))
            bh = v / y_max * h
            parts.append(f'<rect class="bar" data-group="{escape(g)}" data-series="{escape(s)}" '
                         f'data-value="{v:.4f}" x="{x0 + si * bar_w:.1f}" y="{base - bh:.1f}" '
                         f'width="{bar_w - 2}" height="{bh:.1f}" '
                         f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(g)} / '
                         f"{escape(s)}: {v:.3f}</title></rect>")
        cx = x0 + bar_w * len(series) / 2
        parts.append(f'<text class="group-label" transform="translate({cx:.1f},{base + 10}) '
                     f'rotate(50)" font-size="11"><title>{escape(g)}</title>'
                     f"{escape(short(g))}</text>")
    return parts


def bar_chart(data: Mapping[str, Mapping[str, float]], series: Sequence[str], title: str,
              y_max: float = 1.0, threshold: float | None = None,
              max_width: float = MAX_WIDTH) -> str:
    """Grouped bars: one group per key of `data`, one bar per series, values in [0, y_max].

    Groups that do not fit in `max_width` go on further panels below, so the last bars are
    never cut off. Each bar is a `<rect class="bar" data-group data-series data-value>`.
    """
    groups = list(data)
    n = max(1, len(series))
    bar_w = 14.0 if n <= 4 else max(6.0, 56.0 / n)
    geo = {"left": 40.0, "top": 30.0, "h": 200.0, "bar_w": bar_w, "gap": 18.0}
    group_w = bar_w * n + geo["gap"]
    longest = max((text_width(short(g)) for g in groups), default=0.0)
    # A label slanted by 50 degrees reaches cos(50) of its length to the right of its
    # group's centre and sin(50) of it down.
    over_x = max(0.0, longest * math.cos(math.radians(50)) - group_w / 2) + 12
    bottom = longest * math.sin(math.radians(50)) + 24
    per_row = max(1, int((max_width - geo["left"] - over_x) // group_w))
    rows = [groups[i:i + per_row] for i in range(0, len(groups), per_row)] or [[]]
    width = max(geo["left"] + group_w * len(rows[0]) + over_x,
                text_width(title, 14) + geo["left"] + 10)
    legend, lines = _legend(series, min(width, max_width) - geo["left"])
    width = min(max(width, geo["left"] + max((x + 14 + text_width(short(s)) for x, _, s
                                               in legend), default=0.0)), max_width)
    panel_h = geo["top"] + geo["h"] + bottom
    height = panel_h * len(rows) + 18 * lines + 8
    parts = [_svg_open(width, height, title),
             f'<text x="{geo["left"]}" y="18" font-size="14" font-weight="bold">'
             f"{escape(title)}</text>"]
    for ri, row in enumerate(rows):
        parts += _bar_panel(row, data, series, ri * panel_h, geo, y_max, threshold)
    for x, line, s in legend:
        si = list(series).index(s)
        lx, ly = geo["left"] + x, panel_h * len(rows) + 18 * line
        parts.append(f'<rect x="{lx:.1f}" y="{ly}" width="10" height="10" '
                     f'fill="{PALETTE[si % len(PALETTE)]}"/><text x="{lx + 14:.1f}" '
                     f'y="{ly + 9}" font-size="11"><title>{escape(s)}</title>'
                     f"{escape(short(s))}</text>")
    parts.append("</svg>")
    return "".join(parts)


# ---- heat map --------------------------------------------------------------------------

def heat_map(rows: Sequence[str], cols: Sequence[str],
             values: Mapping[tuple[str, str], float | None], title: str,
             vmin: float = 0.0, vmax: float = 1.0, max_width: float = MAX_WIDTH) -> str:
    """A grid of `rows` x `cols` cells coloured and labelled by `values[(row, col)]`.

    Each cell is a `<rect class="cell" data-row=... data-col=... data-value=...>` so the
    figure can be read (and tested) without rendering it. Cells narrow (down to 44 px)
    so that the grid and its slanted column labels fit `max_width`.
    """
    cell_h = 26
    left = min(260.0, max(80.0, max((text_width(short(r)) for r in rows), default=0) + 14))
    longest = max((text_width(short(c)) for c in cols), default=0.0)
    slant = math.radians(35)
    top = 30 + longest * math.sin(slant)
    over_x = longest * math.cos(slant)
    cell_w = max(44.0, min(92.0, (max_width - left - over_x) / max(1, len(cols))))
    width = min(max_width, max(left + cell_w * len(cols) + max(0.0, over_x - cell_w / 2) + 10,
                               text_width(title, 14) + 10))
    height = top + cell_h * len(rows) + 10
    parts = [_svg_open(width, height, title),
             f'<text x="4" y="16" font-size="14" font-weight="bold">{escape(title)}</text>']
    for ci, c in enumerate(cols):
        cx = left + ci * cell_w + cell_w / 2
        parts.append(f'<text transform="translate({cx:.1f},{top - 6:.1f}) rotate(-35)" '
                     f'font-size="11"><title>{escape(c)}</title>{escape(short(c))}</text>')
    for ri, r in enumerate(rows):
        y = top + ri * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.1f}" font-size="11" '
                     f'text-anchor="end"><title>{escape(r)}</title>{escape(short(r))}</text>')
        for ci, c in enumerate(cols):
            v = values.get((r, c))
            x = left + ci * cell_w
            label = "-" if v is None else f"{v:.2f}"
            data = "" if v is None else f' data-value="{v:.4f}"'
            parts.append(
                f'<rect class="cell" data-row="{escape(r)}" data-col="{escape(c)}"{data} '
                f'x="{x:.1f}" y="{y:.1f}" width="{cell_w - 2:.1f}" height="{cell_h - 2}" '
                f'fill="{colour(v, vmin, vmax)}"><title>{escape(r)} / {escape(c)}: '
                f"{label}</title></rect>"
                f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" font-size="11" '
                f'text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---- histogram -------------------------------------------------------------------------

def histogram(counts: Sequence[int], edges: Sequence[float], title: str,
              threshold: float | None = None) -> str:
    """Bars of `counts` over the bins between consecutive `edges` (len(edges) = n + 1)."""
    if len(edges) != len(counts) + 1:
        raise ValueError(f"{len(counts)} counts need {len(counts) + 1} edges, got {len(edges)}")
    w, h, left, top, bottom = 260, 110, 34, 24, 22
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0
    peak = max(counts, default=0) or 1
    width = max(left + w + 10, text_width(title, 12) + 8)
    parts = [_svg_open(width, top + h + bottom, title),
             f'<text x="4" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{left}" x2="{left + w}" y1="{top + h}" y2="{top + h}" stroke="#999"/>',
             f'<text x="{left - 4}" y="{top + 8}" font-size="10" text-anchor="end">{peak}</text>']
    for i, n in enumerate(counts):
        x0 = left + (edges[i] - lo) / span * w
        x1 = left + (edges[i + 1] - lo) / span * w
        bh = n / peak * h
        parts.append(f'<rect class="bin" data-count="{n}" x="{x0 + 1:.1f}" '
                     f'y="{top + h - bh:.1f}" width="{max(0.5, x1 - x0 - 2):.1f}" '
                     f'height="{bh:.1f}" fill="#4e79a7"><title>[{edges[i]:.2f}, '
                     f"{edges[i + 1]:.2f}): {n}</title></rect>")
    for v in (lo, (lo + hi) / 2, hi):
        x = left + (v - lo) / span * w
        parts.append(f'<text x="{x}" y="{top + h + 14}" font-size="10" '
                     f'text-anchor="middle">{v:.2g}</text>')
    if threshold is not None:
        x = left + (threshold - lo) / span * w
        parts.append(f'<line x1="{x}" x2="{x}" y1="{top}" y2="{top + h}" stroke="#333" '
                     'stroke-dasharray="4 3"/>')
    parts.append("</svg>")
    return "".join(parts)


def interval_chart(points: Sequence[tuple[str, float, float, float]], title: str,
                   vmin: float = 0.0, vmax: float = 1.0, highlight: Sequence[str] = ()
                   ) -> str:
    """One row per (label, mean, lo, hi): the mean as a dot, the interval as a line, on a
    shared horizontal axis; labels in `highlight` are drawn bold (the compared points)."""
    row_h, right, top = 18, 30, 30
    # The label column grows with the widest (shortened) label so none runs off the left.
    left = max(170, 16 + max((text_width(short(p[0])) for p in points), default=0))
    width = min(MAX_WIDTH, left + 440 + right)
    plot_w = width - left - right
    height = top + row_h * len(points) + 30

    def x(v: float) -> float:
        t = 0.0 if vmax <= vmin else (min(max(v, vmin), vmax) - vmin) / (vmax - vmin)
        return left + t * plot_w

    parts = [_svg_open(width, height, title),
             f'<text x="4" y="18" font-size="14" font-weight="bold">{escape(title)}</text>']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        v = vmin + frac * (vmax - vmin)
        parts.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top - 4}" '
                     f'y2="{height - 24}" stroke="#ddd"/><text x="{x(v):.1f}" '
                     f'y="{height - 10}" font-size="10" text-anchor="middle">{v:.2g}</text>')
    for i, (label, m, lo, hi) in enumerate(points):
        y = top + i * row_h + row_h / 2
        weight = "bold" if label in highlight else "normal"
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="11" '
                     f'text-anchor="end" font-weight="{weight}">{escape(short(label))}</text>'
                     f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#4e79a7" stroke-width="2"/><circle cx="{x(m):.1f}" '
                     f'cy="{y:.1f}" r="4" fill="#e15759"><title>{escape(label)}: {m:.3f} '
                     f'[{lo:.3f}, {hi:.3f}]</title></circle>')
    parts.append("</svg>")
    return "".join(parts)
