"""Building blocks for the HTML reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from swisscheese.report.svg import PALETTE, bar_chart

__all__ = ["PALETTE", "Section", "bar_chart", "render", "table"]


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


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;font-size:12px}
.meta{color:#666;font-size:13px}h2{border-bottom:1px solid #ddd;padding-bottom:4px}
svg{max-width:100%;height:auto}section{overflow-x:auto}th{overflow-wrap:anywhere}
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
