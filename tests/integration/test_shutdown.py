"""Graceful shutdown of the real processes (``onbrand worker``, ``onbrand run`` with Slack over
HTTP against the fake Slack), and their metrics and health endpoints while they work.

The processes are the real CLI. Only the fake engine is slowed down (``ONBRAND_TEST_STEP_DELAY``
seconds per step), through ``slow_onbrand``, so that a SIGTERM lands while a job is in hand.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from core.db import Database
from core.engines.fake import FakeEngine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PRESET = """
name: slow-test
brand: Slow Test
prompt: "{prompt}, test style"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-slow, steps: 10, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""
LISTED_METRICS = (
    "onbrand_queue_depth",
    "onbrand_queue_in_progress",
    "onbrand_jobs_started_total",
    "onbrand_jobs_finished_total",
    "onbrand_jobs_failed_total",
    "onbrand_jobs_cancelled_total",
    "onbrand_generation_seconds",
    "onbrand_batch_size",
    "onbrand_delivery_lag_seconds",
    "onbrand_platform_api_errors",
    "onbrand_platform_rate_limited",
    "onbrand_database_up",
)


class SlowFakeEngine(FakeEngine):
    """The fake engine, ``ONBRAND_TEST_STEP_DELAY`` seconds per step."""

    def __init__(self) -> None:
        super().__init__(step_delay=float(os.environ.get("ONBRAND_TEST_STEP_DELAY", "0")))


def slow_onbrand() -> None:
    """``python -c 'from tests.integration.test_shutdown import slow_onbrand; slow_onbrand()'
    worker``: the real ``onbrand`` command, with the slow fake engine as ``fake``."""
    from core.engines import registry

    registry.BUILTIN_ENGINES = {  # type: ignore[misc]
        **registry.BUILTIN_ENGINES,
        "fake": "tests.integration.test_shutdown:SlowFakeEngine",
    }
    from bots.cli import main

    main()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "slow-test.yaml").write_text(PRESET)
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ONBRAND_", "SLACK_", "DISCORD_", "AWS_"))
    }
    return clean | {
        "DATABASE_URL": database_url,
        "ONBRAND_DATA_DIR": str(tmp_path / "data"),
        "ONBRAND_PRESETS_DIR": str(presets),
        "ONBRAND_DEFAULT_PRESET": "slow-test",
        "ONBRAND_TEST_STEP_DELAY": "0.3",
        "ONBRAND_METRICS_PORT": str(free_port()),
        "ONBRAND_METRICS_HOST": "127.0.0.1",
        "ONBRAND_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(REPO),
    }


