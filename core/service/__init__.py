"""The use cases the chat adapters and the CLI call, one module each, composed into ``Service``.

Every method takes a platform-neutral ``Actor`` (and ``ReplyTarget`` where results go), works in
one unit of work (records and queue commit together or not at all) and raises ``UserError`` with
text for the person who asked when the request can't be served.

- ``base``: configuration, shared state and the rules several use cases apply (presets, campaign
  dates, quotas, fair enqueueing, tickets, roles)
- ``imagine``: ``/imagine`` → recorded and queued generations
- ``uploads``: an untrusted image → checked, cleaned, stored, recorded
- ``images_in``: ``/imagine`` from an upload (image prompt, product shot)
- ``edits``: zoom out, pan and vary region on a result
- ``remix``: a result again with an edited prompt, seed and settings kept
- ``buttons``: upscale, vary, reroll and cancel
- ``feedback``: reactions → favourites, likes, approvals
- ``messages``: the chat messages posted for a generation, and the generation behind an id
- ``campaigns``: campaigns and channel bindings (admins)
- ``reports``: campaign reports (admins and reviewers)
- ``memory``: search past work, more like this, lineage (``core.memory`` holds the SQL)
- ``packs``: a campaign pack (every placement) from one finished image
- ``pack_jobs``: packs as queued jobs (the 📦 button and menu, ``onbrand pack``), the approval gate
- ``styles``: style codes (governed reference images): register, list, retire, resolve
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from core.brand.presets import Preset
from core.db.packs import SqlPacks
from core.memory.store import MemoryStore
from core.ports import ImageStore, Matter, UnitOfWorkFactory, UploadRecords
from core.service.base import ServiceConfig, utcnow
from core.service.buttons import Buttons
from core.service.campaigns import Campaigns
from core.service.feedback import Feedback
from core.service.imagine import Imagine
from core.service.memory import Recall
from core.service.messages import Messages
from core.service.pack_jobs import PackJobs
from core.service.remix import Remix
from core.service.reports import Reports, ReportSource
from core.service.styles import StyleRegistry, Styles

__all__ = ["Service"]


class Service(
    PackJobs, Remix, Imagine, Buttons, Feedback, Messages, Campaigns, Reports, Recall, Styles
):
    """Every use case over one unit-of-work factory, one set of presets and one configuration:
    what ``core.bootstrap`` builds once per process and the adapters call."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        presets: Mapping[str, Preset],
        config: ServiceConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        seed_source: Callable[[], int] | None = None,
        reports: ReportSource | None = None,
        store: ImageStore | None = None,
        uploads: UploadRecords | None = None,
        memory: MemoryStore | None = None,
        packs: SqlPacks | None = None,
        styles: StyleRegistry | None = None,
        matter: Matter | None = None,
    ) -> None:
        super().__init__(uow, presets, config, clock=clock, seed_source=seed_source)
        self._reports = reports
        self._store = store
        self._upload_records = uploads
        self._memory = memory
        self._packs = packs
        self._style_codes = styles
        self._matter = matter  # product cut-outs; None: the key-out
