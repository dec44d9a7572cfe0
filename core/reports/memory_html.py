"""What ``core.memory`` adds to the HTML report (``build_report(memory=True)``): acceptance per
week, model and preset version (a chart of the four rates and the table), and the campaign's
approved images that have approved near-duplicates, in this campaign or another."""

from __future__ import annotations

from html import escape

from core.humanise import percent
from core.reports.charts import MAX_BARS, grouped_bars
from core.reports.model import CampaignReport

__all__ = ["memory_sections"]


def memory_sections(report: CampaignReport) -> str:
    """The HTML of both sections; empty for a report built without them."""
    return _acceptance_table(report) + _near_duplicates(report)


def _acceptance_table(report: CampaignReport) -> str:
    """Favourite, approval, upscale and reroll rates per week, model and preset version."""
    if not report.acceptance:
        return ""
    head = (
        "<tr><th>week</th><th>model</th><th>preset</th><th>images</th><th>★ rate</th>"
        "<th>✅ rate</th><th>U rate</th><th>🔄 rate</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{a.week:%G-W%V}</td><td>{escape(a.model)}</td><td>{escape(a.preset)}</td>"
        f"<td>{a.images:,}</td><td>{percent(a.favourite_rate)}</td>"
        f"<td>{percent(a.approval_rate)}</td><td>{percent(a.upscale_rate)}</td>"
        f"<td>{percent(a.reroll_rate)}</td></tr>"
        for a in report.acceptance
    )
    groups = [  # the chart: all four rates per (week, model, preset version), in time order
        (
            f"{a.week:%G-W%V} {a.model} {a.preset}",
            (a.favourite_rate, a.approval_rate, a.upscale_rate, a.reroll_rate),
        )
        for a in report.acceptance
    ]
    title = "Acceptance rates per week, model and preset version"
    if len(groups) > MAX_BARS:  # the chart holds so many: the latest, the table has them all
        title += f" (the latest {MAX_BARS} of {len(groups)})"
    return (
        grouped_bars(
            groups[-MAX_BARS:], ("★ favourite", "✅ approval", "U upscale", "🔄 reroll"), title
        )
        + '<div class="panel wide"><h3>Acceptance per week, model and preset version</h3>'
        f"<table>{head}{rows}</table></div>"
    )


def _near_duplicates(report: CampaignReport) -> str:
    if not report.near_duplicates:
        return ""
    rows = "".join(
        f"<tr><td><code>{escape(str(c.image.generation_id)[:8])}#{c.image.index}</code></td><td>"
        + ", ".join(
            f"<code>{escape(str(r.generation_id)[:8])}#{r.index}</code> "
            f"({escape(campaign or '–')}, {distance} bits)"
            for r, campaign, distance in c.near
        )
        + "</td></tr>"
        for c in report.near_duplicates
    )
    return (
        '<div class="panel"><h3>Near-duplicates of approved images</h3>'
        "<table><tr><th>approved image</th><th>looks like (approved)</th></tr>"
        f"{rows}</table></div>"
    )
