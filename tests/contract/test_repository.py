"""The Repository contract, over the in-memory fake and PostgreSQL alike."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from core.domain import (
    Actor,
    Binding,
    Campaign,
    FeedbackKind,
    GenerationKind,
    GenerationStatus,
    MessageRef,
    NewGeneration,
    Platform,
    ReplyTarget,
)
from core.errors import NotFound, UserError
from tests.contract.conftest import (
    ALICE,
    TARGET,
    Harness,
    make_params,
    new_generation,
    seed,
)

BOB = Actor(Platform.SLACK, "T1", "U2", "Bob")


async def _campaign(harness: Harness, name: str = "summer", owner: int | None = None) -> Campaign:
    async with harness.uow() as uow:
        campaign = await uow.repo.add_campaign(
            Campaign(name, "acme", gpu_budget_seconds=3600.0), owner
        )
        await uow.commit()
    return campaign


async def _add(harness: Harness, *generations: NewGeneration) -> None:
    async with harness.uow() as uow:
        for generation in generations:
            await uow.repo.add_generation(generation)
        await uow.commit()


# ------------------------------------------------------------------------------ users


async def test_ensure_user_is_idempotent_per_platform_workspace_and_user(
    harness: Harness,
) -> None:
    async with harness.uow() as uow:
        alice = await uow.repo.ensure_user(ALICE)
        assert await uow.repo.ensure_user(ALICE) == alice
        renamed = Actor(ALICE.platform, ALICE.workspace_id, ALICE.user_id, "Alice B.")
        assert await uow.repo.ensure_user(renamed) == alice
        others = {
            await uow.repo.ensure_user(BOB),
            await uow.repo.ensure_user(Actor(Platform.SLACK, "T2", "U1")),  # other workspace
            await uow.repo.ensure_user(Actor(Platform.DISCORD, "T1", "U1")),  # other platform
        }
        await uow.commit()
    assert len(others) == 3
    assert alice not in others
    async with harness.uow() as uow:  # and in a later transaction
        assert await uow.repo.ensure_user(ALICE) == alice


# --------------------------------------------------------------------------- bindings


async def test_bindings_save_replace_delete_and_lookup_ignoring_the_thread(
    harness: Harness,
) -> None:
    s = await seed(harness)
    await _campaign(harness, "summer")
    in_a_thread = ReplyTarget(Platform.SLACK, "T1", "C1", "1700000000.999")
    no_thread = ReplyTarget(Platform.SLACK, "T1", "C1")
    async with harness.uow() as uow:
        assert await uow.repo.binding_for(no_thread) is None
        first = Binding(Platform.SLACK, "T1", "C1", preset="acme")
        await uow.repo.save_binding(first, s.user_id)
        assert await uow.repo.binding_for(in_a_thread) == first
        second = Binding(
            Platform.SLACK, "T1", "C1", preset="acme-bold", campaign="summer", locked=True
        )
        await uow.repo.save_binding(second, s.user_id)
        await uow.commit()
    async with harness.uow() as uow:
        assert await uow.repo.binding_for(no_thread) == second
        assert await uow.repo.binding_for(ReplyTarget(Platform.SLACK, "T1", "C2")) is None
        assert await uow.repo.binding_for(ReplyTarget(Platform.DISCORD, "T1", "C1")) is None
        assert await uow.repo.delete_binding(in_a_thread) is True
        assert await uow.repo.delete_binding(no_thread) is False
        assert await uow.repo.binding_for(no_thread) is None
        await uow.commit()


async def test_binding_to_an_unknown_campaign_is_a_user_error(harness: Harness) -> None:
    s = await seed(harness)
    async with harness.uow() as uow:
        with pytest.raises(NotFound):
            await uow.repo.save_binding(
                Binding(Platform.SLACK, "T1", "C1", "acme", campaign="nope"), s.user_id
            )
        assert await uow.repo.binding_for(TARGET) is None


# -------------------------------------------------------------------------- campaigns


async def test_campaigns_add_lookup_list_and_duplicate_names(harness: Harness) -> None:
    s = await seed(harness)
    spring = Campaign(
        "spring",
        "acme",
        starts_on=date(2027, 3, 1),
        ends_on=date(2027, 5, 31),
        gpu_budget_seconds=7200.0,
        rush=True,
    )
    async with harness.uow() as uow:
        added = await uow.repo.add_campaign(spring, s.user_id)
        assert added.id is not None
        assert added == Campaign(**{**spring.__dict__, "id": added.id})
        with pytest.raises(UserError) as taken:
            await uow.repo.add_campaign(Campaign("spring", "other"), None)
        assert "spring" in taken.value.user_message
        # the refusal leaves the transaction usable
        autumn = await uow.repo.add_campaign(Campaign("autumn", "acme"), None)
        await uow.commit()
    async with harness.uow() as uow:
        assert await uow.repo.campaign("spring") == added
        assert await uow.repo.campaign("winter") is None
        assert await uow.repo.campaigns() == [autumn, added]  # by name


async def test_a_campaign_added_without_commit_is_gone(harness: Harness) -> None:
    async with harness.uow() as uow:
        await uow.repo.add_campaign(Campaign("ghost", "acme"), None)
    async with harness.uow() as uow:
        assert await uow.repo.campaign("ghost") is None
        assert await uow.repo.campaigns() == []


# ---------------------------------------------------------------------------- presets


async def test_record_preset_stores_each_name_and_version_once(harness: Harness) -> None:
    async with harness.uow() as uow:
        v1 = await uow.repo.record_preset("acme", "v1", "a: 1\n")
        assert await uow.repo.record_preset("acme", "v1", "a: 1\n") == v1
        v2 = await uow.repo.record_preset("acme", "v2", "a: 2\n")
        other = await uow.repo.record_preset("globex", "v1", "a: 1\n")
        await uow.commit()
    assert len({v1, v2, other}) == 3
    async with harness.uow() as uow:
        assert await uow.repo.record_preset("acme", "v1", "a: 1\n") == v1


# ------------------------------------------------------------------------ generations


async def test_generation_round_trips_params_target_kind_status_and_lineage(
    harness: Harness,
) -> None:
    s = await seed(harness)
    summer = await _campaign(harness)
    parent = new_generation(s, campaign_id=summer.id)
    child = new_generation(s, n=1, kind=GenerationKind.UPSCALE, parent_id=parent.id, source_index=3)
    await _add(harness, parent, child)
    await harness.add_image(parent.id, 1)
    await harness.add_image(parent.id, 2)

    async with harness.uow() as uow:
        got = await uow.repo.generation(parent.id)
        assert got is not None
        assert got.id == parent.id
        assert got.kind is GenerationKind.IMAGINE
        assert got.status is GenerationStatus.QUEUED
        assert got.user_id == s.user_id
        assert got.requester == "slack:T1:U1"
        assert got.raw_prompt == parent.raw_prompt
        assert got.params == make_params()
        assert got.reply_target == TARGET
        assert got.campaign == "summer"
        assert got.campaign_id == summer.id
        assert got.image_count == 2
        assert got.parent_id is None
        assert got.error is None
        assert got.preset_id == parent.preset_id

        upscale = await uow.repo.generation(child.id)
        assert upscale is not None
        assert upscale.kind is GenerationKind.UPSCALE
        assert (upscale.parent_id, upscale.source_index) == (parent.id, 3)
        assert upscale.params.n == 1
        assert upscale.campaign is None
        assert upscale.image_count == 0

        assert await uow.repo.generation(uuid.uuid4()) is None


async def test_images_requested_since_skips_failed_cancelled_and_other_users(
    harness: Harness,
) -> None:
    s = await seed(harness)
    async with harness.uow() as uow:
        bob = await uow.repo.ensure_user(BOB)
        await uow.commit()
    four, two, failed, cancelled = (new_generation(s, n=n) for n in (4, 2, 3, 1))
    done, bobs = new_generation(s, n=1), new_generation(s, n=4, user_id=bob)
    await _add(harness, four, two, failed, cancelled, done, bobs)
    await harness.finish(failed.id, seconds=1, status=GenerationStatus.FAILED)
    await harness.finish(cancelled.id, seconds=1, status=GenerationStatus.CANCELLED)
    await harness.finish(done.id, seconds=1)

    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    async with harness.uow() as uow:
        assert await uow.repo.images_requested_since(s.user_id, hour_ago) == 4 + 2 + 1
        assert await uow.repo.images_requested_since(bob, hour_ago) == 4
        in_an_hour = datetime.now(UTC) + timedelta(hours=1)
        assert await uow.repo.images_requested_since(s.user_id, in_an_hour) == 0


async def test_active_count_is_queued_plus_running(harness: Harness) -> None:
    s = await seed(harness)
    queued, running, done = (new_generation(s) for _ in range(3))
    await _add(harness, queued, running, done)
    await harness.finish(done.id, seconds=2)
    async with harness.uow() as uow:
        assert await uow.repo.set_status(running.id, GenerationStatus.RUNNING, only_from=["queued"])
        assert await uow.repo.active_count(s.user_id) == 2
        assert await uow.repo.active_count(s.user_id + 1000) == 0


async def test_campaign_gpu_seconds_sums_its_generations(harness: Harness) -> None:
    s = await seed(harness)
    summer, winter = await _campaign(harness, "summer"), await _campaign(harness, "winter")
    assert summer.id is not None
    assert winter.id is not None
    a, b, c, other = (
        new_generation(s, campaign_id=summer.id),
        new_generation(s, campaign_id=summer.id),
        new_generation(s, campaign_id=summer.id),
        new_generation(s, campaign_id=winter.id),
    )
    await _add(harness, a, b, c, other)
    async with harness.uow() as uow:
        assert await uow.repo.campaign_gpu_seconds(summer.id) == 0.0
    await harness.finish(a.id, seconds=3, gpu_seconds=2.5)
    await harness.finish(b.id, seconds=3, gpu_seconds=4.0)
    await harness.finish(other.id, seconds=3, gpu_seconds=100.0)
    async with harness.uow() as uow:
        assert await uow.repo.campaign_gpu_seconds(summer.id) == pytest.approx(6.5)
        assert await uow.repo.campaign_gpu_seconds(winter.id) == pytest.approx(100.0)


async def test_set_status_moves_only_from_the_given_statuses(harness: Harness) -> None:
    s = await seed(harness)
    g = new_generation(s)
    await _add(harness, g)
    async with harness.uow() as uow:
        repo = uow.repo
        assert await repo.set_status(g.id, GenerationStatus.DONE, only_from=["running"]) is False
        assert await repo.set_status(g.id, GenerationStatus.RUNNING, only_from=["queued"])
        assert await repo.set_status(g.id, GenerationStatus.RUNNING, only_from=["queued"]) is False
        assert await repo.set_status(
            g.id, GenerationStatus.CANCELLED, only_from=["queued", "running"]
        )
        assert (
            await repo.set_status(uuid.uuid4(), GenerationStatus.RUNNING, only_from=["queued"])
            is False
        )
        await uow.commit()
    async with harness.uow() as uow:
        got = await uow.repo.generation(g.id)
        assert got is not None
        assert got.status is GenerationStatus.CANCELLED


# --------------------------------------------------------------------------- messages


async def test_generation_for_message_finds_result_messages_only(harness: Harness) -> None:
    s = await seed(harness)
    g = new_generation(s)
    await _add(harness, g)
    status_msg = MessageRef(Platform.SLACK, "C1", "1700000000.000200")
    result_msg = MessageRef(Platform.SLACK, "C1", "1700000000.000300")
    edited = MessageRef(Platform.SLACK, "C1", "1700000000.000400")
    async with harness.uow() as uow:
        await uow.repo.record_message(g.id, status_msg, "status")
        await uow.repo.record_message(g.id, result_msg, "result")
        await uow.repo.record_message(g.id, edited, "status")
        await uow.repo.record_message(g.id, edited, "result")  # the status became the result
        await uow.commit()
    async with harness.uow() as uow:
        repo = uow.repo
        assert await repo.generation_for_message(status_msg) is None
        assert await repo.generation_for_message(result_msg) == g.id
        assert await repo.generation_for_message(edited) == g.id
        assert await repo.generation_for_message(MessageRef(Platform.DISCORD, "C1", "x")) is None


# ---------------------------------------------------------------- images and feedback


async def test_image_ids_map_index_to_id(harness: Harness) -> None:
    s = await seed(harness)
    g, empty = new_generation(s), new_generation(s)
    await _add(harness, g, empty)
    first, second = await harness.add_image(g.id, 1), await harness.add_image(g.id, 2)
    async with harness.uow() as uow:
        assert await uow.repo.image_ids(g.id) == {1: first, 2: second}
        assert await uow.repo.image_ids(empty.id) == {}


async def test_feedback_is_unique_per_user_target_and_kind(harness: Harness) -> None:
    s = await seed(harness)
    g = new_generation(s)
    await _add(harness, g)
    image = await harness.add_image(g.id, 1)
    async with harness.uow() as uow:
        bob = await uow.repo.ensure_user(BOB)
        repo = uow.repo
        fav, like = FeedbackKind.FAVOURITE, FeedbackKind.LIKE
        assert await repo.add_feedback(g.id, image, s.user_id, fav, "⭐") is True
        assert await repo.add_feedback(g.id, image, s.user_id, fav, "⭐") is False
        assert await repo.add_feedback(g.id, image, s.user_id, like, "👍") is True
        assert await repo.add_feedback(g.id, image, bob, fav, "⭐") is True
        assert await repo.add_feedback(g.id, None, s.user_id, fav, "⭐") is True  # whole grid
        assert await repo.add_feedback(g.id, None, s.user_id, fav, "⭐") is False
        await uow.commit()
    async with harness.uow() as uow:
        repo = uow.repo
        assert await repo.remove_feedback(g.id, None, s.user_id, FeedbackKind.FAVOURITE)
        assert await repo.remove_feedback(g.id, None, s.user_id, FeedbackKind.FAVOURITE) is False
        assert await repo.remove_feedback(g.id, image, s.user_id, FeedbackKind.APPROVE) is False
        assert await repo.remove_feedback(g.id, image, s.user_id, FeedbackKind.FAVOURITE)
        # the image's favourite is gone, so it can be given again; the like stayed
        assert await repo.add_feedback(g.id, image, s.user_id, FeedbackKind.FAVOURITE, "⭐")
        assert await repo.add_feedback(g.id, image, s.user_id, FeedbackKind.LIKE, "👍") is False


# ------------------------------------------------------------------------------ audit


async def test_audit_rows_are_recorded_with_their_details(harness: Harness) -> None:
    summer = await _campaign(harness)
    async with harness.uow() as uow:
        await uow.repo.audit(
            "slack:T1:U1", "bind", "slack:T1:C1", {"preset": "acme", "locked": True}, summer.id
        )
        await uow.repo.audit("slack:T1:U2", "blocked_prompt", "", {"term": "rival"})
        await uow.commit()
    async with harness.uow() as uow:
        await uow.repo.audit("slack:T1:U3", "rolled_back", "", {})
    assert await harness.audit_rows() == [
        ("slack:T1:U1", "bind", "slack:T1:C1", {"preset": "acme", "locked": True}, summer.id),
        ("slack:T1:U2", "blocked_prompt", "", {"term": "rival"}, None),
    ]
