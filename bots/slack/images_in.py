"""Images in on Slack: the message shortcut "Imagine from this image".

Slash commands carry no files, so a person picks a message with an image and the shortcut opens
a modal (prompt, mode, image weight). On submit the file is fetched through the Web API with the
bot token (``files.info``, then its ``url_private`` on Slack's own file host only; the app needs
the ``files:read`` scope), checked and stored by ``Service.upload``, and queued by
``Service.imagine_with_image``. Results go where the message is: its channel, or its thread
(shortcuts work in threads, where slash commands don't). Errors are shown only to the person.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import files, render
from bots.slack.payloads import field, part, required
from core import replies
from core.delivery import announce
from core.domain import ImageMode, Platform, ReplyTarget
from core.errors import DuplicateRequest, UserError
from core.imaging.uploads import MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from bots.slack.app import SlackBot

log = logging.getLogger(__name__)

__all__ = ["SHORTCUT_ID", "VIEW_ID", "fetch_file", "register_images_in"]

SHORTCUT_ID = "onbrand_imagine_from_image"
VIEW_ID = "onbrand_image_modal"
MODES = {"image_prompt": ImageMode.IMAGE_PROMPT, "product": ImageMode.PRODUCT}


def register_images_in(bot: SlackBot) -> None:
    """The shortcut and its modal on ``bot``'s bolt app."""

    async def on_shortcut(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        async with bot._handling(body):
            await open_modal(bot, body)

    async def on_submit(ack: AsyncAck, body: dict[str, Any]) -> None:
        await submit(bot, ack, body)

    bot.bolt.shortcut(SHORTCUT_ID)(on_shortcut)
    bot.bolt.view(VIEW_ID)(on_submit)


def _image_file(message: dict[str, Any]) -> dict[str, Any] | None:
    files = message.get("files")
    for file in files if isinstance(files, list) else []:
        if isinstance(file, dict) and str(file.get("mimetype", "")).startswith("image/"):
            return file
    return None


async def open_modal(bot: SlackBot, body: dict[str, Any]) -> None:
    message = part(body, "message")
    channel = required(part(body, "channel"), "id", "channel.")
    user = required(part(body, "user"), "id", "user.")
    team = field(part(body, "team"), "id") or field(part(body, "user"), "team_id") or ""
    thread = field(message, "thread_ts")
    image = _image_file(message)
    if image is None:
        await _tell(
            bot.client,
            channel,
            user,
            thread,
            "That message has no image. Use the shortcut on a message with a PNG, JPEG or WebP.",
        )
        return
    meta = {"file": image.get("id"), "channel": channel, "thread": thread, "team": team}
    await bot.client.views_open(trigger_id=str(body.get("trigger_id", "")), view=_modal(meta))


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def _modal(meta: dict[str, Any]) -> dict[str, Any]:
    def label(text: str) -> dict[str, str]:
        return {"type": "plain_text", "text": text}

    first = _option("image_prompt", "Image prompt: start from it")
    return {
        "type": "modal",
        "callback_id": VIEW_ID,
        "title": label("Imagine from image"),
        "submit": label("Imagine"),
        "close": label("Cancel"),
        "private_metadata": json.dumps(meta),
        "blocks": [
            {
                "type": "input",
                "block_id": "prompt",
                "label": label("Prompt"),
                "element": {"type": "plain_text_input", "action_id": "prompt", "max_length": 1500},
            },
            {
                "type": "input",
                "block_id": "mode",
                "label": label("Use the image as"),
                "element": {
                    "type": "static_select",
                    "action_id": "mode",
                    "initial_option": first,
                    "options": [first, _option("product", "Product shot: keep it unchanged")],
                },
            },
            {
                "type": "input",
                "block_id": "iw",
                "optional": True,
                "label": label("Image weight (0–3; image prompts; strength = 1/(1+weight))"),
                "element": {
                    "type": "number_input",
                    "action_id": "iw",
                    "is_decimal_allowed": True,
                    "min_value": "0",
                    "max_value": "3",
                },
            },
        ],
    }


def _state(body: dict[str, Any]) -> tuple[str, str, str | None]:
    values = part(part(part(body, "view"), "state"), "values")
    prompt = field(part(part(values, "prompt"), "prompt"), "value") or ""
    mode = field(part(part(part(values, "mode"), "mode"), "selected_option"), "value")
    iw = field(part(part(values, "iw"), "iw"), "value") or None
    return prompt, mode or "image_prompt", iw


async def submit(bot: SlackBot, ack: AsyncAck, body: dict[str, Any]) -> None:
    prompt, mode, iw_text = _state(body)
    try:
        iw = float(iw_text) if iw_text else None
    except ValueError:
        await ack(response_action="errors", errors={"iw": "Give a number from 0 to 3."})
        return
    await ack()
    meta = json.loads(field(part(body, "view"), "private_metadata") or "{}")
    channel, thread = str(meta.get("channel") or ""), meta.get("thread")
    user = required(part(body, "user"), "id", "user.")
    team = str(meta.get("team") or field(part(body, "team"), "id") or "")
    async with bot._handling(body) as key:
        try:
            actor = await bot.actor(team, user, field(part(body, "user"), "name") or "")
            where = ReplyTarget(Platform.SLACK, team, channel, thread)
            data = await fetch_file(bot.client, str(meta.get("file", "")))
            upload = await bot.service.upload(data, actor, where)
            ticket = await bot.service.imagine_with_image(
                prompt,
                actor,
                where,
                upload.id,
                mode=MODES.get(mode, ImageMode.IMAGE_PROMPT),
                iw=iw,
                key=key,
            )
            notes = replies.warnings(ticket)
            if notes is not None:
                await _tell(bot.client, channel, user, thread, render.reply_text(notes))
            await announce.announce(bot.service, ticket, bot._poster(where), bot.sink)
        except DuplicateRequest:
            raise  # a copy of a submission handled already: _handling answers it quietly
        except Exception as error:  # a modal has no channel of its own: tell the person there
            answer = replies.error_reply(error, what="the image shortcut", log=log)
            await _tell(bot.client, channel, user, thread, render.reply_text(answer))


async def fetch_file(client: AsyncWebClient, file_id: str) -> bytes:
    """A Slack file's bytes, with the bot token, from Slack's own file host only."""
    try:
        info = await client.files_info(file=file_id)
    except SlackApiError as exc:
        raise UserError(
            "Slack wouldn't show that file to onbrand (the app needs the files:read scope and "
            "access to the channel). Share the image in this channel and try again."
        ) from exc
    file: dict[str, Any] = info.get("file") or {}
    if not str(file.get("mimetype", "")).startswith("image/"):
        raise UserError("That file isn't an image. Use a PNG, JPEG or WebP.")
    if int(file.get("size") or 0) > MAX_UPLOAD_BYTES:
        raise UserError(
            f"The image is over {MAX_UPLOAD_BYTES // 2**20} MB. "
            "Send a PNG, JPEG or WebP under that."
        )
    url = str(file.get("url_private_download") or file.get("url_private") or "")
    try:
        return await files.fetch(url, client.token or "", client.base_url, MAX_UPLOAD_BYTES)
    except files.NotOnSlack:
        raise UserError(
            "That file isn't stored on Slack; upload the image itself and try again."
        ) from None
    except files.FileRefused:
        raise UserError(
            "Slack wouldn't hand over that file (the app needs the files:read scope). "
            "Ask an admin to reinstall the app, then try again."
        ) from None


async def _tell(
    client: AsyncWebClient, channel: str, user: str, thread: str | None, text: str
) -> None:
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread)
    except SlackApiError as exc:
        log.warning("could not show a message to %s: %s", user, exc.response.get("error"))
