"""Uploads: an untrusted image in → checked, cleaned, stored by content hash, recorded.

``upload`` runs ``core.imaging.uploads.clean_upload`` (size, type from the bytes, pixel cap
before decoding, first frame, orientation, metadata dropped, sRGB) off the event loop, stores the
clean PNG, then records the ``uploads`` row (who, when, where, campaign). A refused file raises
``UploadRefused`` (a ``UserError``) before anything is written. The file is written first: a row
always has its file; a file without a row (a crash between the two) is an unreferenced blob under
its content hash, harmless and reused when the same picture comes again.
"""

from __future__ import annotations

import asyncio

from core.domain import Actor, NewUpload, ReplyTarget, Upload
from core.errors import NotFound
from core.imaging.uploads import CleanImage, clean_upload
from core.ports import ImageStore, UploadRecords
from core.service.base import UseCase

__all__ = ["Uploads"]


class Uploads(UseCase):
    # Wired by ``Service`` (``store=``, ``uploads=``); without them uploads are refused.
    _store: ImageStore | None = None
    _upload_records: UploadRecords | None = None

    def _upload_ports(self) -> tuple[ImageStore, UploadRecords]:
        if self._store is None or self._upload_records is None:
            raise RuntimeError("Service was built without an image store and upload records")
        return self._store, self._upload_records

    async def upload(
        self,
        data: bytes,
        actor: Actor,
        where: ReplyTarget | None = None,
        *,
        campaign: str | None = None,
    ) -> Upload:
        """Check, clean, store and record an image a user gave; ``UploadRefused`` says why not."""
        self._check_ids(actor, where)
        store, records = self._upload_ports()
        clean: CleanImage = await asyncio.to_thread(clean_upload, data)
        campaign_id = await self._upload_campaign(where, campaign)
        key = await store.put(clean.png, suffix=".png")
        return await records.add(
            NewUpload(
                actor=actor,
                where=where,
                campaign_id=campaign_id,
                sha256=clean.sha256,
                storage_key=key,
                mime=clean.mime,
                size=clean.size,
                width=clean.image.width,
                height=clean.image.height,
                has_alpha=clean.has_alpha,
                notes=clean.notes,
            )
        )

    async def upload_by_id(self, upload_id: int) -> Upload:
        _, records = self._upload_ports()
        found = await records.get(upload_id)
        if found is None:
            raise NotFound("That image is no longer available; send it again.")
        return found

    async def _upload_campaign(self, where: ReplyTarget | None, campaign: str | None) -> int | None:
        """The campaign an upload belongs to: the one named, else the channel's binding's."""
        async with self._uow() as uow:
            name = campaign
            if name is None and where is not None:
                binding = await uow.repo.binding_for(where)
                name = binding.campaign if binding is not None else None
            if name is None:
                return None
            found = await uow.repo.campaign(name)
            if found is None:
                raise NotFound(
                    f"There is no campaign called {name}. `/imagine-admin campaigns` lists them."
                )
            return found.id
