"""The Receipts contract, over the in-memory fake and PostgreSQL alike: a key is recorded once,
and only when its unit of work commits (with the request's own writes, or not at all)."""

from __future__ import annotations

from core.domain import Platform, RequestKey
from tests.contract.conftest import Harness, new_generation, seed

CLICK = RequestKey(Platform.SLACK, "action", "13345224609.738474920.8088930838d88f008e0")


async def test_a_key_is_new_once(harness: Harness) -> None:
    async with harness.uow() as uow:
        assert await uow.receipts.record(CLICK) is True
        assert await uow.receipts.record(CLICK) is False  # a copy within the same work
        await uow.commit()
    async with harness.uow() as uow:
        assert await uow.receipts.record(CLICK) is False  # a copy later


async def test_platform_kind_and_id_together_make_the_key(harness: Harness) -> None:
    others = [
        RequestKey(Platform.DISCORD, CLICK.kind, CLICK.id),
        RequestKey(Platform.SLACK, "command", CLICK.id),
        RequestKey(Platform.SLACK, CLICK.kind, CLICK.id + "1"),
    ]
    async with harness.uow() as uow:
        assert [await uow.receipts.record(k) for k in [CLICK, *others]] == [True] * 4
        await uow.commit()


async def test_a_receipt_goes_with_the_writes_it_came_with(harness: Harness) -> None:
    s = await seed(harness)
    generation = new_generation(s)
    async with harness.uow() as uow:  # a crash before the commit: neither is kept
        assert await uow.receipts.record(CLICK) is True
        await uow.repo.add_generation(generation)

    async with harness.uow() as uow:  # so the retry is new, and is recorded this time
        assert await uow.repo.generation(generation.id) is None
        assert await uow.receipts.record(CLICK) is True
        await uow.repo.add_generation(generation)
        await uow.commit()
    async with harness.uow() as uow:
        assert await uow.repo.generation(generation.id) is not None
        assert await uow.receipts.record(CLICK) is False
