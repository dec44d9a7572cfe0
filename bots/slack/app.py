"""The slack-bolt app: Slack payloads in, core calls, Slack messages out. Nothing else.

What is said and posted is decided in core (``core.delivery.announce``, ``core.replies``), the
same as on Discord; this module does Slack's part of it:

* ``/imagine``: ``service.imagine`` runs inside the 3 s deadline (bounded by ``ACK_BUDGET_S``);
  a ``UserError`` becomes the ack's ephemeral text, otherwise the ack carries the warnings (if
  any) and a "Queued (#n, ETA)" message per generation follows with ``chat.postMessage``
  (editable later, unlike ``response_url``), each recorded as that generation's status message.
* Buttons (``action_id`` ``ob:…``): ack first, then ``announce.act``; a new generation gets its
  own Queued message, a cancel closes the status message and is answered privately.
* Reactions: ``service.react`` on the message reacted to; the bot's own reactions are ignored;
  ``ReactionOrder`` applies each (message, user, emoji)'s events in the order they happened.
* ``/imagine-report <campaign>`` and ``/imagine-admin bind|unbind|campaigns``.
* One error handler: a ``UserError`` is shown to that user only; anything else gets a generic
  message with a reference id, and the traceback goes to the log under that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import render
from bots.slack.reactions import ReactionOrder
from bots.slack.sink import SlackSink
from core import replies
from core.bootstrap import App
from core.delivery import announce
from core.domain import Actor, MessageRef, Platform, ReplyTarget, ResultCard
from core.errors import ConfigError
from core.service import Service
from core.settings import Settings

log = logging.getLogger(__name__)

ACK_BUDGET_S = 2.5  # Slack waits 3 s for an ack; past this, ack first and answer afterwards
ROLE_CACHE_S = 300.0  # how long users.info's is_admin / is_owner is trusted
ACTION_ID = re.compile(r"^ob:")

ADMIN_HELP = (
    "Usage: `/imagine-admin bind [campaign] [--preset <preset>] [locked]` · "
    "`/imagine-admin unbind` · `/imagine-admin campaigns`"
)
REPORT_USAGE = "Usage: `/imagine-report <campaign>`"


def slack_client(settings: Settings) -> AsyncWebClient:
    """The Web API client: the bot token, ``SLACK_API_URL``, and retries (429 after Retry-After)."""
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set")
    options: dict[str, Any] = {}
    if settings.slack_api_url:
        options["base_url"] = settings.slack_api_url.rstrip("/") + "/"
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=1),
        ],
        **options,
    )


def build_slack_app(app: App, *, client: AsyncWebClient | None = None) -> AsyncApp:
    """The bolt app for ``app``'s service (HTTP or Socket Mode alike)."""
    return SlackBot(app, client=client).bolt


