"""Small inline-SVG charts beside `html.bar_chart`: a heat map, a histogram and intervals.

Plain strings, no scripts and no external assets, so a report is one self-contained file.
Every label goes through `html.escape`: names come from user configs and model output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

LOW = (255, 255, 255)
HIGH = (225, 87, 89)  # the palette's red: a hot cell is a hole in the cheese


def colour(value: float | None, vmin: float = 0.0, vmax: float = 1.0) -> str:
    """White to red for `value` in [vmin, vmax]; grey for a missing value."""
    if value is None:
        return "#eeeeee"
    t = 0.0 if vmax <= vmin else max(0.0, min(1.0, (value - vmin) / (vmax - vmin)))
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(LOW, HIGH, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heat_map(rows: Sequence[str], cols: Sequence[str],
             values: Mapping[tuple[str, str], float | None], title: str,
             vmin: float = 0.0, vmax: float = 1.0) -> str:
    """A grid of `rows` x `cols` cells coloured and labelled by `values[(row, col)]`.

    Each cell is a `<rect class="cell" data-row=... data-col=... data-value=...>` so the
    figure can be read (and tested) without rendering it.
    """
    cell_w, cell_h, left, top = 92, 26, 150, 120
    width = left + cell_w * len(cols) + 130  # room for the last slanted column label
    height = top + cell_h * len(rows) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="4" y="16" font-size="14" font-weight="bold">{escape(title)}</text>']
    for ci, c in enumerate(cols):
        cx = left + ci * cell_w + cell_w / 2
        parts.append(f'<text transform="translate({cx},{top - 6}) rotate(-35)" '
                     f'font-size="11">{escape(c)}</text>')
    for ri, r in enumerate(rows):
        y = top + ri * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4}" font-size="11" '
                     f'text-anchor="end">{escape(r)}</text>')
        for ci, c in enumerate(cols):
            v = values.get((r, c))
            x = left + ci * cell_w
            label = "-" if v is None else f"{v:.2f}"
            data = "" if v is None else f' data-value="{v:.4f}"'
            parts.append(
                f'<rect class="cell" data-row="{escape(r)}" data-col="{escape(c)}"{data} '
                f'x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{colour(v, vmin, vmax)}"><title>{escape(r)} / {escape(c)}: '
                f"{label}</title></rect>"
                f'<text x="{x + cell_w / 2}" y="{y + cell_h / 2 + 4}" font-size="11" '
                f'text-anchor="middle">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(counts: Sequence[int], edges: Sequence[float], title: str,
              threshold: float | None = None) -> str:
    """Bars of `counts` over the bins between consecutive `edges` (len(edges) = n + 1)."""
    if len(edges) != len(counts) + 1:
        raise ValueError(f"{len(counts)} counts need {len(counts) + 1} edges, got {len(edges)}")
    w, h, left, top, bottom = 260, 110, 34, 24, 22
    lo, hi = edges[0], edges[-1]
    span = (hi - lo) or 1.0
    peak = max(counts, default=0) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + w + 10}" '
             f'height="{top + h + bottom}" role="img" aria-label="{escape(title)}">',
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
    row_h, left, right, top = 18, 170, 30, 30
    width = 640
    plot_w = width - left - right
    height = top + row_h * len(points) + 30

    def x(v: float) -> float:
        t = 0.0 if vmax <= vmin else (min(max(v, vmin), vmax) - vmin) / (vmax - vmin)
        return left + t * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
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
                     f'text-anchor="end" font-weight="{weight}">{escape(label)}</text>'
                     f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#4e79a7" stroke-width="2"/><circle cx="{x(m):.1f}" '
                     f'cy="{y:.1f}" r="4" fill="#e15759"><title>{escape(label)}: {m:.3f} '
                     f'[{lo:.3f}, {hi:.3f}]</title></circle>')
    parts.append("</svg>")
    return "".join(parts)
