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
- **Refusals.** A content-policy refusal (HTTP 400 with code ``moderation_blocked`` or
  ``content_policy_violation``) becomes a ``RefusedByProvider`` (a ``UserError``) carrying the
  service's reason, which the worker shows to the requester.
- **Retries.** 429 (except ``insufficient_quota``), 5xx and connection errors are retried up to
  ``max_retries`` times with exponential backoff and full jitter; a ``Retry-After`` /
  ``retry-after-ms`` header, when present, sets the wait instead (up to ``max_retry_after``
  seconds; a longer one is not waited for). The SDK's own retries are switched off. Other errors
  propagate unchanged, except that the API key is scrubbed from their text.

``openai`` is imported lazily (it is the ``openai`` extra), so importing ``core`` never needs it.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from PIL import Image, ImageOps

from core.engines import check_batch, check_size, vary_steps
from core.errors import ConfigError, RefusedByProvider
from core.imaging.resize import resample_upscale, upscaled_size
from core.ports import (
    CancelledFn,
    GenerateJob,
    JobResult,
    ProgressFn,
    UpscaleResult,
    VaryJob,
)

if TYPE_CHECKING:
    import openai
    from openai.types import ImagesResponse

__all__ = ["REFUSAL_CODES", "SIZES", "OpenAIEngine", "api_size"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

Size = tuple[int, int]

# The sizes each model family accepts. Every GPT image model (gpt-image-1, -1-mini, -1.5, -2, …)
# accepts the three standard sizes; unknown models are assumed to be GPT image models.
GPT_IMAGE_SIZES: tuple[Size, ...] = ((1024, 1024), (1536, 1024), (1024, 1536))
SIZES: dict[str, tuple[Size, ...]] = {
    "gpt-image": GPT_IMAGE_SIZES,
    "dall-e-3": ((1024, 1024), (1792, 1024), (1024, 1792)),
    "dall-e-2": ((1024, 1024), (512, 512), (256, 256)),
}

REFUSAL_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
REDACTED = "[redacted]"


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


def _decode(response: ImagesResponse, expected: int, size: Size) -> list[Image.Image]:
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
            images.append(_fit(raw.convert("RGB"), size))
    return images


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if any."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


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
        self._secret: str = self._client.api_key or ""
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_retry_after = max_retry_after
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
            target,
            progress,
            cancelled,
            lambda n: self._edit_request(
                model, source, _with_negative(job.prompt, job.negative_prompt), target, n
            ),
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
            target,
            progress,
            cancelled,
            lambda n: self._generate_request(model, prompt, target, n),
        )

    async def _run_job(
        self,
        model: str,
        job_id: str,
        count: int,
        target: Size,
        progress: ProgressFn | None,
        cancelled: CancelledFn | None,
        request: Callable[[int], Awaitable[ImagesResponse]],
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
                response = await self._with_retries(request, n)
                images += await asyncio.to_thread(_decode, response, n, target)
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
        self, model: str, source: bytes, prompt: str, target: Size, n: int
    ) -> ImagesResponse:
        import openai

        w, h = api_size(model, *target)
        log.debug("images.edit model=%s size=%dx%d n=%d", model, w, h, n)
        return await self._client.images.edit(
            model=model,
            image=("image.png", source, "image/png"),
            prompt=prompt,
            n=n,
            size=f"{w}x{h}",
            response_format="b64_json" if _spec(model).legacy else openai.omit,
        )

    async def _with_retries(
        self, call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        import openai

        attempt = 0
        while True:
            try:
                return await call(*args, **kwargs)
            except openai.BadRequestError as exc:
                if exc.code in REFUSAL_CODES:
                    raise RefusedByProvider(
                        f"The image service refused this prompt: {self._reason(exc)}. "
                        "Rephrase it and try again."
                    ) from self._scrub(exc)
                self._scrub(exc)
                raise
            except (
                openai.RateLimitError,
                openai.InternalServerError,
                openai.APIConnectionError,
            ) as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    self._scrub(exc)
                    raise
                attempt += 1
                log.warning(
                    "OpenAI images API: %s; retry %d of %d in %.2f s",
                    self._describe(exc),
                    attempt,
                    self._max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
            except openai.OpenAIError as exc:
                self._scrub(exc)
                raise

    def _retry_delay(self, exc: openai.APIError, attempt: int) -> float | None:
        """Seconds to wait before the next try, or ``None`` when the error is final."""
        import openai

        if attempt >= self._max_retries:
            return None
        if isinstance(exc, openai.RateLimitError) and exc.code == "insufficient_quota":
            return None  # out of credit: waiting will not help
        if isinstance(exc, openai.APIStatusError):
            retry_after = _retry_after(exc.response.headers)
            if retry_after is not None:
                return retry_after if retry_after <= self._max_retry_after else None
        # Full jitter: uniform in [0, min(max, base * 2**attempt)].
        ceiling = min(self._backoff_max, self._backoff_base * 2**attempt)
        return random.uniform(0, ceiling)

    @staticmethod
    def _describe(exc: openai.APIError) -> str:
        status = getattr(exc, "status_code", None)
        return f"HTTP {status}" if status is not None else type(exc).__name__

    def _reason(self, exc: openai.APIError) -> str:
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        text = message if isinstance(message, str) and message.strip() else "no reason given"
        return self._redact(text).strip().rstrip(".")

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, REDACTED) if len(self._secret) >= 4 else text

    def _scrub(self, exc: BaseException) -> BaseException:
        """``exc`` with the API key taken out of its message and body (in place)."""
        exc.args = tuple(self._redact(a) if isinstance(a, str) else a for a in exc.args)
        message = getattr(exc, "message", None)
        if isinstance(message, str):
            exc.message = self._redact(message)  # type: ignore[attr-defined]
        body = getattr(exc, "body", None)
        if body is not None:
            exc.body = self._redact_value(body)  # type: ignore[attr-defined]
        return exc

    def _redact_value(self, value: object) -> object:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, dict):
            return {k: self._redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact_value(v) for v in value]
        return value
