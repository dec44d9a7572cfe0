"""A fake OpenAI images API on 127.0.0.1, for driving the real ``openai`` client in tests.

    async with FakeOpenAIServer() as server:
        engine = OpenAIEngine(api_key=server.api_key, base_url=server.base_url)
        server.rate_limit_next(2, retry_after=0.1)
        ...
        assert server.requests[-1].body["size"] == "1536x1024"

It answers ``POST /v1/images/generations`` (JSON) and ``POST /v1/images/edits`` (multipart) in the
real response shape, with base64 PNGs at the size asked for: one colour derived from the prompt's
hash, with a corner square that differs per image of an answer. It checks ``Authorization: Bearer
<api_key>`` (401 otherwise, echoing the key it got, as a worst case for leaks), rejects sizes and
``n`` the model would reject, and fails the next N requests on demand: 429 with ``Retry-After``,
500, or a 400 moderation refusal, all in OpenAI's error JSON shape; ``delay_next`` makes it slow
(for client timeouts). Every request is recorded in ``requests``, failed ones included.

An edit with a ``mask`` is checked like the real endpoint does: a PNG with an alpha channel, the
same size as the image, with fully transparent pixels (what to paint). The answer then keeps the
image (brought to the size asked for) where the mask is opaque and paints the transparent pixels
in the prompt's colour (``prompt_colour``, its red channel plus the image's index in the answer).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from PIL import Image

GPT_IMAGE_SIZES = {"1024x1024", "1536x1024", "1024x1536", "auto"}
MODEL_SIZES = {
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
}
MODERATION_MESSAGE = (
    "Your request was rejected as a result of our safety system. Your request may contain "
    "content that is not allowed by our safety system."
)


def prompt_colour(prompt: str) -> tuple[int, int, int]:
    """The colour the fake paints for ``prompt``: the first three bytes of its SHA-256."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


def error_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    authorization: str | None
    body: dict[str, Any]  # JSON body, or the form's text fields
    files: dict[str, bytes] = field(default_factory=dict)  # multipart file fields
    at: float = 0.0  # time.monotonic() on arrival

    @property
    def file_sizes(self) -> dict[str, tuple[int, int]]:
        """Pixel sizes of the uploaded images, by field name."""
        sizes = {}
        for name, data in self.files.items():
            with Image.open(io.BytesIO(data)) as image:
                sizes[name] = image.size
        return sizes


