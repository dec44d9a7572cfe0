"""The "Verify image" message shortcut: the images of a message, verified, answered privately.

Slack sends a ``message_action`` with the message's files; each image (at most ``MOST`` per
message) is fetched from its ``url_private`` with the bot token (``files:read``), no larger than
verify reads, and handed to ``core.service.verify``. The answer is an ephemeral message to the
person who asked; campaign and approval are named only when they are in the workspace that made
the image (decided in core).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck
from slack_sdk.errors import SlackApiError

from bots.slack import files
from bots.slack.payloads import field, part, required
from core.provenance.inspect import MAX_BYTES
from core.provenance.setup import provenance_of
from core.service.verify import verify_for_chat

if TYPE_CHECKING:
    from bots.slack.app import SlackBot

log = logging.getLogger(__name__)

CALLBACK_ID = "ob_verify_image"
MOST = 4  # images verified per message


async def download(url: str, token: str, api_base: str) -> bytes | str:
    """The file's bytes, or why not (too large, not a file, not on Slack); the bot token goes
    only to Slack's file host (``bots.slack.files``)."""
    try:
        data = await files.fetch(url, token, api_base, MAX_BYTES)
    except files.NotOnSlack:
        return "The file is not on Slack."
    except files.FileRefused:
        return "Slack did not hand over the file (is the files:read scope granted?)."
    if len(data) > MAX_BYTES:
        return f"The file is larger than {MAX_BYTES:,} bytes; verify reads no more."
    return data


def register(bot: SlackBot) -> None:
    async def on_verify(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        team = field(part(body, "team"), "id") or required(body, "team_id", "")
        user = required(part(body, "user"), "id", "user.")
        channel = required(part(body, "channel"), "id", "channel.")
        files = part(body, "message").get("files")
        images = [
            f
            for f in (files if isinstance(files, list) else [])
            if isinstance(f, dict) and str(f.get("mimetype", "")).startswith("image/")
        ]
        viewer = await bot.actor(team, user, with_roles=False)
        answers: list[str] = []
        for image in images[:MOST]:
            url = field(image, "url_private")
            if url is None:
                continue
            data = await download(url, bot.client.token or "", bot.client.base_url)
            name = field(image, "name") or "image"
            if isinstance(data, str):
                answers.append(f"*{name}*: ❌ {data}")
                continue
            answer = await verify_for_chat(
                bot.app.db, provenance_of(bot.app.settings), data, viewer
            )
            answers.append(f"*{name}*: {answer}")
        text = "\n".join(answers) or "This message has no image to verify."
        try:
            await bot.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError as exc:
            log.warning(
                "could not show the verification to %s: %s", user, exc.response.get("error")
            )

    async def verify_shortcut(ack: AsyncAck, body: dict[str, Any]) -> None:
        async with bot._handling(body):
            await on_verify(ack, body)

    bot.bolt.shortcut(CALLBACK_ID)(verify_shortcut)
