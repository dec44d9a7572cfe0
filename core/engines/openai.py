"""The OpenAI images API as an ``Engine``, through the official ``openai`` async client.

What the API can and cannot do, and how this engine bridges it:

- **No seeds.** The API takes no seed, so results are *not* reproducible by seed: the same job run
  twice gives different images. ``len(job.seeds)`` only says how many images to make (``n``).
- **No negative prompt.** The negative prompt is appended to the prompt as ``Avoid: …``.
- **No steps, guidance or strength.** They are ignored; a variation is an ``images.edit`` of the
  source image with the prompt.
- **Fixed sizes.** Each model accepts a few sizes only (``SIZES``). A request is sent at the
  accepted size nearest in aspect ratio (then in area), and the result is centre-cropped to the
  requested aspect ratio and resampled (Lanczos) to exactly the requested width × height.
- **Coarse progress.** There are no steps to report: ``progress(job_id, 0, 1)`` when a job starts
  and ``progress(job_id, 1, 1)`` when its images are in.
- **Cancellation** is checked before every request; a cancelled job returns
  ``JobResult(cancelled=True)`` with no images.
- **Inpainting** (product shots, zoom out, pan, vary region: the ``Inpainter`` port) is an
  ``images.edit`` with the canvas and a mask PNG, letterboxed into the size sent so the answer
  lines up with the canvas (``core.engines.openai_edits``).
- **Errors.** Retries (429, 5xx, connection errors, timeouts; ``Retry-After`` honoured) and the
  words a final error gives the requester (a ``ProviderFailed``: a content-policy refusal with
  the service's reason, the key refused, no credit, still failing) live in
  ``core.engines.openai_calls``; the API key is scrubbed from every error's text.

``openai`` is imported lazily (it is the ``openai`` extra), so importing ``core`` never needs it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

from core.engines import check_batch, check_size, vary_steps
from core.engines.openai_calls import REFUSAL_CODES, ApiCalls
from core.engines.openai_edits import edit_inputs, from_frame
from core.errors import ConfigError
from core.imaging.resize import resample_upscale, upscaled_size
from core.ports import (
    CancelledFn,
    GenerateJob,
    InpaintJob,
    JobResult,
    ProgressFn,
    UpscaleResult,
    VaryJob,
)

if TYPE_CHECKING:
    from openai.types import ImagesResponse

__all__ = ["REFUSAL_CODES", "SIZES", "OpenAIEngine", "api_size"]

log = logging.getLogger(__name__)

Size = tuple[int, int]

# The sizes each model family accepts. Every GPT image model (gpt-image-1, -1-mini, -1.5, -2, …)
# accepts the three standard sizes; unknown models are assumed to be GPT image models.
GPT_IMAGE_SIZES: tuple[Size, ...] = ((1024, 1024), (1536, 1024), (1024, 1536))
SIZES: dict[str, tuple[Size, ...]] = {
    "gpt-image": GPT_IMAGE_SIZES,
    "dall-e-3": ((1024, 1024), (1792, 1024), (1024, 1792)),
    "dall-e-2": ((1024, 1024), (512, 512), (256, 256)),
}


@dataclass(frozen=True)
class _ModelSpec:
    sizes: tuple[Size, ...]
    max_n: int  # images per request
    legacy: bool  # DALL·E: must ask for b64_json (GPT image models reject response_format)


def _spec(model: str) -> _ModelSpec:
    name = model.lower()
    if name.startswith("dall-e-3"):
        return _ModelSpec(SIZES["dall-e-3"], max_n=1, legacy=True)
    if name.startswith("dall-e-2"):
        return _ModelSpec(SIZES["dall-e-2"], max_n=10, legacy=True)
    return _ModelSpec(GPT_IMAGE_SIZES, max_n=10, legacy=False)


def api_size(model: str, width: int, height: int) -> Size:
    """The size ``model`` accepts that is nearest to ``width`` × ``height``.

    Nearest in aspect ratio first (log scale, so 2:1 and 1:2 are equally far from 1:1), then in
    area. ``api_size("gpt-image-1", 1344, 768) == (1536, 1024)``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    aspect, area = math.log(width / height), math.log(width * height)

    def distance(size: Size) -> tuple[float, float]:
        w, h = size
        return (round(abs(math.log(w / h) - aspect), 9), abs(math.log(w * h) - area))

    return min(_spec(model).sizes, key=distance)


