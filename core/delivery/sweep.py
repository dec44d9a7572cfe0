"""Getting results back to the chat: events for speed, a sweep so nothing is ever lost.

A bot process runs one ``Delivery`` for its platform. Worker events (LISTEN/NOTIFY) make it
edit the status message as progress comes in and post the result the moment a generation
finishes; a periodic sweep posts anything finished but not yet delivered — after the bot was
down, after an event was missed, or after the platform refused a post. A generation is marked
delivered only after its result was posted, so a failure means a retry, never a loss.

The CLI is a platform too: ``wait_until_finished`` follows its generations and
``save_results`` delivers them as files.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from core.cards import closing_card, result_card, status_card
from core.db import delivery as queries
from core.db.database import Database
from core.db.events import Event, Events, subscribe
from core.db.outage import Backoff, OutageLog, fault_of, translated
from core.delivery.packs import pack_card
from core.domain import Generation, GenerationKind, GenerationStatus, Platform, ResultCard
from core.imaging.grid import make_grid
from core.ops import logs, metrics
from core.ports import ChatSink, ImageStore, Undeliverable
from core.service import Service

log = logging.getLogger(__name__)


MAX_ATTEMPTS = 12
"""Failed posts before a result is given up: with the back-off (the sweep interval, doubling,
at most an hour between tries) about four hours of a platform refusing it."""
MAX_RETRY_WAIT_S = 3600.0


class Delivery:
    def __init__(
        self,
        db: Database,
        service: Service,
        store: ImageStore,
        sink: ChatSink,
        *,
        sweep_interval_s: float = 10.0,
        retry_base_s: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.db = db
        self.service = service
        self.store = store
        self.sink = sink
        self.sweep_interval_s = sweep_interval_s
        self.retry_base_s = sweep_interval_s if retry_base_s is None else retry_base_s
        self.max_attempts = max_attempts
        self._in_flight: set[uuid.UUID] = set()
        self._stopping = asyncio.Event()
        self._sweep_now = asyncio.Event()  # a sweep now, not at the next interval
        self.delivered = 0

    async def run(self) -> None:
        """Listen for events and sweep, until ``stop`` (or cancellation). A database outage is
        ridden out: the LISTEN connection is opened again with backoff, and a sweep runs as
        soon as it is back (events sent meanwhile were lost with the connection)."""
        sweeper = asyncio.create_task(self._sweep_forever(), name="delivery-sweep")
        outage = OutageLog(log, f"{self.sink.platform.value} delivery")
        backoff = Backoff()
        try:
            while not self._stopping.is_set():
                try:
                    await self._listen(outage, backoff)
                except Exception as exc:  # an outage is waited out; anything else ends the run
                    if fault_of(exc) is None:
                        raise
                    outage.lost(exc)
                if not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), backoff.next())
        finally:
            self._stopping.set()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _listen(self, outage: OutageLog, backoff: Backoff) -> None:
        """Handle events until a stop, or until the LISTEN connection is lost (raises)."""
        async with subscribe(self.db.dsn) as events:
            if outage.down:
                outage.back()
                self._sweep_now.set()
            backoff.reset()
            while not self._stopping.is_set():
                event = await self._next(events)
                if event is not None and event.platform == self.sink.platform.value:
                    await self._on_event(event)
                elif event is None and events.lost.is_set():
                    raise ConnectionError("the LISTEN connection was lost")

    def stop(self) -> None:
        """Graceful stop: the delivery in hand finishes, then ``run`` returns."""
        self._stopping.set()

    async def _next(self, events: Events) -> Event | None:
        getting = asyncio.ensure_future(events.get())
        stopping = asyncio.ensure_future(self._stopping.wait())
        lost = asyncio.ensure_future(events.lost.wait())
        try:
            await asyncio.wait((getting, stopping, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            lost.cancel()
        if getting.done():
            return getting.result()
        getting.cancel()
        return None

    async def _on_event(self, event: Event) -> None:
        try:
            if event.type == "progress":
                await self.show_progress(event.generation_id)
            elif event.type in ("done", "failed", "cancelled"):
                await self.attempt(event.generation_id)
        except Exception as exc:  # a task boundary: the sweep posts what an event didn't
            if fault_of(exc) is None:
                log.exception("%s event of %s not handled", event.type, event.generation_id)
            else:  # the LISTEN connection notices the outage and says so, once
                log.info("%s event of %s: database unreachable", event.type, event.generation_id)

    async def _sweep_forever(self) -> None:
        outage = OutageLog(log, f"{self.sink.platform.value} delivery sweep")
        while not self._stopping.is_set():
            self._sweep_now.clear()
            try:
                await self.sweep()
                outage.back()
            except Exception as exc:  # a task boundary: the next sweep tries again
                if fault_of(exc) is None:
                    log.exception("delivery sweep failed")
                else:
                    outage.lost(exc)
            waking = asyncio.ensure_future(self._sweep_now.wait())
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait(
                    (waking, stopping),
                    timeout=self.sweep_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waking.cancel()
                stopping.cancel()

    async def sweep(self) -> int:
        """Deliver every finished, undelivered generation of this platform; how many were."""
        done = 0
        for generation_id in await queries.undelivered(self.db, self.sink.platform):
            if self._stopping.is_set():
                break
            done += await self.attempt(generation_id)
        return done

    async def attempt(self, generation_id: uuid.UUID) -> bool:
        """``deliver``, and a failure counted: a refusal for good (``Undeliverable``) gives the
        result up at once, any other failure is tried again later, backing off, until
        ``max_attempts``. Whether it was posted now."""
        try:
            return await self.deliver(generation_id)
        except Undeliverable as exc:
            await self._failed(generation_id, exc.reason, permanent=True)
        except Exception as exc:  # a task boundary: whatever failed, the result is kept
            if fault_of(exc) is not None and not await self._database_answers():
                raise  # the database, not the platform: no attempt is counted (none could be)
            log.warning("delivery of %s failed", generation_id, exc_info=True)
            await self._failed(generation_id, f"{type(exc).__name__}: {exc}", permanent=False)
        return False

    async def _database_answers(self) -> bool:
        """Whether the database answers now: tells a database outage from a platform's
        network error (both can be an ``OSError``)."""
        try:
            async with asyncio.timeout(2):
                await self.db.ping()
        except Exception:  # any failure to answer means "no"
            return False
        return True

    async def _failed(self, generation_id: uuid.UUID, reason: str, *, permanent: bool) -> None:
        failed = await queries.delivery_failed(
            self.db,
            generation_id,
            reason,
            permanent=permanent,
            max_attempts=self.max_attempts,
            retry_in=self.retry_wait,
        )
        if failed.gave_up:
            log.error("gave up delivering %s: %s", generation_id, reason)
            metrics.delivery_given_up(self.sink.platform.value, permanent=permanent)
        else:
            log.info(
                "delivery of %s failed (attempt %d); next try in %s",
                generation_id,
                failed.attempts,
                self.retry_wait(failed.attempts),
            )

    def retry_wait(self, attempts: int) -> timedelta:
        """How long after its ``attempts``-th failure a result waits: the base, doubling, at
        most ``MAX_RETRY_WAIT_S``."""
        return timedelta(seconds=min(self.retry_base_s * 2 ** (attempts - 1), MAX_RETRY_WAIT_S))

    async def show_progress(self, generation_id: uuid.UUID) -> None:
        ref = await queries.status_message(self.db, generation_id)
        if ref is None:
            return
        generation = await self.service.generation(generation_id)
        if generation.status is GenerationStatus.RUNNING:
            progress = await queries.progress(self.db, generation_id)
            await self.sink.update_status(ref, status_card(generation, progress=progress))

    async def deliver(self, generation_id: uuid.UUID) -> bool:
        """Post the result once; False if it was already delivered or is being delivered."""
        if generation_id in self._in_flight:
            return False
        self._in_flight.add(generation_id)
        try:
            with logs.bound(generation=generation_id):
                return await self._deliver(generation_id)
        finally:
            self._in_flight.discard(generation_id)

    async def _deliver(self, generation_id: uuid.UUID) -> bool:
        generation = await self.service.generation(generation_id)
        if not generation.status.finished:
            return False
        card = await self._card(generation)
        status_ref = await queries.status_message(self.db, generation_id)
        due = await queries.begin_delivery(self.db, generation_id)
        if due is None:
            return False
        posted = await self.sink.post_result(
            generation.reply_target, card, generation, earlier_attempt=due.earlier
        )
        await self.service.record_message(generation_id, posted, "result")
        lag = await queries.mark_delivered(self.db, generation_id)
        if lag is not None:
            metrics.delivered(self.sink.platform.value, lag_s=lag)
        if status_ref is not None:
            try:
                await self.sink.update_status(status_ref, closing_card(generation))
            except Exception:  # cosmetic, and the result is already posted: log, don't retry
                log.warning(
                    "could not close the status message of %s", generation_id, exc_info=True
                )
        self.delivered += 1
        return True

    async def _card(self, generation: Generation) -> ResultCard:
        """The result card: a pack's zip and contact sheet (``core.delivery.packs``), else the
        images with their buttons (and, under a single image, the 📦 menu of its placements)."""
        limit = self.sink.max_upload_bytes
        if generation.kind is GenerationKind.PACK:
            return await pack_card(self.service, self.store, generation, max_bytes=limit)
        originals = await load_originals(self.db, self.store, generation.id)
        choices = self.service.placement_choices(generation) if len(originals) == 1 else ()
        return result_card(generation, originals, max_bytes=limit, placements=choices)


async def load_originals(db: Database, store: ImageStore, generation_id: uuid.UUID) -> list[bytes]:
    """A generation's original images, in index order."""
    return [await store.get(key) for key in await queries.image_keys(db, generation_id)]


