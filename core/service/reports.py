"""Campaign reports in chat, for admins and reviewers: a short summary and two files. The
report itself is built elsewhere (``core.reports``); the service checks who asks and calls the
``ReportSource`` it was given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

from core.domain import Actor, RequestKey, Role
from core.errors import UserError
from core.service.base import NAME_MAX, UseCase, check_text


@dataclass(frozen=True)
class ReportBundle:
    """A campaign report as chat shows it: a short summary and two files."""

    campaign: str
    summary_markdown: str
    csv: str
    html: str


ReportSource = Callable[[str, date | None, date | None, bool], Awaitable[ReportBundle]]


class Reports(UseCase):
    _reports: ReportSource | None = None

    async def report(
        self,
        actor: Actor,
        campaign: str,
        *,
        since: date | None = None,
        until: date | None = None,
        pseudonymise: bool = False,
        key: RequestKey | None = None,
    ) -> ReportBundle:
        """A campaign report for admins and reviewers: a summary plus CSV and HTML files.

        ``key``: the platform's id for this request. A report writes nothing, so its receipt
        is committed on its own before the report is built: a copy raises
        ``DuplicateRequest`` (one report posted), and a report that then fails is not built
        again by a retry of the same request (the person was told, and can ask again)."""
        self._require(actor, Role.REVIEWER, "see campaign reports")
        check_text("The campaign name", campaign, NAME_MAX)
        if self._reports is None:
            raise UserError("Reports are not available in this process.")
        if key is not None:
            async with self._uow() as uow:
                await self._first_time(uow, key)
                await uow.commit()
        return await self._reports(campaign, since, until, pseudonymise)
