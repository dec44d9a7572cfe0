"""A campaign report as chat shows it: the summary, the CSV and the HTML contact sheet.

The service asks a ``ReportSource`` for it (``/imagine-report``); ``report_source`` is the one
the composition root wires, over the database and the image store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING

from core.db.database import Database
from core.ports import ImageStore
from core.service.reports import ReportBundle, ReportSource

if TYPE_CHECKING:
    from core.reports.model import CampaignReport

log = logging.getLogger(__name__)


async def report_thumbnails(report: CampaignReport, store: ImageStore) -> dict[str, bytes]:
    """The originals the HTML report shows (contact sheet, top and approved images and the
    approved images' ancestors), by storage key."""
    from core.reports.html import shown_keys

    return await originals(shown_keys(report), store)


async def originals(keys: Iterable[str], store: ImageStore) -> dict[str, bytes]:
    """The stored bytes of ``keys``, by key. One the store no longer has, or a key it refuses
    (not a content hash: a row written by hand), is left out, and the report shows that picture
    as unavailable rather than failing whole."""
    found: dict[str, bytes] = {}
    refused: list[str] = []
    for key in sorted(keys):
        try:
            if await store.exists(key):
                found[key] = await store.get(key)
        except ValueError:
            refused.append(key)
    if refused:
        log.warning(
            "the image store refused %d storage key(s) of this report (%r first); "
            "those pictures show as unavailable",
            len(refused),
            refused[0],
        )
    return found


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