class SlackBot:
    """The bolt app plus what its listeners share: the client, the sink (status edits and
    results), the role cache, in-flight work."""

    def __init__(
        self, app: App, *, client: AsyncWebClient | None = None, sink: SlackSink | None = None
    ) -> None:
        settings = app.settings
        self.service: Service = app.service
        self.client = client or slack_client(settings)
        self.sink = sink or SlackSink(self.client, service=app.service)
        socket_mode = settings.slack_app_token is not None
        secret = settings.slack_signing_secret
        if secret is None and not socket_mode:
            raise ConfigError("SLACK_SIGNING_SECRET is required in HTTP mode")
        self.bolt = AsyncApp(
            client=self.client,
            signing_secret=secret.get_secret_value() if secret is not None else "",
            request_verification_enabled=not socket_mode,
            logger=logging.getLogger("bots.slack.bolt"),
        )
        self._people: dict[str, tuple[float, bool, str]] = {}  # user → (until, admin, name)
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.reactions = ReactionOrder()
        self._register()

    # --- wiring ----------------------------------------------------------------------------

    def _register(self) -> None:
        bolt = self.bolt
        bolt.command("/imagine")(self.on_imagine)
        bolt.command("/imagine-report")(self.on_report)
        bolt.command("/imagine-admin")(self.on_admin)
        bolt.action(ACTION_ID)(self.on_button)
        bolt.event("reaction_added")(self.on_reaction_added)
        bolt.event("reaction_removed")(self.on_reaction_removed)
        bolt.error(self.on_error)

    @contextlib.asynccontextmanager
    async def _handling(
        self, body: dict[str, Any], ack: AsyncAck | None = None
    ) -> AsyncIterator[None]:
        """Every listener's body runs in here: counted as in flight (a graceful stop waits for
        it), and any error shown to the person who caused it — in the ack when there still is
        one, else privately in the channel. Errors never reach bolt: its runner drops an ack
        that an error follows within its 10 ms polling interval."""
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            yield
        except Exception as error:
            answer = replies.error_reply(error, what=_listener(body), log=log)
            if ack is not None and ack.response is None:
                await ack(text=render.reply_text(answer), response_type="ephemeral")
            else:
                await self._tell(body, answer)
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def _tell(self, body: dict[str, Any], answer: ResultCard) -> None:
        """A private answer to whoever sent ``body``, where they sent it from."""
        where = _who(body)
        if where is None:
            return
        channel, user, thread = where
        try:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text=render.reply_text(answer), thread_ts=thread
            )
        except SlackApiError as exc:
            log.warning("could not show a message to %s: %s", user, _api_error(exc))

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait (up to ``timeout``) for listeners that are still posting."""
        pending = {t for t in self.in_flight if t is not asyncio.current_task()}
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    # --- who and where ---------------------------------------------------------------------

    async def actor(
        self, team_id: str, user_id: str, name: str = "", *, with_roles: bool = True
    ) -> Actor:
        """The user as core sees them; ``with_roles`` asks Slack (cached) if they're an admin."""
        admin = False
        if with_roles:
            admin, looked_up = await self._person(user_id)
            name = name or looked_up
        roles = self.service.roles_for(Platform.SLACK, user_id, platform_admin=admin)
        return Actor(Platform.SLACK, team_id, user_id, name, roles)

    async def _person(self, user_id: str) -> tuple[bool, str]:
        now = time.monotonic()
        cached = self._people.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        try:
            answer = await self.client.users_info(user=user_id)
        except SlackApiError as exc:
            log.warning(
                "users.info for %s failed (%s); treating them as a member", user_id, _api_error(exc)
            )
            return False, ""
        user: dict[str, Any] = answer.get("user") or {}
        admin = bool(user.get("is_admin") or user.get("is_owner"))
        name = str(user.get("name") or user.get("real_name") or "")
        self._people[user_id] = (now + ROLE_CACHE_S, admin, name)
        return admin, name

    # --- /imagine --------------------------------------------------------------------------

    async def on_imagine(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        async with self._handling(command, ack):
            # Roles don't matter to /imagine: no users.info round trip before the ack.
            team, user = command["team_id"], command["user_id"]
            actor = await self.actor(team, user, command.get("user_name", ""), with_roles=False)
            where = ReplyTarget(Platform.SLACK, command["team_id"], command["channel_id"])
            text = command.get("text", "")
            asking = asyncio.ensure_future(self.service.imagine(text, actor, where))
            done, _ = await asyncio.wait({asking}, timeout=ACK_BUDGET_S)
            if not done:  # the database is slow today: ack now, answer when it's done
                await ack()
                ticket = await asking
                notes = replies.warnings(ticket)
                if notes is not None:
                    await self._tell(command, notes)
            else:
                ticket = asking.result()  # a UserError here becomes the ack's text
                notes = replies.warnings(ticket)
                await ack(text=render.reply_text(notes) if notes is not None else "")
            await announce.announce(self.service, ticket, self._poster(where), self.sink)

    def _poster(self, where: ReplyTarget) -> announce.PostFn:
        """Posts a status card where the request came from (editable later, unlike
        ``response_url``)."""

        async def post(card: ResultCard) -> MessageRef:
            posted = await self.client.chat_postMessage(
                channel=where.channel_id,
                thread_ts=where.thread_id,
                text=render.fallback_text(card),
                blocks=render.status_blocks(card),
            )
            return MessageRef(Platform.SLACK, str(posted["channel"]), str(posted["ts"]))

        return post

    # --- buttons ---------------------------------------------------------------------------

    async def on_button(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        async with self._handling(body):
            user = body["user"]
            team_id = (body.get("team") or {}).get("id") or user.get("team_id", "")
            actor = await self.actor(team_id, user["id"], user.get("username", ""))
            container = body.get("container") or {}
            message = body.get("message") or {}
            channel = container.get("channel_id") or body["channel"]["id"]
            thread = container.get("thread_ts") or message.get("thread_ts")
            where = ReplyTarget(Platform.SLACK, team_id, channel, thread)
            clicked_ts = container.get("message_ts") or message.get("ts")
            clicked = MessageRef(Platform.SLACK, channel, clicked_ts) if clicked_ts else None
            answer = await announce.act(
                self.service,
                action["action_id"],
                actor,
                where,
                clicked=clicked,
                post=self._poster(where),
                sink=self.sink,
            )
            if answer is not None:
                await self._tell(body, answer)

    # --- reactions -------------------------------------------------------------------------

    async def on_reaction_added(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await self._react(event, body, context, added=True)

    async def on_reaction_removed(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await self._react(event, body, context, added=False)

    async def _react(
        self, event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext, *, added: bool
    ) -> None:
        item = event.get("item") or {}
        user_id = event.get("user", "")
        if item.get("type") != "message" or not user_id or user_id == context.bot_user_id:
            return
        emoji = event.get("reaction", "")
        key = (item["channel"], item["ts"], user_id, emoji)
        async with self._handling(body), self.reactions.turn(key, event.get("event_ts")) as current:
            if not current:
                log.info("reaction event %s on %s is older than one handled already", emoji, key[1])
                return
            actor = await self.actor(body.get("team_id") or context.team_id or "", user_id)
            message = MessageRef(Platform.SLACK, item["channel"], item["ts"])
            await self.service.react(message, emoji, actor, added=added)

    # --- /imagine-report -------------------------------------------------------------------

    async def on_report(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        campaign = command.get("text", "").strip()
        if not campaign:
            await ack(text=REPORT_USAGE, response_type="ephemeral")
            return
        await ack(
            text=f"Building the report for *{render.escape(campaign)}*…",
            response_type="ephemeral",
        )
        async with self._handling(command):
            actor = await self.actor(
                command["team_id"], command["user_id"], command.get("user_name", "")
            )
            bundle = await self.service.report(actor, campaign)
            channel = command["channel_id"]
            summary = await self.client.chat_postMessage(
                channel=channel,
                text=render.escape(replies.report_title(bundle.campaign)),
                blocks=render.markdown_blocks(bundle.summary_markdown),
            )
            files = replies.report_files(bundle.campaign, bundle.csv, bundle.html)
            await self.client.files_upload_v2(
                file_uploads=[
                    {"content": data, "filename": name, "title": name.rpartition(".")[2].upper()}
                    for name, data in files
                ],
                channel=channel,
                thread_ts=str(summary["ts"]),
                initial_comment=replies.REPORT_FILES_NOTE,
            )

    # --- /imagine-admin --------------------------------------------------------------------

    async def on_admin(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        async with self._handling(command, ack):
            words = command.get("text", "").split()
            verb, args = (words[0].lower(), words[1:]) if words else ("", [])
            actor = await self.actor(
                command["team_id"], command["user_id"], command.get("user_name", "")
            )
            where = ReplyTarget(Platform.SLACK, command["team_id"], command["channel_id"])
            wanted = bind_args(args) if verb == "bind" else None
            if wanted is not None:
                campaign, preset, locked = wanted
                binding = await self.service.bind(
                    actor, where, campaign=campaign, preset=preset, locked=locked
                )
                answer = replies.bound(binding)
            elif verb == "unbind" and not args:
                answer = replies.unbound(await self.service.unbind(actor, where))
            elif verb == "campaigns" and not args:
                answer = replies.campaigns(await self.service.campaigns())
            else:
                answer = replies.private(ADMIN_HELP)
            await ack(text=render.reply_text(answer), response_type="ephemeral")

    # --- errors ----------------------------------------------------------------------------

    async def on_error(
        self, error: Exception, body: dict[str, Any], response: BoltResponse | None
    ) -> BoltResponse | None:
        """The backstop for errors outside the listeners' ``_handling`` (bolt's own steps)."""
        answer = replies.error_reply(error, what=_listener(body), log=log)
        if response is not None and body.get("command"):  # not acked yet: the ack carries it
            text = render.reply_text(answer)
            return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
        await self._tell(body, answer)
        return BoltResponse(status=200) if response is not None else None


def bind_args(args: list[str]) -> tuple[str | None, str | None, bool] | None:
    """``[campaign] [--preset <preset>] [locked]`` → (campaign, preset, locked); None when the
    words don't read that way (the usage is shown)."""
    campaign: str | None = None
    preset: str | None = None
    locked = False
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word == "--preset" and rest and preset is None:
            preset = rest.pop(0)
        elif word.lower() == "locked" and not locked:
            locked = True
        elif not word.startswith("--") and campaign is None and not locked:
            campaign = word
        else:
            return None
    return (campaign, preset, locked) if campaign or preset else None


def _api_error(exc: SlackApiError) -> str:
    try:
        return str(exc.response["error"])
    except (KeyError, TypeError):
        return type(exc).__name__


def _listener(body: dict[str, Any]) -> str:
    """What a payload asked for, for the log: ``/imagine``, ``block_actions``, an event type."""
    return str(body.get("command") or body.get("type") or (body.get("event") or {}).get("type"))


def _who(body: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(channel, user, thread) of the person a payload came from."""
    if body.get("command"):
        return body["channel_id"], body["user_id"], None
    if body.get("type") == "block_actions":
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        user = (body.get("user") or {}).get("id")
        thread = container.get("thread_ts") or (body.get("message") or {}).get("thread_ts")
        return (channel, user, thread) if channel and user else None
    event = body.get("event") or {}
    channel = (event.get("item") or {}).get("channel") or event.get("channel")
    user = event.get("user")
    return (channel, user, None) if channel and user else None
