"""What core needs from the outside world, as Protocols.

Each port has a real implementation (wired in ``core.bootstrap``) and an in-memory fake in
``core.testing`` for fast unit tests. Contract tests in ``tests/`` run against both.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from core.domain import (
    Actor,
    Binding,
    Campaign,
    FeedbackKind,
    Generation,
    GenerationStatus,
    MessageRef,
    NewGeneration,
    NewUpload,
    Platform,
    ReplyTarget,
    RequestKey,
    ResultCard,
    Upload,
)

# progress(job_id, step, total_steps): called from the engine as denoising advances,
# always on the event loop that awaits the engine call.
ProgressFn = Callable[[str, int, int], None]
# cancelled(job_id) -> True when the job should stop at the next step. Engines may poll it from
# their worker thread (DiffusersEngine does, after every step): keep it quick and thread-safe.
CancelledFn = Callable[[str], bool]


@dataclass(frozen=True)
class StyleJob:
    """A style code's reference images through an IP-Adapter (``core.engines.ip_adapter``):
    the adapter's folder or hub id, its subfolder and weight file, the CLIP image encoder's
    folder (inside the subfolder, as diffusers' ``load_ip_adapter`` takes it) and the scale."""

    code: str
    images: tuple[Image.Image, ...]
    scale: float
    adapter: str
    subfolder: str = ""
    weight_name: str = "ip-adapter.safetensors"
    image_encoder: str = "image_encoder"

    def same_look(self, other: StyleJob | None) -> bool:
        """Whether ``other`` runs the same references, adapter and scale (one batch)."""
        return other is not None and (
            self.code,
            self.scale,
            self.adapter,
            self.subfolder,
            self.weight_name,
        ) == (other.code, other.scale, other.adapter, other.subfolder, other.weight_name)


@dataclass(frozen=True)
class GenerateJob:
    """One text-to-image job inside a batch; ``len(seeds)`` images, one seed each."""

    job_id: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seeds: tuple[int, ...]
    # (source, weight) of each LoRA to apply; jobs in one batch share them (core.engines.loras)
    loras: tuple[tuple[str, float], ...] = ()
    style: StyleJob | None = None  # reference images; jobs in one batch share them


@dataclass(frozen=True)
class VaryJob:
    """An image-to-image variation of ``image``."""

    job_id: str
    image: Image.Image
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    strength: float
    seeds: tuple[int, ...]
    loras: tuple[tuple[str, float], ...] = ()  # as GenerateJob.loras
    style: StyleJob | None = None  # as GenerateJob.style


@dataclass(frozen=True)
class InpaintJob:
    """Generate where ``mask`` is white and keep ``image`` where it is black (same size)."""

    job_id: str
    image: Image.Image
    mask: Image.Image
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Sampling:
    """How an engine made a job's images, in AUTOMATIC1111's words (the PNG ``parameters``).

    ``sampler`` is A1111's sampler name (``Euler a``, ``DPM++ 2M``, ...; where A1111 has no name
    for it, the engine's own, e.g. a diffusers scheduler class), ``schedule_type`` A1111's
    "Schedule type" (``Karras``, ``Simple``, ...) and ``model_hash`` A1111's short model hash
    (10 hex digits). Engines report what the call really used; ``core.engines.diffusers``
    documents the map from diffusers' schedulers.
    """

    sampler: str
    schedule_type: str | None = None
    model_hash: str | None = None


@dataclass(frozen=True)
class JobResult:
    """The images of one job, or ``cancelled`` with none.

    ``sampling`` says how they were made; ``None`` when the engine can't say (the worker then
    writes the engine's name as the sampler).
    """

    job_id: str
    images: tuple[Image.Image, ...]
    cancelled: bool = False
    sampling: Sampling | None = None


@dataclass(frozen=True)
class UpscaleResult:
    image: Image.Image
    method: str  # "model:<id>" or "resampled:lanczos"


class Engine(Protocol):
    """Turns jobs into pixels. ``model`` is per call: a hub id, a local folder or ``tiny``."""

    name: str

    async def generate(
        self,
        model: str,
        jobs: Sequence[GenerateJob],
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> list[JobResult]:
        """Run compatible jobs (same size, steps, guidance) together; results in job order."""
        ...

    async def vary(
        self,
        model: str,
        job: VaryJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult: ...

    async def upscale(
        self, model: str, image: Image.Image, factor: int = 2, upscaler: str | None = None
    ) -> UpscaleResult: ...


@runtime_checkable
class Inpainter(Protocol):
    """An engine that can also inpaint (product shots): ``DiffusersEngine``, ``FakeEngine``."""

    async def inpaint(
        self,
        model: str,
        job: InpaintJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult: ...


class Matter(Protocol):
    """Cuts a product out of a photo (product shots): ``core.imaging.matting`` has the key-out
    from the borders (the default) and a learned ONNX model from a local folder."""

    name: str

    def alpha(self, image: Image.Image) -> Image.Image:
        """The product's alpha (``L``, the image's size, 255 = product); a ``UserError`` saying
        what to send when no clear product is found. Blocking: call it off the event loop."""
        ...


class Engines(Protocol):
    """Engines by kind (``diffusers``, ``openai``, ``fake``): ``core.engines.registry``."""

    def get(self, kind: str) -> Engine:
        """The engine for ``kind``; raises ``LookupError`` when there is none."""
        ...


class ImageStore(Protocol):
    """Content-addressed bytes: ``put`` returns the key; the same bytes are stored once."""

    async def put(self, data: bytes, *, suffix: str = ".png") -> str: ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...


class Embedder(Protocol):
    """CLIP-style embeddings: images and texts into one space, unit length, so the cosine
    distance of a text's and an image's vectors says how well they match (and two images',
    how alike they look). Blocking and CPU- or GPU-heavy: call from a thread
    (``asyncio.to_thread``). ``name`` is stored with every vector: vectors of different models
    never meet."""

    @property
    def name(self) -> str: ...

    @property
    def dims(self) -> int: ...

    def embed_images(self, images: Sequence[Image.Image]) -> list[list[float]]: ...

    def embed_texts(self, texts: Sequence[str]) -> list[list[float]]: ...


class Undeliverable(Exception):
    """A ``ChatSink`` refused a post for good: the channel is gone, archived, or the bot was
    removed from it. ``reason`` says so in the platform's words; the delivery stops trying."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChatSink(Protocol):
    """A chat platform as the ``Delivery`` and the chat flow use it: edit a status message
    (latest wins; never blocks, the last edit is never dropped), post a result as an ordinary
    bot message (raising when the platform refuses it, so the sweep retries), and send what is
    still pending (``flush``, at shutdown)."""

    platform: Platform
    max_upload_bytes: int

    async def update_status(self, ref: MessageRef, card: ResultCard) -> None: ...

    async def post_result(
        self,
        target: ReplyTarget,
        card: ResultCard,
        generation: Generation,
        *,
        earlier_attempt: datetime | None = None,
    ) -> MessageRef:
        """Post the result; ``earlier_attempt``: when an earlier attempt began, whose answer was
        lost (it may have posted: a sink that can tell looks before posting again)."""
        ...

    async def flush(self) -> None: ...


class UploadRecords(Protocol):
    """The ``uploads`` rows: each ``add`` is its own transaction (the user's row with it)."""

    async def add(self, upload: NewUpload) -> Upload: ...

    async def get(self, upload_id: int) -> Upload | None: ...

    async def image_key(self, generation_id: uuid.UUID, index: int) -> str | None:
        """The image-store key of image ``index`` (1-based) of a generation (what edits take)."""
        ...

    async def clean_key(self, generation_id: uuid.UUID, index: int) -> str | None:
        """The key of image ``index``'s logo-free master (packs start from it), if it has one."""
        ...

    async def approvals(self, generation_id: uuid.UUID, index: int) -> int:
        """How many approvals image ``index`` has (of it, or of its whole generation)."""
        ...


class Repository(Protocol):
    """onbrand's records, inside one unit of work (transaction)."""

    async def ensure_user(self, actor: Actor) -> int:
        """The user's id, creating the workspace and user rows on first sight."""
        ...

    async def binding_for(self, target: ReplyTarget) -> Binding | None: ...

    async def save_binding(self, binding: Binding, created_by: int) -> None:
        """Create or replace the channel's binding."""
        ...

    async def delete_binding(self, target: ReplyTarget) -> bool: ...

    async def campaign(self, name: str) -> Campaign | None: ...

    async def campaigns(self) -> list[Campaign]: ...

    async def add_campaign(self, campaign: Campaign, owner_id: int | None) -> Campaign:
        """Insert; raises ``UserError`` when the name is taken."""
        ...

    async def record_preset(self, name: str, version: str, text: str) -> int:
        """The id of this preset version, stored once per (name, version)."""
        ...

    async def add_generation(self, generation: NewGeneration) -> None: ...

    async def generation(self, generation_id: uuid.UUID) -> Generation | None: ...

    async def images_requested_since(self, user_id: int, since: datetime) -> int:
        """Images asked for by the user since ``since`` (failed and cancelled ones don't count)."""
        ...

    async def active_count(self, user_id: int) -> int:
        """The user's generations that are queued or running."""
        ...

    async def campaign_gpu_seconds(self, campaign_id: int) -> float: ...

    async def set_status(
        self,
        generation_id: uuid.UUID,
        status: GenerationStatus,
        *,
        only_from: Sequence[str],
        error: str | None = None,
    ) -> bool:
        """Move to ``status`` if the current status is in ``only_from``; True if it moved."""
        ...

    async def record_message(
        self, generation_id: uuid.UUID, ref: MessageRef, role: str
    ) -> None: ...

    async def generation_for_message(self, ref: MessageRef) -> uuid.UUID | None:
        """The generation whose *result* was posted as this message."""
        ...

    async def image_ids(self, generation_id: uuid.UUID) -> dict[int, int]:
        """Image index (1-based) → image id."""
        ...

    async def add_feedback(
        self,
        generation_id: uuid.UUID,
        image_id: int | None,
        user_id: int,
        kind: FeedbackKind,
        emoji: str,
    ) -> bool:
        """Record; False when this user already gave this feedback on this target."""
        ...

    async def remove_feedback(
        self, generation_id: uuid.UUID, image_id: int | None, user_id: int, kind: FeedbackKind
    ) -> bool: ...

    async def audit(
        self,
        actor: str,
        action: str,
        subject: str,
        details: dict[str, Any],
        campaign_id: int | None = None,
    ) -> None: ...


class JobQueue(Protocol):
    """The generation queue, inside the same unit of work as the records."""

    async def enqueue(self, generation_id: uuid.UUID, *, priority: int) -> None:
        """Queue a job; higher priority first, then first come first served."""
        ...

    async def remove(self, generation_id: uuid.UUID) -> bool:
        """Take a job that is still waiting off the queue; False if it isn't waiting."""
        ...

    async def position(self, generation_id: uuid.UUID) -> int | None:
        """1-based place among waiting jobs; None when it is no longer waiting."""
        ...

    async def eta_seconds(self, generation_id: uuid.UUID) -> float | None:
        """Estimated seconds until done, from recent throughput; None without history."""
        ...


class Receipts(Protocol):
    """The requests already handled, by the key their platform gave them, inside the same unit
    of work as the records: a receipt is kept only when the request's writes are."""

    async def record(self, key: RequestKey) -> bool:
        """Note ``key`` as handled; False when it was already (or is being, by a unit of work
        that then commits: this waits for it)."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the records, the queue and the receipts: commit, or nothing
    happened."""

    repo: Repository
    queue: JobQueue
    receipts: Receipts

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, *exc: object) -> None:
        """Roll back unless ``commit`` was called."""
        ...

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
