"""Self-contained HTML reports: no CDN, no scripts, inline SVG charts."""

from swisscheese.report.html import Section, bar_chart, render, table

__all__ = ["Section", "bar_chart", "render", "table"]
