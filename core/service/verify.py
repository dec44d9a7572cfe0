"""Verify: is this file one of ours, untouched, and which image is it?

The verdict rests on proof, never on what a file merely claims (its ``parameters`` text is not
read for this): a C2PA manifest that is **trusted** (signed by our signer, checked against the
trust anchors) and names a generation, or a watermark whose **MAC holds** and whose id is in the
records. A manifest that is **invalid** (pixels or metadata changed after signing) makes the file
tampered, whatever else it carries.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.db.database import Database
from core.db.provenance import ImageRecord, find_images
from core.domain import Actor
from core.provenance.inspect import Evidence, inspect
from core.provenance.setup import Provenance

Verdict = Literal["ours", "not ours", "tampered"]


@dataclass(frozen=True)
class Verification:
    verdict: Verdict
    how: str  # "signature", "watermark" or why not
    evidence: Evidence
    records: tuple[ImageRecord, ...]

    @property
    def verified(self) -> bool:
        return self.verdict == "ours"


async def verify(
    db: Database, provenance: Provenance, data: bytes, extra_anchors: Sequence[bytes] = ()
) -> Verification:
    """The verdict on one file (``core.provenance.inspect.Unreadable`` if it is no image)."""
    anchors = [a.read_bytes() for a in provenance.trust_anchors if a.exists()]
    evidence = await asyncio.to_thread(
        inspect, data, provenance.watermark_secret, [*anchors, *extra_anchors]
    )
    cred = evidence.credentials
    if cred.state == "invalid":
        return Verification(
            "tampered", f"the C2PA manifest is invalid: {cred.reason}", evidence, ()
        )
    if cred.state == "trusted" and cred.generation_id and cred.index is not None:
        try:
            gid = uuid.UUID(cred.generation_id)
        except ValueError:
            gid = None
        if gid is not None:
            records = await find_images(db, generation_id=gid, index=cred.index)
            if records:
                return Verification("ours", "signature", evidence, tuple(records))
    if evidence.watermark is not None and evidence.watermark.authentic:
        records = await find_images(db, watermark_id=evidence.watermark.image_id)
        if records:
            return Verification("ours", "watermark", evidence, tuple(records))
        return Verification(
            "not ours", "an authentic watermark whose image is not in the records", evidence, ()
        )
    why = {
        "valid": "signed, but not by a trusted signer, and no watermark of ours",
        "absent": "no Content Credentials and no watermark of ours",
        "trusted": "trusted Content Credentials that name no image of ours",
    }[cred.state]
    return Verification("not ours", why, evidence, ())


def chat_answer(result: Verification, viewer: Actor) -> str:
    """What chat tells the person who asked to verify an image (privately). Campaign, approval
    and who made it are named only to members of the workspace that made it."""
    if result.verdict == "tampered":
        return (
            "⚠️ This file carries onbrand Content Credentials that no longer match it: it was "
            f"changed after it was made ({result.evidence.credentials.reason})."
        )
    if not result.verified:
        return f"❌ Not verified as made with onbrand: {result.how}."
    record = result.records[0]
    how = (
        "its signed Content Credentials" if result.how == "signature" else "its invisible watermark"
    )
    text = (
        f"✅ Made with onbrand, verified by {how}: generation `{record.generation_id}` image "
        f"#{record.index} ({record.kind}), {record.made_at:%Y-%m-%d %H:%M} UTC."
    )
    if (record.platform, record.workspace) == (viewer.platform.value, viewer.workspace_id):
        approved = "approved" if record.approvals else "not approved yet"
        text += f" Campaign: {record.campaign or 'none'} · {approved} · made by {record.made_by}."
        if record.lineage:
            text += f" Made from: {', '.join(record.lineage)}."
    else:
        text += " It was made in another workspace, so its campaign and approval aren't shown."
    return text


async def verify_for_chat(db: Database, provenance: Provenance, data: bytes, viewer: Actor) -> str:
    """``chat_answer`` for one attachment; an unreadable one gets its reason."""
    from core.provenance.inspect import Unreadable

    try:
        return chat_answer(await verify(db, provenance, data), viewer)
    except Unreadable as exc:
        return f"❌ {exc.user_message}"
