"""A campaign report as chat shows it: the summary, the CSV and the HTML contact sheet.

The service asks a ``ReportSource`` for it (``/imagine-report``); ``report_source`` is the one
the composition root wires, over the database and the image store.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING

from core.db.database import Database
from core.ports import ImageStore
from core.service.reports import ReportBundle, ReportSource

if TYPE_CHECKING:
    from core.reports.model import CampaignReport


async def report_thumbnails(report: CampaignReport, store: ImageStore) -> dict[str, bytes]:
    """The originals the HTML report shows (contact sheet, top and approved images and the
    approved images' ancestors), by storage key."""
    from core.reports.html import shown_keys

    keys = shown_keys(report)
    return {key: await store.get(key) for key in sorted(keys) if await store.exists(key)}


def _pointer(report: CampaignReport) -> str:
    """One line about what only the HTML file shows (empty when there is nothing)."""
    parts = []
    if report.acceptance:
        parts.append("acceptance per week, model and preset version")
    if report.near_duplicates:
        n = len(report.near_duplicates)
        parts.append(f"{n} approved image{'s' if n > 1 else ''} with approved near-duplicates")
    return f"\n\nIn the HTML file: {'; '.join(parts)}.\n" if parts else ""


def report_source(db: Database, store: ImageStore) -> ReportSource:
    """How the service makes a chat report: the summary plus the CSV and HTML files."""
    from core.reports.build import build_report
    from core.reports.html import to_html
    from core.reports.text import to_csv, to_markdown

    async def make(
        campaign: str, since: date | None, until: date | None, pseudonymise: bool
    ) -> ReportBundle:
        report = await build_report(
            db, campaign, since=since, until=until, pseudonymise=pseudonymise, memory=True
        )
        html = to_html(report, await report_thumbnails(report, store))
        # the chat summary stays short: acceptance per week and near-duplicates are in the HTML
        brief = replace(report, acceptance=(), near_duplicates=())
        summary = to_markdown(brief) + _pointer(report)
        return ReportBundle(campaign, summary, to_csv(report), html)

    return make
