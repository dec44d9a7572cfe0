"""``OpenAIEngine`` driving the real ``openai`` client against a fake images API on 127.0.0.1."""

from __future__ import annotations

import inspect
import logging
import re
import typing
from collections.abc import AsyncIterator

import pytest
from PIL import Image

pytest.importorskip("openai")

import openai
from openai.types import ImageModel

from core.brand.presets import DEFAULT_MODELS, RETIRED_MODELS
from core.engines.openai import OpenAIEngine, api_size
from core.errors import ConfigError, ProviderFailed, UserError
from core.ports import GenerateJob, VaryJob
from tests.engines.contract import EngineContract
from tests.fakes.openai_server import (
    GPT_IMAGE_SIZES,
    MODEL_SIZES,
    MODERATION_MESSAGE,
    FakeOpenAIServer,
    error_body,
    prompt_colour,
)

MODEL = DEFAULT_MODELS["openai"]


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


def make_engine(server: FakeOpenAIServer, **kwargs: object) -> OpenAIEngine:
    options: dict[str, object] = {"max_retries": 3, "backoff_base": 0.001, "backoff_max": 0.01}
    options.update(kwargs)
    return OpenAIEngine(server.api_key, server.base_url, **options)  # type: ignore[arg-type]


@pytest.fixture
async def engine(server: FakeOpenAIServer) -> AsyncIterator[OpenAIEngine]:
    engine = make_engine(server)
    yield engine
    await engine.aclose()


def job(
    job_id: str = "j1",
    prompt: str = "a red sneaker on a beach",
    *,
    negative: str = "",
    width: int = 1024,
    height: int = 1024,
    n: int = 1,
) -> GenerateJob:
    return GenerateJob(
        job_id=job_id,
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        steps=20,
        guidance=7.0,
        seeds=tuple(range(42, 42 + n)),
    )


# -- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "requested", "sent"),
    [
        ("gpt-image-2.5-sunburst", (1024, 1024), (1024, 1024)),
        ("gpt-image-2.5-sunburst", (512, 512), (1024, 1024)),
        ("gpt-image-2.5-sunburst", (1344, 768), (1536, 1024)),  # 16:9
        ("gpt-image-2.5-sunburst", (768, 1344), (1024, 1536)),  # 9:16
        ("gpt-image-2.5-sunburst", (1152, 896), (1536, 1024)),  # 9:7 is nearer 3:2 than 1:1
        ("gpt-image-2.5-sunburst", (1088, 960), (1024, 1024)),  # 17:15 is nearer 1:1
        ("gpt-image-2.5-sunburst", (1536, 512), (1536, 1024)),  # 3:1
        ("gpt-image-2", (768, 1344), (1024, 1536)),  # every GPT image model: the same table
        ("gpt-image-1-mini", (1344, 768), (1536, 1024)),
        ("dall-e-3", (1024, 1024), (1024, 1024)),
        ("dall-e-3", (1344, 768), (1792, 1024)),
        ("dall-e-3", (768, 1344), (1024, 1792)),
        ("dall-e-2", (512, 512), (512, 512)),  # all square: then nearest in area
        ("dall-e-2", (200, 300), (256, 256)),
    ],
)
def test_api_size_maps_to_the_nearest_accepted_size(
    model: str, requested: tuple[int, int], sent: tuple[int, int]
) -> None:
    assert api_size(model, *requested) == sent


SDK_MODELS = typing.get_args(ImageModel)


