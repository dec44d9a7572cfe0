"""Edits on Slack beyond the buttons: the "Vary (Region)" menu and the Remix form.

- ``Vary (Region)``: a ``static_select`` under a single image (``action_id`` ``ob:vr:<gen>:<i>``);
  choosing a region queues ``Service.choose`` (a vary-region edit with the result's prompt).
- ``Remix`` (``ob:rm:<gen>:0`` under a grid, ``ob:rm:<gen>:1`` under a single image): opens a
  modal (``views.open``) with the result's prompt to edit; its submission queues
  ``Service.remix`` (same seed and settings, the new prompt through the preset and policy like
  ``/imagine``; the index travels in the modal's ``private_metadata``). A refusal is shown to
  that person only, nothing queued.

Both are registered before the buttons' ``ob:`` listener (bolt runs the first that matches).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck

from bots.slack import render
from bots.slack.images_in import _tell as tell
from bots.slack.payloads import field, part, required
from core import replies
from core.delivery import announce
from core.domain import Action, Actor, Platform, ReplyTarget, RequestKey
from core.errors import DuplicateRequest

if TYPE_CHECKING:
    from bots.slack.app import SlackBot

log = logging.getLogger(__name__)

__all__ = ["REMIX_VIEW_ID", "register_edits"]

REGION_ID = re.compile(r"^ob:vr:")
REMIX_ID = re.compile(r"^ob:rm:")
REMIX_VIEW_ID = "onbrand_remix_modal"


def register_edits(bot: SlackBot) -> None:
    """The region menu, the Remix button and its modal on ``bot``'s bolt app."""

    async def on_region(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        async with bot._handling(body) as key:
            actor, where = await _who(bot, body)
            region = required(part(action, "selected_option"), "value", "selected_option.")
            action_id = required(action, "action_id", "actions[0].")
            ticket = await bot.service.choose(action_id, region, actor, where, key=key)
            await announce.announce(bot.service, ticket, bot._poster(where), bot.sink)
            notes = replies.warnings(ticket)
            if notes is not None:
                await bot._tell(body, notes)

    async def on_remix(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        async with bot._handling(body):
            actor, where = await _who(bot, body)
            parsed = Action.parse(required(action, "action_id", "actions[0]."))
            parent = await bot.service.generation(parsed.generation_id)
            meta = {"gid": str(parent.id), "index": parsed.index, "channel": where.channel_id,
                    "thread": where.thread_id, "team": actor.workspace_id}  # fmt: skip
            view = _modal(parent.raw_prompt, meta)
            await bot.client.views_open(trigger_id=str(body.get("trigger_id", "")), view=view)

    async def on_submit(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        await _submit(bot, body)

    bot.bolt.action(REGION_ID)(on_region)
    bot.bolt.action(REMIX_ID)(on_remix)
    bot.bolt.view(REMIX_VIEW_ID)(on_submit)


async def _who(bot: SlackBot, body: dict[str, Any]) -> tuple[Actor, ReplyTarget]:
    """Who acted and where the result goes: the clicked message's channel (and thread)."""
    user = part(body, "user")
    user_id = required(user, "id", "user.")
    team_id = field(part(body, "team"), "id") or field(user, "team_id") or ""
    container, message = part(body, "container"), part(body, "message")
    channel = field(container, "channel_id") or required(part(body, "channel"), "id", "channel.")
    thread = field(container, "thread_ts") or field(message, "thread_ts")
    actor = await bot.actor(team_id, user_id, field(user, "username") or "")
    return actor, ReplyTarget(Platform.SLACK, team_id, channel, thread)


def _modal(prompt: str, meta: dict[str, Any]) -> dict[str, Any]:
    def label(text: str) -> dict[str, str]:
        return {"type": "plain_text", "text": text}

    return {
        "type": "modal",
        "callback_id": REMIX_VIEW_ID,
        "title": label("Remix"),
        "submit": label("Remix"),
        "close": label("Cancel"),
        "private_metadata": json.dumps(meta),
        "blocks": [
            {
                "type": "input",
                "block_id": "prompt",
                "label": label("Prompt (the seed and settings stay the same)"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "prompt",
                    "multiline": True,
                    "max_length": 1500,
                    "initial_value": prompt[:1500],
                },
            }
        ],
    }


async def _submit(bot: SlackBot, body: dict[str, Any]) -> None:
    view = part(body, "view")
    values = part(part(view, "state"), "values")
    prompt = field(part(part(values, "prompt"), "prompt"), "value") or ""
    meta = json.loads(field(view, "private_metadata") or "{}")
    channel, thread = str(meta.get("channel") or ""), meta.get("thread")
    user = part(body, "user")
    user_id = required(user, "id", "user.")
    team = str(meta.get("team") or field(part(body, "team"), "id") or "")
    trigger = field(body, "trigger_id")
    key = RequestKey(Platform.SLACK, "view", trigger) if trigger else None
    async with bot._handling(body):
        try:
            actor = await bot.actor(team, user_id, field(user, "name") or "")
            where = ReplyTarget(Platform.SLACK, team, channel, thread)
            gid = uuid.UUID(str(meta.get("gid", "")))
            index = int(meta.get("index") or 0)  # 0: the whole grid; 1-4: one image
            ticket = await bot.service.remix(actor, where, gid, prompt, index=index, key=key)
            notes = replies.warnings(ticket)
            if notes is not None:
                await tell(bot.client, channel, user_id, thread, render.reply_text(notes))
            await announce.announce(bot.service, ticket, bot._poster(where), bot.sink)
        except DuplicateRequest:
            raise  # a copy of a submission handled already: _handling answers it quietly
        except Exception as error:  # a modal has no channel of its own: tell the person there
            answer = replies.error_reply(error, what="the remix", log=log)
            await tell(bot.client, channel, user_id, thread, render.reply_text(answer))
