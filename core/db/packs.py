"""The ``packs`` and ``pack_files`` rows: campaign packs made by ``pack`` generations.

The worker (``core.jobs.packs``) records a pack after its zip and contact sheet are durably in
the image store, with one row per placement file and its ``pack.made`` audit entry, in one
transaction; then the generation is marked done. Delivery, ``onbrand fetch`` and the reports
read them back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select

from core.db import models as m
from core.db import models_brand as b
from core.db.database import Database

__all__ = ["NewPack", "PackFileRow", "SqlPacks", "StoredPack"]


@dataclass(frozen=True)
class PackFileRow:
    placement: str
    path: str
    method: str
    width: int
    height: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class NewPack:
    generation_id: uuid.UUID  # the ``pack`` generation
    source_generation_id: uuid.UUID
    source_index: int
    folder: str
    storage_key: str  # the zip
    sheet_key: str  # the contact sheet
    bytes: int
    sha256: str
    files: tuple[PackFileRow, ...]


@dataclass(frozen=True)
class StoredPack(NewPack):
    id: int = 0
    campaign_id: int | None = None

    @property
    def source(self) -> str:
        return f"{self.source_generation_id}:{self.source_index}"


class SqlPacks:
    """Packs in PostgreSQL; each call is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, pack: NewPack, actor: str) -> int:
        """The pack, its files and its ``pack.made`` audit entry, in one transaction; the pack's
        id. The pack generation's user and campaign are the pack's."""
        async with self._db.transaction() as session:
            generation = await session.get(m.Generation, pack.generation_id)
            if generation is None:
                raise LookupError(f"no generation {pack.generation_id}")
            made = await session.scalar(
                select(b.Pack.id).where(b.Pack.generation_id == pack.generation_id)
            )
            if made is not None:  # a retried job recorded it already
                return made
            row = b.Pack(
                generation_id=pack.generation_id,
                source_generation_id=pack.source_generation_id,
                source_index=pack.source_index,
                campaign_id=generation.campaign_id,
                user_id=generation.user_id,
                placements=[f.placement for f in pack.files],
                folder=pack.folder[:64],
                storage_key=pack.storage_key,
                sheet_key=pack.sheet_key,
                bytes=pack.bytes,
                sha256=pack.sha256,
            )
            session.add(row)
            await session.flush()
            session.add_all(
                b.PackFile(
                    pack_id=row.id,
                    placement=f.placement,
                    path=f.path[:200],
                    method=f.method[:64],
                    width=f.width,
                    height=f.height,
                    bytes=f.bytes,
                    sha256=f.sha256,
                )
                for f in pack.files
            )
            session.add(
                m.AuditLog(
                    actor=actor[:200],
                    action="pack.made",
                    subject=f"{pack.source_generation_id}:{pack.source_index}",
                    details={
                        "generation": str(pack.generation_id),
                        "placements": [f.placement for f in pack.files],
                        "bytes": pack.bytes,
                        "sha256": pack.sha256,
                    },
                    campaign_id=generation.campaign_id,
                )
            )
            return row.id

    async def context(
        self, generation_id: uuid.UUID
    ) -> tuple[str | None, str | None, str | None, str]:
        """For a ``pack`` generation: its source image's storage key (None when no longer
        stored) and logo-free master's key (None when it has none), its campaign's name and
        who asked (``platform:workspace:user``)."""
        async with self._db.sessions() as session:
            row = (
                await session.execute(
                    select(
                        m.Image.storage_key,
                        m.Image.clean_key,
                        m.Campaign.name,
                        m.Workspace.platform,
                        m.Workspace.external_id,
                        m.User.external_id,
                    )
                    .select_from(m.Generation)
                    .join(m.User, m.User.id == m.Generation.user_id)
                    .join(m.Workspace, m.Workspace.id == m.User.workspace_id)
                    .outerjoin(m.Campaign, m.Campaign.id == m.Generation.campaign_id)
                    .outerjoin(
                        m.Image,
                        (m.Image.generation_id == m.Generation.parent_id)
                        & (m.Image.index == m.Generation.source_index),
                    )
                    .where(m.Generation.id == generation_id)
                )
            ).one_or_none()
        if row is None:
            raise LookupError(f"no generation {generation_id}")
        key, clean, campaign, platform, workspace, user = row
        return key, clean, campaign, f"{platform}:{workspace}:{user}"

    async def of_generation(self, generation_id: uuid.UUID) -> StoredPack | None:
        """The pack a ``pack`` generation made, or None (not made, or not a pack)."""
        async with self._db.sessions() as session:
            row = await session.scalar(select(b.Pack).where(b.Pack.generation_id == generation_id))
            if row is None:
                return None
            files = (
                await session.scalars(
                    select(b.PackFile).where(b.PackFile.pack_id == row.id).order_by(b.PackFile.id)
                )
            ).all()
        return StoredPack(
            generation_id=row.generation_id,
            source_generation_id=row.source_generation_id,
            source_index=row.source_index,
            folder=row.folder,
            storage_key=row.storage_key,
            sheet_key=row.sheet_key,
            bytes=row.bytes,
            sha256=row.sha256,
            files=tuple(
                PackFileRow(f.placement, f.path, f.method, f.width, f.height, f.bytes, f.sha256)
                for f in files
            ),
            id=row.id,
            campaign_id=row.campaign_id,
        )

    async def campaign_counts(self, campaign_id: int) -> tuple[int, int]:
        """How many packs a campaign has, and how many placement files they hold."""
        async with self._db.sessions() as session:
            packs = await session.scalar(
                select(func.count(b.Pack.id)).where(b.Pack.campaign_id == campaign_id)
            )
            files = await session.scalar(
                select(func.count(b.PackFile.id))
                .join(b.Pack, b.Pack.id == b.PackFile.pack_id)
                .where(b.Pack.campaign_id == campaign_id)
            )
        return int(packs or 0), int(files or 0)
