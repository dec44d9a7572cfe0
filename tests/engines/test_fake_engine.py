"""The fake engine passes the engine contract; the registry builds engines lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from core.engines.fake import FakeCall, FakeEngine, FakeEngineError
from core.engines.registry import EngineRegistry, UnknownEngine, lazy_factory
from core.ports import Engine, GenerateJob
from tests.engines.contract import EngineContract, ProgressLog, max_diff


class TestFakeEngine(EngineContract):
    steps = 4

    @pytest.fixture
    def engine(self) -> Engine:
        return FakeEngine()

    @pytest.fixture
    def model(self) -> str:
        return "fake-model"


def _job(job_id: str = "a", prompt: str = "a cat", steps: int = 3) -> GenerateJob:
    return GenerateJob(job_id, prompt, "", 64, 64, steps, 5.0, (1,))


async def test_prompt_changes_the_picture() -> None:
    engine = FakeEngine()
    (cat,), (dog,) = [
        (await engine.generate("m", [_job(prompt=prompt)]))[0].images for prompt in ("cat", "dog")
    ]
    assert max_diff(cat, dog) > 0


async def test_step_delay_lets_other_tasks_cancel() -> None:
    """With a delay per step, a cancel from another task lands mid-run."""
    engine = FakeEngine(step_delay=0.01)
    log = ProgressLog()
    log.cancel_at["a"] = 2
    (result,) = await engine.generate(
        "m", [_job(steps=50)], cancelled=log.cancelled, progress=log.progress
    )
    assert result.cancelled
    assert log.last_step("a") == 2


async def test_records_calls_and_fails_on_purpose() -> None:
    engine = FakeEngine(fail_on=["explode"])
    await engine.generate("m", [_job("a"), _job("b")])
    await engine.upscale("m", Image.new("RGB", (8, 8)))
    assert engine.calls == [FakeCall("generate", "m", ("a", "b")), FakeCall("upscale", "m", ())]
    with pytest.raises(FakeEngineError):
        await engine.generate("m", [_job(prompt="please explode")])


async def test_vary_refuses_too_few_steps() -> None:
    from core.ports import VaryJob

    job = VaryJob("v", Image.new("RGB", (8, 8)), "x", "", 2, 5.0, 0.2, (1,))
    with pytest.raises(ValueError, match="steps"):
        await FakeEngine().vary("m", job)


async def test_upscale_with_an_upscaler_names_it() -> None:
    result = await FakeEngine().upscale("m", Image.new("RGB", (8, 6)), 3, upscaler="x4")
    assert result.image.size == (24, 18)
    assert result.method == "model:x4"


def test_registry_builds_each_kind_once() -> None:
    registry = EngineRegistry({"fake": {"step_delay": 0.5}})
    assert registry.kinds == ("diffusers", "fake", "openai")
    engine = registry.get("fake")
    assert isinstance(engine, FakeEngine)
    assert engine.step_delay == 0.5
    assert registry.get("fake") is engine
    assert dict(registry.built) == {"fake": engine}


def test_registry_register_put_and_unknown() -> None:
    registry = EngineRegistry(builtins=False)
    with pytest.raises(UnknownEngine, match="known: none"):
        registry.get("fake")
    registry.register("fake", lazy_factory("core.engines.fake:FakeEngine", step_delay=0.1))
    assert "fake" in registry
    assert "openai" not in registry
    mine = FakeEngine()
    registry.put("other", mine)
    assert registry.get("other") is mine
    with pytest.raises(UnknownEngine, match="mystery"):
        EngineRegistry({"diffusers": {}, "mystery": {}})
    with pytest.raises(ValueError, match="module:Class"):
        lazy_factory("core.engines.fake")


def test_registry_and_fake_import_no_torch() -> None:
    code = (
        "import sys\n"
        "from core.engines.registry import EngineRegistry\n"
        "r = EngineRegistry({'diffusers': {'device': 'cpu'}})\n"
        "r.get('fake')\n"
        "import core.engines, core.engines.fake\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'diffusers' not in sys.modules, 'diffusers was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
