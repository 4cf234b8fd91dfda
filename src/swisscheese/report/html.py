"""Building blocks for the HTML reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#4e79a7", "#e15759", "#f28e2b", "#76b7b2", "#59a14f", "#b07aa1")


@dataclass
class Section:
    title: str
    html: str


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else escape(str(v))

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart(data: Mapping[str, Mapping[str, float]], series: Sequence[str], title: str,
              y_max: float = 1.0, threshold: float | None = None) -> str:
    """Grouped bars: one group per key of `data`, one bar per series. Values in [0, y_max]."""
    groups = list(data)
    bar_w, gap, h, top, left, bottom = 14, 18, 220, 30, 40, 110
    group_w = bar_w * len(series) + gap
    width = left + group_w * len(groups) + 20
    height = top + h + bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + h - frac * h
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y}" y2="{y}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4}" font-size="10" text-anchor="end">'
                     f"{frac * y_max:.2g}</text>")
    if threshold is not None:
        y = top + h - threshold / y_max * h
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y}" y2="{y}" stroke="#333" '
                     'stroke-dasharray="4 3"/>')
    for gi, g in enumerate(groups):
        x0 = left + gi * group_w + gap / 2
        for si, s in enumerate(series):
            v = max(0.0, min(y_max, float(data[g].get(s, 0.0))))
            bh = v / y_max * h
            x = x0 + si * bar_w
            parts.append(f'<rect x="{x}" y="{top + h - bh}" width="{bar_w - 2}" height="{bh}" '
                         f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(g)} / '
                         f"{escape(s)}: {v:.3f}</title></rect>")
        cx = x0 + bar_w * len(series) / 2
        parts.append(f'<text transform="translate({cx},{top + h + 8}) rotate(50)" '
                     f'font-size="11">{escape(g)}</text>')
    for si, s in enumerate(series):
        lx = left + si * 140
        parts.append(f'<rect x="{lx}" y="{height - 16}" width="10" height="10" '
                     f'fill="{PALETTE[si % len(PALETTE)]}"/><text x="{lx + 14}" '
                     f'y="{height - 7}" font-size="11">{escape(s)}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;font-size:12px}
.meta{color:#666;font-size:13px}h2{border-bottom:1px solid #ddd;padding-bottom:4px}
"""


def render(title: str, sections: Sequence[Section], meta: str = "") -> str:
    toc = "".join(f'<li><a href="#s{i}">{escape(s.title)}</a></li>'
                  for i, s in enumerate(sections))
    body = "".join(f'<section id="s{i}"><h2>{escape(s.title)}</h2>{s.html}</section>'
                   for i, s in enumerate(sections))
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><p class=\"meta\">{escape(meta)}</p><ul>{toc}</ul>"
            f"{body}</body></html>")
