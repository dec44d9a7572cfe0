"""``FakeRepository``: the repository port over a ``FakeState``, keeping the contract the
PostgreSQL repository keeps (``tests/contract`` runs one suite over both)."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.domain import (
    Actor,
    Binding,
    Campaign,
    FeedbackKind,
    Generation,
    GenerationStatus,
    MessageRef,
    NewGeneration,
    ReplyTarget,
)
from core.errors import NotFound, UserError
from core.testing.state import FakeAudit, FakeGeneration, FakeState, FakeUser, channel_key, now

__all__ = ["FakeRepository"]


class FakeRepository:
    """``Repository`` on a ``FakeState``."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def ensure_user(self, actor: Actor) -> int:
        s = self.state
        if (actor.platform, actor.workspace_id) not in s.workspaces:
            s.workspaces[actor.platform, actor.workspace_id] = s.new_id()
        for user in s.users.values():
            if (user.platform, user.workspace_id, user.external_id) == (
                actor.platform,
                actor.workspace_id,
                actor.user_id,
            ):
                if actor.display_name:
                    user.display_name = actor.display_name[:200]
                return user.id
        user = FakeUser(
            s.new_id(),
            actor.platform,
            actor.workspace_id,
            actor.user_id,
            actor.display_name[:200],
        )
        s.users[user.id] = user
        return user.id

    async def binding_for(self, target: ReplyTarget) -> Binding | None:
        return self.state.bindings.get(channel_key(target))

    async def save_binding(self, binding: Binding, created_by: int) -> None:
        if binding.campaign is not None and binding.campaign not in self.state.campaigns:
            raise NotFound(
                f"There is no campaign named “{binding.campaign}”. "
                "Create it first, or bind the channel without a campaign."
            )
        key = (binding.platform, binding.workspace_id, binding.channel_id)
        self.state.bindings[key] = binding
        self.state.binding_creators[key] = created_by

    async def delete_binding(self, target: ReplyTarget) -> bool:
        self.state.binding_creators.pop(channel_key(target), None)
        return self.state.bindings.pop(channel_key(target), None) is not None

    async def campaign(self, name: str) -> Campaign | None:
        return self.state.campaigns.get(name)

    async def campaigns(self) -> list[Campaign]:
        return sorted(self.state.campaigns.values(), key=lambda c: c.name)

    async def add_campaign(self, campaign: Campaign, owner_id: int | None) -> Campaign:
        if campaign.name in self.state.campaigns:
            raise UserError(
                f"A campaign named “{campaign.name}” already exists. Pick another name."
            )
        stored = dataclasses.replace(campaign, id=self.state.new_id())
        self.state.campaigns[campaign.name] = stored
        self.state.campaign_owners[campaign.name] = owner_id
        return stored

    async def record_preset(self, name: str, version: str, text: str) -> int:
        if (name, version) not in self.state.presets:
            self.state.presets[name, version] = (self.state.new_id(), text)
        return self.state.presets[name, version][0]

    async def add_generation(self, generation: NewGeneration) -> None:
        if generation.id in self.state.generations:
            raise ValueError(f"generation {generation.id} is already recorded")
        self.state.generations[generation.id] = FakeGeneration(
            id=generation.id,
            kind=generation.kind,
            platform=generation.platform,
            user_id=generation.user_id,
            campaign_id=generation.campaign_id,
            preset_id=generation.preset_id,
            raw_prompt=generation.raw_prompt,
            params=generation.params,
            reply_target=generation.reply_target,
            parent_id=generation.parent_id,
            source_index=generation.source_index,
        )

    async def generation(self, generation_id: uuid.UUID) -> Generation | None:
        row = self.state.generations.get(generation_id)
        if row is None:
            return None
        user = self.state.users[row.user_id]
        campaign = next(
            (c.name for c in self.state.campaigns.values() if c.id == row.campaign_id), None
        )
        return Generation(
            id=row.id,
            kind=row.kind,
            status=row.status,
            user_id=row.user_id,
            requester=f"{user.platform.value}:{user.workspace_id}:{user.external_id}",
            raw_prompt=row.raw_prompt,
            params=row.params,
            reply_target=row.reply_target,
            parent_id=row.parent_id,
            source_index=row.source_index,
            campaign=campaign,
            campaign_id=row.campaign_id,
            image_count=len(self.state.images.get(row.id, {})),
            error=row.error,
            preset_id=row.preset_id,
        )

    async def images_requested_since(self, user_id: int, since: datetime) -> int:
        return sum(
            g.params.n
            for g in self.state.generations.values()
            if g.user_id == user_id
            and g.queued_at >= since
            and g.status not in (GenerationStatus.FAILED, GenerationStatus.CANCELLED)
        )

    async def active_count(self, user_id: int) -> int:
        return sum(
            1
            for g in self.state.generations.values()
            if g.user_id == user_id
            and g.status in (GenerationStatus.QUEUED, GenerationStatus.RUNNING)
        )

    async def campaign_gpu_seconds(self, campaign_id: int) -> float:
        return sum(
            g.gpu_seconds or 0.0
            for g in self.state.generations.values()
            if g.campaign_id == campaign_id
        )

    async def set_status(
        self,
        generation_id: uuid.UUID,
        status: GenerationStatus,
        *,
        only_from: Sequence[str],
        error: str | None = None,
    ) -> bool:
        sources = {GenerationStatus(s) for s in only_from}
        row = self.state.generations.get(generation_id)
        if row is None or row.status not in sources:
            return False
        row.status = status
        if error is not None:
            row.error = error
        if status is GenerationStatus.RUNNING:
            row.started_at = now()
        if status.finished:
            row.finished_at = now()
        return True

    async def record_message(self, generation_id: uuid.UUID, ref: MessageRef, role: str) -> None:
        self.state.messages[ref.platform, ref.channel_id, ref.message_id] = (generation_id, role)

    async def generation_for_message(self, ref: MessageRef) -> uuid.UUID | None:
        found = self.state.messages.get((ref.platform, ref.channel_id, ref.message_id))
        if found is None or found[1] != "result":
            return None
        return found[0]

    async def image_ids(self, generation_id: uuid.UUID) -> dict[int, int]:
        return dict(self.state.images.get(generation_id, {}))

    async def add_feedback(
        self,
        generation_id: uuid.UUID,
        image_id: int | None,
        user_id: int,
        kind: FeedbackKind,
        emoji: str,
    ) -> bool:
        key = (user_id, generation_id, image_id, kind)
        if key in self.state.feedback:
            return False
        self.state.feedback[key] = emoji
        return True

    async def remove_feedback(
        self, generation_id: uuid.UUID, image_id: int | None, user_id: int, kind: FeedbackKind
    ) -> bool:
        return self.state.feedback.pop((user_id, generation_id, image_id, kind), None) is not None

    async def audit(
        self,
        actor: str,
        action: str,
        subject: str,
        details: dict[str, Any],
        campaign_id: int | None = None,
    ) -> None:
        self.state.audit_log.append(
            FakeAudit(actor, action, subject, copy.deepcopy(details), campaign_id)
        )
