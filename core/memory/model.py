"""What a search asks and what it answers: plain dataclasses the service and the adapters share."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

from core.errors import UserError

MAX_RESULTS = 50
DEFAULT_RESULTS = 10
MAX_CARD_RESULTS = 8  # a chat card: three buttons per result, at most 25 buttons a message
NEAR_DUPLICATE_BITS = 6  # perceptual hashes this close (of 64 bits) are the same picture


@dataclass(frozen=True)
class Scope:
    """Whose work a search may read: one workspace (``platform``, its external id), or, for
    the operator's own CLI on the machine that holds the database, every workspace."""

    platform: str | None = None
    workspace: str | None = None

    @property
    def everywhere(self) -> bool:
        return self.platform is None


@dataclass(frozen=True)
class ImageRef:
    """One image of a generation, as ``GEN:INDEX`` (index 1-based, as on the buttons)."""

    generation_id: uuid.UUID
    index: int

    @classmethod
    def parse(cls, text: str, option: str = "--like") -> ImageRef:
        gen, sep, index = text.strip().rpartition(":")
        try:
            ref = cls(uuid.UUID(gen), int(index)) if sep else cls(uuid.UUID(text.strip()), 1)
        except ValueError:
            raise UserError(
                f"{option} {text[:80]!r}: give a generation id and an image number, e.g. "
                "9b5f0c1e-…:2 (the number defaults to 1)."
            ) from None
        if not 1 <= ref.index <= 4:
            raise UserError(f"{option}: the image number is 1 to 4, not {ref.index}.")
        return ref

    def __str__(self) -> str:
        return f"{self.generation_id}:{self.index}"


@dataclass(frozen=True)
class SearchFilters:
    campaign: str | None = None
    approved: bool = False
    favourites: bool = False
    since: date | None = None
    user: str | None = None
    like: ImageRef | None = None
    limit: int = DEFAULT_RESULTS
    collapse: bool = False  # show one image of each group of near-duplicates

    def check(self) -> SearchFilters:
        if self.approved and self.favourites:
            raise UserError("Choose one of --approved or --favourites, not both.")
        if not 1 <= self.limit <= MAX_RESULTS:
            raise UserError(f"--limit {self.limit}: give a number from 1 to {MAX_RESULTS}.")
        return self


@dataclass(frozen=True)
class Hit:
    """One image a search found, best first."""

    generation_id: uuid.UUID
    index: int
    prompt: str
    campaign: str | None
    user: str  # the reports' pseudonym (user-<10 hex>)
    created_at: datetime
    status: str
    kind: str
    approved: bool
    favourites: int
    storage_key: str
    score: float
    distance: int | None = None  # Hamming distance of perceptual hashes (--like)
    phash: int | None = field(default=None, repr=False)

    @property
    def ref(self) -> ImageRef:
        return ImageRef(self.generation_id, self.index)


@dataclass(frozen=True)
class SearchResult:
    query: str
    filters: SearchFilters
    hits: tuple[Hit, ...] = ()
    notes: tuple[str, ...] = field(default=())  # e.g. "more like this by perceptual hash"
