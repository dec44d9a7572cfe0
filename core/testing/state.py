"""The state the in-memory fakes share: users, generations, jobs, audit, and the clock.

Tests arrange a ``FakeState`` and assert on it directly."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.domain import (
    Binding,
    Campaign,
    FeedbackKind,
    GenerationKind,
    GenerationStatus,
    Params,
    Platform,
    ReplyTarget,
)

__all__ = ["FakeAudit", "FakeGeneration", "FakeJob", "FakeState", "FakeUser", "channel_key", "now"]


def now() -> datetime:
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
    queued_at: datetime = field(default_factory=now)
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
    at: datetime = field(default_factory=now)


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
    receipts: set[tuple[Platform, str, str]] = field(default_factory=set)  # handled requests
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


def channel_key(target: ReplyTarget) -> tuple[Platform, str, str]:
    return (target.platform, target.workspace_id, target.channel_id)
