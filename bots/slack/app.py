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
  message with a reference id, and the traceback goes to the log under that id. A request that
  is not proven to come from Slack gets 401 and no answer to anyone it names; a payload without
  what a listener reads (``MalformedPayload``) is logged as a warning and answered with nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import http, once, render, search, verify
from bots.slack.edits import register_edits
from bots.slack.images_in import register_images_in
from bots.slack.packs import register_packs
from bots.slack.payloads import (
    MalformedPayload,
    api_error,
    bind_args,
    field,
    header,
    listener,
    part,
    request_key,
    required,
    sender,
    who,
)
from bots.slack.reactions import ReactionOrder
from bots.slack.sink import SlackSink
from core import replies
from core.bootstrap import App
from core.delivery import announce
from core.domain import Actor, MessageRef, Platform, ReplyTarget, RequestKey, ResultCard
from core.errors import ConfigError, DuplicateRequest
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
    """The Web API client: the bot token, ``SLACK_API_URL``, and retries (429 after Retry-After;
    a 5xx or lost connection of anything but ``chat.postMessage``, which ``once`` handles)."""
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set")
    options: dict[str, Any] = {}
    if settings.slack_api_url:
        options["base_url"] = settings.slack_api_url.rstrip("/") + "/"
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        retry_handlers=[
            once.ConnectionErrorRetries(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            once.ServerErrorRetries(max_retry_count=1),
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
        self.signing_secret = secret.get_secret_value().strip() if secret is not None else ""
        if not self.signing_secret and not socket_mode:
            raise ConfigError(
                "SLACK_SIGNING_SECRET is required in HTTP mode: set it to the Signing Secret on "
                "the Slack app's Basic Information page (or set SLACK_APP_TOKEN for Socket Mode)"
            )
        self.bolt = AsyncApp(
            client=self.client,
            signing_secret=self.signing_secret,
            request_verification_enabled=not socket_mode,
            logger=logging.getLogger("bots.slack.bolt"),
        )
        self._people: dict[str, tuple[float, bool, str]] = {}  # user → (until, admin, name)
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.reactions = ReactionOrder()
        self.app = app  # the "Verify image" shortcut reads the records (bots.slack.verify)
        self._register()

    # --- wiring ----------------------------------------------------------------------------

    def _register(self) -> None:
        bolt = self.bolt
        bolt.command("/imagine")(self.on_imagine)
        bolt.command("/imagine-report")(self.on_report)
        bolt.command("/imagine-admin")(self.on_admin)
        search.register(self)  # /imagine-search and its buttons, before ACTION_ID's
        register_edits(self)  # region menu and Remix (bots/slack/edits), before ACTION_ID
        register_packs(self)  # the 📦 placements menu (bots/slack/packs), before ACTION_ID
        bolt.action(ACTION_ID)(self.on_button)
        bolt.event("reaction_added")(self.on_reaction_added)
        bolt.event("reaction_removed")(self.on_reaction_removed)
        register_images_in(self)  # the "Imagine from this image" shortcut (bots/slack/images_in)
        bolt.error(self.on_error)
        verify.register(self)

    @contextlib.asynccontextmanager
    async def _handling(
        self, body: dict[str, Any], ack: AsyncAck | None = None
    ) -> AsyncIterator[RequestKey | None]:
        """Every listener's body runs in here, given Slack's id for the request (the same in a
        replay, a retry and a redelivered Socket Mode envelope: ``payloads.request_key``):
        counted as in flight (a graceful stop waits for it), a copy of a request handled
        already acked with nothing, and any error shown to the person who caused it — in the
        ack when there still is one, else privately in the channel. Errors never reach bolt:
        its runner drops an ack that an error follows within its 10 ms polling interval."""
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            yield request_key(body)
        except DuplicateRequest as copy:  # answered already: 200 and nothing, so Slack stops
            log.info("ignored a copy of a %s request: %s", listener(body), copy)
            if ack is not None and ack.response is None:
                await ack()
        except MalformedPayload as problem:  # not from a person: nobody to answer
            log.warning("ignored a malformed %s payload: %s", listener(body), problem)
            if ack is not None and ack.response is None:
                await ack()
        except Exception as error:
            answer = replies.error_reply(error, what=listener(body), log=log)
            if ack is not None and ack.response is None:
                await ack(text=render.reply_text(answer), response_type="ephemeral")
            else:
                await self._tell(body, answer)
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def _tell(self, body: dict[str, Any], answer: ResultCard) -> None:
        """A private answer to whoever sent ``body``, where they sent it from."""
        where = who(body)
        if where is None:
            return
        channel, user, thread = where
        try:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text=render.reply_text(answer), thread_ts=thread
            )
        except SlackApiError as exc:
            log.warning("could not show a message to %s: %s", user, api_error(exc))

    def web_app(self, path: str) -> web.Application:
        """The HTTP endpoint at ``path``: Slack's signature is checked before bolt sees a byte."""
        return http.web_app(self.bolt, self.signing_secret, path)

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
                "users.info for %s failed (%s); treating them as a member", user_id, api_error(exc)
            )
            return False, ""
        user: dict[str, Any] = answer.get("user") or {}
        admin = bool(user.get("is_admin") or user.get("is_owner"))
        name = str(user.get("name") or user.get("real_name") or "")
        self._people[user_id] = (now + ROLE_CACHE_S, admin, name)
        return admin, name

    # --- /imagine --------------------------------------------------------------------------

    async def on_imagine(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        async with self._handling(command, ack) as key:
            # Roles don't matter to /imagine: no users.info round trip before the ack.
            team, user, channel = sender(command)
            actor = await self.actor(team, user, command.get("user_name", ""), with_roles=False)
            where = ReplyTarget(Platform.SLACK, team, channel)
            text = command.get("text", "")
            asking = asyncio.ensure_future(self.service.imagine(text, actor, where, key=key))
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

        async def post(generation_id: uuid.UUID, card: ResultCard) -> MessageRef:
            channel, ts = await once.post_once(
                self.client,
                once.STATUS,
                str(generation_id),
                channel=where.channel_id,
                thread_ts=where.thread_id,
                text=render.fallback_text(card),
                blocks=render.status_blocks(card),
            )
            return MessageRef(Platform.SLACK, channel, ts)

        return post

    # --- buttons ---------------------------------------------------------------------------

    async def on_button(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        async with self._handling(body) as key:
            user = part(body, "user")
            user_id = required(user, "id", "user.")
            action_id = required(action, "action_id", "actions[0].")
            team_id = field(part(body, "team"), "id") or field(user, "team_id") or ""
            container, message = part(body, "container"), part(body, "message")
            channel = field(container, "channel_id") or required(
                part(body, "channel"), "id", "channel."
            )
            thread = field(container, "thread_ts") or field(message, "thread_ts")
            actor = await self.actor(team_id, user_id, field(user, "username") or "")
            where = ReplyTarget(Platform.SLACK, team_id, channel, thread)
            clicked_ts = field(container, "message_ts") or field(message, "ts")
            clicked = MessageRef(Platform.SLACK, channel, clicked_ts) if clicked_ts else None
            answer = await announce.act(
                self.service,
                action_id,
                actor,
                where,
                clicked=clicked,
                post=self._poster(where),
                sink=self.sink,
                key=key,
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
        item, kind = part(event, "item"), event.get("type")
        user_id = field(event, "user")
        if item.get("type") != "message" or not user_id or user_id == context.bot_user_id:
            return
        channel, ts, emoji = (
            field(item, "channel"),
            field(item, "ts"),
            field(event, "reaction"),
        )
        if channel is None or ts is None or emoji is None:
            log.warning("ignored a malformed %s event: no item channel, ts or reaction", kind)
            return
        key = (channel, ts, user_id, emoji)
        async with (
            self._handling(body) as event_key,
            self.reactions.turn(key, event.get("event_ts")) as current,
        ):
            if not current:
                log.info("reaction event %s on %s is older than one handled already", emoji, ts)
                return
            team = field(body, "team_id") or context.team_id or ""
            actor = await self.actor(team, user_id)
            message = MessageRef(Platform.SLACK, channel, ts)
            warning = await self.service.react_reply(
                message, emoji, actor, added=added, key=event_key
            )
            await search.warn_privately(self.client, channel, user_id, warning)

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
        async with self._handling(command) as key:
            team, user, channel = sender(command)
            actor = await self.actor(team, user, command.get("user_name", ""))
            bundle = await self.service.report(actor, campaign, key=key)
            _, summary_ts = await once.post_once(
                self.client,
                once.REPORT,
                key.id if key is not None else uuid.uuid4().hex,
                channel=channel,
                thread_ts=None,
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
                thread_ts=summary_ts,
                initial_comment=replies.REPORT_FILES_NOTE,
            )

    # --- /imagine-admin --------------------------------------------------------------------

    async def on_admin(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        async with self._handling(command, ack) as key:
            words = command.get("text", "").split()
            verb, args = (words[0].lower(), words[1:]) if words else ("", [])
            team, user, channel = sender(command)
            actor = await self.actor(team, user, command.get("user_name", ""))
            where = ReplyTarget(Platform.SLACK, team, channel)
            wanted = bind_args(args) if verb == "bind" else None
            if wanted is not None:
                campaign, preset, locked = wanted
                binding = await self.service.bind(
                    actor, where, campaign=campaign, preset=preset, locked=locked, key=key
                )
                answer = replies.bound(binding)
            elif verb == "unbind" and not args:
                answer = replies.unbound(await self.service.unbind(actor, where, key=key))
            elif verb == "campaigns" and not args:
                answer = replies.campaigns(await self.service.campaigns())
            else:
                answer = replies.private(ADMIN_HELP)
            await ack(text=render.reply_text(answer), response_type="ephemeral")

    # --- errors ----------------------------------------------------------------------------

    async def on_error(
        self,
        error: Exception,
        body: dict[str, Any],
        request: AsyncBoltRequest,
        response: BoltResponse | None,
    ) -> BoltResponse | None:
        """The backstop for errors outside the listeners' ``_handling`` (bolt's own steps).

        bolt's request verification itself can raise (a non-numeric timestamp), and what comes
        before it runs on an unverified body: such a request gets 401, and nobody it names is
        told anything."""
        if not self._from_slack(request):
            log.warning("refused a request not signed by Slack (%s)", type(error).__name__)
            return BoltResponse(status=401, body=http.REFUSED) if response is not None else None
        if not isinstance(body, dict):  # bolt's parsers hand on whatever the JSON was
            log.warning("ignored a %s payload from Slack", type(body).__name__)
            return BoltResponse(status=400) if response is not None else None
        answer = replies.error_reply(error, what=listener(body), log=log)
        if response is not None and body.get("command"):  # not acked yet: the ack carries it
            text = render.reply_text(answer)
            return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
        await self._tell(body, answer)
        return BoltResponse(status=200) if response is not None else None

    def _from_slack(self, request: AsyncBoltRequest) -> bool:
        """Whether ``request`` came through Slack: its Socket Mode connection, or a valid
        signature (checked again here: the error may have come from checking it)."""
        if request.mode == "socket_mode":
            return True
        return http.authentic(
            self.signing_secret,
            header(request, "x-slack-request-timestamp"),
            header(request, "x-slack-signature"),
            request.raw_body.encode("utf-8", "replace"),
            now=time.time(),
        )
