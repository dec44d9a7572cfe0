"""One harness per implementation: the contract tests run the same code over each.

``fake`` is ``core.testing`` on a ``FakeState``; ``postgres`` is ``SqlUnitOfWork`` on the run's
real database (emptied per test by the ``db`` fixture). A harness can also do what the ports
don't offer yet but a worker will (store image rows, finish a generation) and look at what the
ports only write (audit rows, the queue as pgqueuer's workers see it).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import pytest
from pgqueuer.adapters.persistence.queries import Queries
from pgqueuer.models import Job
from pgqueuer.ports.repository import EntrypointExecutionParameter
from sqlalchemy import text

from core.db import Database
from core.db.queue import GENERATE
from core.db.uow import SqlUnitOfWork
from core.domain import (
    Actor,
    GenerationKind,
    GenerationStatus,
    NewGeneration,
    Params,
    Platform,
    ReplyTarget,
)
from core.ports import UnitOfWork
from core.testing.queue import FakeJobQueue, FakeUnitOfWork
from core.testing.state import FakeState

AuditRow = tuple[str, str, str, dict[str, Any], int | None]


class Harness(Protocol):
    name: str

    def uow(self) -> UnitOfWork: ...

    async def add_image(self, generation_id: uuid.UUID, index: int) -> int: ...

    async def finish(
        self,
        generation_id: uuid.UUID,
        *,
        seconds: float,
        gpu_seconds: float | None = None,
        status: GenerationStatus = GenerationStatus.DONE,
    ) -> None: ...

    async def audit_rows(self) -> list[AuditRow]: ...

    async def job_count(self) -> int:
        """Jobs in the queue, waiting or taken."""
        ...

    async def claim(self) -> uuid.UUID | None:
        """Take the next job as a worker would; None when nothing waits."""
        ...


class FakeHarness:
    name = "fake"

    def __init__(self) -> None:
        self.state = FakeState()

    def uow(self) -> UnitOfWork:
        return FakeUnitOfWork(self.state)

    async def add_image(self, generation_id: uuid.UUID, index: int) -> int:
        return self.state.add_image(generation_id, index)

    async def finish(
        self,
        generation_id: uuid.UUID,
        *,
        seconds: float,
        gpu_seconds: float | None = None,
        status: GenerationStatus = GenerationStatus.DONE,
    ) -> None:
        row = self.state.generations[generation_id]
        row.finished_at = datetime.now(UTC)
        row.started_at = row.finished_at - timedelta(seconds=seconds)
        row.gpu_seconds = gpu_seconds
        row.status = status

    async def audit_rows(self) -> list[AuditRow]:
        return [
            (a.actor, a.action, a.subject, a.details, a.campaign_id) for a in self.state.audit_log
        ]

    async def job_count(self) -> int:
        return len(self.state.jobs) + len(self.state.claimed)

    async def claim(self) -> uuid.UUID | None:
        return FakeJobQueue(self.state).claim()


class PostgresHarness:
    name = "postgres"

    def __init__(self, db: Database) -> None:
        self.db = db
        self.claimed: dict[uuid.UUID, Job] = {}

    def uow(self) -> UnitOfWork:
        return SqlUnitOfWork(self.db)

    async def add_image(self, generation_id: uuid.UUID, index: int) -> int:
        async with self.db.engine.begin() as conn:
            image_id = await conn.scalar(
                text(
                    "INSERT INTO images (generation_id, index, storage_key, sha256, width, "
                    "height, bytes) VALUES (:g, :i, :k, :k, 512, 512, 1000) RETURNING id"
                ),
                {"g": generation_id, "i": index, "k": f"{uuid.uuid4().hex}{index}"},
            )
        assert isinstance(image_id, int)
        return image_id

    async def finish(
        self,
        generation_id: uuid.UUID,
        *,
        seconds: float,
        gpu_seconds: float | None = None,
        status: GenerationStatus = GenerationStatus.DONE,
    ) -> None:
        if (job := self.claimed.pop(generation_id, None)) is not None:
            await self._queries(lambda q: q.log_jobs([(job, "successful", None)]))
        async with self.db.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE generations SET status = :status, finished_at = now(), "
                    "started_at = now() - make_interval(secs => :seconds), "
                    "gpu_seconds = :gpu WHERE id = :id"
                ),
                {
                    "status": status.value,
                    "seconds": seconds,
                    "gpu": gpu_seconds,
                    "id": generation_id,
                },
            )

    async def audit_rows(self) -> list[AuditRow]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT actor, action, subject, details, campaign_id FROM audit_log ORDER BY id"
                )
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]

    async def job_count(self) -> int:
        async with self.db.engine.connect() as conn:
            count = await conn.scalar(
                text("SELECT count(*) FROM pgqueuer WHERE entrypoint = :e"), {"e": GENERATE}
            )
        return int(count or 0)

    async def claim(self) -> uuid.UUID | None:
        """pgqueuer's own dequeue, on a connection of its own, like a worker's."""
        jobs: list[Job] = await self._queries(
            lambda q: q.dequeue(
                batch_size=1,
                entrypoints={GENERATE: EntrypointExecutionParameter(concurrency_limit=0)},
                queue_manager_id=uuid.uuid4(),
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=30),
            )
        )
        if not jobs:
            return None
        (job,) = jobs
        assert job.payload is not None
        generation_id = uuid.UUID(job.payload.decode("ascii"))
        self.claimed[generation_id] = job
        return generation_id

    async def _queries(self, use: Callable[[Queries], Awaitable[Any]]) -> Any:
        conn = await asyncpg.connect(self.db.dsn)
        try:
            return await use(Queries.from_asyncpg_connection(conn))
        finally:
            await conn.close()


@pytest.fixture(params=["fake", pytest.param("postgres", marks=pytest.mark.integration)])
def harness(request: pytest.FixtureRequest) -> Harness:
    if request.param == "fake":
        return FakeHarness()
    return PostgresHarness(request.getfixturevalue("db"))


# ------------------------------------------------------------------------------------ helpers

ALICE = Actor(Platform.SLACK, "T1", "U1", "Alice")
TARGET = ReplyTarget(Platform.SLACK, "T1", "C1", "1700000000.000100")


def make_params(*, n: int = 4, model: str = "tiny", seed: int = 42) -> Params:
    return Params(
        prompt="a sneaker on a beach, brand style",
        negative_prompt="blurry",
        width=512,
        height=512,
        steps=20,
        guidance=7.5,
        seed=seed,
        n=n,
        engine="fake",
        model=model,
        preset="acme",
        preset_version="v1",
        strength=0.55,
        upscaler=None,
    )


@dataclass(frozen=True)
class Seed:
    user_id: int
    preset_id: int


async def seed(harness: Harness, actor: Actor = ALICE) -> Seed:
    async with harness.uow() as uow:
        user_id = await uow.repo.ensure_user(actor)
        preset_id = await uow.repo.record_preset("acme", "v1", "name: acme\n")
        await uow.commit()
    return Seed(user_id, preset_id)


def new_generation(
    s: Seed,
    *,
    n: int = 4,
    model: str = "tiny",
    campaign_id: int | None = None,
    kind: GenerationKind = GenerationKind.IMAGINE,
    parent_id: uuid.UUID | None = None,
    source_index: int | None = None,
    user_id: int | None = None,
) -> NewGeneration:
    return NewGeneration(
        id=uuid.uuid4(),
        kind=kind,
        platform=Platform.SLACK,
        user_id=s.user_id if user_id is None else user_id,
        campaign_id=campaign_id,
        preset_id=s.preset_id,
        raw_prompt="a sneaker on a beach --ar 16:9",
        params=make_params(n=n, model=model),
        reply_target=TARGET,
        parent_id=parent_id,
        source_index=source_index,
    )


async def record(harness: Harness, *generations: NewGeneration, priority: int = 0) -> None:
    """Record and enqueue, committed."""
    async with harness.uow() as uow:
        for generation in generations:
            await uow.repo.add_generation(generation)
            await uow.queue.enqueue(generation.id, priority=priority)
        await uow.commit()
