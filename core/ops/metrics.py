"""Prometheus metrics for every onbrand process: the registry, its counters, and the hooks.

Code elsewhere reports through small hook functions (``job_started``, ``job_ended``,
``engine_call``, ``delivered``, ``platform_error``) so modules never import prometheus_client
themselves, and ``InstrumentedEngines`` times engine calls from outside the worker. The queue
depth is read from pgqueuer's table when scraped (at most every ``QUEUE_REFRESH_S``), so every
process with a database reports it; aggregate it with ``max`` across processes, not ``sum``.
``core.ops.server`` serves the registry at ``/metrics``; ``core.ops.readiness`` says whether a
process is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from core.db.database import Database
    from core.ports import CancelledFn, Engine, GenerateJob, JobResult, ProgressFn, VaryJob

__all__ = [
    "QUEUE_DEPTH",
    "REGISTRY",
    "InstrumentedEngines",
    "delivered",
    "engine_call",
    "http_trace",
    "job_ended",
    "job_started",
    "platform_error",
]

log = logging.getLogger(__name__)

REGISTRY: Final = CollectorRegistry(auto_describe=True)
"""onbrand's own registry (process and platform collectors included)."""

QUEUE_REFRESH_S: Final = 2.0

_LATENCY_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600)

JOBS_STARTED: Final = Counter(
    "onbrand_jobs_started", "Generation jobs a worker started.", registry=REGISTRY
)
JOBS_FINISHED: Final = Counter(
    "onbrand_jobs_finished", "Generation jobs finished with their images stored.", registry=REGISTRY
)
JOBS_FAILED: Final = Counter(
    "onbrand_jobs_failed", "Generation jobs that failed for good.", registry=REGISTRY
)
JOBS_CANCELLED: Final = Counter(
    "onbrand_jobs_cancelled", "Generation jobs cancelled while running.", registry=REGISTRY
)
JOBS_RETRIED: Final = Counter(
    "onbrand_jobs_retried",
    "Generation attempts that failed and were queued again.",
    registry=REGISTRY,
)
GENERATION_SECONDS: Final = Histogram(
    "onbrand_generation_seconds",
    "Seconds per engine call (one batch of jobs), by model.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE: Final = Histogram(
    "onbrand_batch_size",
    "Images per engine call.",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
    registry=REGISTRY,
)
DELIVERY_LAG: Final = Histogram(
    "onbrand_delivery_lag_seconds",
    "Seconds from a generation finishing to its result being posted, by platform.",
    ["platform"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DELIVERIES_GIVEN_UP: Final = Counter(
    "onbrand_deliveries_given_up_total",
    "Results never posted: the channel refused them for good (permanent) or too many tries failed",
    ["platform", "why"],
)
PLATFORM_ERRORS: Final = Counter(
    "onbrand_platform_api_errors",
    "Failed chat platform API calls, by platform and HTTP status (or error name).",
    ["platform", "status"],
    registry=REGISTRY,
)
PLATFORM_RATE_LIMITED: Final = Counter(
    "onbrand_platform_rate_limited",
    "Chat platform API calls answered 429 (rate limited), by platform.",
    ["platform"],
    registry=REGISTRY,
)

JobOutcome = Literal["done", "failed", "cancelled", "retried"]
_OUTCOMES: Final = {
    "done": JOBS_FINISHED,
    "failed": JOBS_FAILED,
    "cancelled": JOBS_CANCELLED,
    "retried": JOBS_RETRIED,
}


# --------------------------------------------------------------------------------- hooks


def job_started() -> None:
    """A worker began a generation job."""
    JOBS_STARTED.inc()


def job_ended(outcome: JobOutcome) -> None:
    """A job the worker started ended: ``done``, ``failed``, ``cancelled`` or ``retried``."""
    _OUTCOMES[outcome].inc()


def engine_call(model: str, images: int, seconds: float) -> None:
    """One engine call made ``images`` images with ``model`` in ``seconds``."""
    GENERATION_SECONDS.labels(model=model).observe(seconds)
    BATCH_SIZE.observe(images)


def delivery_given_up(platform: str, *, permanent: bool) -> None:
    DELIVERIES_GIVEN_UP.labels(platform=platform, why="refused" if permanent else "attempts").inc()


def delivered(
    platform: str,
    finished_at: datetime | None = None,
    now: datetime | None = None,
    *,
    lag_s: float | None = None,
) -> None:
    """A result was posted; the lag is ``lag_s``, or measured from ``finished_at`` (aware or
    UTC) to ``now``. Nothing is observed when neither is known."""
    if lag_s is None:
        if finished_at is None:
            return
        if finished_at.tzinfo is None:
            finished_at = finished_at.replace(tzinfo=UTC)
        lag_s = ((now or datetime.now(UTC)) - finished_at).total_seconds()
    DELIVERY_LAG.labels(platform=platform).observe(max(lag_s, 0.0))


def platform_error(platform: str, status: int | str) -> None:
    """A chat platform API call failed with ``status`` (an HTTP status or an error name)."""
    PLATFORM_ERRORS.labels(platform=platform, status=str(status)).inc()
    if str(status) in ("429", "ratelimited", "rate_limited"):
        PLATFORM_RATE_LIMITED.labels(platform=platform).inc()


def http_trace(platform: str) -> Any:
    """An ``aiohttp.TraceConfig`` that reports every 4xx/5xx answer of the platform's API.

    Pass it to the platform client's aiohttp session: discord.py ``Client(http_trace=...)``,
    slack_sdk ``AsyncWebClient(session=aiohttp.ClientSession(trace_configs=[...]))``."""
    import aiohttp

    trace = aiohttp.TraceConfig()

    async def on_request_end(_session: Any, _context: Any, params: Any) -> None:
        status = params.response.status
        if status >= 400:
            platform_error(platform, status)

    async def on_request_exception(_session: Any, _context: Any, params: Any) -> None:
        platform_error(platform, type(params.exception).__name__)

    trace.on_request_end.append(on_request_end)
    trace.on_request_exception.append(on_request_exception)
    return trace


# ------------------------------------------------------------------- engines, from outside


class _TimedEngine:
    """An ``Engine`` that reports each call's duration and images to the metrics."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name

    async def generate(
        self,
        model: str,
        jobs: Sequence[GenerateJob],
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> list[JobResult]:
        started = time.perf_counter()
        results = await self.engine.generate(model, jobs, progress=progress, cancelled=cancelled)
        engine_call(model, sum(len(job.seeds) for job in jobs), time.perf_counter() - started)
        return results

    async def vary(
        self,
        model: str,
        job: VaryJob,
        *,
        progress: ProgressFn | None = None,
        cancelled: CancelledFn | None = None,
    ) -> JobResult:
        started = time.perf_counter()
        result = await self.engine.vary(model, job, progress=progress, cancelled=cancelled)
        engine_call(model, len(job.seeds), time.perf_counter() - started)
        return result

    async def upscale(
        self, model: str, image: Any, factor: int = 2, upscaler: str | None = None
    ) -> Any:
        started = time.perf_counter()
        result = await self.engine.upscale(model, image, factor, upscaler)
        engine_call(model, 1, time.perf_counter() - started)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


class InstrumentedEngines:
    """Wraps an ``EngineRegistry``: ``get(kind)`` returns the engine, timed."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._timed: dict[str, _TimedEngine] = {}

    def get(self, kind: str) -> Engine:
        engine = self.registry.get(kind)
        timed = self._timed.get(kind)
        if timed is None or timed.engine is not engine:
            timed = self._timed[kind] = _TimedEngine(engine)
        return timed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.registry, name)


# ------------------------------------------------------------------------------ queue depth


class QueueDepthCollector(Collector):
    """Jobs waiting in pgqueuer's table by priority, read on scrape (cached briefly)."""

    def __init__(self, table: str | None = None, entrypoint: str = "generate") -> None:
        self.table = table  # None: pgqueuer's configured table
        self.entrypoint = entrypoint
        self._by_priority: dict[int, int] = {}
        self._picked = 0
        self._oldest_s = 0.0
        self._up = False
        self._read_at = 0.0

    async def refresh(self, db: Database, *, max_age_s: float = QUEUE_REFRESH_S) -> None:
        if time.monotonic() - self._read_at < max_age_s:
            return
        from pgqueuer.domain.settings import db_settings
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        table = self.table or db_settings().qualified.queue_table
        query = text(
            f"SELECT priority, status::text AS status, count(*) AS n, "  # table: a setting
            f"COALESCE(EXTRACT(EPOCH FROM now() - min(created)), 0) AS oldest "
            f"FROM {table} WHERE entrypoint = :entrypoint GROUP BY priority, status"
        )
        try:
            async with asyncio.timeout(2.0), db.engine.connect() as conn:
                rows = (await conn.execute(query, {"entrypoint": self.entrypoint})).all()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:  # the scrape still answers;
            # database_up says what happened
            log.debug("queue depth: %s", exc)
            self._up = False
            self._read_at = time.monotonic()
            return
        by_priority: dict[int, int] = {}
        picked, oldest = 0, 0.0
        for row in rows:
            if row.status == "queued":
                by_priority[int(row.priority)] = by_priority.get(int(row.priority), 0) + int(row.n)
                oldest = max(oldest, float(row.oldest))
            elif row.status == "picked":
                picked += int(row.n)
        self._by_priority, self._picked, self._oldest_s = by_priority, picked, oldest
        self._up = True
        self._read_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("onbrand_database_up", "1 when the last queue read succeeded.")
        up.add_metric([], 1.0 if self._up else 0.0)
        yield up
        depth = GaugeMetricFamily(
            "onbrand_queue_depth", "Generation jobs waiting, by priority.", labels=["priority"]
        )
        for priority, count in sorted(self._by_priority.items()):
            depth.add_metric([str(priority)], count)
        if not self._by_priority:
            depth.add_metric(["0"], 0)
        yield depth
        running = GaugeMetricFamily("onbrand_queue_in_progress", "Jobs claimed by a worker.")
        running.add_metric([], self._picked)
        yield running
        oldest = GaugeMetricFamily(
            "onbrand_queue_oldest_seconds", "Age of the oldest waiting job (0 when none)."
        )
        oldest.add_metric([], self._oldest_s)
        yield oldest


QUEUE_DEPTH: Final = QueueDepthCollector()
REGISTRY.register(QUEUE_DEPTH)
with contextlib.suppress(ValueError):  # the platform/process collectors, once per registry
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        REGISTRY.register(_collector)
