"""The report's charts as inline SVG: images per day as columns, rankings as horizontal bars.

No scripts and no external files: each chart is a ``<figure>`` that the HTML contact sheet
(``core.reports.html``) places as it is. Colours other than ``ACCENT`` come from its CSS classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from html import escape

from core.reports.model import Slice

__all__ = ["ACCENT", "MAX_BARS", "bar_chart", "column_chart", "grouped_bars", "nice_max"]

ACCENT = "#4f46e5"
MAX_BARS = 15


def nice_max(value: float, ticks: int = 4) -> float:
    """The smallest ``ticks`` × (1, 2 or 5 × 10ᵏ) at or above ``value``: round gridlines."""
    if value <= 0:
        return float(ticks)
    step = 10 ** math.floor(math.log10(value / ticks))
    for factor in (1, 2, 5, 10):
        if factor * step * ticks >= value:
            return float(factor * step * ticks)
    return float(10 * step * ticks)


def _every_day(slices: Sequence[Slice]) -> list[Slice]:
    """Per-day slices with the quiet days in between filled in as zeros."""
    if not slices:
        return []
    have = {s.key: s for s in slices}
    first, last = date.fromisoformat(slices[0].key), date.fromisoformat(slices[-1].key)
    days = []
    for n in range((last - first).days + 1):
        key = (first + timedelta(days=n)).isoformat()
        days.append(have.get(key) or Slice(key, 0, 0, 0, 0, 0, 0, None, None, 0.0))
    return days


def _axis_label(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:g}"


def column_chart(slices: Sequence[Slice], title: str) -> str:
    """Images per day: vertical bars on a time axis."""
    width, height, left, bottom, top = 1060, 240, 44, 28, 12
    plot_w, plot_h = width - left - 8, height - bottom - top
    slices = _every_day(slices)
    if not slices:
        return _empty_chart(title)
    peak = nice_max(max(s.images for s in slices))
    n = len(slices)
    slot = plot_w / n
    bar = max(1.0, slot * 0.72)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'class="chart" xmlns="http://www.w3.org/2000/svg">'
    ]
    for k in range(5):
        y = top + plot_h - plot_h * k / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{_axis_label(peak * k / 4)}</text>"
        )
    for k, s in enumerate(slices):
        h = plot_h * s.images / peak
        x = left + slot * k + (slot - bar) / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
            f'rx="{min(2.0, bar / 3):.1f}" fill="{ACCENT}"><title>{escape(s.key)}: '
            f"{s.images:,} images</title></rect>"
        )
    step = max(1, n // 8)
    for k in range(0, n, step):
        x = left + slot * k + slot / 2
        parts.append(
            f'<text x="{x:.1f}" y="{height - 8}" class="tick" text-anchor="middle">'
            f"{escape(slices[k].key[5:])}</text>"
        )
    parts.append("</svg>")
    return _figure(title, "".join(parts))


def bar_chart(
    rows: Sequence[tuple[str, float, str]], title: str, *, peak: float | None = None
) -> str:
    """Horizontal bars: (label, value, value text)."""
    if not rows:
        return _empty_chart(title)
    rows = rows[:MAX_BARS]
    label_w, width, row_h = 190, 520, 26
    height = row_h * len(rows) + 8
    top_value = peak if peak is not None else nice_max(max(v for _, v, _ in rows))
    plot_w = width - label_w - 70
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'class="chart" xmlns="http://www.w3.org/2000/svg">'
    ]
    for k, (label, value, shown) in enumerate(rows):
        y = 4 + row_h * k
        w = max(1.5, plot_w * value / top_value) if top_value else 1.5
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" class="label" text-anchor="end">'
            f"{escape(short)}<title>{escape(label)}</title></text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{plot_w}" height="{row_h - 8}" rx="3" '
            f'fill="#eef0f6"/>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="3" '
            f'fill="{ACCENT}"/>'
            f'<text x="{label_w + plot_w + 8}" y="{y + 17}" class="value">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return _figure(title, "".join(parts))


SERIES = ("#f59e0b", "#10b981", ACCENT, "#9ca3af")  # up to four series, each its own colour


def grouped_bars(
    rows: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], title: str
) -> str:
    """Horizontal bars in groups: per row (label, one rate 0–1 per series), a thin bar for
    each series in its colour, one scale for all (0 to a round number above the highest rate,
    said left of the legend); a legend names the series."""
    if not rows:
        return _empty_chart(title)
    rows = rows[:MAX_BARS]
    label_w, width, bar_h, gap = 190, 520, 6, 10
    group_h = bar_h * len(series) + gap
    plot_w = width - label_w - 20
    height = 24 + group_h * len(rows)
    peak = min(1.0, nice_max(max((v for _, values in rows for v in values), default=0.0) or 0.01))
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'class="chart" xmlns="http://www.w3.org/2000/svg">'
    ]
    for n, name in enumerate(series):
        x = label_w + n * 80
        parts.append(
            f'<rect x="{x}" y="4" width="10" height="10" rx="2" fill="{SERIES[n]}"/>'
            f'<text x="{x + 14}" y="13" class="tick">{escape(name)}</text>'
        )
    parts.append(
        f'<text x="{label_w - 8}" y="13" class="tick" text-anchor="end">bars: 0–{peak:.0%}</text>'
    )
    for k, (label, values) in enumerate(rows):
        y = 24 + group_h * k
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + group_h / 2}" class="label" text-anchor="end">'
            f"{escape(short)}<title>{escape(label)}</title></text>"
        )
        for n, (name, value) in enumerate(zip(series, values, strict=True)):
            w = max(1.0, plot_w * min(max(value, 0.0), peak) / peak)
            parts.append(
                f'<rect x="{label_w}" y="{y + n * bar_h}" width="{w:.1f}" '
                f'height="{bar_h - 1}" fill="{SERIES[n]}"><title>{escape(name)} '
                f"{value * 100:.1f}%</title></rect>"
            )
    parts.append("</svg>")
    return _figure(title, "".join(parts))


def _empty_chart(title: str) -> str:
    svg = (
        '<svg viewBox="0 0 520 60" class="chart" xmlns="http://www.w3.org/2000/svg">'
        '<text x="260" y="34" class="tick" text-anchor="middle">no data</text></svg>'
    )
    return _figure(title, svg)


def _figure(title: str, svg: str) -> str:
    return f'<figure class="panel"><figcaption>{escape(title)}</figcaption>{svg}</figure>'
