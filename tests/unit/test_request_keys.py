"""Requests delivered more than once, on the in-memory fakes: the service does a request once
per platform key and raises ``DuplicateRequest`` for a copy; and the key each Slack payload
carries (the same in a replay, a retry and a redelivered Socket Mode envelope)."""

from __future__ import annotations

from typing import Any

import pytest

from bots.slack.payloads import request_key
from core.domain import Action, ActionKind, MessageRef, Platform, RequestKey
from core.errors import DuplicateRequest, UserError
from core.service import Service
from core.testing.state import FakeState
from tests.unit.test_service import (  # noqa: F401 (fixtures)
    ADMIN,
    ALICE,
    BOB,
    HERE,
    finish,
    service,
    state,
    waiting,
)


def _key(id: str) -> RequestKey:
    return RequestKey(Platform.SLACK, "command", id)


async def test_a_copy_of_an_imagine_changes_nothing(service: Service, state: FakeState) -> None:  # noqa: F811
    ticket = await service.imagine("a circle", ALICE, HERE, key=_key("t1"))
    snapshot = state.snapshot()

    with pytest.raises(DuplicateRequest):
        await service.imagine("a circle", ALICE, HERE, key=_key("t1"))

    assert state.snapshot() == snapshot
    assert waiting(state) == list(ticket.generation_ids)
    await service.imagine("a circle", ALICE, HERE, key=_key("t2"))  # another request
    assert len(state.generations) == 2


async def test_a_refused_request_keeps_no_receipt(service: Service, state: FakeState) -> None:  # noqa: F811
    for _ in range(2):  # refused both times, for what it says, never as a copy
        with pytest.raises(UserError, match="no preset called nope"):
            await service.imagine("a circle --preset nope", ALICE, HERE, key=_key("t1"))
    assert state.receipts == set()


async def test_clicks_copies_and_cancels(service: Service, state: FakeState) -> None:  # noqa: F811
    gid = (await service.imagine("a circle", ALICE, HERE)).generation_ids[0]
    await finish(state, gid)
    vary = Action(ActionKind.VARY, gid, 2).custom_id
    click = RequestKey(Platform.DISCORD, "interaction", "111")

    await service.act(vary, BOB, HERE, key=click)
    with pytest.raises(DuplicateRequest):
        await service.act(vary, BOB, HERE, key=click)
    await service.act(vary, BOB, HERE, key=RequestKey(Platform.DISCORD, "interaction", "112"))
    assert len([g for g in state.generations.values() if g.parent_id == gid]) == 2

    queued = (await service.imagine("a square", ALICE, HERE)).generation_ids[0]
    cancel = Action(ActionKind.CANCEL, queued).custom_id
    await service.act(cancel, ALICE, HERE, key=RequestKey(Platform.DISCORD, "interaction", "9"))
    with pytest.raises(DuplicateRequest):  # not "already cancelled"
        await service.act(cancel, ALICE, HERE, key=RequestKey(Platform.DISCORD, "interaction", "9"))


async def test_a_copy_of_a_reaction_event_is_not_applied(
    service: Service,  # noqa: F811
    state: FakeState,  # noqa: F811
) -> None:
    gid = (await service.imagine("a circle", ALICE, HERE)).generation_ids[0]
    await finish(state, gid)
    result = MessageRef(Platform.SLACK, "C1", "1700000000.0001")
    await service.record_message(gid, result, "result")
    added = RequestKey(Platform.SLACK, "event", "Ev01")

    assert await service.react(result, "star", BOB, added=True, key=added)
    assert await service.react(
        result, "star", BOB, added=False, key=RequestKey(Platform.SLACK, "event", "Ev02")
    )
    assert not await service.react(result, "star", BOB, added=True, key=added)  # a late retry
    assert state.feedback == {}


async def test_bind_and_unbind_copies(service: Service, state: FakeState) -> None:  # noqa: F811
    await service.bind(ADMIN, HERE, preset="brand-b", key=_key("b1"))
    with pytest.raises(DuplicateRequest):
        await service.bind(ADMIN, HERE, preset="brand-b", key=_key("b1"))
    assert await service.unbind(ADMIN, HERE, key=_key("u1"))
    with pytest.raises(DuplicateRequest):  # not "this channel wasn't bound"
        await service.unbind(ADMIN, HERE, key=_key("u1"))
    assert [a.action for a in state.audit_log] == ["binding.saved", "binding.deleted"]


# --- the key of each Slack payload ----------------------------------------------------------------


def _command() -> dict[str, Any]:
    return {"command": "/imagine", "text": "x", "trigger_id": "13345.98.abc"}


def _click(**changes: Any) -> dict[str, Any]:
    body = {
        "type": "block_actions",
        "trigger_id": "13345.99.def",
        "user": {"id": "U1"},
        "actions": [{"action_id": "ob:v:x:2", "action_ts": "1700000000.123456"}],
    }
    return body | changes


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_command(), RequestKey(Platform.SLACK, "command", "13345.98.abc")),
        (_click(), RequestKey(Platform.SLACK, "action", "13345.99.def")),
        (_click(trigger_id=None), RequestKey(Platform.SLACK, "action", "U1:1700000000.123456")),
        (
            {"type": "event_callback", "event_id": "Ev0ABC", "event": {"type": "reaction_added"}},
            RequestKey(Platform.SLACK, "event", "Ev0ABC"),
        ),
        (_command() | {"trigger_id": ""}, None),
        (_click(trigger_id=None, actions=[]), None),
        (_click(trigger_id=None, actions=["not an object"]), None),
        (_click(trigger_id=None, user="U1"), None),
        ({"type": "event_callback", "event_id": 12, "event": {}}, None),
        ({"type": "url_verification"}, None),
    ],
    ids=[
        "command",
        "click",
        "click-without-trigger",
        "event",
        "command-without-trigger",
        "no-actions",
        "action-not-an-object",
        "user-not-an-object",
        "event-id-a-number",
        "nothing",
    ],
)
def test_the_key_of_a_slack_payload(body: dict[str, Any], expected: RequestKey | None) -> None:
    assert request_key(body) == expected
