"""The chat flow's public half, once for every platform: "Queued" cards and closing them.

After ``service.imagine`` or a button (``service.act``), each new generation gets a public
status message — "🕒 Queued (#n, about ETA)" with ✖, each with the generation's own position and
ETA — recorded as that generation's status message, which progress then edits. A generation
that finished before its message was recorded is closed at once. A cancel closes the status
message it was clicked on and answers the person privately.

The platform posts; this module decides what is posted and what happens around it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from core import replies
from core.cards import closing_card, status_card
from core.domain import (
    Action,
    ActionKind,
    Actor,
    MessageRef,
    ReplyTarget,
    RequestKey,
    ResultCard,
    Ticket,
)
from core.ports import ChatSink
from core.service import Service

PostFn = Callable[[uuid.UUID, ResultCard], Awaitable[MessageRef]]
"""Posts a generation's public status card where the request came from; the message it became
(the generation's id lets a platform post it at most once)."""


async def announce(
    service: Service, ticket: Ticket, post: PostFn, sink: ChatSink
) -> list[MessageRef]:
    """Post one "Queued" message per generation of ``ticket`` and record it as its status."""
    refs = []
    for offset, generation_id in enumerate(ticket.generation_ids):
        generation = await service.generation(generation_id)
        position = ticket.position + offset if ticket.position else None
        ref = await post(
            generation_id,
            status_card(generation, position=position, eta_seconds=eta(ticket, offset)),
        )
        refs.append(ref)
        if closing := await service.record_status_message(generation_id, ref):
            await sink.update_status(ref, closing)  # it finished before we could record it
    return refs


def eta(ticket: Ticket, offset: int) -> float | None:
    """The ETA of the ticket's ``offset``-th generation. The ticket's ETA is its last one's,
    and an ETA grows with the queue position (position × median run time ÷ workers), so each
    earlier generation gets its share of it."""
    if ticket.eta_seconds is None or not ticket.position:
        return ticket.eta_seconds
    last = ticket.position + len(ticket.generation_ids) - 1
    return ticket.eta_seconds * (ticket.position + offset) / last


async def act(
    service: Service,
    custom_id: str,
    actor: Actor,
    where: ReplyTarget,
    *,
    clicked: MessageRef | None,
    post: PostFn,
    sink: ChatSink,
    key: RequestKey | None = None,
) -> ResultCard | None:
    """A button click: ✖ cancels (closing the status message it sits on) and answers
    privately; U/V/🔄 queue a child and announce it. The private answer, if any. ``key``: the
    platform's id for the click (a copy raises ``DuplicateRequest`` before anything is posted)."""
    ticket = await service.act(custom_id, actor, where, key=key)
    if Action.parse(custom_id).kind is ActionKind.CANCEL:
        if clicked is not None:
            cancelled = await service.generation(ticket.generation_ids[0])
            await sink.update_status(clicked, closing_card(cancelled))
        return replies.cancelled()
    await announce(service, ticket, post, sink)
    return replies.warnings(ticket)
