"""The JobQueue and UnitOfWork contract, over the in-memory fake and PostgreSQL alike.

On PostgreSQL, jobs are claimed with pgqueuer's own dequeue, as a worker would.
"""

from __future__ import annotations

import uuid

import pytest
from pgqueuer.errors import DuplicateJobError

from core.db import Database
from core.domain import GenerationStatus
from tests.contract.conftest import Harness, PostgresHarness, new_generation, record, seed


class Boom(Exception):
    pass


async def test_a_rolled_back_unit_of_work_leaves_no_job_and_no_generation(
    harness: Harness,
) -> None:
    s = await seed(harness)
    queue_first, record_first, raised = (new_generation(s) for _ in range(3))

    async with harness.uow() as uow:
        # the queue's write comes first: it must join the transaction all the same
        await uow.queue.enqueue(queue_first.id, priority=0)
        await uow.repo.add_generation(queue_first)
        assert await uow.queue.position(queue_first.id) == 1  # visible inside
    async with harness.uow() as uow:
        await uow.repo.add_generation(record_first)
        await uow.queue.enqueue(record_first.id, priority=0)

    async def fail_halfway() -> None:
        async with harness.uow() as uow:
            await uow.repo.add_generation(raised)
            await uow.queue.enqueue(raised.id, priority=0)
            raise Boom

    with pytest.raises(Boom):
        await fail_halfway()

    assert await harness.job_count() == 0
    async with harness.uow() as uow:
        for g in (queue_first, record_first, raised):
            assert await uow.repo.generation(g.id) is None
            assert await uow.queue.position(g.id) is None


async def test_a_committed_unit_of_work_keeps_the_job_and_the_generation(
    harness: Harness,
) -> None:
    s = await seed(harness)
    g = new_generation(s)
    async with harness.uow() as uow:
        await uow.repo.add_generation(g)
        await uow.queue.enqueue(g.id, priority=0)
        await uow.commit()
    assert await harness.job_count() == 1
    async with harness.uow() as uow:
        assert await uow.repo.generation(g.id) is not None
        assert await uow.queue.position(g.id) == 1
    assert await harness.claim() == g.id


async def test_work_after_a_commit_needs_its_own_commit(harness: Harness) -> None:
    s = await seed(harness)
    kept, dropped = new_generation(s), new_generation(s)
    async with harness.uow() as uow:
        await uow.repo.add_generation(kept)
        await uow.queue.enqueue(kept.id, priority=0)
        await uow.commit()
        await uow.queue.enqueue(dropped.id, priority=0)
        await uow.repo.add_generation(dropped)
    assert await harness.job_count() == 1
    async with harness.uow() as uow:
        assert await uow.repo.generation(kept.id) is not None
        assert await uow.repo.generation(dropped.id) is None


async def test_jobs_wait_by_priority_then_arrival_and_workers_take_them_so(
    harness: Harness,
) -> None:
    s = await seed(harness)
    gens = [new_generation(s) for _ in range(6)]
    priorities = [0, 0, 10, 0, 10, 5]
    for g, priority in zip(gens, priorities, strict=True):
        await record(harness, g, priority=priority)

    expected = [gens[2], gens[4], gens[5], gens[0], gens[1], gens[3]]
    async with harness.uow() as uow:
        positions = {g.id: await uow.queue.position(g.id) for g in gens}
    assert positions == {g.id: place for place, g in enumerate(expected, start=1)}

    claimed = []
    while (job := await harness.claim()) is not None:
        claimed.append(job)
        async with harness.uow() as uow:  # a taken job is no longer waiting
            assert await uow.queue.position(job) is None
            for place, g in enumerate(expected[len(claimed) :], start=1):
                assert await uow.queue.position(g.id) == place
    assert claimed == [g.id for g in expected]


async def test_remove_takes_a_job_off_only_while_it_waits(harness: Harness) -> None:
    s = await seed(harness)
    first, second, third = (new_generation(s) for _ in range(3))
    await record(harness, first, second, third)
    assert await harness.claim() == first.id

    async with harness.uow() as uow:
        assert await uow.queue.remove(first.id) is False  # a worker has it
        assert await uow.queue.remove(second.id) is True
        assert await uow.queue.remove(second.id) is False
        assert await uow.queue.remove(uuid.uuid4()) is False
        assert await uow.queue.position(second.id) is None
        assert await uow.queue.position(third.id) == 1
        await uow.commit()
    async with harness.uow() as uow:  # an uncommitted removal is undone
        assert await uow.queue.remove(third.id) is True
    assert await harness.claim() == third.id
    assert await harness.claim() is None


async def test_a_generation_is_queued_once(harness: Harness) -> None:
    s = await seed(harness)
    g = new_generation(s)
    await record(harness, g)
    async with harness.uow() as uow:
        with pytest.raises(DuplicateJobError):
            await uow.queue.enqueue(g.id, priority=5)
    assert await harness.job_count() == 1


async def test_eta_is_position_times_the_models_median_run_time(harness: Harness) -> None:
    s = await seed(harness)
    history = [new_generation(s) for _ in range(3)]
    await record(harness, *history)
    async with harness.uow() as uow:
        assert await uow.queue.position(history[2].id) == 3
        assert await uow.queue.eta_seconds(history[2].id) is None  # no history yet

    other_model, failed = new_generation(s, model="sdxl"), new_generation(s)
    await record(harness, other_model, failed)
    while await harness.claim() is not None:  # workers take them all
        pass
    for g, seconds in zip(history, (10.0, 30.0, 20.0), strict=True):
        await harness.finish(g.id, seconds=seconds)
    await harness.finish(other_model.id, seconds=1000.0)
    await harness.finish(failed.id, seconds=500.0, status=GenerationStatus.FAILED)

    first, second = new_generation(s), new_generation(s)
    await record(harness, first, second)
    async with harness.uow() as uow:
        assert await uow.queue.position(second.id) == 2
        assert await uow.queue.eta_seconds(first.id) == pytest.approx(20.0)
        assert await uow.queue.eta_seconds(second.id) == pytest.approx(40.0)
        assert await uow.queue.eta_seconds(history[0].id) is None  # done: not waiting
        assert await uow.queue.eta_seconds(uuid.uuid4()) is None


@pytest.mark.integration
async def test_eta_divides_by_the_workers_holding_jobs_in_pgqueuer(db: Database) -> None:
    harness = PostgresHarness(db)
    s = await seed(harness)
    done = new_generation(s)
    await record(harness, done)
    assert await harness.claim() == done.id
    await harness.finish(done.id, seconds=20.0)

    busy_a, busy_b, waiting = (new_generation(s) for _ in range(3))
    await record(harness, busy_a, busy_b, waiting)
    assert await harness.claim() == busy_a.id  # two workers, one job each
    assert await harness.claim() == busy_b.id
    async with harness.uow() as uow:
        assert await uow.queue.position(waiting.id) == 1
        assert await uow.queue.eta_seconds(waiting.id) == pytest.approx(20.0 / 2)
