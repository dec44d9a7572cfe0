"""``FakeJobQueue``, ``FakeReceipts`` and ``FakeUnitOfWork``: the queue hands jobs out in
pgqueuer's order (priority, then arrival), and a unit of work that isn't committed leaves the
state (receipts included) as it found it."""

from __future__ import annotations

import statistics
import uuid
from typing import Any

from pgqueuer.errors import DuplicateJobError

from core.db.queue import ETA_HISTORY
from core.domain import (
    GenerationStatus,
    RequestKey,
)
from core.ports import JobQueue, Receipts, Repository, UnitOfWorkFactory
from core.testing.repository import FakeRepository
from core.testing.state import FakeJob, FakeState

__all__ = ["FakeJobQueue", "FakeReceipts", "FakeUnitOfWork", "fake_uow_factory"]


class FakeJobQueue:
    """``JobQueue`` on a ``FakeState``: pgqueuer's order, priority DESC then arrival."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    def waiting(self) -> list[uuid.UUID]:
        """Waiting generations in the order workers will take them."""
        return [job.generation_id for job in self._ordered()]

    def claim(self) -> uuid.UUID | None:
        """Take the next job, as a worker's dequeue would; None when nothing waits."""
        ordered = self._ordered()
        if not ordered:
            return None
        job = ordered[0]
        self.state.jobs.remove(job)
        self.state.claimed[job.generation_id] = job
        return job.generation_id

    def release(self, generation_id: uuid.UUID) -> None:
        """The worker is done with a claimed job (finished, failed or cancelled)."""
        self.state.claimed.pop(generation_id, None)

    def _ordered(self) -> list[FakeJob]:
        return sorted(self.state.jobs, key=lambda job: (-job.priority, job.seq))

    async def enqueue(self, generation_id: uuid.UUID, *, priority: int) -> None:
        if generation_id in self.state.claimed or any(
            job.generation_id == generation_id for job in self.state.jobs
        ):
            raise DuplicateJobError([str(generation_id)])
        self.state.jobs.append(FakeJob(generation_id, priority, self.state.new_id()))

    async def remove(self, generation_id: uuid.UUID) -> bool:
        for job in self.state.jobs:
            if job.generation_id == generation_id:
                self.state.jobs.remove(job)
                return True
        return False

    async def position(self, generation_id: uuid.UUID) -> int | None:
        for place, job in enumerate(self._ordered(), start=1):
            if job.generation_id == generation_id:
                return place
        return None

    async def eta_seconds(self, generation_id: uuid.UUID) -> float | None:
        position = await self.position(generation_id)
        target = self.state.generations.get(generation_id)
        if position is None or target is None:
            return None
        done = sorted(
            (
                g
                for g in self.state.generations.values()
                if g.status is GenerationStatus.DONE
                and g.params.model == target.params.model
                and g.started_at is not None
                and g.finished_at is not None
            ),
            key=lambda g: g.finished_at or g.queued_at,
            reverse=True,
        )[:ETA_HISTORY]
        if not done:
            return None
        median = statistics.median(
            ((g.finished_at or g.queued_at) - (g.started_at or g.queued_at)).total_seconds()
            for g in done
        )
        return position * median / max(1, self.state.workers)


class FakeReceipts:
    """``Receipts`` on a ``FakeState``: kept, like everything else, only when committed."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def record(self, key: RequestKey) -> bool:
        entry = (key.platform, key.kind, key.id)
        if entry in self.state.receipts:
            return False
        self.state.receipts.add(entry)
        return True


class FakeUnitOfWork:
    """``UnitOfWork`` on a ``FakeState``: a snapshot on enter, restored unless committed.

    There is no isolation: units of work that interleave on one state (``asyncio.gather``) see
    each other's changes, and a rollback restores the state as this one found it.
    """

    repo: Repository  # a FakeRepository on ``state``
    queue: JobQueue  # a FakeJobQueue on ``state``: ``FakeJobQueue(state).waiting()`` in tests
    receipts: Receipts  # a FakeReceipts on ``state``

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.repo = FakeRepository(state)
        self.queue = FakeJobQueue(state)
        self.receipts = FakeReceipts(state)
        self.commits = 0
        self._snapshot: dict[str, Any] | None = None

    async def __aenter__(self) -> FakeUnitOfWork:
        if self._snapshot is not None:
            raise RuntimeError("this unit of work is already open")
        self._snapshot = self.state.snapshot()
        return self

    async def __aexit__(self, *exc: object) -> None:
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None:
            self.state.restore(snapshot)

    async def commit(self) -> None:
        if self._snapshot is None:
            raise RuntimeError("commit outside of `async with`")
        self._snapshot = self.state.snapshot()
        self.commits += 1


def fake_uow_factory(state: FakeState) -> UnitOfWorkFactory:
    """A fresh ``FakeUnitOfWork`` on ``state`` per call."""

    def factory() -> FakeUnitOfWork:
        return FakeUnitOfWork(state)

    return factory
