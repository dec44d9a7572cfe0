"""``Repository`` on PostgreSQL: SQLAlchemy 2.0 statements inside the caller's session.

The repository never commits; the unit of work around it does. Writes that may meet an existing
row use ``INSERT … ON CONFLICT`` rather than catching ``IntegrityError``, so a duplicate never
aborts the surrounding transaction.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, cast, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from core.db import models as m
from core.db.events import Event, EventType, publish
from core.db.mapping import (
    campaign_from_row,
    generation_from_row,
    params_to_json,
    reply_target_to_json,
)
from core.domain import (
    Actor,
    Binding,
    Campaign,
    FeedbackKind,
    Generation,
    GenerationStatus,
    MessageRef,
    NewGeneration,
    Platform,
    ReplyTarget,
)
from core.errors import NotFound, UserError

__all__ = ["SqlRepository"]

_NOT_COUNTED = (GenerationStatus.FAILED, GenerationStatus.CANCELLED)
_ACTIVE = (GenerationStatus.QUEUED, GenerationStatus.RUNNING)


def _same_image(image_id: int | None) -> ColumnElement[bool]:
    return m.Feedback.image_id.is_(None) if image_id is None else m.Feedback.image_id == image_id


class SqlRepository:
    """onbrand's records in PostgreSQL, inside ``session``'s transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ users and workspaces

    async def ensure_user(self, actor: Actor) -> int:
        display_name = actor.display_name[:200]
        # The common case, a known user, costs one round trip.
        found = (
            await self.session.execute(
                select(m.User.id, m.User.display_name)
                .join(m.Workspace, m.Workspace.id == m.User.workspace_id)
                .where(
                    m.Workspace.platform == actor.platform.value,
                    m.Workspace.external_id == actor.workspace_id,
                    m.User.external_id == actor.user_id,
                )
            )
        ).one_or_none()
        if found is not None:
            user_id, known_name = found
            if display_name and display_name != known_name:
                await self.session.execute(
                    update(m.User).where(m.User.id == user_id).values(display_name=display_name)
                )
            return int(user_id)
        workspace_id = await self._ensure_workspace(actor.platform, actor.workspace_id)
        inserted: int | None = await self.session.scalar(
            insert(m.User)
            .values(
                platform=actor.platform.value,
                workspace_id=workspace_id,
                external_id=actor.user_id,
                display_name=display_name,
            )
            .on_conflict_do_nothing(index_elements=[m.User.workspace_id, m.User.external_id])
            .returning(m.User.id)
        )
        if inserted is not None:
            return inserted
        return await self._one_id(  # another transaction inserted it first
            select(m.User.id).where(
                m.User.workspace_id == workspace_id, m.User.external_id == actor.user_id
            )
        )

    async def _ensure_workspace(self, platform: Platform, external_id: str) -> int:
        query = select(m.Workspace.id).where(
            m.Workspace.platform == platform.value, m.Workspace.external_id == external_id
        )
        found = await self.session.scalar(query)
        if found is not None:
            return found
        inserted = await self.session.scalar(
            insert(m.Workspace)
            .values(platform=platform.value, external_id=external_id, name="")
            .on_conflict_do_nothing(index_elements=[m.Workspace.platform, m.Workspace.external_id])
            .returning(m.Workspace.id)
        )
        return inserted if inserted is not None else await self._one_id(query)

    async def _one_id(self, query: Any) -> int:
        found: int = (await self.session.execute(query)).scalar_one()
        return found

    # ------------------------------------------------------------------------------ bindings

    async def binding_for(self, target: ReplyTarget) -> Binding | None:
        row = (
            await self.session.execute(
                select(m.ChannelBinding, m.Campaign.name)
                .outerjoin(m.Campaign, m.Campaign.id == m.ChannelBinding.campaign_id)
                .where(*self._channel(target))
            )
        ).one_or_none()
        if row is None:
            return None
        binding, campaign_name = row
        return Binding(
            platform=Platform(binding.platform),
            workspace_id=binding.workspace_external_id,
            channel_id=binding.channel_id,
            preset=binding.preset_name,
            campaign=campaign_name,
            locked=binding.locked,
        )

    async def save_binding(self, binding: Binding, created_by: int) -> None:
        campaign_id: int | None = None
        if binding.campaign is not None:
            campaign = await self.campaign(binding.campaign)
            if campaign is None:
                raise NotFound(
                    f"There is no campaign named “{binding.campaign}”. "
                    "Create it first, or bind the channel without a campaign."
                )
            campaign_id = campaign.id
        values = {
            "campaign_id": campaign_id,
            "preset_name": binding.preset,
            "locked": binding.locked,
            "created_by": created_by,
        }
        statement = insert(m.ChannelBinding).values(
            platform=binding.platform.value,
            workspace_external_id=binding.workspace_id,
            channel_id=binding.channel_id,
            **values,
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[
                    m.ChannelBinding.platform,
                    m.ChannelBinding.workspace_external_id,
                    m.ChannelBinding.channel_id,
                ],
                set_={**values, "created_at": func.now()},
            )
        )

    async def delete_binding(self, target: ReplyTarget) -> bool:
        deleted = await self.session.scalar(
            delete(m.ChannelBinding).where(*self._channel(target)).returning(m.ChannelBinding.id)
        )
        return deleted is not None

    @staticmethod
    def _channel(target: ReplyTarget) -> tuple[ColumnElement[bool], ...]:
        """A channel's binding; the thread doesn't matter."""
        return (
            m.ChannelBinding.platform == target.platform.value,
            m.ChannelBinding.workspace_external_id == target.workspace_id,
            m.ChannelBinding.channel_id == target.channel_id,
        )

    # ----------------------------------------------------------------------------- campaigns

    async def campaign(self, name: str) -> Campaign | None:
        row = await self.session.scalar(select(m.Campaign).where(m.Campaign.name == name))
        return None if row is None else campaign_from_row(row)

    async def campaigns(self) -> list[Campaign]:
        rows = await self.session.scalars(select(m.Campaign).order_by(m.Campaign.name))
        return [campaign_from_row(row) for row in rows]

    async def add_campaign(self, campaign: Campaign, owner_id: int | None) -> Campaign:
        new_id = await self.session.scalar(
            insert(m.Campaign)
            .values(
                name=campaign.name,
                preset_name=campaign.preset,
                starts_on=campaign.starts_on,
                ends_on=campaign.ends_on,
                gpu_budget_seconds=campaign.gpu_budget_seconds,
                rush=campaign.rush,
                share_prompt=campaign.share_prompt,
                require_approval=list(campaign.require_approval),
                owner_id=owner_id,
            )
            .on_conflict_do_nothing(index_elements=[m.Campaign.name])
            .returning(m.Campaign.id)
        )
        if new_id is None:
            raise UserError(
                f"A campaign named “{campaign.name}” already exists. Pick another name."
            )
        return dataclasses.replace(campaign, id=new_id)

    # ------------------------------------------------------------------------------- presets

    async def record_preset(self, name: str, version: str, text: str) -> int:
        known = select(m.PresetVersion.id).where(
            m.PresetVersion.name == name, m.PresetVersion.version == version
        )
        found: int | None = await self.session.scalar(known)  # the common case: one round trip
        if found is not None:
            return found
        inserted: int | None = await self.session.scalar(
            insert(m.PresetVersion)
            .values(name=name, version=version, yaml_text=text)
            .on_conflict_do_nothing(index_elements=[m.PresetVersion.name, m.PresetVersion.version])
            .returning(m.PresetVersion.id)
        )
        if inserted is not None:
            return inserted
        return await self._one_id(known)  # another transaction inserted it first

    # --------------------------------------------------------------------------- generations

    async def add_generation(self, generation: NewGeneration) -> None:
        params = generation.params
        await self.session.execute(
            insert(m.Generation).values(
                id=generation.id,
                parent_id=generation.parent_id,
                source_index=generation.source_index,
                upload_id=generation.upload_id,
                kind=generation.kind,
                platform=generation.platform.value,
                user_id=generation.user_id,
                campaign_id=generation.campaign_id,
                preset_id=generation.preset_id,
                preset_name=params.preset,
                preset_version=params.preset_version,
                raw_prompt=generation.raw_prompt,
                final_prompt=params.prompt,
                negative_prompt=params.negative_prompt,
                params=params_to_json(params),
                status=GenerationStatus.QUEUED,
                reply_target=reply_target_to_json(generation.reply_target),
            )
        )

    async def generation(self, generation_id: uuid.UUID) -> Generation | None:
        image_count = (
            select(func.count(m.Image.id))
            .where(m.Image.generation_id == m.Generation.id)
            .scalar_subquery()
        )
        row = (
            await self.session.execute(
                select(
                    m.Generation,
                    m.Workspace.platform,
                    m.Workspace.external_id,
                    m.User.external_id,
                    m.Campaign.name,
                    image_count,
                )
                .join(m.User, m.User.id == m.Generation.user_id)
                .join(m.Workspace, m.Workspace.id == m.User.workspace_id)
                .outerjoin(m.Campaign, m.Campaign.id == m.Generation.campaign_id)
                .where(m.Generation.id == generation_id)
            )
        ).one_or_none()
        if row is None:
            return None
        gen, platform, workspace, user, campaign, images = row
        return generation_from_row(gen, f"{platform}:{workspace}:{user}", campaign, int(images))

    async def images_requested_since(self, user_id: int, since: datetime) -> int:
        requested = await self.session.scalar(
            select(
                func.coalesce(func.sum(cast(m.Generation.params["n"].astext, Integer)), 0)
            ).where(
                m.Generation.user_id == user_id,
                m.Generation.queued_at >= since,
                m.Generation.status.not_in(_NOT_COUNTED),
            )
        )
        return int(requested or 0)

    async def active_count(self, user_id: int) -> int:
        active = await self.session.scalar(
            select(func.count(m.Generation.id)).where(
                m.Generation.user_id == user_id, m.Generation.status.in_(_ACTIVE)
            )
        )
        return int(active or 0)

    async def campaign_gpu_seconds(self, campaign_id: int) -> float:
        used = await self.session.scalar(
            select(func.coalesce(func.sum(m.Generation.gpu_seconds), 0.0)).where(
                m.Generation.campaign_id == campaign_id
            )
        )
        return float(used or 0.0)

    async def set_status(
        self,
        generation_id: uuid.UUID,
        status: GenerationStatus,
        *,
        only_from: Sequence[str],
        error: str | None = None,
    ) -> bool:
        """Also stamps ``started_at`` on ``running`` and ``finished_at`` on a final status."""
        sources = [GenerationStatus(s) for s in only_from]
        values: dict[str, Any] = {"status": status}
        if error is not None:
            values["error"] = error
        if status is GenerationStatus.RUNNING:
            values["started_at"] = func.clock_timestamp()
        if status.finished:
            values["finished_at"] = func.clock_timestamp()
        platform = await self.session.scalar(
            update(m.Generation)
            .where(m.Generation.id == generation_id, m.Generation.status.in_(sources))
            .values(**values)
            .returning(m.Generation.platform)
            .execution_options(synchronize_session=False)
        )
        if platform is None:
            return False
        if status.finished:  # tell the bots now (sent at commit), not at their next sweep
            connection = await self.session.connection()
            raw = await connection.get_raw_connection()
            event: EventType = "cancelled" if status is GenerationStatus.CANCELLED else "failed"
            if status is GenerationStatus.DONE:
                event = "done"
            await publish(raw.driver_connection, Event(event, generation_id, platform))
        return True

    # ------------------------------------------------------------------------------ messages

    async def record_message(self, generation_id: uuid.UUID, ref: MessageRef, role: str) -> None:
        """Upsert: a status message edited into the result becomes the result message."""
        statement = insert(m.Message).values(
            generation_id=generation_id,
            platform=ref.platform.value,
            channel_id=ref.channel_id,
            message_id=ref.message_id,
            role=role,
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[m.Message.platform, m.Message.channel_id, m.Message.message_id],
                set_={"generation_id": generation_id, "role": role},
            )
        )

    async def generation_for_message(self, ref: MessageRef) -> uuid.UUID | None:
        return await self.session.scalar(
            select(m.Message.generation_id).where(
                m.Message.platform == ref.platform.value,
                m.Message.channel_id == ref.channel_id,
                m.Message.message_id == ref.message_id,
                m.Message.role == "result",
            )
        )

    # -------------------------------------------------------------------- images and feedback

    async def image_ids(self, generation_id: uuid.UUID) -> dict[int, int]:
        rows = await self.session.execute(
            select(m.Image.index, m.Image.id).where(m.Image.generation_id == generation_id)
        )
        return {index: image_id for index, image_id in rows}

    async def add_feedback(
        self,
        generation_id: uuid.UUID,
        image_id: int | None,
        user_id: int,
        kind: FeedbackKind,
        emoji: str,
    ) -> bool:
        inserted = await self.session.scalar(
            insert(m.Feedback)
            .values(
                generation_id=generation_id,
                image_id=image_id,
                user_id=user_id,
                kind=kind,
                emoji=emoji[:64],
            )
            .on_conflict_do_nothing()
            .returning(m.Feedback.id)
        )
        return inserted is not None

    async def remove_feedback(
        self, generation_id: uuid.UUID, image_id: int | None, user_id: int, kind: FeedbackKind
    ) -> bool:
        # The generation's lock first, as an insert's trigger takes it: deleting first, then
        # waiting in the trigger for an insert that waits for the deleted row, deadlocked.
        await self.session.execute(
            select(m.Generation.id)
            .where(m.Generation.id == generation_id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE
        )
        removed = await self.session.scalar(
            delete(m.Feedback)
            .where(
                m.Feedback.generation_id == generation_id,
                _same_image(image_id),
                m.Feedback.user_id == user_id,
                m.Feedback.kind == kind,
            )
            .returning(m.Feedback.id)
        )
        return removed is not None

    # --------------------------------------------------------------------------------- audit

    async def audit(
        self,
        actor: str,
        action: str,
        subject: str,
        details: dict[str, Any],
        campaign_id: int | None = None,
    ) -> None:
        await self.session.execute(
            insert(m.AuditLog).values(
                actor=actor[:200],
                action=action,
                subject=subject[:200],
                details=details,
                campaign_id=campaign_id,
            )
        )