@pytest.mark.parametrize("model", SDK_MODELS)
async def test_every_model_the_sdk_knows_gets_a_size_it_accepts(
    model: str, engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    for requested in [(1024, 1024), (1344, 768), (768, 1344), (512, 512)]:
        w, h = api_size(model, *requested)
        assert f"{w}x{h}" in MODEL_SIZES.get(model, GPT_IMAGE_SIZES), (model, requested)
    [result] = await engine.generate(model, [job(width=1344, height=768)])
    assert result.images[0].size == (1344, 768)


def test_the_default_model_is_current_and_every_retired_one_is_refused() -> None:
    """The SDK's own notes name the models OpenAI switched off; presets must refuse each."""
    notes = inspect.getsource(openai.types.image_model)
    deprecated = set(re.findall(r'- ((?:"[\w.-]+"(?:, )?)+):', notes))
    named = {name for group in deprecated for name in re.findall(r'"([\w.-]+)"', group)}
    assert named, "the SDK's deprecation notes moved: read them again"
    assert named <= set(RETIRED_MODELS), named - set(RETIRED_MODELS)
    assert MODEL in SDK_MODELS
    assert MODEL not in RETIRED_MODELS


def test_api_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        api_size(MODEL, 0, 512)


async def test_generate_sends_an_accepted_size_and_returns_the_requested_one(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    [result] = await engine.generate(MODEL, [job(width=1344, height=768, n=3)])

    [request] = server.requests
    assert request.path == "/v1/images/generations"
    assert request.authorization == f"Bearer {server.api_key}"
    assert request.body["model"] == MODEL
    assert request.body["size"] == "1536x1024"
    assert request.body["n"] == 3
    assert "response_format" not in request.body  # GPT image models reject it
    assert not result.cancelled
    assert len(result.images) == 3
    for image in result.images:
        assert image.size == (1344, 768)
        assert image.mode == "RGB"
        assert image.getpixel((10, 10)) == prompt_colour("a red sneaker on a beach")


async def test_negative_prompt_goes_into_the_prompt(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    await engine.generate(MODEL, [job(prompt="a sneaker", negative="blurry, text")])
    assert server.requests[0].body["prompt"] == "a sneaker\n\nAvoid: blurry, text"


async def test_batch_results_come_back_in_job_order(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    jobs = [job(f"j{i}", f"prompt number {i}", n=i + 1) for i in range(3)]
    results = await engine.generate(MODEL, jobs)

    assert [r.job_id for r in results] == ["j0", "j1", "j2"]
    assert [len(r.images) for r in results] == [1, 2, 3]
    for i, result in enumerate(results):
        assert result.images[0].getpixel((0, 0)) == prompt_colour(f"prompt number {i}")
    assert sorted(r.body["n"] for r in server.requests) == [1, 2, 3]


async def test_dalle3_makes_one_request_per_image(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    [result] = await engine.generate("dall-e-3", [job(width=1344, height=768, n=2)])

    assert len(result.images) == 2
    assert [r.body["n"] for r in server.requests] == [1, 1]
    assert {r.body["size"] for r in server.requests} == {"1792x1024"}
    assert {r.body["response_format"] for r in server.requests} == {"b64_json"}


async def test_mismatched_batch_is_refused(engine: OpenAIEngine) -> None:
    with pytest.raises(ValueError, match="share width"):
        await engine.generate(MODEL, [job("a"), job("b", width=512, height=512)])


async def test_progress_is_reported_at_start_and_end(engine: OpenAIEngine) -> None:
    calls: list[tuple[str, int, int]] = []
    await engine.generate(MODEL, [job("a"), job("b")], progress=lambda *args: calls.append(args))
    assert sorted(calls) == [("a", 0, 1), ("a", 1, 1), ("b", 0, 1), ("b", 1, 1)]


# -- cancellation --------------------------------------------------------------------------------


async def test_cancelled_job_sends_no_request(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    calls: list[tuple[str, int, int]] = []
    results = await engine.generate(
        MODEL,
        [job("keep", "kept"), job("drop", "dropped")],
        progress=lambda *args: calls.append(args),
        cancelled=lambda job_id: job_id == "drop",
    )

    keep, drop = results
    assert not keep.cancelled
    assert len(keep.images) == 1
    assert drop.cancelled
    assert drop.images == ()
    assert [r.body["prompt"] for r in server.requests] == ["kept"]
    assert all(job_id == "keep" for job_id, _, _ in calls)


async def test_cancelled_variation_sends_no_request(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    source = Image.new("RGB", (512, 512), "white")
    vary = VaryJob("v", source, "blue", "", steps=20, guidance=7.0, strength=0.6, seeds=(1,))
    result = await engine.vary(MODEL, vary, cancelled=lambda _: True)
    assert result.cancelled
    assert result.images == ()
    assert server.requests == []


# -- retries -------------------------------------------------------------------------------------


async def test_429_is_retried_after_retry_after(
    engine: OpenAIEngine, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.engines.openai")
    server.rate_limit_next(1, retry_after=0.3)

    [result] = await engine.generate(MODEL, [job()])

    assert len(result.images) == 1
    first, second = server.requests
    # The backoff alone would be at most 10 ms: the wait is Retry-After's.
    assert second.at - first.at >= 0.28
    assert "HTTP 429" in caplog.text
    assert "retry 1 of 3" in caplog.text


async def test_429_without_retry_after_backs_off(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    server.rate_limit_next(2)
    [result] = await engine.generate(MODEL, [job()])
    assert len(result.images) == 1
    assert len(server.requests) == 3


async def test_500_is_retried(engine: OpenAIEngine, server: FakeOpenAIServer) -> None:
    server.server_error_next(3)
    [result] = await engine.generate(MODEL, [job()])
    assert len(result.images) == 1
    assert len(server.requests) == 4  # max_retries=3: the last try succeeds


async def test_retries_give_up_after_max_retries(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    server.server_error_next(4)
    with pytest.raises(ProviderFailed) as failed:
        await engine.generate(MODEL, [job()])
    assert len(server.requests) == 4
    assert failed.value.user_message == (
        "The image service failed (HTTP 500, 4 tries); try again in a few minutes."
    )
    assert isinstance(failed.value.__cause__, openai.InternalServerError)  # for the log


async def test_no_retries_when_max_retries_is_zero(server: FakeOpenAIServer) -> None:
    engine = make_engine(server, max_retries=0)
    server.rate_limit_next(1)
    with pytest.raises(ProviderFailed, match=r"limiting how fast onbrand may ask \(1 try\)"):
        await engine.generate(MODEL, [job()])
    assert len(server.requests) == 1
    await engine.aclose()


async def test_retry_after_too_long_is_not_waited_for(server: FakeOpenAIServer) -> None:
    engine = make_engine(server, max_retry_after=1.0)
    server.rate_limit_next(1, retry_after=3600)
    with pytest.raises(ProviderFailed, match="try again in a minute"):
        await engine.generate(MODEL, [job()])
    assert len(server.requests) == 1
    await engine.aclose()


async def test_insufficient_quota_is_not_retried(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    body = error_body(
        "You exceeded your current quota.", type="insufficient_quota", code="insufficient_quota"
    )
    server.fail_next(1, 429, body)
    with pytest.raises(ProviderFailed, match="out of credit; an operator has to add credit"):
        await engine.generate(MODEL, [job()])
    assert len(server.requests) == 1


async def test_other_errors_propagate_unretried(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    server.fail_next(1, 400, error_body("Invalid prompt.", type="invalid_request_error"))
    with pytest.raises(ProviderFailed) as failed:
        await engine.generate(MODEL, [job()])
    assert len(server.requests) == 1
    assert failed.value.user_message.startswith(
        "The image service couldn't take this prompt (HTTP 400: Invalid prompt). Change the"
    )
    assert isinstance(failed.value.__cause__, openai.BadRequestError)


async def test_a_slow_service_times_out_with_a_clear_message(server: FakeOpenAIServer) -> None:
    engine = make_engine(server, timeout=0.2, max_retries=1)
    server.delay_next(2, 1.0)
    with pytest.raises(ProviderFailed) as failed:
        await engine.generate(MODEL, [job()])
    assert failed.value.user_message == (
        "The image service didn't answer within 0.2 s (2 tries); try again in a few minutes."
    )
    assert isinstance(failed.value.__cause__, openai.APITimeoutError)
    await engine.aclose()


# -- refusals and secrets ------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["moderation_blocked", "content_policy_violation"])
async def test_refusal_becomes_a_user_error_with_the_reason(
    engine: OpenAIEngine, server: FakeOpenAIServer, code: str
) -> None:
    server.moderate_next(code=code)
    with pytest.raises(UserError) as caught:
        await engine.generate(MODEL, [job()])

    reason = MODERATION_MESSAGE.rstrip(".")
    assert caught.value.user_message == (
        f"The image service refused this prompt: {reason}. Rephrase it and try again."
    )
    assert len(server.requests) == 1  # a refusal is never retried


async def test_refusal_of_a_variation_is_a_user_error(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    server.moderate_next(message="Image looks unsafe.")
    source = Image.new("RGB", (512, 512), "white")
    vary = VaryJob("v", source, "x", "", steps=20, guidance=7.0, strength=0.6, seeds=(1,))
    with pytest.raises(UserError, match=r"refused this prompt: Image looks unsafe\. Rephrase"):
        await engine.vary(MODEL, vary)


async def test_the_api_key_never_reaches_errors_or_logs(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = "sk-wrong-key-that-must-stay-secret-1234"
    engine = OpenAIEngine(wrong_key, server.base_url, max_retries=1, backoff_base=0.001)

    with pytest.raises(ProviderFailed) as caught:
        await engine.generate(MODEL, [job()])

    # The fake echoes the key it got in its 401 message, like a careless server would.
    assert server.requests[0].authorization == f"Bearer {wrong_key}"
    assert caught.value.user_message.startswith("The image service refused onbrand's access")
    assert "an operator has to fix the OpenAI key" in caught.value.user_message
    assert wrong_key not in caught.value.user_message
    error = caught.value.__cause__
    assert isinstance(error, openai.AuthenticationError)
    for text in (str(error), repr(error), error.message, str(error.body)):
        assert wrong_key not in text
    assert "[redacted]" in error.message
    await engine.aclose()

    good = make_engine(server)
    server.rate_limit_next(1, retry_after=0)
    server.moderate_next(message=f"Leaky reason mentioning {server.api_key}")
    with pytest.raises(UserError) as refused:
        await good.generate(MODEL, [job()])
    assert server.api_key not in refused.value.user_message
    assert server.api_key not in str(refused.value.__cause__)
    assert server.api_key not in repr(good)
    await good.aclose()

    assert caplog.records, "expected the engine and the SDK to log something"
    for secret in (wrong_key, server.api_key):
        assert secret not in caplog.text
        assert all(secret not in record.getMessage() for record in caplog.records)


# -- configuration -------------------------------------------------------------------------------


async def test_key_and_url_come_from_the_environment(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    engine = OpenAIEngine()
    [result] = await engine.generate(MODEL, [job()])
    assert len(result.images) == 1
    assert server.requests[0].authorization == f"Bearer {server.api_key}"
    await engine.aclose()


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIEngine()


# -- vary and upscale ----------------------------------------------------------------------------


async def test_vary_edits_the_image_and_keeps_its_size(
    engine: OpenAIEngine, server: FakeOpenAIServer
) -> None:
    source = Image.new("RGB", (768, 1344), "white")
    vary = VaryJob(
        "v", source, "in blue", "logos", steps=20, guidance=7.0, strength=0.6, seeds=(1, 2)
    )
    calls: list[tuple[str, int, int]] = []

    result = await engine.vary(MODEL, vary, progress=lambda *args: calls.append(args))

    [request] = server.requests
    assert request.path == "/v1/images/edits"
    assert request.body["size"] == "1024x1536"
    assert request.body["n"] == 2
    assert request.body["prompt"] == "in blue\n\nAvoid: logos"
    assert request.file_sizes == {"image": (768, 1344)}
    assert [image.size for image in result.images] == [(768, 1344)] * 2
    assert calls == [("v", 0, 1), ("v", 1, 1)]


async def test_upscale_resamples_with_lanczos(engine: OpenAIEngine) -> None:
    result = await engine.upscale(MODEL, Image.new("RGB", (300, 200), "red"), factor=2)
    assert result.image.size == (600, 400)
    assert result.method == "resampled:lanczos"


# -- the shared Engine contract ------------------------------------------------------------------


class TestOpenAIEngineContract(EngineContract):
    """The contract every engine passes, against the fake API. The API has no seeds (the same
    seed gives different images) and no steps (progress is 0/1 then 1/1, cancel only between
    requests), so those capabilities are off."""

    deterministic = False
    supports_step_progress = False

    @pytest.fixture
    async def engine(self, server: FakeOpenAIServer) -> AsyncIterator[OpenAIEngine]:  # type: ignore[override]
        engine = make_engine(server)
        yield engine
        await engine.aclose()

    @pytest.fixture
    def model(self) -> str:
        return MODEL