def _with_negative(prompt: str, negative_prompt: str) -> str:
    negative = negative_prompt.strip()
    return f"{prompt}\n\nAvoid: {negative}" if negative else prompt


def _fit(image: Image.Image, size: Size) -> Image.Image:
    """Centre-crop to ``size``'s aspect ratio and resample to exactly ``size`` (Lanczos)."""
    if image.size == size:
        return image
    return ImageOps.fit(image, size, method=Image.Resampling.LANCZOS)


def _decode(
    response: ImagesResponse, expected: int, finish: Callable[[Image.Image], Image.Image]
) -> list[Image.Image]:
    data = response.data or []
    if len(data) != expected:
        raise RuntimeError(
            f"the image service returned {len(data)} image(s) where {expected} were requested"
        )
    images: list[Image.Image] = []
    for item in data:
        if not item.b64_json:
            raise RuntimeError("the image service returned an image without base64 data")
        with Image.open(io.BytesIO(base64.b64decode(item.b64_json))) as raw:
            images.append(finish(raw.convert("RGB")))
    return images


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


class OpenAIEngine:
    """An ``Engine`` backed by the OpenAI images API (``images.generate`` and ``images.edit``).

    ``api_key`` and ``base_url`` default to ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``.
    ``backoff_base`` / ``backoff_max`` shape the retry backoff (seconds); ``concurrency`` bounds
    how many requests one ``generate`` call has in flight.
    """

    name = "openai"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        max_retries: int = 4,
        timeout: float = 120,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_retry_after: float = 120.0,
        concurrency: int = 4,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ConfigError(
                "The OpenAI engine needs the 'openai' extra: pip install 'onbrand[openai]'."
            ) from exc
        try:
            self._client = openai.AsyncOpenAI(
                api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout
            )
        except openai.OpenAIError:
            raise ConfigError(
                "The OpenAI engine has no API key: set OPENAI_API_KEY (or pass api_key)."
            ) from None
        self._calls = ApiCalls(
            self._client.api_key or "",
            max_retries=max_retries,
            timeout=timeout,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_after=max_retry_after,
        )
        self._slots = asyncio.Semaphore(concurrency)

    def __repr__(self) -> str:
        return f"OpenAIEngine(base_url={str(self._client.base_url)!r})"

    async def aclose(self) -> None:
        await self._client.close()

    # -- the Engine port ---------------------------------------------------------------------

    async def generate(
        self,
        model: str,
        jobs: Sequence[GenerateJob],
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> list[JobResult]:
        """One request per job (more where ``n`` exceeds the model's limit); results in job order.

        Jobs run concurrently (up to ``concurrency``); if one fails, the others are cancelled
        and the error propagates.
        """
        check_batch(jobs)
        tasks = [
            asyncio.create_task(self._generate_job(model, job, progress, cancelled)) for job in jobs
        ]
        try:
            return list(await asyncio.gather(*tasks))
        finally:  # on failure or cancellation, stop the rest (a no-op for finished tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def vary(
        self,
        model: str,
        job: VaryJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult:
        """``images.edit`` of ``job.image`` with the prompt; results come back at its size."""
        vary_steps(job.steps, job.strength)  # validates like every engine; the API ignores both
        if not job.seeds:
            raise ValueError(f"job {job.job_id} has no seeds (one image per seed)")
        target = job.image.size
        source = await asyncio.to_thread(_png, job.image)
        return await self._run_job(
            model,
            job.job_id,
            len(job.seeds),
            lambda image: _fit(image, target),
            progress,
            cancelled,
            lambda n: self._edit_request(
                model, source, _with_negative(job.prompt, job.negative_prompt), target, n
            ),
        )

    async def inpaint(
        self,
        model: str,
        job: InpaintJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult:
        """``images.edit`` of ``job.image`` with ``job.mask`` as the API's mask (transparent
        where ours is white); results come back at the canvas's size, lined up with it."""
        if not job.seeds:
            raise ValueError(f"job {job.job_id} has no seeds (one image per seed)")
        sent = api_size(model, *job.image.size)
        source, mask, where = await asyncio.to_thread(edit_inputs, job.image, job.mask, sent)
        prompt = _with_negative(job.prompt, job.negative_prompt)
        return await self._run_job(
            model,
            job.job_id,
            len(job.seeds),
            lambda image: from_frame(image, where),
            progress,
            cancelled,
            lambda n: self._edit_request(model, source, prompt, where.sent, n, mask=mask),
            what="edit",
        )

    async def upscale(
        self, model: str, image: Image.Image, factor: int = 2, upscaler: str | None = None
    ) -> UpscaleResult:
        """The API has no upscaler: Lanczos resampling, whatever ``upscaler`` names."""
        upscaled_size(image, factor)
        check_size(image.width, image.height, multiple=1)
        resized = await asyncio.to_thread(resample_upscale, image, factor)
        return UpscaleResult(image=resized, method="resampled:lanczos")

    # -- internals ---------------------------------------------------------------------------

    async def _generate_job(
        self,
        model: str,
        job: GenerateJob,
        progress: ProgressFn | None,
        cancelled: CancelledFn | None,
    ) -> JobResult:
        prompt = _with_negative(job.prompt, job.negative_prompt)
        target = (job.width, job.height)
        return await self._run_job(
            model,
            job.job_id,
            len(job.seeds),
            lambda image: _fit(image, target),
            progress,
            cancelled,
            lambda n: self._generate_request(model, prompt, target, n),
        )

    async def _run_job(
        self,
        model: str,
        job_id: str,
        count: int,
        finish: Callable[[Image.Image], Image.Image],
        progress: ProgressFn | None,
        cancelled: CancelledFn | None,
        request: Callable[[int], Awaitable[ImagesResponse]],
        what: str = "prompt",
    ) -> JobResult:
        async with self._slots:
            images: list[Image.Image] = []
            max_n = _spec(model).max_n
            while len(images) < count:
                if cancelled is not None and cancelled(job_id):
                    log.info("job %s cancelled before its request", job_id)
                    return JobResult(job_id=job_id, images=(), cancelled=True)
                if progress is not None and not images:
                    progress(job_id, 0, 1)
                n = min(count - len(images), max_n)
                response = await self._calls.call(what, request, n)
                images += await asyncio.to_thread(_decode, response, n, finish)
            if progress is not None:
                progress(job_id, 1, 1)
            return JobResult(job_id=job_id, images=tuple(images))

    async def _generate_request(
        self, model: str, prompt: str, target: Size, n: int
    ) -> ImagesResponse:
        import openai

        w, h = api_size(model, *target)
        log.debug("images.generate model=%s size=%dx%d n=%d", model, w, h, n)
        return await self._client.images.generate(
            model=model,
            prompt=prompt,
            n=n,
            size=f"{w}x{h}",
            response_format="b64_json" if _spec(model).legacy else openai.omit,
        )

    async def _edit_request(
        self, model: str, source: bytes, prompt: str, target: Size, n: int, mask: bytes = b""
    ) -> ImagesResponse:
        """``images.edit``; with ``mask`` (a PNG the size of ``source``) only its transparent
        pixels are painted."""
        import openai

        w, h = api_size(model, *target)
        log.debug("images.edit model=%s size=%dx%d n=%d mask=%s", model, w, h, n, bool(mask))
        return await self._client.images.edit(
            model=model,
            image=("image.png", source, "image/png"),
            mask=("mask.png", mask, "image/png") if mask else openai.omit,
            prompt=prompt,
            n=n,
            size=f"{w}x{h}",
            response_format="b64_json" if _spec(model).legacy else openai.omit,
        )