async def wait_until_finished(
    db: Database,
    service: Service,
    ids: Sequence[uuid.UUID],
    on_progress: Callable[[float], None],
    *,
    poll_s: float = 0.5,
) -> list[Generation]:
    """Wait until every generation finished (events wake it, polling backs them up), reporting
    the overall progress (0–1) as it goes; the finished generations, in ``ids`` order.
    ``DatabaseUnavailable`` when the database goes away meanwhile."""
    async with translated(), subscribe(db.dsn) as events:
        while True:
            generations = [await service.generation(i) for i in ids]
            fractions = [
                1.0 if g.status.finished else await queries.progress(db, g.id) for g in generations
            ]
            on_progress(sum(fractions) / len(fractions))
            if all(g.status.finished for g in generations):
                return generations
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(events.get(), timeout=poll_s)


async def wait_until_delivered(
    db: Database, platforms: Sequence[Platform], within_s: float
) -> bool:
    """Give the running deliveries up to ``within_s`` to post the results finished so far (a
    stopping worker's last batch, say); whether they did. What is left is posted by the next
    bot's sweep, never lost."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        left = 0
        for platform in platforms:
            left += len(await queries.undelivered(db, platform, limit=1))
        if not left:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.2)


async def save_results(
    db: Database, store: ImageStore, generations: Sequence[Generation], out: Path
) -> list[Path]:
    """The CLI's delivery: each finished generation's originals and its 2×2 grid written under
    ``out/<generation id>/``, and the generation marked delivered; the files written."""
    from PIL import Image

    written: list[Path] = []
    for generation in generations:
        if generation.status is not GenerationStatus.DONE:
            continue
        folder = out / str(generation.id)
        folder.mkdir(parents=True, exist_ok=True)
        images = []
        originals = await load_originals(db, store, generation.id)
        for index, data in enumerate(originals, 1):
            written.append(_write_whole(folder / f"{index}.png", data))
            images.append(Image.open(io.BytesIO(data)))
        if len(images) > 1:
            grid = io.BytesIO()
            make_grid(images).save(grid, format="PNG")
            written.append(_write_whole(folder / "grid.png", grid.getvalue()))
        await queries.mark_delivered(db, generation.id)
    return written


def _write_whole(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed into place, so a full disk
    leaves no half-written image behind (the ``OSError`` is the caller's to report)."""
    part = path.with_name(f".{path.name}.part")
    try:
        part.write_bytes(data)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
    return path