@contextmanager
def onbrand_process(*args: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tests.integration.test_shutdown import slow_onbrand; "
         "slow_onbrand()", *args],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def imagine_no_wait(prompt: str, env: dict[str, str]) -> uuid.UUID:
    done = subprocess.run(
        [sys.executable, "-m", "bots.cli", "imagine", prompt, "--no-wait"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", done.stderr)
    assert found, done.stderr
    return uuid.UUID(found.group())


async def eventually(check: Callable[[], Awaitable[Any]], what: str, within: float = 60) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            if result := await check():
                return result
        except (aiohttp.ClientError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {within} s: {what}")
        await asyncio.sleep(0.1)


async def status(db: Database, gid: uuid.UUID) -> tuple[str, bool]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, delivered_at IS NOT NULL FROM generations WHERE id = :id"),
                {"id": gid},
            )
        ).one()
    return str(row[0]), bool(row[1])


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def sample(metrics: str, name: str) -> float:
    """The value of one sample line (``name`` with its labels) in Prometheus' text format."""
    for line in metrics.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            key, _, value = line.rpartition(" ")
            if key == name or key.startswith(name + "{"):
                return float(value)
    raise AssertionError(f"{name} not in the metrics")


async def finish(proc: subprocess.Popen[str], within: float) -> tuple[int, str, float]:
    started = time.monotonic()
    out, _ = await asyncio.to_thread(proc.communicate, timeout=within)
    return proc.returncode, out, time.monotonic() - started


# ------------------------------------------------------------------------------ the worker


async def test_onbrand_worker_serves_metrics_then_sigterm_finishes_the_job_and_exits_0(
    env: dict[str, str], db: Database
) -> None:
    base = f"http://127.0.0.1:{env['ONBRAND_METRICS_PORT']}"
    first = imagine_no_wait("a first circle", env)
    with onbrand_process("worker", env=env) as proc:
        assert (await eventually(lambda: get(f"{base}/healthz"), "healthz"))[0] == 200
        await eventually(lambda: _is(db, first, "done"), "the first job done")
        second = imagine_no_wait("a second circle", env)
        await eventually(lambda: _is(db, second, "running"), "the second job running")

        code, body = await get(f"{base}/readyz")
        assert code == 200, body
        assert set(json.loads(body)["checks"]) == {"database", "engines", "worker"}
        code, metrics = await get(f"{base}/metrics")
        assert code == 200
        for name in LISTED_METRICS:
            assert name in metrics, name
        assert sample(metrics, "onbrand_database_up") == 1
        assert sample(metrics, "onbrand_queue_in_progress") == 1
        assert 'onbrand_generation_seconds_count{model="fake-slow"} 1.0' in metrics
        assert sample(metrics, "onbrand_batch_size_sum") == 4  # four images in one call

        proc.send_signal(signal.SIGTERM)
        code, out, took = await finish(proc, within=30)
    assert code == 0, out
    assert took < 30
    assert (await status(db, second))[0] == "done"
    assert "stopping: finishing the work in hand" in out


async def test_onbrand_worker_past_the_grace_period_exits_anyway_non_zero(
    env: dict[str, str], db: Database
) -> None:
    env = env | {"ONBRAND_SHUTDOWN_GRACE_S": "1", "ONBRAND_TEST_STEP_DELAY": "3"}
    gid = imagine_no_wait("a very slow circle", env)
    with onbrand_process("worker", env=env) as proc:
        await eventually(lambda: _is(db, gid, "running"), "the job running")
        proc.send_signal(signal.SIGTERM)
        code, out, took = await finish(proc, within=30)
    assert code == 3, out
    assert took < 15
    assert "grace period" in out
    assert (await status(db, gid))[0] == "running"  # claimed again after the heartbeat timeout


async def _is(db: Database, gid: uuid.UUID, wanted: str) -> bool:
    return (await status(db, gid))[0] == wanted


# ------------------------------------------------------------------------------- the bot


async def test_onbrand_run_with_slack_flushes_the_result_on_sigterm_and_exits_0(
    env: dict[str, str], db: Database
) -> None:
    from tests.fakes.slack import SIGNING_SECRET, SlackSender, running_fake_slack

    http_port = free_port()
    base = f"http://127.0.0.1:{env['ONBRAND_METRICS_PORT']}"
    with running_fake_slack() as fake:
        env = env | {
            "SLACK_BOT_TOKEN": fake.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url,
            "ONBRAND_HTTP_PORT": str(http_port),
        }
        sender = SlackSender(f"http://127.0.0.1:{http_port}/slack/events", SIGNING_SECRET, fake)
        with onbrand_process("run", env=env) as proc:

            async def ready() -> bool:
                code, body = await get(f"{base}/readyz")
                return code == 200 and "slack" in json.loads(body)["checks"]

            await eventually(ready, "ready, with Slack listening")
            sent = await sender.slash_command("a slow circle")
            assert sent.status == 200, sent.body

            async def running() -> uuid.UUID | None:
                async with db.engine.connect() as conn:
                    found = await conn.scalar(
                        text("SELECT id FROM generations WHERE status = 'running'")
                    )
                return found if isinstance(found, uuid.UUID) else None

            gid = await eventually(running, "the job running")
            proc.send_signal(signal.SIGTERM)
            code, out, took = await finish(proc, within=40)
        assert code == 0, out
        assert took < 30
        assert await status(db, gid) == ("done", True)  # finished, and posted before exit
        assert fake.files, "the images were uploaded to Slack"
        with pytest.raises(aiohttp.ClientConnectorError):  # no longer taking commands
            await sender.slash_command("after the stop")
