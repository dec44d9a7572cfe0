"""In-memory fakes of the ports, for fast unit tests of the service and the worker.

``FakeRepository``, ``FakeJobQueue`` and ``FakeUnitOfWork`` share one ``FakeState``;
tests arrange it and assert on it directly. The fakes keep the contracts the real implementations
keep (``tests/contract`` runs one suite over both): a unit of work that isn't committed leaves the
state as it found it, and the queue hands jobs out in pgqueuer's order (priority, then arrival).
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgqueuer.errors import DuplicateJobError

from core.db.queue import ETA_HISTORY
from core.domain import (
    Actor,
    Binding,
    Campaign,
    FeedbackKind,
    Generation,
    GenerationKind,
    GenerationStatus,
    MessageRef,
    Params,
    Platform,
    ReplyTarget,
    ResultCard,
)
from core.errors import NotFound, UserError
from core.ports import JobQueue, NewGeneration, Repository, UnitOfWorkFactory

__all__ = [
    "FakeAudit",
    "FakeGeneration",
    "FakeJob",
    "FakeJobQueue",
    "FakeRepository",
    "FakeState",
    "FakeUnitOfWork",
    "FakeUser",
    "RecordingSink",
    "fake_uow_factory",
]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeUser:
    id: int
    platform: Platform
    workspace_id: str  # the platform's id of the workspace
    external_id: str
    display_name: str = ""


@dataclass
class FakeGeneration:
    """A generations row."""

    id: uuid.UUID
    kind: GenerationKind
    platform: Platform
    user_id: int
    campaign_id: int | None
    preset_id: int
    raw_prompt: str
    params: Params
    reply_target: ReplyTarget
    parent_id: uuid.UUID | None = None
    source_index: int | None = None
    status: GenerationStatus = GenerationStatus.QUEUED
    queued_at: datetime = field(default_factory=_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    gpu_seconds: float | None = None
    error: str | None = None


@dataclass
class FakeJob:
    generation_id: uuid.UUID
    priority: int
    seq: int  # arrival order, like pgqueuer's job id


@dataclass
class FakeAudit:
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    campaign_id: int | None
    at: datetime = field(default_factory=_now)


@dataclass
class FakeState:
    """Everything the fakes store; a rollback restores all of it."""

    workspaces: dict[tuple[Platform, str], int] = field(default_factory=dict)
    users: dict[int, FakeUser] = field(default_factory=dict)
    bindings: dict[tuple[Platform, str, str], Binding] = field(default_factory=dict)
    binding_creators: dict[tuple[Platform, str, str], int] = field(default_factory=dict)
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    campaign_owners: dict[str, int | None] = field(default_factory=dict)
    presets: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    generations: dict[uuid.UUID, FakeGeneration] = field(default_factory=dict)
    messages: dict[tuple[Platform, str, str], tuple[uuid.UUID, str]] = field(default_factory=dict)
    images: dict[uuid.UUID, dict[int, int]] = field(default_factory=dict)
    feedback: dict[tuple[int, uuid.UUID, int | None, FeedbackKind], str] = field(
        default_factory=dict
    )
    audit_log: list[FakeAudit] = field(default_factory=list)
    jobs: list[FakeJob] = field(default_factory=list)  # waiting, in arrival order
    claimed: dict[uuid.UUID, FakeJob] = field(default_factory=dict)  # taken by a worker
    workers: int = 1  # what the ETA divides by
    last_id: int = 0

    def new_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def add_image(self, generation_id: uuid.UUID, index: int) -> int:
        """Record image ``index`` (1-based) of a generation, as the worker would; its id."""
        image_id = self.new_id()
        self.images.setdefault(generation_id, {})[index] = image_id
        return image_id

    def snapshot(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def restore(self, snapshot: dict[str, Any]) -> None:
        for name, value in snapshot.items():
            setattr(self, name, copy.deepcopy(value))


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
        return self.state.bindings.get(_channel(target))

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
        self.state.binding_creators.pop(_channel(target), None)
        return self.state.bindings.pop(_channel(target), None) is not None

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
        self, generation_id: uuid.UUID, status: GenerationStatus, *, only_from: Sequence[str]
    ) -> bool:
        sources = {GenerationStatus(s) for s in only_from}
        row = self.state.generations.get(generation_id)
        if row is None or row.status not in sources:
            return False
        row.status = status
        if status is GenerationStatus.RUNNING:
            row.started_at = _now()
        if status.finished:
            row.finished_at = _now()
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


def _channel(target: ReplyTarget) -> tuple[Platform, str, str]:
    return (target.platform, target.workspace_id, target.channel_id)


class RecordingSink:
    """``ChatSink`` in memory: every status card shown and every result posted, in order.

    ``shown(ref)`` is what a status message shows now (the latest card: latest wins, nothing is
    dropped on the way); ``results`` are the posted results with the message each became.
    ``refuse_next`` makes the next post raise, as a platform refusing it does.
    """

    def __init__(
        self, platform: Platform = Platform.CLI, *, max_upload_bytes: int = 8 * 1024 * 1024
    ) -> None:
        self.platform = platform
        self.max_upload_bytes = max_upload_bytes
        self.statuses: dict[MessageRef, list[ResultCard]] = {}
        self.results: list[tuple[ReplyTarget, ResultCard, MessageRef]] = []
        self.flushes = 0
        self._refuse = 0

    def refuse_next(self, times: int = 1) -> None:
        self._refuse += times

    def shown(self, ref: MessageRef) -> ResultCard | None:
        cards = self.statuses.get(ref)
        return cards[-1] if cards else None

    async def update_status(self, ref: MessageRef, card: ResultCard) -> None:
        self.statuses.setdefault(ref, []).append(card)

    async def post_result(
        self, target: ReplyTarget, card: ResultCard, generation: Generation
    ) -> MessageRef:
        if self._refuse:
            self._refuse -= 1
            raise ConnectionError(f"{self.platform.value} refused the post (a test's wish)")
        channel = target.thread_id or target.channel_id
        ref = MessageRef(self.platform, channel, f"m{len(self.results) + 1}")
        self.results.append((target, card, ref))
        return ref

    async def flush(self) -> None:
        self.flushes += 1


class FakeJobQueue:
    """``JobQueue`` on a ``FakeState``: pgqueuer's order, priority DESC then arrival."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def waiting(self) -> list[uuid.UUID]:
        """Waiting generations in the order workers will take them."""
        return [job.generation_id for job in self._ordered()]

    def claim(self) -> uuid.UUID | None:
        """Take the next job, as a worker's dequeue would; None when nothing waits."""
        ordered = self._ordered()
        if not ordered:
            return None
        job = ordered[0]
        self.state.jobs.remove(job)
        self.state.claimed[job.generation_id] = job
        return job.generation_id

    def release(self, generation_id: uuid.UUID) -> None:
        """The worker is done with a claimed job (finished, failed or cancelled)."""
        self.state.claimed.pop(generation_id, None)

    def _ordered(self) -> list[FakeJob]:
        return sorted(self.state.jobs, key=lambda job: (-job.priority, job.seq))

    async def enqueue(self, generation_id: uuid.UUID, *, priority: int) -> None:
        if generation_id in self.state.claimed or any(
            job.generation_id == generation_id for job in self.state.jobs
        ):
            raise DuplicateJobError([str(generation_id)])
        self.state.jobs.append(FakeJob(generation_id, priority, self.state.new_id()))

    async def remove(self, generation_id: uuid.UUID) -> bool:
        for job in self.state.jobs:
            if job.generation_id == generation_id:
                self.state.jobs.remove(job)
                return True
        return False

    async def position(self, generation_id: uuid.UUID) -> int | None:
        for place, job in enumerate(self._ordered(), start=1):
            if job.generation_id == generation_id:
                return place
        return None

    async def eta_seconds(self, generation_id: uuid.UUID) -> float | None:
        position = await self.position(generation_id)
        target = self.state.generations.get(generation_id)
        if position is None or target is None:
            return None
        done = sorted(
            (
                g
                for g in self.state.generations.values()
                if g.status is GenerationStatus.DONE
                and g.params.model == target.params.model
                and g.started_at is not None
                and g.finished_at is not None
            ),
            key=lambda g: g.finished_at or g.queued_at,
            reverse=True,
        )[:ETA_HISTORY]
        if not done:
            return None
        median = statistics.median(
            ((g.finished_at or g.queued_at) - (g.started_at or g.queued_at)).total_seconds()
            for g in done
        )
        return position * median / max(1, self.state.workers)


