"""The service's use cases on the in-memory fakes of every port (fast; no database)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime

import pytest

from core.brand.preset_files import parse_preset
from core.brand.presets import Preset
from core.domain import (
    Action,
    ActionKind,
    Actor,
    FeedbackKind,
    GenerationKind,
    GenerationStatus,
    MessageRef,
    Platform,
    ReplyTarget,
    Role,
)
from core.errors import (
    BlockedPrompt,
    GrammarError,
    LockedSetting,
    NotAllowed,
    NotFound,
    QuotaExceeded,
    UserError,
)
from core.service import Service
from core.service.base import ServiceConfig
from core.service.feedback import feedback_for
from core.testing.queue import FakeJobQueue, fake_uow_factory
from core.testing.state import FakeState

BRAND = """
name: brand-a
brand: Brand A
prompt: "{prompt}, brand style"
negative_prompt: "blurry"
banned_terms: [nike]
aspect_ratios: {"1:1": [64, 64], "16:9": [112, 64]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-1, steps: 4, guidance: 5.0}
locked: [steps]
limits: {images_per_user_per_day: 12, queued_per_user: 3}
"""
OTHER = BRAND.replace("brand-a", "brand-b").replace("Brand A", "Brand B")
NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)

ALICE = Actor(Platform.SLACK, "T1", "UA", "alice")
BOB = Actor(Platform.SLACK, "T1", "UB", "bob")
ADMIN = Actor(Platform.SLACK, "T1", "UZ", "zed", frozenset({Role.MEMBER, Role.ADMIN}))
REVIEWER = Actor(Platform.SLACK, "T1", "UR", "rita", frozenset({Role.MEMBER, Role.REVIEWER}))
HERE = ReplyTarget(Platform.SLACK, "T1", "C1")


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
def service(state: FakeState) -> Service:
    presets: dict[str, Preset] = {p.name: p for p in (parse_preset(BRAND), parse_preset(OTHER))}
    seeds = iter(range(1000, 2000))
    return Service(
        fake_uow_factory(state),
        presets,
        ServiceConfig(default_preset="brand-a", global_banned=("acme-rival",)),
        clock=lambda: NOW,
        seed_source=lambda: next(seeds),
    )


def waiting(state: FakeState) -> list[uuid.UUID]:
    return FakeJobQueue(state).waiting()


async def finish(state: FakeState, generation_id: uuid.UUID, images: int = 4) -> None:
    state.generations[generation_id].status = GenerationStatus.DONE
    for index in range(1, images + 1):
        state.add_image(generation_id, index)
    state.jobs = [j for j in state.jobs if j.generation_id != generation_id]


# --- imagine -----------------------------------------------------------------------------


async def test_imagine_records_and_queues_with_the_preset_applied(
    service: Service, state: FakeState
) -> None:
    ticket = await service.imagine("a red circle --ar 16:9 --seed 5", ALICE, HERE)

    (gid,) = ticket.generation_ids
    assert ticket.position == 1
    assert waiting(state) == [gid]
    row = state.generations[gid]
    assert row.kind is GenerationKind.IMAGINE
    assert row.raw_prompt == "a red circle"
    assert row.params.prompt == "a red circle, brand style"
    assert (row.params.width, row.params.height, row.params.seed) == (112, 64, 5)
    assert row.params.preset == "brand-a"
    assert row.reply_target == HERE


async def test_permutations_make_one_generation_each(service: Service, state: FakeState) -> None:
    ticket = await service.imagine("a {red, blue} circle --n 1", ALICE, HERE)
    prompts = [state.generations[g].raw_prompt for g in ticket.generation_ids]
    assert prompts == ["a red circle", "a blue circle"]
    assert waiting(state) == list(ticket.generation_ids)


async def test_a_grammar_error_leaves_nothing_behind(service: Service, state: FakeState) -> None:
    with pytest.raises(GrammarError):
        await service.imagine("a circle --ar 16:0", ALICE, HERE)
    assert state.generations == {}
    assert state.jobs == []


async def test_blocked_prompt_is_audited_but_never_queued(
    service: Service, state: FakeState
) -> None:
    with pytest.raises(BlockedPrompt) as blocked:
        await service.imagine("N.i.k.e shoes on a beach", ALICE, HERE)
    assert "nike" in blocked.value.user_message
    assert state.generations == {}
    assert state.jobs == []
    (entry,) = state.audit_log
    assert entry.action == "prompt.blocked"
    assert entry.actor == "slack:T1:UA"
    assert entry.subject == "slack:C1"
    assert entry.details["term"] == "nike"


async def test_global_banned_terms_apply_to_every_preset(service: Service) -> None:
    with pytest.raises(BlockedPrompt):
        await service.imagine("acme rival logo --preset brand-b", ALICE, HERE)


async def test_unknown_preset_lists_the_known_ones(service: Service) -> None:
    with pytest.raises(NotFound, match="brand-a, brand-b"):
        await service.imagine("a circle --preset nope", ALICE, HERE)


async def test_a_locked_setting_is_refused(service: Service) -> None:
    with pytest.raises(LockedSetting, match="Brand A"):
        await service.imagine("a circle --steps 30", ALICE, HERE)


# --- bindings and campaigns ----------------------------------------------------------------


async def test_a_bound_channel_uses_the_campaign_and_its_preset(
    service: Service, state: FakeState
) -> None:
    await service.create_campaign(ADMIN, "spring", "brand-b")
    await service.bind(ADMIN, HERE, campaign="spring")
    ticket = await service.imagine("a circle", ALICE, HERE)
    row = state.generations[ticket.generation_ids[0]]
    assert row.params.preset == "brand-b"
    assert row.campaign_id == state.campaigns["spring"].id


async def test_a_locked_binding_refuses_other_presets_and_campaigns(service: Service) -> None:
    await service.create_campaign(ADMIN, "spring", "brand-b")
    await service.create_campaign(ADMIN, "autumn", "brand-a")
    await service.bind(ADMIN, HERE, campaign="spring", locked=True)
    with pytest.raises(LockedSetting, match="preset brand-b") as locked:
        await service.imagine("a circle --preset brand-a", ALICE, HERE)
    assert "remove --preset brand-a" in locked.value.user_message
    with pytest.raises(LockedSetting, match="campaign spring"):
        await service.imagine("a circle --campaign autumn", ALICE, HERE)


async def test_an_unlocked_binding_can_be_overridden(service: Service, state: FakeState) -> None:
    await service.create_campaign(ADMIN, "spring", "brand-b")
    await service.bind(ADMIN, HERE, campaign="spring")
    ticket = await service.imagine("a circle --preset brand-a", ALICE, HERE)
    assert state.generations[ticket.generation_ids[0]].params.preset == "brand-a"


async def test_only_admins_bind_and_create_campaigns(service: Service) -> None:
    with pytest.raises(NotAllowed):
        await service.create_campaign(ALICE, "spring", "brand-a")
    await service.create_campaign(ADMIN, "spring", "brand-a")
    with pytest.raises(NotAllowed):
        await service.bind(ALICE, HERE, campaign="spring")
    with pytest.raises(NotFound):
        await service.bind(ADMIN, HERE, campaign="nope")


async def test_campaign_names_and_dates_are_checked(service: Service) -> None:
    with pytest.raises(UserError, match="lowercase letters a-z"):
        await service.create_campaign(ADMIN, "Spring Sale", "brand-a")
    with pytest.raises(UserError, match="lowercase letters a-z"):
        await service.create_campaign(ADMIN, "spring{a,b}", "brand-a")
    with pytest.raises(UserError, match="end on or after"):
        await service.create_campaign(
            ADMIN, "s", "brand-a", starts_on=date(2026, 3, 2), ends_on=date(2026, 3, 1)
        )
    await service.create_campaign(ADMIN, "spring", "brand-a")
    with pytest.raises(UserError, match=r"taken|exists"):
        await service.create_campaign(ADMIN, "spring", "brand-a")


async def test_a_campaign_outside_its_dates_says_when(service: Service) -> None:
    await service.create_campaign(ADMIN, "later", "brand-a", starts_on=date(2026, 4, 1))
    await service.create_campaign(ADMIN, "over", "brand-a", ends_on=date(2026, 3, 1))
    with pytest.raises(QuotaExceeded, match="starts on 2026-04-01") as early:
        await service.imagine("a circle --campaign later", ALICE, HERE)
    assert early.value.retry_at == datetime(2026, 4, 1, tzinfo=UTC)
    with pytest.raises(QuotaExceeded, match="ended on 2026-03-01"):
        await service.imagine("a circle --campaign over", ALICE, HERE)


async def test_a_campaign_over_its_gpu_budget_is_refused(
    service: Service, state: FakeState
) -> None:
    await service.create_campaign(ADMIN, "lean", "brand-a", gpu_budget_seconds=10)
    ticket = await service.imagine("a circle --campaign lean", ALICE, HERE)
    state.generations[ticket.generation_ids[0]].gpu_seconds = 12.5
    await finish(state, ticket.generation_ids[0])
    with pytest.raises(QuotaExceeded, match="GPU budget"):
        await service.imagine("a circle --campaign lean", ALICE, HERE)


# --- input that no column could hold ------------------------------------------------------


@pytest.mark.parametrize("budget", [-5.0, 0.0, math.nan, math.inf, -math.inf, 1e12])
async def test_a_gpu_budget_is_a_finite_positive_number_of_seconds(
    service: Service, state: FakeState, budget: float
) -> None:
    with pytest.raises(UserError, match=r"GPU budget .* above 0") as caught:
        await service.create_campaign(ADMIN, "lean", "brand-a", gpu_budget_seconds=budget)
    assert "leave it out" in caught.value.user_message
    assert state.campaigns == {}
    made = await service.create_campaign(ADMIN, "lean", "brand-a", gpu_budget_seconds=0.5)
    assert made.gpu_budget_seconds == 0.5


async def test_names_and_ids_longer_than_their_columns_are_refused(
    service: Service, state: FakeState
) -> None:
    with pytest.raises(UserError, match="campaign name is 65 characters long; the most is 64"):
        await service.create_campaign(ADMIN, "a" * 65, "brand-a")
    await service.create_campaign(ADMIN, "a" * 64, "brand-a")
    long_channel = ReplyTarget(Platform.SLACK, "T1", "C" * 100_000)
    with pytest.raises(UserError, match="channel id is 100,000 characters long; the most is 64"):
        await service.bind(ADMIN, long_channel, campaign="a" * 64)
    with pytest.raises(UserError, match=r"workspace id .* the most is 64"):
        await service.unbind(ADMIN, ReplyTarget(Platform.SLACK, "T" * 65, "C1"))
    with pytest.raises(UserError, match="campaign name is 65"):
        await service.bind(ADMIN, HERE, campaign="a" * 65)
    assert state.bindings == {}
    assert [a.action for a in state.audit_log] == ["campaign.created"]


async def test_a_nul_in_a_request_is_refused_before_anything_is_written(
    service: Service, state: FakeState
) -> None:
    with pytest.raises(GrammarError, match=r"control character \(U\+0000\) at character 6"):
        await service.imagine("a red\x00 circle", ALICE, HERE)
    with pytest.raises(UserError, match="channel id has a control character"):
        await service.imagine("a circle", ALICE, ReplyTarget(Platform.SLACK, "T1", "C\x00"))
    with pytest.raises(UserError, match="display name has a control character"):
        await service.imagine("a circle", Actor(Platform.SLACK, "T1", "UA", "al\x00ice"), HERE)
    with pytest.raises(UserError, match="campaign name has a control character"):
        await service.bind(ADMIN, HERE, campaign="spr\x00ing")
    with pytest.raises(UserError, match="campaign name has a control character"):
        await service.report(REVIEWER, "spr\x00ing")
    assert state.generations == {}
    assert state.users == {}
    assert state.bindings == {}


async def test_a_reaction_no_column_could_hold_is_ignored(
    service: Service, state: FakeState
) -> None:
    gid = (await service.imagine("a circle", ALICE, HERE)).generation_ids[0]
    await finish(state, gid)
    result = MessageRef(Platform.SLACK, "C1", "1700000000.0001")
    await service.record_message(gid, result, "result")
    assert not await service.react(result, "+1::" + "x" * 100, BOB, added=True)
    assert not await service.react(result, "+1::\x00", BOB, added=True)
    assert state.feedback == {}
    assert await service.react(result, "+1::skin-tone-2", BOB, added=True)


def test_the_limits_are_the_columns() -> None:
    from core.db import models
    from core.service.base import ID_MAX, NAME_MAX

    def length(column: object) -> int:
        return column.type.length  # type: ignore[attr-defined,no-any-return]

    assert length(models.Campaign.name) == NAME_MAX
    assert length(models.ChannelBinding.preset_name) == NAME_MAX
    assert length(models.ChannelBinding.channel_id) == ID_MAX
    assert length(models.ChannelBinding.workspace_external_id) == ID_MAX
    assert length(models.User.external_id) == ID_MAX
    assert length(models.Workspace.external_id) == ID_MAX
    assert length(models.Message.message_id) == ID_MAX
    assert length(models.Feedback.emoji) == ID_MAX


# --- quotas and fairness -------------------------------------------------------------------


async def test_queued_jobs_per_user_are_limited(service: Service, state: FakeState) -> None:
    for _ in range(3):
        await service.imagine("a circle --n 1", ALICE, HERE)
    with pytest.raises(QuotaExceeded, match="at most 3"):
        await service.imagine("a circle --n 1", ALICE, HERE)
    await service.imagine("a circle --n 1", BOB, HERE)  # others are not affected
    assert len(waiting(state)) == 4


async def test_images_per_day_are_limited_until_midnight(
    service: Service, state: FakeState
) -> None:
    for _ in range(3):
        ticket = await service.imagine("a circle", ALICE, HERE)
        await finish(state, ticket.generation_ids[0])
    with pytest.raises(QuotaExceeded, match="12 of your 12 images") as over:
        await service.imagine("a circle --n 1", ALICE, HERE)
    assert "00:00 UTC (in 8 h 30 min)" in over.value.user_message
    assert over.value.retry_at == datetime(2026, 3, 11, tzinfo=UTC)


async def test_users_are_served_round_robin(service: Service, state: FakeState) -> None:
    a = [(await service.imagine("a circle --n 1", ALICE, HERE)).generation_ids[0] for _ in range(3)]
    b = (await service.imagine("a circle --n 1", BOB, HERE)).generation_ids[0]
    assert waiting(state) == [a[0], b, a[1], a[2]]
    position = await _position(service, state, b)
    assert position == 2


async def _position(service: Service, state: FakeState, gid: uuid.UUID) -> int | None:
    return await FakeJobQueue(state).position(gid)


async def test_rush_campaigns_go_first(service: Service, state: FakeState) -> None:
    await service.create_campaign(ADMIN, "launch", "brand-a", rush=True)
    normal = (await service.imagine("a circle", ALICE, HERE)).generation_ids[0]
    rush = (await service.imagine("a circle --campaign launch", BOB, HERE)).generation_ids[0]
    assert waiting(state) == [rush, normal]


# --- buttons -------------------------------------------------------------------------------


async def test_upscale_and_vary_make_children_of_one_image(
    service: Service, state: FakeState
) -> None:
    parent = (await service.imagine("a circle --seed 9", ALICE, HERE)).generation_ids[0]
    with pytest.raises(UserError, match="Wait until"):
        await service.act(Action(ActionKind.UPSCALE, parent, 2).custom_id, BOB, HERE)
    await finish(state, parent)

    up = await service.act(Action(ActionKind.UPSCALE, parent, 2).custom_id, BOB, HERE)
    vary = await service.act(Action(ActionKind.VARY, parent, 3).custom_id, BOB, HERE)
    reroll = await service.act(Action(ActionKind.REROLL, parent).custom_id, BOB, HERE)

    child = state.generations[up.generation_ids[0]]
    assert (child.kind, child.parent_id, child.source_index) == (GenerationKind.UPSCALE, parent, 2)
    assert child.params.n == 1
    assert state.users[child.user_id].external_id == "UB"  # acts as the presser
    variation = state.generations[vary.generation_ids[0]]
    assert (variation.kind, variation.source_index) == (GenerationKind.VARIATION, 3)
    assert variation.params.seed != 9
    again = state.generations[reroll.generation_ids[0]]
    assert again.kind is GenerationKind.REROLL
    assert again.params.prompt == state.generations[parent].params.prompt
    assert again.params.seed != 9
    pair = (await service.imagine("a circle --n 2", ALICE, HERE)).generation_ids[0]
    await finish(state, pair, images=2)
    with pytest.raises(UserError, match="no image 3"):
        await service.act(f"ob:u:{pair}:3", BOB, HERE)


async def test_cancel_is_for_the_requester_or_an_admin(service: Service, state: FakeState) -> None:
    gid = (await service.imagine("a circle", ALICE, HERE)).generation_ids[0]
    cancel = Action(ActionKind.CANCEL, gid).custom_id
    with pytest.raises(NotAllowed):
        await service.act(cancel, BOB, HERE)
    await service.act(cancel, ALICE, HERE)
    assert state.generations[gid].status is GenerationStatus.CANCELLED
    assert waiting(state) == []
    with pytest.raises(UserError, match="already been cancelled"):
        await service.act(cancel, ADMIN, HERE)

    other = (await service.imagine("a circle", ALICE, HERE)).generation_ids[0]
    state.generations[other].status = GenerationStatus.RUNNING
    await service.act(Action(ActionKind.CANCEL, other).custom_id, ADMIN, HERE)
    assert state.generations[other].status is GenerationStatus.CANCELLED


async def test_foreign_and_stale_buttons_get_clear_errors(service: Service) -> None:
    with pytest.raises(UserError, match="isn't one of onbrand's"):
        await service.act("something-else", ALICE, HERE)
    with pytest.raises(NotFound, match="no longer exists"):
        await service.act(Action(ActionKind.REROLL, uuid.uuid4()).custom_id, ALICE, HERE)


# --- reactions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("emoji", "expected"),
    [
        ("1️⃣", (FeedbackKind.FAVOURITE, 1)),
        ("four", (FeedbackKind.FAVOURITE, 4)),
        ("⭐", (FeedbackKind.FAVOURITE, None)),
        ("❤️", (FeedbackKind.FAVOURITE, None)),
        ("heart", (FeedbackKind.FAVOURITE, None)),
        ("+1::skin-tone-3", (FeedbackKind.LIKE, None)),
        ("👎", (FeedbackKind.DISLIKE, None)),
        ("white_check_mark", (FeedbackKind.APPROVE, None)),
        ("🎉", None),
    ],
)
def test_reaction_meanings(emoji: str, expected: object) -> None:
    assert feedback_for(emoji) == expected


async def test_reactions_on_a_result_become_feedback(service: Service, state: FakeState) -> None:
    gid = (await service.imagine("a circle", ALICE, HERE)).generation_ids[0]
    await finish(state, gid)
    result = MessageRef(Platform.SLACK, "C1", "1700000000.0001")
    await service.record_message(gid, result, "result")
    image_2 = state.images[gid][2]

    assert await service.react(result, "two", BOB, added=True)
    assert not await service.react(result, "two", BOB, added=True)  # once per user
    assert await service.react(result, "+1", BOB, added=True)
    assert not await service.react(result, "white_check_mark", BOB, added=True)  # not a reviewer
    assert await service.react(result, "white_check_mark", REVIEWER, added=True)
    kinds = {(kind, image) for (_, g, image, kind) in state.feedback if g == gid}
    assert kinds == {
        (FeedbackKind.FAVOURITE, image_2),
        (FeedbackKind.LIKE, None),
        (FeedbackKind.APPROVE, None),
    }

    assert await service.react(result, "two", BOB, added=False)  # removal retracts
    assert (FeedbackKind.FAVOURITE, image_2) not in {
        (kind, image) for (_, g, image, kind) in state.feedback
    }
    elsewhere = MessageRef(Platform.SLACK, "C1", "1700000000.0002")
    assert not await service.react(elsewhere, "star", BOB, added=True)


async def test_feedback_on_a_single_image_result_lands_on_that_image(
    service: Service, state: FakeState
) -> None:
    parent = (await service.imagine("a circle", ALICE, HERE)).generation_ids[0]
    await finish(state, parent)
    up = (await service.act(f"ob:u:{parent}:1", ALICE, HERE)).generation_ids[0]
    await finish(state, up, images=1)
    ref = MessageRef(Platform.SLACK, "C1", "1700000000.0003")
    await service.record_message(up, ref, "result")
    assert await service.react(ref, "✅", REVIEWER, added=True)
    ((_, _, image, kind),) = [k for k in state.feedback if k[1] == up]
    assert (kind, image) == (FeedbackKind.APPROVE, state.images[up][1])


async def test_reports_are_for_reviewers(service: Service) -> None:
    with pytest.raises(NotAllowed):
        await service.report(ALICE, "spring")


def test_roles_come_from_settings_and_the_platform(state: FakeState) -> None:
    service = Service(
        fake_uow_factory(state),
        {},
        ServiceConfig("x", admins=frozenset({"slack:UA"}), reviewers=frozenset({"discord:9"})),
    )
    assert Role.ADMIN in service.roles_for(Platform.SLACK, "UA")
    assert Role.ADMIN not in service.roles_for(Platform.DISCORD, "UA")
    assert Role.REVIEWER in service.roles_for(Platform.DISCORD, "9")
    assert Role.ADMIN in service.roles_for(Platform.DISCORD, "7", platform_admin=True)
    assert service.roles_for(Platform.SLACK, "UQ") == frozenset({Role.MEMBER})


async def test_a_status_message_recorded_after_the_job_finished_gets_its_closing_card(
    service: Service, state: FakeState
) -> None:
    waiting_id = (await service.imagine("a circle", ALICE, HERE)).generation_ids[0]
    fast_id = (await service.imagine("a square", ALICE, HERE)).generation_ids[0]
    await finish(state, fast_id)

    still_waiting = MessageRef(Platform.SLACK, "C1", "status-1")
    assert await service.record_status_message(waiting_id, still_waiting) is None
    already_done = MessageRef(Platform.SLACK, "C1", "status-2")
    closing = await service.record_status_message(fast_id, already_done)
    assert closing is not None
    assert "Done" in closing.text
    assert closing.actions == ()
    assert state.messages[(Platform.SLACK, "C1", "status-2")] == (fast_id, "status")
