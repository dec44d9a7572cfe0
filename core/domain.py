"""The platform-neutral vocabulary that core, the adapters and the worker share.

Frozen dataclasses only: no platform payloads, no database rows, no torch.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import date


class Platform(enum.StrEnum):
    SLACK = "slack"
    DISCORD = "discord"
    CLI = "cli"


class Role(enum.StrEnum):
    MEMBER = "member"  # imagine, react
    REVIEWER = "reviewer"  # approve, reports
    ADMIN = "admin"  # bind, campaigns, reports, cancel anyone's job


class GenerationKind(enum.StrEnum):
    IMAGINE = "imagine"
    VARIATION = "variation"
    UPSCALE = "upscale"
    REROLL = "reroll"


class GenerationStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (GenerationStatus.DONE, GenerationStatus.FAILED, GenerationStatus.CANCELLED)


class FeedbackKind(enum.StrEnum):
    FAVOURITE = "favourite"
    LIKE = "like"
    DISLIKE = "dislike"
    APPROVE = "approve"


@dataclass(frozen=True)
class Actor:
    """Who is asking: a user on a platform, with the roles the adapter resolved for them."""

    platform: Platform
    workspace_id: str
    user_id: str
    display_name: str = ""
    roles: frozenset[Role] = frozenset({Role.MEMBER})

    def has(self, role: Role) -> bool:
        return role in self.roles or Role.ADMIN in self.roles


@dataclass(frozen=True)
class ReplyTarget:
    """Where results go: a channel, optionally a thread in it."""

    platform: Platform
    workspace_id: str
    channel_id: str
    thread_id: str | None = None


@dataclass(frozen=True)
class ImagineRequest:
    """One parsed ``/imagine`` request (permutations are already expanded)."""

    prompt: str
    aspect: str | None = None
    seed: int | None = None
    no: tuple[str, ...] = ()
    n: int | None = None
    steps: int | None = None
    preset: str | None = None
    campaign: str | None = None
    style_raw: bool = False


@dataclass(frozen=True)
class Params:
    """A request resolved against its preset: exactly what the engine runs."""

    prompt: str  # the final prompt, after the preset's template
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    n: int
    engine: str  # "diffusers" | "openai" | "fake"
    model: str
    preset: str
    preset_version: str
    strength: float = 0.6  # img2img strength for variations
    upscaler: str | None = None
    loras: tuple[tuple[str, float], ...] = ()  # (source, weight), from the preset

    def __post_init__(self) -> None:
        # read back from JSON, the pairs are lists: make them hashable tuples again
        object.__setattr__(
            self, "loras", tuple((str(source), float(weight)) for source, weight in self.loras)
        )

    def seeds(self) -> tuple[int, ...]:
        """One seed per image: consecutive, so image i of a batch can be re-made alone."""
        return tuple((self.seed + i) % 2**32 for i in range(self.n))


class ActionKind(enum.StrEnum):
    UPSCALE = "u"
    VARY = "v"
    REROLL = "r"
    CANCEL = "x"


ACTION_PREFIX = "ob"


@dataclass(frozen=True)
class Action:
    """A button. Its id carries all its state: ``ob:<action>:<generation-uuid>:<index>``."""

    kind: ActionKind
    generation_id: uuid.UUID
    index: int = 0  # 1-4 for U/V, 0 for reroll and cancel

    @property
    def custom_id(self) -> str:
        return f"{ACTION_PREFIX}:{self.kind.value}:{self.generation_id}:{self.index}"

    @property
    def label(self) -> str:
        match self.kind:
            case ActionKind.UPSCALE:
                return f"U{self.index}"
            case ActionKind.VARY:
                return f"V{self.index}"
            case ActionKind.REROLL:
                return "🔄"
            case ActionKind.CANCEL:
                return "✖"

    @classmethod
    def parse(cls, custom_id: str) -> Action:
        """Inverse of ``custom_id``; raises ``ValueError`` on anything else."""
        parts = custom_id.split(":")
        if len(parts) != 4 or parts[0] != ACTION_PREFIX:
            raise ValueError(f"not an onbrand action id: {custom_id!r}")
        index = int(parts[3])
        if not 0 <= index <= 4:
            raise ValueError(f"action index out of range: {custom_id!r}")
        return cls(ActionKind(parts[1]), uuid.UUID(parts[2]), index)


@dataclass(frozen=True)
class CardImage:
    """An image to attach: a filename and its encoded bytes."""

    filename: str
    data: bytes
    content_type: str = "image/png"


@dataclass(frozen=True)
class ResultCard:
    """One neutral result; each platform renders it natively."""

    text: str
    images: tuple[CardImage, ...] = ()
    actions: tuple[Action, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()  # (label, value) pairs: seed, preset, campaign
    ephemeral: bool = False


@dataclass(frozen=True)
class Ticket:
    """What ``imagine`` and ``act`` return: enough for the adapter's ack."""

    generation_ids: tuple[uuid.UUID, ...]
    position: int  # 1-based place in the queue of the first generation
    eta_seconds: float | None = None
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Binding:
    """A channel bound to a campaign and/or preset."""

    platform: Platform
    workspace_id: str
    channel_id: str
    preset: str
    campaign: str | None = None
    locked: bool = False


@dataclass(frozen=True)
class Campaign:
    name: str
    preset: str
    starts_on: date | None = None
    ends_on: date | None = None
    gpu_budget_seconds: float | None = None
    rush: bool = False
    id: int | None = None


@dataclass(frozen=True)
class Generation:
    """A recorded generation as the service and the worker see it."""

    id: uuid.UUID
    kind: GenerationKind
    status: GenerationStatus
    user_id: int
    requester: str  # "platform:workspace:user" of who asked
    raw_prompt: str
    params: Params
    reply_target: ReplyTarget
    parent_id: uuid.UUID | None = None
    source_index: int | None = None
    campaign: str | None = None
    campaign_id: int | None = None
    image_count: int = 0
    error: str | None = None
    preset_id: int | None = None


@dataclass(frozen=True)
class MessageRef:
    """A chat message onbrand posted, as the platform identifies it."""

    platform: Platform
    channel_id: str
    message_id: str
