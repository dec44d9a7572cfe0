"""The campaign report as data: frozen dataclasses and nothing else.

``core.reports.build`` fills them from PostgreSQL; ``core.reports.text`` and
``core.reports.html`` render them. How each figure is defined is documented in
``docs/reports.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.memory.duplicates import Cluster
    from core.reports.acceptance import Acceptance

__all__ = [
    "CampaignInfo",
    "CampaignReport",
    "CostSpeed",
    "Engagement",
    "ImageRow",
    "Lineage",
    "LineageStep",
    "Slice",
    "Totals",
]


@dataclass(frozen=True)
class CampaignInfo:
    name: str
    preset: str
    starts_on: date | None
    ends_on: date | None
    gpu_budget_seconds: float | None


@dataclass(frozen=True)
class Totals:
    requests: int  # generations (any kind, any status)
    images: int
    users: int  # distinct requesters
    imagines: int
    variations: int
    upscales: int
    rerolls: int
    done: int
    cancelled: int
    failed: int
    pending: int  # queued or running when the report was made
    blocked_prompts: int  # audit_log 'prompt.blocked' for the campaign
    undelivered: int  # results given up on (channel gone, or failed too often)
    packs: int = 0  # campaign packs made (``pack`` generations with their zip recorded)
    pack_files: int = 0  # placement files in those packs


@dataclass(frozen=True)
class Engagement:
    favourites: int  # image-level ⭐/1️⃣–4️⃣ rows
    grid_favourites: int  # ⭐ on a whole grid
    likes: int  # 👍 rows, image- and grid-level
    dislikes: int  # 👎 rows, image- and grid-level
    approvals: int  # ✅ rows, image- and grid-level
    favourited_images: int  # images with ≥ 1 image-level favourite
    approved_images: int  # images approved directly or through their grid
    favourite_rate: float | None  # favourited_images / images
    approval_rate: float | None  # approved_images / images
    median_seconds_to_first_favourite: float | None  # from the generation's finished_at
    median_seconds_to_approval: float | None


@dataclass(frozen=True)
class CostSpeed:
    gpu_seconds: float
    gpu_seconds_per_approved_image: float | None
    queue_wait_p50: float | None  # started_at − queued_at, seconds, every started generation
    queue_wait_p95: float | None
    generation_p50: float | None  # finished_at − started_at, seconds, done generations
    generation_p95: float | None


@dataclass(frozen=True)
class Slice:
    """One row of a breakdown: a user, a preset version, a UTC day or a platform."""

    key: str  # user label | "preset@version" | "YYYY-MM-DD" | platform
    requests: int
    images: int
    users: int
    favourites: int
    favourited_images: int
    approved_images: int
    favourite_rate: float | None
    approval_rate: float | None
    gpu_seconds: float


@dataclass(frozen=True)
class ImageRow:
    """One image with everything known about it (a CSV row; top and approved entries)."""

    generation_id: str
    index: int
    kind: str
    user: str
    platform: str
    created_at: datetime  # the generation's queued_at
    finished_at: datetime | None
    prompt: str
    final_prompt: str
    seed: int | None  # this image's own seed: the generation's seed + index − 1 (mod 2³²)
    model: str | None
    steps: int | None
    width: int
    height: int
    preset: str
    preset_version: str
    favourites: int
    likes: int
    dislikes: int
    grid_favourites: int
    grid_likes: int
    grid_dislikes: int
    approved: bool
    approved_by: tuple[str, ...]
    approved_at: datetime | None
    palette_score: float | None
    storage_key: str


@dataclass(frozen=True)
class LineageStep:
    depth: int  # 0 is the approved image's own generation, 1 its parent, …
    generation_id: str
    kind: str
    used_index: int | None  # which of this generation's images the next step was made from
    user: str
    prompt: str
    created_at: datetime
    storage_key: str | None = None  # the image at ``used_index`` (None at depth 0, or if gone)


@dataclass(frozen=True)
class Lineage:
    generation_id: str
    index: int
    storage_key: str
    steps: tuple[LineageStep, ...]


@dataclass(frozen=True)
class CampaignReport:
    campaign: CampaignInfo
    since: date | None
    until: date | None
    generated_at: datetime
    pseudonymised: bool
    totals: Totals
    engagement: Engagement
    cost: CostSpeed
    per_user: tuple[Slice, ...]
    per_preset_version: tuple[Slice, ...]
    per_day: tuple[Slice, ...]
    per_platform: tuple[Slice, ...]
    top_images: tuple[ImageRow, ...]  # most favourited first
    approved_images: tuple[ImageRow, ...]  # in order of approval
    lineage: tuple[Lineage, ...]  # one per approved image, same order
    # the contact sheet: the newest ``sheet`` images of done generations, newest generation
    # first, each generation's images in index order (``totals.images`` − this = how many more)
    recent_images: tuple[ImageRow, ...]
    images: tuple[ImageRow, ...] | None  # every image; None when built without them
    # approved images of the campaign with approved near-duplicates (any campaign), by pHash
    near_duplicates: tuple[Cluster, ...] = ()
    # favourite / approval / upscale / reroll rates per week, model and preset version
    acceptance: tuple[Acceptance, ...] = ()
