"""The queue and the worker on real PostgreSQL: fairness, batching, progress, cancellation,
retries, crash recovery (a real process killed with SIGKILL), graceful shutdown and delivery."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select, text

from core.brand.preset_files import parse_preset
from core.brand.presets import Preset
from core.db import Database
from core.db.models import Generation as GenerationRow
from core.db.models import Image as ImageRow
from core.db.uow import sql_uow_factory
from core.delivery.sweep import Delivery
from core.domain import (
    Action,
    ActionKind,
    Actor,
    Generation,
    GenerationStatus,
    MessageRef,
    Platform,
    ReplyTarget,
    ResultCard,
)
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.errors import RefusedByProvider, UserError
from core.health import check_deliveries
from core.imaging.metadata import read_parameters, read_xmp
from core.jobs.batching import job_of
from core.jobs.worker import Worker, WorkerConfig
from core.ports import Undeliverable
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.pixels import drift

pytestmark = pytest.mark.integration

PRESET = """
name: test-brand
brand: Test
prompt: "{prompt}, test style"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-1, steps: 10, guidance: 5.0}
palette: ["#FF0000", "#0000FF"]
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""
HERE = ReplyTarget(Platform.SLACK, "T1", "C1")


def actor(name: str) -> Actor:
    return Actor(Platform.SLACK, "T1", name, name)


@pytest.fixture
def preset() -> Preset:
    return parse_preset(PRESET)


@pytest.fixture
def service(db: Database, preset: Preset) -> Service:
    return Service(sql_uow_factory(db), {preset.name: preset}, ServiceConfig("test-brand"))


@pytest.fixture
def store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


def make_worker(
    db: Database,
    store: LocalImageStore,
    preset: Preset,
    engine: FakeEngine,
    **config: float,
) -> Worker:
    engines = EngineRegistry()
    engines.put("fake", engine)
    options = {"max_batch": 4, "batch_window_s": 0.05, "progress_interval_s": 0.1} | config
    return Worker(db, engines, store, {preset.name: preset}, WorkerConfig(**options))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def statuses(db: Database, ids: list[uuid.UUID]) -> dict[uuid.UUID, GenerationStatus]:
    async with db.sessions() as session:
        rows = await session.execute(
            select(GenerationRow.id, GenerationRow.status).where(GenerationRow.id.in_(ids))
        )
        return {r.id: r.status for r in rows}