@dataclass
class _Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class FakeOpenAIServer:
    def __init__(self, api_key: str = "sk-test-0123456789abcdefFAKEKEY") -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._delays: list[float] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeOpenAIServer:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/images/generations", self._generations)
        app.router.add_post("/v1/images/edits", self._edits)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting ---------------------------------------------------------------------------

    def fail_next(
        self,
        times: int,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and ``body`` (JSON)."""
        self._failures += [_Failure(status, body, dict(headers or {})) for _ in range(times)]

    def delay_next(self, times: int, seconds: float) -> None:
        """Answer the next ``times`` requests only after ``seconds`` (a slow service)."""
        self._delays += [seconds] * times

    def rate_limit_next(self, times: int = 1, *, retry_after: float | None = None) -> None:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        body = error_body(
            "Rate limit reached for images per minute. Please try again later.",
            type="requests",
            code="rate_limit_exceeded",
        )
        self.fail_next(times, 429, body, headers)

    def server_error_next(self, times: int = 1) -> None:
        body = error_body(
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
        self.fail_next(times, 500, body)

    def moderate_next(
        self,
        times: int = 1,
        *,
        message: str = MODERATION_MESSAGE,
        code: str = "moderation_blocked",
    ) -> None:
        body = error_body(message, type="image_generation_user_error", code=code)
        self.fail_next(times, 400, body)

    # -- handlers ----------------------------------------------------------------------------

    async def _generations(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        return await self._answered(request, body)

    async def _answered(
        self,
        request: web.Request,
        body: dict[str, Any],
        masked: tuple[Image.Image, Image.Image] | None = None,
    ) -> web.Response:
        if self._delays:
            await asyncio.sleep(self._delays.pop(0))
        return self._answer(request, body, masked)

    async def _edits(self, request: web.Request) -> web.Response:
        form = await request.post()
        body: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files[name] = value.file.read()
            else:
                body[name] = value
        if "n" in body:
            body["n"] = int(body["n"])
        self._record(request, body, files)
        if "image" not in files:
            return self._error(400, "Missing required parameter: 'image'.", param="image")
        if "mask" not in files:
            return await self._answered(request, body)
        try:
            with Image.open(io.BytesIO(files["image"])) as opened:
                image = opened.convert("RGB")
            with Image.open(io.BytesIO(files["mask"])) as opened:
                if opened.format != "PNG":
                    return self._error(400, "Invalid mask: it must be a PNG.", param="mask")
                if opened.mode not in ("RGBA", "LA", "PA"):
                    return self._error(
                        400,
                        f"Invalid mask image format - mask must have an alpha channel, got "
                        f"{opened.mode}.",
                        param="mask",
                    )
                alpha = opened.convert("RGBA").getchannel("A")
        except OSError:
            return self._error(400, "Invalid image file or mode.", param="image")
        if alpha.size != image.size:
            return self._error(
                400,
                f"Invalid mask: the mask is {alpha.size[0]}x{alpha.size[1]}, the image "
                f"{image.size[0]}x{image.size[1]}; they must have the same dimensions.",
                param="mask",
            )
        if alpha.getextrema()[0] != 0:
            return self._error(
                400, "Invalid mask: it has no fully transparent pixels to edit.", param="mask"
            )
        return await self._answered(request, body, (image, alpha))

    def _record(
        self, request: web.Request, body: dict[str, Any], files: dict[str, bytes] | None = None
    ) -> None:
        self.requests.append(
            RecordedRequest(
                path=request.path,
                authorization=request.headers.get("Authorization"),
                body=body,
                files=files or {},
                at=time.monotonic(),
            )
        )

    def _answer(
        self,
        request: web.Request,
        body: dict[str, Any],
        masked: tuple[Image.Image, Image.Image] | None = None,
    ) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        if authorization != f"Bearer {self.api_key}":
            given = authorization.removeprefix("Bearer ")
            return self._error(
                401,
                f"Incorrect API key provided: {given}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
                type="invalid_request_error",
            )
        if self._failures:
            failure = self._failures.pop(0)
            return web.json_response(failure.body, status=failure.status, headers=failure.headers)

        model = str(body.get("model") or "gpt-image-2.5-sunburst")
        legacy = model.startswith("dall-e")
        size = str(body.get("size") or "auto")
        n = int(body.get("n") or 1)
        prompt = str(body.get("prompt") or "")
        if not prompt:
            return self._error(400, "Missing required parameter: 'prompt'.", param="prompt")
        if size not in MODEL_SIZES.get(model, GPT_IMAGE_SIZES):
            return self._error(
                400, f"Invalid value: '{size}'. Supported values are: ...", param="size"
            )
        if not 1 <= n <= 10 or (model == "dall-e-3" and n != 1):
            return self._error(400, f"Invalid 'n': {n}.", param="n")
        if not legacy and "response_format" in body:
            return self._error(
                400, "Unknown parameter: 'response_format'.", param="response_format"
            )
        if legacy and body.get("response_format") != "b64_json":
            return self._error(
                400, "This fake only answers with b64_json.", param="response_format"
            )

        if size == "auto":
            width, height = masked[0].size if masked else (1024, 1024)
        else:
            width, height = map(int, size.split("x"))
        data = [
            _painted(prompt, i, masked, (width, height))
            if masked
            else _png(prompt, i, (width, height))
            for i in range(n)
        ]
        answer: dict[str, Any] = {
            "created": int(time.time()),
            "data": [{"b64_json": d} for d in data],
        }
        if not legacy:
            answer |= {
                "background": "opaque",
                "output_format": "png",
                "quality": "medium",
                "size": f"{width}x{height}",
                "usage": {
                    "input_tokens": 50,
                    "input_tokens_details": {"image_tokens": 0, "text_tokens": 50},
                    "output_tokens": 1056 * n,
                    "total_tokens": 50 + 1056 * n,
                },
            }
        return web.json_response(answer)

    @staticmethod
    def _error(
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> web.Response:
        return web.json_response(
            error_body(message, type=type, code=code, param=param), status=status
        )


def _png(prompt: str, index: int, size: tuple[int, int]) -> str:
    """Base64 PNG: ``prompt_colour(prompt)`` with a square in the lower right that differs by
    ``index``, so the images of one answer are not identical (the real API's never are)."""
    width, height = size
    image = Image.new("RGB", size, prompt_colour(prompt))
    side = min(width, height) // 4
    mark = prompt_colour(f"{prompt}\x1f{index}")
    image.paste(mark, (width - side, height - side, width, height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _painted(
    prompt: str, index: int, masked: tuple[Image.Image, Image.Image], size: tuple[int, int]
) -> str:
    """Base64 PNG: the image where the mask is opaque, the prompt's colour (red + ``index``)
    where it is fully transparent; both brought to ``size`` first."""
    image, alpha = masked
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
        alpha = alpha.resize(size, Image.Resampling.NEAREST)
    r, g, b = prompt_colour(prompt)
    paint = alpha.point(lambda a: 255 if a == 0 else 0)
    out = image.copy()
    out.paste(((r + index) % 256, g, b), (0, 0, *size), paint)
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
