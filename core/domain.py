"""The platform-neutral vocabulary that core, the adapters and the worker share.

Frozen dataclasses only: no platform payloads, no database rows, no torch.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Final


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
    IMAGE_PROMPT = "image_prompt"  # img2img from an upload (--image, "Imagine from this image")
    PRODUCT = "product"  # a scene generated around an unchanged product upload (--product)
    ZOOM_OUT = "zoom_out"  # one image, shrunk in the centre, the border generated
    PAN = "pan"  # one image, the canvas extended by half in one direction
    VARY_REGION = "vary_region"  # one image, a region of it generated again
    PACK = "pack"  # one image → every placement, a zip (core.jobs.packs); no images of its own


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
    style_code: str | None = None  # --style CODE (--sref): a registered style code
    style_weight: int | None = None  # --sw 0-1000, Midjourney's style weight (100: the preset's)


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
    # Images in (core.service.images_in): the sha256 of the user's upload, the image-store key
    # of the pixels the engine starts from (the upload, or the cut-out product as placed), and
    # for a product shot the product's box on the canvas (x, y, width, height).
    upload: str | None = None
    init_image: str | None = None
    product_box: tuple[int, int, int, int] | None = None
    # Edits (core.service.edits): the region generated again (vary region); for zoom-out and
    # pan ``product_box`` is the box of the original kept bit-identical.
    edit_region: tuple[int, int, int, int] | None = None
    # IPTC AIPromptInformation: set only when the campaign lets the prompt travel; the writer is
    # a pseudonym (the reports' formula)
    prompt_writer: str | None = None
    # The campaign keeps its prompts private: no file carries them (A1111 parameters, IPTC)
    confidential: bool = False
    loras: tuple[tuple[str, float], ...] = ()  # (source, weight), from the preset
    # A pack (core.service.pack_jobs): the placement names asked for; () for the preset's list
    placements: tuple[str, ...] = ()
    # Reference images (core.service.styles): the style code, its IP-Adapter scale, where its
    # references are ("store:<image-store key>" or "file:<path>") and the adapter
    # (source, subfolder, weight file, image encoder folder)
    style_code: str | None = None
    style_weight: float = 0.0
    style_refs: tuple[str, ...] = ()
    style_adapter: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "placements", tuple(str(name) for name in self.placements))
        # read back from JSON, the pairs are lists: make them hashable tuples again
        object.__setattr__(
            self, "loras", tuple((str(source), float(weight)) for source, weight in self.loras)
        )
        object.__setattr__(self, "style_refs", tuple(self.style_refs))
        object.__setattr__(self, "style_adapter", tuple(self.style_adapter))

    def seeds(self) -> tuple[int, ...]:
        """One seed per image: consecutive, so image i of a batch can be re-made alone."""
        return tuple((self.seed + i) % 2**32 for i in range(self.n))


class ActionKind(enum.StrEnum):
    UPSCALE = "u"
    VARY = "v"
    REROLL = "r"
    CANCEL = "x"
    # Edits of a single image (core.service.edits), on an upscale's result
    ZOOM_OUT_2 = "z2"
    ZOOM_OUT_15 = "zh"
    PAN_LEFT = "pl"
    PAN_RIGHT = "pr"
    PAN_UP = "pu"
    PAN_DOWN = "pd"
    VARY_REGION = "vr"  # a select menu of regions (core.imaging.canvas.REGIONS); the value picks
    REMIX = "rm"  # opens a form: the prompt edited, seed and parameters kept (core.service.remix)
    OPEN = "o"  # a search result: show the original (core.memory)
    LIKE = "l"  # a search result: more like this image
    PACK = "pk"  # a campaign pack of one image, its preset's placements (core.service.pack_jobs)
    PACK_SELECT = "ps"  # a menu of the preset's placements (``Action.choices``); the values pick


EDIT_ACTIONS: dict[ActionKind, tuple[str, float | str]] = {
    ActionKind.ZOOM_OUT_2: ("zoom", 2.0),
    ActionKind.ZOOM_OUT_15: ("zoom", 1.5),
    ActionKind.PAN_LEFT: ("pan", "left"),
    ActionKind.PAN_RIGHT: ("pan", "right"),
    ActionKind.PAN_UP: ("pan", "up"),
    ActionKind.PAN_DOWN: ("pan", "down"),
}


ACTION_PREFIX = "ob"


@dataclass(frozen=True)
class Action:
    """A button. Its id carries all its state: ``ob:<action>:<generation-uuid>:<index>``."""

    kind: ActionKind
    generation_id: uuid.UUID
    index: int = 0  # 1-4 for U/V, 0 for reroll and cancel
    caption: str = field(default="", compare=False)  # a label other than the default one
    # A menu's (value, label) options, where they depend on the result (PACK_SELECT)
    choices: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def custom_id(self) -> str:
        return f"{ACTION_PREFIX}:{self.kind.value}:{self.generation_id}:{self.index}"

    @property
    def label(self) -> str:
        if self.caption:
            return self.caption
        match self.kind:
            case ActionKind.UPSCALE:
                return f"U{self.index}"
            case ActionKind.VARY:
                return f"V{self.index}"
            case ActionKind.REROLL:
                return "🔄"
            case ActionKind.CANCEL:
                return "✖"
            case ActionKind.ZOOM_OUT_2:
                return "Zoom out 2×"
            case ActionKind.ZOOM_OUT_15:
                return "Zoom out 1.5×"
            case ActionKind.PAN_LEFT:
                return "⬅"
            case ActionKind.PAN_RIGHT:
                return "➡"
            case ActionKind.PAN_UP:
                return "⬆"
            case ActionKind.PAN_DOWN:
                return "⬇"
            case ActionKind.VARY_REGION:
                return "Vary (Region)"
            case ActionKind.REMIX:
                return "Remix"
            case ActionKind.OPEN:
                return f"Open {self.index}"
            case ActionKind.LIKE:
                return f"Like {self.index}"
            case ActionKind.PACK:
                return "📦 Pack"
            case ActionKind.PACK_SELECT:
                return "📦 Pack only…"

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


class ImageMode(enum.StrEnum):
    """What an uploaded image is for."""

    IMAGE_PROMPT = "image_prompt"  # start from it (img2img), --iw says how closely
    PRODUCT = "product"  # keep it unchanged and generate the scene around it


@dataclass(frozen=True)
class Upload:
    """An image a user gave onbrand, after the checks: stored by content hash (``storage_key``)."""

    id: int
    sha256: str
    storage_key: str
    mime: str  # what the upload really was (from its bytes)
    width: int
    height: int
    size: int  # bytes as uploaded
    has_alpha: bool
    notes: tuple[str, ...] = ()  # what was done to it, for the user (first frame, colour, ...)


@dataclass(frozen=True)
class Binding:
    """A channel bound to a campaign and/or preset."""

    platform: Platform
    workspace_id: str
    channel_id: str
    preset: str
    campaign: str | None = None
    locked: bool = False


GATES: Final = ("pack", "export")  # what a campaign may require a reviewer's approval for


@dataclass(frozen=True)
class Campaign:
    name: str
    preset: str
    starts_on: date | None = None
    ends_on: date | None = None
    gpu_budget_seconds: float | None = None
    rush: bool = False
    id: int | None = None
    share_prompt: bool = False  # the prompt may travel in the files (IPTC AIPromptInformation)
    require_approval: tuple[str, ...] = ()  # "pack", "export": only approved images


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


@dataclass(frozen=True)
class RequestKey:
    """What a platform gives to tell a redelivered request from a new one: Slack's
    ``trigger_id`` of a command or click or ``event_id`` of an event, a Discord interaction id.
    A copy (a replay, a retry, a redelivery after a resume or a restart) carries the same key;
    two requests by a person carry two. The service records it with the request's own writes
    and answers a copy with ``core.errors.DuplicateRequest``."""

    platform: Platform
    kind: str  # "command", "action", "event", "interaction"
    id: str


@dataclass(frozen=True)
class NewGeneration:
    """What the service records for one request, before the queue takes it."""

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
    upload_id: int | None = None  # the upload it starts from (image prompt, product shot)


@dataclass(frozen=True)
class NewUpload:
    """A checked, cleaned and stored upload, to be recorded (``core.service.uploads``)."""

    actor: Actor
    where: ReplyTarget | None
    campaign_id: int | None
    sha256: str
    storage_key: str
    mime: str
    size: int
    width: int
    height: int
    has_alpha: bool
    notes: tuple[str, ...] = ()
