"""Metrics hooks, the engine timing wrapper, readiness, and the health server (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.ops import metrics
from core.ops.readiness import Readiness
from core.ops.server import MetricsServer
from core.ports import GenerateJob

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_hooks_count_jobs_deliveries_and_platform_errors() -> None:
    before = {n: value(n) for n in ("onbrand_jobs_started_total", "onbrand_jobs_failed_total")}
    metrics.job_started()
    metrics.job_ended("failed")
    assert value("onbrand_jobs_started_total") == before["onbrand_jobs_started_total"] + 1
    assert value("onbrand_jobs_failed_total") == before["onbrand_jobs_failed_total"] + 1

    now = datetime.now(UTC)
    lag = value("onbrand_delivery_lag_seconds_sum", platform="slack")
    metrics.delivered("slack", now - timedelta(seconds=2), now=now)
    assert value("onbrand_delivery_lag_seconds_sum", platform="slack") == pytest.approx(lag + 2)

    limited = value("onbrand_platform_rate_limited_total", platform="discord")
    metrics.platform_error("discord", 429)
    assert value("onbrand_platform_rate_limited_total", platform="discord") == limited + 1
    assert value("onbrand_platform_api_errors_total", platform="discord", status="429") >= 1


async def test_instrumented_engines_time_each_call_by_model() -> None:
    registry = EngineRegistry(builtins=False)
    registry.put("fake", FakeEngine())
    engines = metrics.InstrumentedEngines(registry)
    job = GenerateJob("j1", "a circle", "", 32, 32, 2, 5.0, (1, 2, 3))
    count = value("onbrand_generation_seconds_count", model="m-unit")
    images = value("onbrand_batch_size_sum")
    results = await engines.get("fake").generate("m-unit", [job])
    assert len(results[0].images) == 3
    assert value("onbrand_generation_seconds_count", model="m-unit") == count + 1
    assert value("onbrand_batch_size_sum") == images + 3
    assert engines.kinds == ("fake",)  # everything else passes through


async def test_readiness_reports_each_check_and_fails_on_any() -> None:
    readiness = Readiness()
    readiness.set("worker", True, "taking jobs")

    async def broken() -> tuple[bool, str]:
        raise ConnectionError("database down")

    readiness.add_check("database", broken)
    results = await readiness.evaluate()
    assert results["worker"] == (True, "taking jobs")
    assert results["database"] == (False, "ConnectionError: database down")


async def test_the_server_answers_healthz_readyz_and_metrics() -> None:
    readiness = Readiness()
    readiness.set("gateway", False, "not connected")
    server = MetricsServer("127.0.0.1", 0, readiness=readiness)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 503
                body = await response.json()
                assert body["checks"]["gateway"] == {"ok": False, "detail": "not connected"}
            readiness.set("gateway", True)
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200
            async with session.get(f"{base}/metrics") as response:
                assert response.status == 200
                assert "onbrand_jobs_started_total" in await response.text()
    finally:
        await server.stop()
