"""The slack-bolt app: Slack payloads in, core calls, Slack messages out. Nothing else.

* ``/imagine``: ``service.imagine`` runs inside the 3 s deadline (bounded by ``ACK_BUDGET_S``);
  a ``UserError`` becomes the ack's ephemeral text, otherwise the ack is empty and a
  "Queued (#n, ETA)" message per generation follows with ``chat.postMessage`` (editable later,
  unlike ``response_url``), each recorded as that generation's status message.
* Buttons (``action_id`` ``ob:…``): ack first, then ``service.act``; a new generation gets its own
  Queued message.
* Reactions: ``service.react`` on the message reacted to; the bot's own reactions are ignored.
  Events are acked first and handled concurrently, so an addition and its removal a few
  milliseconds apart could be applied in either order: ``ReactionOrder`` handles one event at a
  time per (message, user, emoji), and drops an event older (by its ``event_ts``) than one
  already handled for that key (Slack does not promise to deliver events in order).
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
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from decimal import Decimal, InvalidOperation
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
from core.bootstrap import App
from core.cards import status_card
from core.domain import Action, ActionKind, Actor, MessageRef, Platform, ReplyTarget, Ticket
from core.errors import ConfigError, UserError
from core.service import Service
from core.settings import Settings

log = logging.getLogger(__name__)

ACK_BUDGET_S = 2.5  # Slack waits 3 s for an ack; past this, ack first and answer afterwards
ROLE_CACHE_S = 300.0  # how long users.info's is_admin / is_owner is trusted
REACTION_KEYS_KEPT = 10_000  # (message, user, emoji) keys whose latest event_ts is remembered
ACTION_ID = re.compile(r"^ob:")

ADMIN_HELP = (
    "Usage: `/imagine-admin bind <campaign> [locked]` · `/imagine-admin unbind` · "
    "`/imagine-admin campaigns`"
)


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


ReactionKey = tuple[str, str, str, str]  # channel, message ts, user, emoji


class ReactionOrder:
    """Reaction events for one (message, user, emoji) one at a time, newest last.

    ``turn(key, event_ts)`` waits for the key's lock (taken before the first ``await``, so
    events that arrive in order are handled in order) and yields whether the event is still
    current: False when an event with a later ``event_ts`` for the same key was already
    handled (Slack may deliver an addition after its own removal). Locks go when nobody holds
    or waits for them; the latest ``event_ts`` of the last ``keep`` keys is remembered.
    """

    def __init__(self, keep: int = REACTION_KEYS_KEPT) -> None:
        self.keep = keep
        self._locks: dict[ReactionKey, tuple[asyncio.Lock, int]] = {}  # key → (lock, users)
        self._latest: OrderedDict[ReactionKey, Decimal] = OrderedDict()

    @contextlib.asynccontextmanager
    async def turn(self, key: ReactionKey, event_ts: str | None) -> AsyncIterator[bool]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield self._current(key, _event_time(event_ts))
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:
                del self._locks[key]

    def _current(self, key: ReactionKey, at: Decimal | None) -> bool:
        if at is None:  # no event_ts: nothing to order by
            return True
        latest = self._latest.get(key)
        if latest is not None and at < latest:
            return False
        self._latest[key] = at
        self._latest.move_to_end(key)
        while len(self._latest) > self.keep:
            self._latest.popitem(last=False)
        return True

    @property
    def locks(self) -> int:
        """Keys with a handler running or waiting (0 when idle: nothing leaks)."""
        return len(self._locks)


def _event_time(event_ts: str | None) -> Decimal | None:
    try:
        return Decimal(event_ts) if event_ts else None
    except InvalidOperation:
        return None


class SlackBot:
    """The bolt app plus what its listeners share: the client, the role cache, in-flight work."""

    def __init__(self, app: App, *, client: AsyncWebClient | None = None) -> None:
        settings = app.settings
        self.service: Service = app.service
        self.client = client or slack_client(settings)
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
            text = _user_text(error)
            if ack is not None and ack.response is None:
                await ack(text=text, response_type="ephemeral")
            else:
                await self._tell(body, text)
        finally:
            if task is not None:
                self.in_flight.discard(task)

    async def _tell(self, body: dict[str, Any], text: str) -> None:
        """An ephemeral message to whoever sent ``body``, where they sent it from."""
        where = _who(body)
        if where is None:
            return
        channel, user, thread = where
        try:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread
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
            else:
                ticket = asking.result()  # a UserError here becomes the ack's text
                await ack(text="\n".join(ticket.warnings))
            await self._post_queued(ticket, where)

    async def _post_queued(self, ticket: Ticket, where: ReplyTarget) -> None:
        """One 'Queued (#n, ETA)' message per generation, recorded as its status message."""
        last = len(ticket.generation_ids) - 1
        for offset, generation_id in enumerate(ticket.generation_ids):
            generation = await self.service.generation(generation_id)
            card = status_card(
                generation,
                position=ticket.position + offset if ticket.position else None,
                eta_seconds=ticket.eta_seconds if offset == last else None,
            )
            posted = await self.client.chat_postMessage(
                channel=where.channel_id,
                thread_ts=where.thread_id,
                text=render.fallback_text(card),
                blocks=render.status_blocks(card),
            )
            ref = MessageRef(Platform.SLACK, str(posted["channel"]), str(posted["ts"]))
            if closing := await self.service.record_status_message(generation_id, ref):
                await self.client.chat_update(  # it finished before we could record the message
                    channel=ref.channel_id,
                    ts=ref.message_id,
                    text=render.fallback_text(closing),
                    blocks=render.status_blocks(closing),
                )

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
            custom_id = action["action_id"]
            ticket = await self.service.act(custom_id, actor, where)
            if Action.parse(custom_id).kind is ActionKind.CANCEL:
                await self.client.chat_postEphemeral(
                    channel=channel, user=actor.user_id, text="✖ Cancelled.", thread_ts=thread
                )
            else:
                await self._post_queued(ticket, where)

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
            await ack(text="Usage: `/imagine-report <campaign>`", response_type="ephemeral")
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
                text=f"Campaign report: {render.escape(bundle.campaign)}",
                blocks=render.markdown_blocks(bundle.summary_markdown),
            )
            stem = f"onbrand-report-{bundle.campaign}"
            await self.client.files_upload_v2(
                file_uploads=[
                    {"content": bundle.csv.encode(), "filename": f"{stem}.csv", "title": "CSV"},
                    {"content": bundle.html.encode(), "filename": f"{stem}.html", "title": "HTML"},
                ],
                channel=channel,
                thread_ts=str(summary["ts"]),
                initial_comment="The full report: a CSV row per image, and the HTML contact sheet.",
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
            if verb == "bind" and args and len(args) <= 2 and args[1:] in ([], ["locked"]):
                binding = await self.service.bind(
                    actor, where, campaign=args[0], locked=args[1:] == ["locked"]
                )
                lock = " (locked: flags can't override it)" if binding.locked else ""
                text = (
                    f"This channel now makes images for campaign *{render.escape(args[0])}* "
                    f"with preset *{render.escape(binding.preset)}*{lock}."
                )
            elif verb == "unbind" and not args:
                removed = await self.service.unbind(actor, where)
                text = "This channel is no longer bound." if removed else "It wasn't bound."
            elif verb == "campaigns" and not args:
                campaigns = await self.service.campaigns()
                lines = [
                    f"• *{render.escape(c.name)}*: preset {render.escape(c.preset)}"
                    + (f", {c.starts_on:%Y-%m-%d}" if c.starts_on else "")
                    + (f" to {c.ends_on:%Y-%m-%d}" if c.ends_on else "")
                    + (" · rush" if c.rush else "")
                    for c in campaigns
                ]
                text = "\n".join(lines) or "There are no campaigns yet."
            else:
                text = ADMIN_HELP
            await ack(text=text, response_type="ephemeral")

    # --- errors ----------------------------------------------------------------------------

    async def on_error(
        self, error: Exception, body: dict[str, Any], response: BoltResponse | None
    ) -> BoltResponse | None:
        """The backstop for errors outside the listeners' ``_handling`` (bolt's own steps)."""
        text = _user_text(error)
        if response is not None and body.get("command"):  # not acked yet: the ack carries it
            return BoltResponse(status=200, body={"response_type": "ephemeral", "text": text})
        await self._tell(body, text)
        return BoltResponse(status=200) if response is not None else None


def _user_text(error: Exception) -> str:
    """What the person sees: a ``UserError``'s own words, else a reference into the log."""
    if isinstance(error, UserError):
        return error.user_message
    reference = uuid.uuid4().hex[:8]
    log.error("slack listener failed [ref %s]", reference, exc_info=error)
    return (
        f"Sorry, something went wrong on our side (reference `{reference}`). "
        "Please try again; if it keeps happening, give your admin that reference."
    )


def _api_error(exc: SlackApiError) -> str:
    try:
        return str(exc.response["error"])
    except (KeyError, TypeError):
        return type(exc).__name__


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