class FakeUnitOfWork:
    """``UnitOfWork`` on a ``FakeState``: a snapshot on enter, restored unless committed.

    There is no isolation: units of work that interleave on one state (``asyncio.gather``) see
    each other's changes, and a rollback restores the state as this one found it.
    """

    repo: Repository  # a FakeRepository on ``state``
    queue: JobQueue  # a FakeJobQueue on ``state``: ``FakeJobQueue(state).waiting()`` in tests

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.repo = FakeRepository(state)
        self.queue = FakeJobQueue(state)
        self.commits = 0
        self._snapshot: dict[str, Any] | None = None

    async def __aenter__(self) -> FakeUnitOfWork:
        if self._snapshot is not None:
            raise RuntimeError("this unit of work is already open")
        self._snapshot = self.state.snapshot()
        return self

    async def __aexit__(self, *exc: object) -> None:
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None:
            self.state.restore(snapshot)

    async def commit(self) -> None:
        if self._snapshot is None:
            raise RuntimeError("commit outside of `async with`")
        self._snapshot = self.state.snapshot()
        self.commits += 1


def fake_uow_factory(state: FakeState) -> UnitOfWorkFactory:
    """A fresh ``FakeUnitOfWork`` on ``state`` per call."""

    def factory() -> FakeUnitOfWork:
        return FakeUnitOfWork(state)

    return factory
