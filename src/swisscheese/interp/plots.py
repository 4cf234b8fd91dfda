"""Inline SVG line charts for the interpretability report (bars come from report.html)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import TypeGuard

from swisscheese.report.html import PALETTE


def _ok(v: float | None) -> TypeGuard[float]:
    """A value to draw: neither missing (None) nor NaN."""
    return v is not None and v == v


def line_chart(series: Mapping[str, Sequence[float | None]], x_labels: Sequence[object], title: str,
               y_min: float | None = None, y_max: float | None = None, y_label: str = "",
               x_label: str = "layer") -> str:
    """One line per series over shared x positions; None or NaN values leave a gap."""
    if not series:
        raise ValueError("line_chart needs at least one series")
    n = len(x_labels)
    for name, ys in series.items():
        if len(ys) != n:
            raise ValueError(f"series {name!r} has {len(ys)} values for {n} x positions")
    finite = [float(v) for ys in series.values() for v in ys if _ok(v)]
    lo = y_min if y_min is not None else min(finite, default=0.0)
    hi = y_max if y_max is not None else max(finite, default=1.0)
    if hi <= lo:
        hi = lo + 1.0
    w, h, left, top, bottom = 420, 200, 48, 30, 70
    width, height = left + w + 20, top + h + bottom

    def px(i: int) -> float:
        return left + (w * i / (n - 1) if n > 1 else w / 2)

    def py(v: float) -> float:
        return top + h - (min(max(v, lo), hi) - lo) / (hi - lo) * h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        v = lo + frac * (hi - lo)
        y = py(v)
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#ddd"/><text x="{left - 6}" y="{y + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{v:.3g}</text>')
    for i, lab in enumerate(x_labels):
        parts.append(f'<text x="{px(i):.1f}" y="{top + h + 14}" font-size="10" '
                     f'text-anchor="middle">{escape(str(lab))}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{top + h + 28}" font-size="11" '
                 f'text-anchor="middle">{escape(x_label)}</text>')
    if y_label:
        parts.append(f'<text transform="translate(12,{top + h / 2}) rotate(-90)" '
                     f'font-size="11" text-anchor="middle">{escape(y_label)}</text>')
    for si, (name, ys) in enumerate(series.items()):
        color = PALETTE[si % len(PALETTE)]
        segs, cur = [], []
        for i, val in enumerate(ys):
            if _ok(val):  # a missing value breaks the line
                cur.append(f"{px(i):.1f},{py(float(val)):.1f}")
            elif cur:
                segs.append(cur)
                cur = []
        if cur:
            segs.append(cur)
        for seg in segs:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                         f'points="{" ".join(seg)}"/>')
        for i, val in enumerate(ys):
            if _ok(val):
                parts.append(f'<circle cx="{px(i):.1f}" cy="{py(float(val)):.1f}" r="3" '
                             f'fill="{color}"><title>{escape(name)} @ {escape(str(x_labels[i]))}'
                             f": {float(v):.4g}</title></circle>")
        lx = left + (si % 3) * 150
        ly = height - 26 + (si // 3) * 13
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{lx + 14}" y="{ly}" font-size="11">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