def all_finished(db: Database, ids: list[uuid.UUID]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(s.finished for s in (await statuses(db, ids)).values())

    return check


async def test_a_job_is_generated_stored_and_recorded(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    ticket = await service.imagine("a red circle --seed 11", actor("ann"), HERE)
    (gid,) = ticket.generation_ids
    worker = make_worker(db, store, preset, FakeEngine())
    await asyncio.wait_for(worker.run(drain=True), timeout=30)

    generation = await service.generation(gid)
    assert generation.status is GenerationStatus.DONE
    assert generation.image_count == 4
    async with db.sessions() as session:
        row = await session.get(GenerationRow, gid)
        assert row is not None
        assert row.progress == 1.0
        assert row.started_at is not None
        assert row.finished_at is not None
        assert row.gpu_seconds is not None
        assert row.gpu_seconds >= 0
        images = (
            await session.scalars(
                select(ImageRow).where(ImageRow.generation_id == gid).order_by(ImageRow.index)
            )
        ).all()
    assert [i.index for i in images] == [1, 2, 3, 4]
    data = await store.get(images[0].storage_key)
    assert images[0].sha256 == images[0].storage_key.split(".")[0]
    assert images[0].palette_score is not None
    parameters = read_parameters(data) or ""
    assert "a red circle, test style" in parameters
    assert "Seed: 11" in parameters
    assert f"Generation id: {gid}" in parameters
    assert "trainedAlgorithmicMedia" in (read_xmp(data) or "")
    assert Image.open(io.BytesIO(data)).size == (64, 64)


async def test_one_user_cannot_starve_another(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    a_jobs = [
        (await service.imagine(f"a circle {i} --n 1", actor("ann"), HERE)).generation_ids[0]
        for i in range(20)
    ]
    b_job = (await service.imagine("a square --n 1", actor("bob"), HERE)).generation_ids[0]
    worker = make_worker(db, store, preset, FakeEngine(), max_batch=1, batch_window_s=0)
    await asyncio.wait_for(worker.run(drain=True), timeout=60)

    async with db.sessions() as session:
        rows = await session.execute(
            select(GenerationRow.id, GenerationRow.started_at, GenerationRow.status)
        )
        started = {r.id: r.started_at for r in rows}
    assert all(started.values())
    assert started[b_job] < started[a_jobs[2]], "B waited behind A's backlog"


async def test_compatible_jobs_share_one_engine_call(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    engine = FakeEngine()
    ids = [
        (await service.imagine(f"shape {i} --n 2", actor(f"u{i}"), HERE)).generation_ids[0]
        for i in range(2)
    ]
    worker = make_worker(db, store, preset, engine, batch_window_s=0.3)
    await asyncio.wait_for(worker.run(drain=True), timeout=30)
    assert all(s is GenerationStatus.DONE for s in (await statuses(db, ids)).values())
    generate_calls = [c for c in engine.calls if c.method == "generate"]
    assert len(generate_calls) == 1
    assert len(generate_calls[0].job_ids) == 2
    assert worker.batcher.batch_sizes == [4]


async def test_a_queued_job_cancelled_never_runs(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    ann = actor("ann")
    gid = (await service.imagine("a circle", ann, HERE)).generation_ids[0]
    await service.act(Action(ActionKind.CANCEL, gid).custom_id, ann, HERE)
    engine = FakeEngine()
    await asyncio.wait_for(make_worker(db, store, preset, engine).run(drain=True), timeout=30)
    assert (await statuses(db, [gid]))[gid] is GenerationStatus.CANCELLED
    assert engine.calls == []
    async with db.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM pgqueuer")) == 0


async def test_a_stop_before_the_worker_takes_jobs_is_not_lost(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    """SIGTERM can arrive while ``run`` is still connecting: it must return, taking nothing."""
    gid = (await service.imagine("a circle", actor("ann"), HERE)).generation_ids[0]
    engine = FakeEngine()
    worker = make_worker(db, store, preset, engine)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0)  # run has started and is connecting
    worker.stop()
    await asyncio.wait_for(task, timeout=10)
    assert engine.calls == []
    assert (await statuses(db, [gid]))[gid] is GenerationStatus.QUEUED


async def test_a_running_job_cancelled_stops_and_its_batch_mates_finish(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    ann, bob = actor("ann"), actor("bob")
    doomed = (await service.imagine("slow circle --n 2", ann, HERE)).generation_ids[0]
    mate = (await service.imagine("slow square --n 2", bob, HERE)).generation_ids[0]
    engine = FakeEngine(step_delay=0.3)
    worker = make_worker(db, store, preset, engine, batch_window_s=0.3)
    async with running(worker):

        async def doomed_running() -> bool:
            async with db.sessions() as session:
                row = await session.get(GenerationRow, doomed, populate_existing=True)
                return row is not None and row.progress > 0

        await eventually(doomed_running)
        await service.act(Action(ActionKind.CANCEL, doomed).custom_id, ann, HERE)
        cancelled_at = time.monotonic()
        await eventually(all_finished(db, [doomed, mate]))
    final = await statuses(db, [doomed, mate])
    assert final == {doomed: GenerationStatus.CANCELLED, mate: GenerationStatus.DONE}
    assert time.monotonic() - cancelled_at < 10
    async with db.sessions() as session:
        kept = await session.scalar(
            select(text("count(*)")).select_from(ImageRow).where(ImageRow.generation_id == doomed)
        )
    assert kept == 0


def counter(name: str) -> float:
    from core.ops.metrics import REGISTRY

    return REGISTRY.get_sample_value(f"{name}_total") or 0.0


async def test_a_failing_job_is_retried_then_fails_with_a_reference(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    before = {n: counter(n) for n in ("onbrand_jobs_retried", "onbrand_jobs_failed")}
    gid = (await service.imagine("boom", actor("ann"), HERE)).generation_ids[0]
    worker = make_worker(
        db, store, preset, FakeEngine(fail_on=["boom"]), retry_delay_s=0, max_attempts=3
    )
    async with running(worker):
        await eventually(all_finished(db, [gid]))
    generation = await service.generation(gid)
    assert generation.status is GenerationStatus.FAILED
    assert generation.error == f"generation failed, reference {gid}"
    assert counter("onbrand_jobs_retried") - before["onbrand_jobs_retried"] == 2
    assert counter("onbrand_jobs_failed") - before["onbrand_jobs_failed"] == 1
    async with db.sessions() as session:
        row = await session.get(GenerationRow, gid)
        assert row is not None
        assert row.attempts == 3


class RaisingEngine(FakeEngine):
    """A fake whose every text-to-image call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def generate(self, model: str, jobs: Sequence[Any], **_: Any) -> list[Any]:
        raise self.error


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (RefusedByProvider("The image service refused this prompt: unsafe. Rephrase it."), None),
        (UserError("some other user error"), "generation failed, reference {gid}"),
    ],
)
async def test_only_a_provider_refusal_is_shown_as_worded_and_neither_is_retried(
    db: Database,
    service: Service,
    store: LocalImageStore,
    preset: Preset,
    error: Exception,
    shown: str | None,
) -> None:
    gid = (await service.imagine("a cat", actor("ann"), HERE)).generation_ids[0]
    worker = make_worker(db, store, preset, RaisingEngine(error), retry_delay_s=0, max_attempts=3)
    async with running(worker):
        await eventually(all_finished(db, [gid]))
    generation = await service.generation(gid)
    assert generation.status is GenerationStatus.FAILED
    assert generation.error == (str(error) if shown is None else shown.format(gid=gid))
    async with db.sessions() as session:
        row = await session.get(GenerationRow, gid)
        assert row is not None
        assert row.attempts == 1


@contextlib.contextmanager
def worker_process(
    database_url: str, images: Path, step_delay: float, heartbeat_s: float
) -> Iterator[subprocess.Popen[str]]:
    env = os.environ | {"DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.worker_process",
            str(images),
            str(step_delay),
            str(heartbeat_s),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "worker ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


async def test_a_job_whose_worker_was_killed_is_finished_once_by_another(
    db: Database, service: Service, store: LocalImageStore, preset: Preset, database_url: str
) -> None:
    gid = (await service.imagine("slow circle", actor("ann"), HERE)).generation_ids[0]
    with worker_process(database_url, store.root, step_delay=1.0, heartbeat_s=2.0) as proc:

        async def started() -> bool:
            return (await statuses(db, [gid]))[gid] is GenerationStatus.RUNNING

        await eventually(started)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    survivor = make_worker(db, store, preset, FakeEngine(), heartbeat_timeout_s=2.0)
    async with running(survivor):
        await eventually(all_finished(db, [gid]), within=30)
    generation = await service.generation(gid)
    assert generation.status is GenerationStatus.DONE
    assert generation.image_count == 4
    async with db.sessions() as session:
        row = await session.get(GenerationRow, gid)
        assert row is not None
        assert row.attempts == 2


async def test_sigterm_finishes_the_batch_in_hand_then_exits_0(
    db: Database, service: Service, store: LocalImageStore, database_url: str
) -> None:
    gid = (await service.imagine("slow circle", actor("ann"), HERE)).generation_ids[0]
    with worker_process(database_url, store.root, step_delay=0.3, heartbeat_s=10) as proc:

        async def started() -> bool:
            return (await statuses(db, [gid]))[gid] is GenerationStatus.RUNNING

        await eventually(started)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, out
    assert (await statuses(db, [gid]))[gid] is GenerationStatus.DONE


class RecordingSink:
    """A chat platform that records what it was asked to post."""

    platform = Platform.SLACK
    max_upload_bytes = 8 * 1024 * 1024

    def __init__(self, *, fail_times: int = 0) -> None:
        self.posted: list[tuple[uuid.UUID, ResultCard]] = []
        self.edits: list[tuple[MessageRef, ResultCard]] = []
        self.fail_times = fail_times
        self.gone: set[str] = set()  # channels deleted on the platform
        self.earlier: list[datetime | None] = []  # each post's ``earlier_attempt``

    async def update_status(self, ref: MessageRef, card: ResultCard) -> None:
        self.edits.append((ref, card))

    async def post_result(
        self,
        target: ReplyTarget,
        card: ResultCard,
        generation: Generation,
        *,
        earlier_attempt: datetime | None = None,
    ) -> MessageRef:
        self.earlier.append(earlier_attempt)
        if target.channel_id in self.gone:
            raise Undeliverable(f"channel_not_found: {target.channel_id}")
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("platform is down")
        self.posted.append((generation.id, card))
        return MessageRef(Platform.SLACK, target.channel_id, f"result-{len(self.posted)}")


async def test_results_finished_while_the_bot_was_down_are_delivered_once(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    gid = (await service.imagine("a circle", actor("ann"), HERE)).generation_ids[0]
    status = MessageRef(Platform.SLACK, "C1", "status-1")
    await service.record_message(gid, status, "status")
    await asyncio.wait_for(make_worker(db, store, preset, FakeEngine()).run(drain=True), timeout=30)

    sink = RecordingSink(fail_times=1)
    delivery = Delivery(db, service, store, sink, retry_base_s=0)  # no wait before a retry
    assert await delivery.sweep() == 0  # the platform refused: still undelivered
    assert await delivery.sweep() == 1
    assert await delivery.sweep() == 0  # never twice
    async with db.sessions() as session:
        began = await session.scalar(
            text("SELECT delivery_began_at FROM generations WHERE id = :g"), {"g": gid}
        )
    assert began is not None
    assert sink.earlier == [None, began]  # the retry is told when the first try began
    ((posted_id, card),) = sink.posted
    assert posted_id == gid
    labels = ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "🔄", "Remix"]
    assert [a.label for a in card.actions] == labels
    assert card.images[0].data[:3] == b"\xff\xd8\xff"  # a JPEG preview
    assert sink.edits[-1][0] == status
    assert "Done" in sink.edits[-1][1].text
    # Reactions on the posted result now count.
    assert await service.react(
        MessageRef(Platform.SLACK, "C1", "result-1"), "star", actor("bob"), added=True
    )


async def finished(
    service: Service, db: Database, store: LocalImageStore, where: ReplyTarget, n: int
) -> list[uuid.UUID]:
    """``n`` one-image generations for ``where``, made by a worker, finished in this order."""
    ids = []
    for i in range(n):
        ticket = await service.imagine(f"a circle --n 1 --seed {i}", actor(f"u{i}"), where)
        ids.extend(ticket.generation_ids)
    preset = service.presets["test-brand"]
    worker = make_worker(db, store, preset, FakeEngine(), max_batch=1)
    await asyncio.wait_for(worker.run(drain=True), timeout=60)
    return ids


def gave_up_count() -> float:
    from core.ops.metrics import DELIVERIES_GIVEN_UP

    return sum(
        sample.value
        for metric in DELIVERIES_GIVEN_UP.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def delivery_state(db: Database, gid: uuid.UUID) -> Any:
    async with db.engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT delivered_at, delivery_attempts, delivery_retry_at > now() AS waiting, "
                    "undeliverable FROM generations WHERE id = :id"
                ),
                {"id": gid},
            )
        ).one()


async def test_results_for_a_channel_that_is_gone_are_given_up_and_never_block_others(
    db: Database, service: Service, store: LocalImageStore
) -> None:
    """Sixty results for a deleted channel, older than one deliverable result: the sweep takes
    fifty at a time, so retrying them forever would starve the newer one."""
    gone = ReplyTarget(Platform.SLACK, "T1", "C-deleted")
    stuck = await finished(service, db, store, gone, 60)
    [fresh] = await finished(service, db, store, HERE, 1)
    sink = RecordingSink()
    sink.gone.add(gone.channel_id)
    delivery = Delivery(db, service, store, sink)
    given_up = gave_up_count()
    assert await delivery.sweep() == 0  # the oldest fifty: each refused for good
    assert await delivery.sweep() == 1  # the other ten and the fresh one
    assert [gid for gid, _ in sink.posted] == [fresh]
    assert await delivery.sweep() == 0  # the refused ones are never tried again
    for gid in stuck:
        state = await delivery_state(db, gid)
        assert state.delivered_at is None
        assert state.delivery_attempts == 1
        assert state.undeliverable == "channel_not_found: C-deleted"
    assert gave_up_count() - given_up == 60
    doctor = await check_deliveries(db)
    assert doctor.ok  # not a fault of the installation, but said
    assert "60 result(s) of the last 7 days never posted" in doctor.detail
    assert "slack: channel_not_found: C-deleted" in doctor.detail


async def test_a_failing_post_backs_off_then_is_given_up_after_max_attempts(
    db: Database, service: Service, store: LocalImageStore
) -> None:
    [gid] = await finished(service, db, store, HERE, 1)
    sink = RecordingSink(fail_times=3)
    delivery = Delivery(db, service, store, sink, retry_base_s=3600, max_attempts=3)
    assert await delivery.sweep() == 0
    state = await delivery_state(db, gid)
    assert (state.delivery_attempts, state.waiting, state.undeliverable) == (1, True, None)
    assert await delivery.sweep() == 0  # waiting: not tried again yet
    assert sink.fail_times == 2
    assert delivery.retry_wait(1).total_seconds() == 3600
    assert delivery.retry_wait(4).total_seconds() == 3600  # doubling, capped at an hour
    assert Delivery(db, service, store, sink, retry_base_s=5).retry_wait(3).total_seconds() == 20
    for attempts in (2, 3):
        async with db.engine.begin() as conn:  # time passes
            await conn.execute(text("UPDATE generations SET delivery_retry_at = now()"))
        assert await delivery.sweep() == 0
        assert (await delivery_state(db, gid)).delivery_attempts == attempts
    state = await delivery_state(db, gid)
    assert state.undeliverable == "gave up after 3 attempts: ConnectionError: platform is down"
    assert state.waiting is None
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE generations SET delivery_retry_at = now()"))
    assert await delivery.sweep() == 0
    assert sink.posted == []


async def test_events_drive_progress_edits_and_delivery(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    gid = (await service.imagine("slowish circle", actor("ann"), HERE)).generation_ids[0]
    status = MessageRef(Platform.SLACK, "C1", "status-1")
    await service.record_message(gid, status, "status")
    sink = RecordingSink()
    delivery = Delivery(db, service, store, sink, sweep_interval_s=3600)
    listening = asyncio.create_task(delivery.run())
    await asyncio.sleep(0.5)  # LISTEN is in place
    worker = make_worker(db, store, preset, FakeEngine(step_delay=0.1))
    try:
        async with running(worker):

            async def posted() -> bool:
                return bool(sink.posted)

            await eventually(posted)
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    assert [g for g, _ in sink.posted] == [gid]
    progress_texts = [card.text for ref, card in sink.edits if "Generating" in card.text]
    assert progress_texts, "no progress edit reached the status message"


async def test_concurrent_jobs_start_and_finish_in_shared_statements(
    db: Database, service: Service, store: LocalImageStore, preset: Preset
) -> None:
    ids = [
        (await service.imagine(f"shape {i} --n 1", actor(f"u{i}"), HERE)).generation_ids[0]
        for i in range(8)
    ]
    worker = make_worker(db, store, preset, FakeEngine(), batch_window_s=0)
    await asyncio.wait_for(worker.run(drain=True), timeout=30)
    assert set((await statuses(db, ids)).values()) == {GenerationStatus.DONE}
    assert worker.completed == 8
    # Jobs claimed together start in one statement. (Jobs whose images are stored at the same
    # moment also finish in one, but since finishing runs in its own thread pool, per image,
    # whether two stores coincide is up to the scheduler: not asserted here.)
    assert worker._start.flushes < 8
    assert worker._finish.flushes <= 8
    async with db.sessions() as session:
        counts = await session.execute(
            select(ImageRow.generation_id, text("count(*)")).group_by(ImageRow.generation_id)
        )
        assert {gid: n for gid, n in counts.all()} == dict.fromkeys(ids, 1)


async def test_finish_never_overwrites_a_generation_cancelled_meanwhile(
    db: Database, service: Service, preset: Preset
) -> None:
    import asyncpg

    from core.db import jobs
    from core.db.events import subscribe

    ann = actor("ann")
    kept, cancelled = [
        (await service.imagine(f"circle {i} --n 1", ann, HERE)).generation_ids[0] for i in range(2)
    ]
    sql = await asyncpg.connect(db.dsn)
    try:
        started = await jobs.start_many(sql, [kept, cancelled])
        assert set(started) == {kept, cancelled}
        assert all(job.attempts == 1 for job in started.values())
        await service.act(Action(ActionKind.CANCEL, cancelled).custom_id, ann, HERE)
        assert await jobs.start(sql, cancelled) is None  # no longer runnable

        image = jobs.StoredImage(1, "a" * 64 + ".png", "a" * 64, 64, 64, 10, None)
        async with subscribe(db.dsn) as events:
            done = await jobs.finish_many(
                sql,
                [
                    jobs.Finished(started[kept], [image], 0.5),
                    jobs.Finished(started[cancelled], [image], 0.5),
                ],
            )
            assert done == {kept}
            event = await asyncio.wait_for(events.get(), timeout=5)
            assert (event.type, event.generation_id) == ("done", kept)
            # Finishing again (a re-claimed job) changes nothing and says so.
            assert not await jobs.finish(sql, started[kept], [image], 0.5)
            await asyncio.sleep(0.2)
            assert events.empty(), "no second done event"
    finally:
        await sql.close()
    assert await statuses(db, [kept, cancelled]) == {
        kept: GenerationStatus.DONE,
        cancelled: GenerationStatus.CANCELLED,
    }
    async with db.sessions() as session:
        recorded = (await session.execute(select(ImageRow.generation_id))).scalars().all()
        assert recorded == [kept]
        row = await session.get(GenerationRow, kept)
        assert row is not None
        assert row.gpu_seconds == 0.5


TINY_PRESET = """
name: tiny-brand
brand: Tiny
prompt: "{prompt}"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: diffusers, model: tiny, steps: 3, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""


async def _pictures(db: Database, store: LocalImageStore, gid: uuid.UUID) -> list[Image.Image]:
    async with db.sessions() as session:
        keys = (
            await session.scalars(
                select(ImageRow.storage_key)
                .where(ImageRow.generation_id == gid)
                .order_by(ImageRow.index)
            )
        ).all()
    return [Image.open(io.BytesIO(await store.get(k))).convert("RGB") for k in keys]


@pytest.mark.slow
async def test_a_batched_job_makes_the_picture_it_makes_alone(
    db: Database, store: LocalImageStore
) -> None:
    """The real diffusers engine on the bundled model: batching does not change a picture beyond
    floating-point noise (``tests.pixels``: kernels differ by batch size and CPU). The engine's
    pictures are compared, as it made them: the stored originals also carry each image's own
    invisible watermark (``core.provenance.watermark``), which differs on purpose."""
    from core.engines.diffusers import DiffusersEngine

    made: dict[str, list[tuple[str, list[Image.Image]]]] = {}  # job → its pieces' pictures

    class Recording(DiffusersEngine):
        async def generate(self, model: str, jobs: Any, **options: Any) -> Any:
            results = await super().generate(model, jobs, **options)
            for result in results:
                pieces = made.setdefault(job_of(result.job_id), [])
                pieces.append((result.job_id, [im.convert("RGB") for im in result.images]))
            return results

    async def pictures(gid: uuid.UUID) -> list[Image.Image]:
        assert len(await _pictures(db, store, gid)) == 2  # they were stored, too
        return [im for _, images in sorted(made[str(gid)]) for im in images]

    preset = parse_preset(TINY_PRESET)
    service = Service(sql_uow_factory(db), {preset.name: preset}, ServiceConfig(preset.name))
    engines = EngineRegistry()
    engines.put("diffusers", Recording(device="cpu"))
    config = WorkerConfig(max_batch=4, batch_window_s=0.5, progress_interval_s=0.1)
    worker = Worker(db, engines, store, {preset.name: preset}, config)

    async def ask(text: str, who: str) -> uuid.UUID:
        return (await service.imagine(text, actor(who), HERE)).generation_ids[0]

    alone = await ask("a red circle on a blue background --seed 3 --n 2", "a")
    await asyncio.wait_for(worker.run(drain=True), timeout=120)
    batched = await ask("a red circle on a blue background --seed 3 --n 2", "b")
    mate = await ask("a green square on a yellow background --seed 9 --n 2", "c")
    worker = Worker(db, engines, store, {preset.name: preset}, config)
    await asyncio.wait_for(worker.run(drain=True), timeout=120)

    assert worker.batcher.batch_sizes == [4], "the two jobs should have shared one call"
    alone_pictures = await pictures(alone)
    for solo, together in zip(alone_pictures, await pictures(batched), strict=True):
        assert drift(solo, together).within_batch_tolerance, drift(solo, together)
    for solo, other in zip(alone_pictures, await pictures(mate), strict=True):
        assert not drift(solo, other).within_batch_tolerance, "a different prompt and seed"
