"""A fake Discord REST API and gateway on 127.0.0.1, for driving the real ``discord.py`` client.

    async with FakeDiscord() as fake, run_client(make_client(), fake) as client:
        record = await fake.dispatch_slash_command("imagine", {"prompt": "a sneaker"})
        await fake.wait_for(lambda: record.followups)
        assert record.ack_latency < 3.0

One aiohttp server answers both halves of Discord:

* **Gateway** (``gateway_url``, and ``resume_gateway_url`` for resumes): HELLO, IDENTIFY → READY
  (the guild unavailable) then GUILD_CREATE, HEARTBEAT → HEARTBEAT_ACK, RESUME → replay of the
  dispatches the client missed, then RESUMED. ``reconnect()`` sends op 7 RECONNECT. Frames are
  ``zlib-stream`` compressed when the client asks for it (discord.py does unless zstd is
  installed) and plain text otherwise. Dispatches are filtered by the intents the client
  identified with, and a client that asks for a privileged intent the application lacks is closed
  with 4014, as Discord does.
* **REST** (``api_url``): login, command sync, interaction callbacks, webhooks (followups and the
  original response), channel messages (JSON or multipart), reactions, and a CDN route for the
  attachments it stores. Every JSON answer has content type exactly ``application/json``, which
  discord.py requires. The bot's own messages and reactions are echoed back over the gateway, as
  Discord does (MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_REACTION_ADD).

Discord's rules it enforces: a callback more than ``callback_deadline`` (3 s) after the
interaction was dispatched → 404 code 10062 "Unknown interaction"; a second callback → 400 code
40060; a followup before any callback → 404 code 10015; an interaction token older than 15 minutes
→ 401 code 50027; REST without the bot token → 401. After a deferred reply (type 5), the first
followup edits the "thinking" message instead of posting a new one, as on Discord.

Faults on demand: ``rate_limit_next(route)`` (429 with Discord's body and headers, ``Via``
included: discord.py treats a 429 without it as a Cloudflare ban and gives up) and
``fail_next(route, status)``. Every REST request is recorded in ``requests``, failed ones too.

Not modelled: sharding, ETF encoding, zstd, subcommands in the dispatch helpers, modals' submit
interactions, threads, permission overwrites, member chunking.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import math
import re
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import BodyPartReader, WSMsgType, web
from PIL import Image

if TYPE_CHECKING:
    import discord

T = TypeVar("T")

API_VERSION = 10
DISCORD_EPOCH_MS = 1_420_070_400_000
CALLBACK_DEADLINE_S = 3.0
TOKEN_LIFETIME_S = 15 * 60
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # a guild without boosts, since 2024
NONCE_WINDOW = timedelta(minutes=5)  # how long an enforced nonce finds its message

# Gateway opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE = 0, 1, 2, 3
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION = 6, 7, 8, 9
OP_HELLO, OP_HEARTBEAT_ACK = 10, 11

# Interaction types and callback types.
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE = 2, 3, 4
MODAL_SUBMIT = 5
CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE_MESSAGE = 4, 5, 6, 7
CB_AUTOCOMPLETE_RESULT, CB_MODAL = 8, 9

# Message flags.
FLAG_EPHEMERAL, FLAG_LOADING = 1 << 6, 1 << 7

# Intents that gate the dispatches this fake sends, and the privileged ones.
INTENT_GUILDS, INTENT_GUILD_MESSAGES, INTENT_GUILD_REACTIONS = 1 << 0, 1 << 9, 1 << 10
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, message content
EVENT_INTENTS = {
    "GUILD_CREATE": INTENT_GUILDS,
    "MESSAGE_CREATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_UPDATE": INTENT_GUILD_MESSAGES,
    "MESSAGE_DELETE": INTENT_GUILD_MESSAGES,
    "MESSAGE_REACTION_ADD": INTENT_GUILD_REACTIONS,
    "MESSAGE_REACTION_REMOVE": INTENT_GUILD_REACTIONS,
}

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1
EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | USE_APPLICATION_COMMANDS
)
MARKETING_PERMISSIONS = EVERYONE_PERMISSIONS | ATTACH_FILES | EMBED_LINKS | ADD_REACTIONS
BOT_PERMISSIONS = (
    MARKETING_PERMISSIONS | MANAGE_MESSAGES | USE_EXTERNAL_EMOJIS | SEND_MESSAGES_IN_THREADS
)

_counter = 0


def snowflake() -> int:
    """A fresh Discord snowflake for the current time (unique within the process)."""
    global _counter
    _counter = (_counter + 1) & 0xFFF
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (1 << 17) | _counter


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer with content type exactly ``application/json`` (no charset), as Discord's."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json_response({"message": message, "code": code}, status)


def route_regex(route: str) -> tuple[str | None, re.Pattern[str]]:
    """``"POST /channels/*/messages"`` → (method, regex); ``*`` is one path segment."""
    method, _, path = route.strip().partition(" ")
    if not path:
        method, path = "", method
    pattern = "/".join(
        "[^/]+" if part == "*" else re.escape(part) for part in path.strip("/").split("/")
    )
    return (method.upper() or None), re.compile(f"^/{pattern}$")


# -- the world the bot lives in --------------------------------------------------------------


@dataclass(frozen=True)
class FakeRole:
    id: int
    name: str
    permissions: int
    position: int = 1
    managed: bool = False
    bot_id: int | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "description": None,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass(frozen=True)
class FakeChannel:
    id: int
    name: str
    guild_id: int
    position: int = 0
    topic: str | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": 0,  # GUILD_TEXT
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "parent_id": None,
            "topic": self.topic,
            "nsfw": False,
            "rate_limit_per_user": 0,
            "last_message_id": None,
            "flags": 0,
        }


@dataclass(frozen=True)
class FakeUser:
    id: int
    username: str
    global_name: str | None = None
    roles: tuple[int, ...] = ()
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "avatar_decoration_data": None,
            "public_flags": 0,
            "primary_guild": None,
            "collectibles": None,
        }
        if self.bot:
            data["bot"] = True
        return data

    def member_payload(self, *, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": self.payload(),
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": [str(role) for role in self.roles],
            "joined_at": "2024-01-15T09:30:00.000000+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(frozen=True)
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: tuple[FakeRole, ...]
    channels: tuple[FakeChannel, ...]
    members: tuple[FakeUser, ...]

    def channel(self, name: str) -> FakeChannel:
        return next(c for c in self.channels if c.name == name)

    def member(self, username: str) -> FakeUser:
        return next(m for m in self.members if m.username == username)

    def get_member(self, user_id: int) -> FakeUser | None:
        return next((m for m in self.members if m.id == user_id), None)

    def permissions(self, user: FakeUser) -> int:
        """The user's guild permissions: owner and administrators get everything."""
        everyone = next(r for r in self.roles if r.id == self.id)
        value = everyone.permissions
        for role in self.roles:
            if role.id in user.roles:
                value |= role.permissions
        if user.id == self.owner_id or value & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return value


def default_guild(bot: FakeUser) -> tuple[FakeGuild, FakeUser]:
    """Acme Marketing: three text channels, an admin (ava), a marketer (ben) and the bot.

    Returns the guild and the bot's member (the bot user with its managed role)."""
    guild_id = snowflake()
    admin, marketing, bot_role = snowflake(), snowflake(), snowflake()
    roles = (
        FakeRole(guild_id, "@everyone", EVERYONE_PERMISSIONS, position=0),
        FakeRole(admin, "Brand Admin", ADMINISTRATOR, position=3),
        FakeRole(marketing, "Marketing", MARKETING_PERMISSIONS, position=2),
        FakeRole(bot_role, bot.username, BOT_PERMISSIONS, position=1, managed=True, bot_id=bot.id),
    )
    owner = FakeUser(snowflake(), "ava", "Ava Admin", roles=(admin, marketing))
    member = FakeUser(snowflake(), "ben", "Ben Marketer", roles=(marketing,))
    bot_member = FakeUser(bot.id, bot.username, bot.global_name, roles=(bot_role,), bot=True)
    channels = (
        FakeChannel(snowflake(), "general", guild_id, position=0),
        FakeChannel(snowflake(), "campaign-spring", guild_id, position=1, topic="Spring launch"),
        FakeChannel(snowflake(), "brand-admin", guild_id, position=2),
    )
    guild = FakeGuild(
        guild_id, "Acme Marketing", owner.id, roles, channels, (owner, member, bot_member)
    )
    return guild, bot_member


# -- what the fake records -------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedFile:
    field: str  # the multipart field name, e.g. "files[0]"
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class RestRequest:
    method: str
    path: str  # relative to api_url, e.g. "/channels/123/messages"
    query: dict[str, str]
    json: Any  # the JSON body, or multipart's payload_json; None when there is none
    files: tuple[UploadedFile, ...]
    status: int
    at: float  # time.monotonic() on arrival


@dataclass(frozen=True)
class CallbackRecord:
    """One ``POST /interactions/{id}/{token}/callback`` (accepted or not)."""

    interaction_id: int
    type: int
    data: dict[str, Any]
    files: tuple[UploadedFile, ...]
    at: float  # time.monotonic() on arrival
    elapsed: float  # seconds since the interaction was dispatched
    status: int
    error_code: int | None = None

    @property
    def accepted(self) -> bool:
        return self.status < 300


@dataclass
class StoredMessage:
    id: int
    channel_id: int
    payload: dict[str, Any]  # the message object as the fake answers it
    files: list[UploadedFile] = field(default_factory=list)
    source: str = "channel"  # channel | interaction | followup | seeded
    interaction_id: int | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)  # the bodies of later PATCHes
    reactions: dict[str, set[int]] = field(default_factory=dict)  # emoji → user ids

    @property
    def content(self) -> str:
        return str(self.payload.get("content", ""))

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.payload.get("embeds", []))

    @property
    def components(self) -> list[dict[str, Any]]:
        return list(self.payload.get("components", []))

    @property
    def flags(self) -> int:
        return int(self.payload.get("flags", 0))

    @property
    def custom_ids(self) -> list[str]:
        """Every component custom_id in the message, in order."""
        found: list[str] = []

        def walk(items: list[dict[str, Any]]) -> None:
            for item in items:
                if "custom_id" in item:
                    found.append(item["custom_id"])
                walk(item.get("components", []))

        walk(self.components)
        return found


@dataclass
class InteractionRecord:
    """An interaction the fake dispatched, and what the bot did with it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    dispatched_at: float  # time.monotonic() just before the frame went out
    callbacks: list[CallbackRecord] = field(default_factory=list)
    followups: list[StoredMessage] = field(default_factory=list)
    original: StoredMessage | None = None  # the response message (type 4, or 5's placeholder)

    @property
    def callback(self) -> CallbackRecord | None:
        """The accepted callback, if any."""
        return next((c for c in self.callbacks if c.accepted), None)

    @property
    def ack_latency(self) -> float | None:
        """Seconds from dispatch to the accepted callback's arrival."""
        accepted = self.callback
        return accepted.elapsed if accepted else None


@dataclass(frozen=True)
class GatewayFrame:
    """A payload the client sent over the gateway."""

    op: int
    d: Any
    at: float
    connection: int  # index into FakeDiscord.connections


@dataclass(frozen=True)
class GatewayConnection:
    path: str  # "/gateway" or "/resume"
    query: dict[str, str]


@dataclass(frozen=True)
class _Call:
    """A REST request with its body already read (JSON, or multipart's payload_json + files)."""

    request: web.Request
    body: Any
    files: tuple[UploadedFile, ...]
    at: float  # time.monotonic() when the request arrived, before its body was read


_Handler = Callable[[_Call], Awaitable[web.StreamResponse]]


@dataclass
class _Fault:
    method: str | None
    pattern: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int
    after: bool = False  # the request takes effect first; only its answer is the fault


@dataclass
class _Session:
    id: str
    intents: int
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # every dispatch, for resumes
    socket: _Socket | None = None
    resumes: int = 0


class _Socket:
    """One gateway connection: serialises sends and keeps the zlib stream's state."""

    def __init__(self, ws: web.WebSocketResponse, index: int, compress: str | None) -> None:
        self.ws = ws
        self.index = index
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> bool:
        """Send one payload; False when the socket is already gone."""
        text = json.dumps(payload, separators=(",", ":"))
        async with self._lock:
            if self.ws.closed:
                return False
            try:
                if self._zlib is None:
                    await self.ws.send_str(text)
                else:
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                return False
        return True


# -- the server ------------------------------------------------------------------------------


class FakeDiscord:
    """Discord's REST API and gateway for one bot application and one guild."""

    def __init__(
        self,
        *,
        token: str = "FAKE.bot-token.0123456789abcdef",
        bot_name: str = "onbrand",
        callback_deadline: float = CALLBACK_DEADLINE_S,
        token_lifetime: float = TOKEN_LIFETIME_S,
        heartbeat_interval_ms: int = 41_250,
        privileged_intents: int = 0,
        echo_own_events: bool = True,
    ) -> None:
        self.token = token
        self.application_id = snowflake()
        self.bot = FakeUser(self.application_id, bot_name, "onbrand", bot=True)
        self.owner = FakeUser(snowflake(), "acme-dev", "Acme Dev")
        self.guild, self.bot_member = default_guild(self.bot)
        self.callback_deadline = callback_deadline
        self.token_lifetime = token_lifetime
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        self.echo_own_events = echo_own_events

        self.requests: list[RestRequest] = []
        self.interactions: dict[int, InteractionRecord] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.dm_channels: dict[int, int] = {}  # direct-message channel id → the user's id
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # guild id (None: global)
        self.gateway_frames: list[GatewayFrame] = []
        self.connections: list[GatewayConnection] = []
        self.dispatched: list[dict[str, Any]] = []  # every dispatch payload, in seq order
        self.bugs: list[Exception] = []  # exceptions raised by the fake's own REST handlers

        self._faults: list[_Fault] = []
        self._cdn_files: dict[str, UploadedFile] = {}  # attachment id → upload
        self._session: _Session | None = None
        self._sockets: set[_Socket] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What ``discord.http.Route.BASE`` should be (``DISCORD_API_BASE``)."""
        return f"{self.base_url}/api/v{API_VERSION}"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` should be (``DISCORD_GATEWAY_URL``)."""
        return f"ws://127.0.0.1:{self.port}/gateway/"

    @property
    def resume_gateway_url(self) -> str:
        """The session's resume URL that READY announces (another path, so tests can tell)."""
        return f"ws://127.0.0.1:{self.port}/resume/"

    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024**2)
        api = f"/api/v{API_VERSION}"
        routes: list[tuple[str, str, _Handler]] = [
            ("GET", "/users/@me", self._get_me),
            ("GET", "/oauth2/applications/@me", self._get_application),
            ("GET", "/applications/@me", self._get_application),
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway_bot),
            ("GET", "/applications/{app}/commands", self._get_commands),
            ("PUT", "/applications/{app}/commands", self._put_commands),
            ("GET", "/applications/{app}/guilds/{guild}/commands", self._get_commands),
            ("PUT", "/applications/{app}/guilds/{guild}/commands", self._put_commands),
            ("POST", "/interactions/{interaction}/{token}/callback", self._callback),
            ("POST", "/webhooks/{app}/{token}", self._followup),
            ("GET", "/webhooks/{app}/{token}/messages/{message}", self._get_webhook_message),
            ("PATCH", "/webhooks/{app}/{token}/messages/{message}", self._edit_webhook_message),
            ("DELETE", "/webhooks/{app}/{token}/messages/{message}", self._delete_webhook_message),
            ("POST", "/users/@me/channels", self._open_dm),
            ("POST", "/channels/{channel}/messages", self._post_message),
            ("GET", "/channels/{channel}/messages/{message}", self._get_message),
            ("PATCH", "/channels/{channel}/messages/{message}", self._edit_message),
            ("DELETE", "/channels/{channel}/messages/{message}", self._delete_message),
            ("PUT", "/channels/{channel}/messages/{message}/reactions/{emoji}/@me", self._react),
            (
                "DELETE",
                "/channels/{channel}/messages/{message}/reactions/{emoji}/@me",
                self._unreact,
            ),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, api + path, self._endpoint(handler))
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_get("/resume/", self._gateway)
        app.router.add_get("/cdn/attachments/{channel}/{attachment}/{filename}", self._cdn)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        for sock in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.close(code=1001, message=b"server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- scripting faults --------------------------------------------------------------------

    def rate_limit_next(
        self,
        route: str,
        retry_after: float = 0.2,
        *,
        times: int = 1,
        is_global: bool = False,
        scope: str = "user",
    ) -> None:
        """Answer the next ``times`` requests matching ``route`` with Discord's 429.

        ``route`` is ``"METHOD /path"`` or ``"/path"`` relative to the API base, ``*`` standing for
        one path segment: ``"POST /channels/*/messages"``."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after}
        body["global"] = is_global
        headers = {
            "Retry-After": str(max(1, math.ceil(retry_after))),  # whole seconds, as Discord
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": uuid.uuid5(uuid.NAMESPACE_URL, route).hex,
            "X-RateLimit-Scope": scope,
            "Via": "1.1 google",  # discord.py treats a 429 without it as a Cloudflare ban
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        self._add_fault(route, 429, body, headers, times)

    def fail_next(
        self,
        route: str,
        status: int = 500,
        *,
        times: int = 1,
        body: Any = None,
        after: bool = False,
    ) -> None:
        """Answer the next ``times`` requests matching ``route`` with ``status``; ``after``:
        the request takes effect (a message is posted) and only the answer fails.

        discord.py retries 500, 502, 504 and 524 itself (after 1 s, then 3 s, ...)."""
        if body is None:
            reason = "Internal Server Error" if status >= 500 else "Bad Request"
            body = {"message": f"{status}: {reason}", "code": 0}
        self._add_fault(route, status, body, {}, times, after=after)

    def _add_fault(
        self,
        route: str,
        status: int,
        body: Any,
        headers: dict[str, str],
        times: int,
        *,
        after: bool = False,
    ) -> None:
        method, pattern = route_regex(route)
        self._faults.append(_Fault(method, pattern, status, body, headers, times, after))

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if (fault.method in (None, method)) and fault.pattern.match(path):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- waiting and reading -----------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(
        self,
        predicate: Callable[[FakeDiscord], T | None],
        timeout: float = 5.0,  # noqa: ASYNC109 -- polls, so a plain number reads best
    ) -> T:
        """Wait until ``predicate(self)`` is truthy and return that value (as ``FakeSlack``).

        The predicate may read the fake's state or the bot's: it is checked at once on every
        change the fake records, and every 10 ms otherwise. Raises ``TimeoutError`` naming the
        last requests the fake answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = [f"{r.method} {r.path} → {r.status}" for r in self.requests[-8:]]
                raise TimeoutError(f"condition not met within {timeout} s; last requests: {recent}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.01))

    async def wait_until_identified(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.wait_for(lambda fake: fake._session is not None, timeout)

    @property
    def callbacks(self) -> list[CallbackRecord]:
        """Every interaction callback, in arrival order, refused ones included."""
        found = [c for record in self.interactions.values() for c in record.callbacks]
        return sorted(found, key=lambda c: c.at)

    def messages_in(self, channel_id: int) -> list[StoredMessage]:
        """Messages in a channel, oldest first (ephemeral ones included)."""
        return [m for m in self.messages.values() if m.channel_id == channel_id]

    @property
    def files(self) -> list[UploadedFile]:
        """Every file stored with a message, in upload order."""
        return [f for m in self.messages.values() for f in m.files]

    def requests_matching(self, route: str) -> list[RestRequest]:
        method, pattern = route_regex(route)
        return [r for r in self.requests if method in (None, r.method) and pattern.match(r.path)]

    def command(self, name: str, guild_id: int | None = None) -> dict[str, Any]:
        """A synced command: the guild's (``guild_id``, default this guild) first, then global."""
        for scope in (guild_id or self.guild.id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command
        raise LookupError(f"no synced command named {name!r}; did the bot sync its tree?")

    def seed_message(
        self,
        channel_id: int,
        content: str = "",
        *,
        components: list[dict[str, Any]] | None = None,
        author: FakeUser | None = None,
        files: Sequence[UploadedFile] = (),
    ) -> StoredMessage:
        """Put a message in a channel without telling the bot (as if sent before a restart);
        ``files`` become its attachments, served by the fake CDN."""
        payload = self._message_payload(
            snowflake(),
            channel_id,
            {"content": content, "components": components or []},
            self._attachments(channel_id, files, []),
            author=author or self.bot,
        )
        message = StoredMessage(int(payload["id"]), channel_id, payload, source="seeded")
        self.messages[message.id] = message
        return message

    # -- gateway ---------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self.connections.append(GatewayConnection(request.path.rstrip("/"), dict(request.query)))
        sock = _Socket(ws, len(self.connections) - 1, request.query.get("compress"))
        self._sockets.add(sock)
        self._notify()
        try:
            trace = [f'["gateway-fake",{{"micros":{sock.index}}}]']
            hello = {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": trace}
            await sock.send({"op": OP_HELLO, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    frame = json.loads(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    frame = json.loads(msg.data.decode())
                else:
                    break
                await self._on_frame(sock, frame)
        finally:
            self._sockets.discard(sock)
            if self._session is not None and self._session.socket is sock:
                self._session.socket = None
            self._notify()
        return ws

    async def _on_frame(self, sock: _Socket, frame: dict[str, Any]) -> None:
        op, data = int(frame.get("op", -1)), frame.get("d")
        self.gateway_frames.append(GatewayFrame(op, data, time.monotonic(), sock.index))
        self._notify()
        if op == OP_HEARTBEAT:
            await sock.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY and isinstance(data, dict):
            await self._identify(sock, data)
        elif op == OP_RESUME and isinstance(data, dict):
            await self._resume(sock, data)
        # PRESENCE_UPDATE and REQUEST_GUILD_MEMBERS are recorded, nothing more.

    async def _identify(self, sock: _Socket, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await sock.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(data.get("intents", 0))
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            await sock.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        self._session = session = _Session(uuid.uuid4().hex, intents, socket=sock)
        ready = {
            "v": API_VERSION,
            "user": self.bot.payload() | {"verified": True, "mfa_enabled": False, "flags": 0},
            "user_settings": {},
            "guilds": [{"id": str(self.guild.id), "unavailable": True}],
            "guild_join_requests": [],
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "auth": {},
            "application": {"id": str(self.application_id), "flags": 0},
            "geo_ordered_rtc_regions": ["rotterdam", "frankfurt"],
            "_trace": ['["gateway-fake",{"micros":0}]'],
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await self._dispatch("READY", ready)
        await self._dispatch("GUILD_CREATE", self._guild_create())

    async def _resume(self, sock: _Socket, data: dict[str, Any]) -> None:
        session = self._session
        if (
            session is None
            or data.get("session_id") != session.id
            or data.get("token") != self.token
        ):
            await sock.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.socket is not None and session.socket is not sock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await session.socket.ws.close(code=4000, message=b"Session resumed elsewhere.")
        session.socket = sock
        last_seen = int(data.get("seq") or 0)
        for payload in session.log:
            if payload["s"] > last_seen:
                await sock.send(payload)
        session.resumes += 1
        await self._dispatch("RESUMED", {"_trace": ['["gateway-fake",{"micros":0}]']})

    async def _dispatch(self, event: str, data: dict[str, Any]) -> bool:
        """Send one DISPATCH to the identified client; False when its intents exclude it."""
        session = self._session
        if session is None:
            raise RuntimeError("no client has identified with the fake gateway yet")
        needed = EVENT_INTENTS.get(event, 0)
        if needed and not session.intents & needed:
            return False
        session.seq += 1
        payload = {"op": OP_DISPATCH, "d": data, "s": session.seq, "t": event}
        if event != "RESUMED":
            session.log.append(payload)
            self.dispatched.append(payload)
        if session.socket is not None:
            await session.socket.send(payload)  # a missed send is replayed on RESUME
        self._notify()
        return True

    async def dispatch(self, event: str, data: dict[str, Any]) -> bool:
        """Send any gateway event (subject to the client's intents)."""
        return await self._dispatch(event, data)

    async def reconnect(
        self,
        *,
        wait: bool = True,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Send op 7 RECONNECT; with ``wait``, return once the client has RESUMEd."""
        session = self._session
        if session is None or session.socket is None:
            raise RuntimeError("no connected client to reconnect")
        resumes = session.resumes
        await session.socket.send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})
        if wait:
            await self.wait_for(lambda _: session.resumes > resumes, timeout)

    @property
    def session_id(self) -> str | None:
        return self._session.id if self._session else None

    @property
    def resumes(self) -> int:
        return self._session.resumes if self._session else 0

    def _guild_create(self) -> dict[str, Any]:
        guild = self.guild
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": str(guild.channels[0].id),
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "vanity_url_code": None,
            "features": [],
            "application_id": None,
            "roles": [role.payload() for role in guild.roles],
            "emojis": [],
            "stickers": [],
            "channels": [
                {k: v for k, v in c.payload().items() if k != "guild_id"} for c in guild.channels
            ],
            "threads": [],
            "members": [m.member_payload() for m in guild.members],
            "member_count": len(guild.members),
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "joined_at": "2024-01-15T09:00:00.000000+00:00",
            "large": False,
            "unavailable": False,
            "lazy": True,
            "incidents_data": None,
            "premium_progress_bar_enabled": False,
            "hub_type": None,
            "latest_onboarding_question_id": None,
            "home_header": None,
            "version": int(time.time() * 1000),
        }

    # -- making Discord send things to the bot ---------------------------------------------

    def _user(self, user: FakeUser | None) -> FakeUser:
        return user or self.guild.member("ben")

    def _interaction_base(
        self,
        type: int,
        data: dict[str, Any],
        *,
        user: FakeUser | None,
        channel_id: int | None,
        guild_id: int | None,
        locale: str,
    ) -> dict[str, Any]:
        user = self._user(user)
        guild_id = guild_id or self.guild.id
        channel_id = channel_id or self.guild.channel("campaign-spring").id
        channel = next((c for c in self.guild.channels if c.id == channel_id), None)
        channel_payload = (
            channel.payload()
            if channel
            else {"id": str(channel_id), "type": 0, "guild_id": str(guild_id)}
        )
        interaction_id = snowflake()
        return {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": type,
            "data": data,
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "guild_id": str(guild_id),
            "channel": channel_payload,
            "channel_id": str(channel_id),
            "member": user.member_payload(permissions=self.guild.permissions(user)),
            "token": f"aW50ZXJhY3Rpb246{interaction_id}:{uuid.uuid4().hex}{uuid.uuid4().hex}",
            "version": 1,
            "app_permissions": str(self.guild.permissions(self.bot_member)),
            "locale": locale,
            "guild_locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,  # GUILD
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }

    async def _dispatch_interaction(self, payload: dict[str, Any]) -> InteractionRecord:
        record = InteractionRecord(
            id=int(payload["id"]),
            token=payload["token"],
            type=payload["type"],
            payload=payload,
            dispatched_at=time.monotonic(),
        )
        self.interactions[record.id] = record
        await self._dispatch("INTERACTION_CREATE", payload)
        return record

    def delete_channel(self, channel_id: int) -> None:
        """The channel is deleted on Discord: its routes answer 404 code 10003 from now on
        (no CHANNEL_DELETE is dispatched)."""
        channels = tuple(c for c in self.guild.channels if c.id != channel_id)
        self.guild = dataclasses.replace(self.guild, channels=channels)

    async def redeliver_interaction(
        self, record: InteractionRecord, *, accept_callback: bool = True
    ) -> InteractionRecord:
        """INTERACTION_CREATE again for ``record``'s interaction (same id, token and payload),
        as the gateway can send an event twice around a resume.

        ``accept_callback``: the copy gets a record of its own whose callback is accepted (as
        when the first delivery's acknowledgement never reached Discord); the first record
        keeps what it already got. Otherwise the copy answers to the first record, so its
        callback is refused with 400 code 40060 (already acknowledged) once the first acked.
        """
        if not accept_callback:
            await self._dispatch("INTERACTION_CREATE", record.payload)
            return record
        return await self._dispatch_interaction(record.payload)

    def _options(
        self,
        command: dict[str, Any],
        options: Sequence[dict[str, Any]] | Mapping[str, Any] | None,
        focused: str | None = None,
    ) -> list[dict[str, Any]]:
        """Option payloads; a mapping's types come from the synced command (else the value)."""
        if options is None:
            return []
        if not isinstance(options, Mapping):
            return [dict(option) for option in options]
        declared = {o["name"]: o for o in command.get("options", [])}
        built = []
        for name, value in options.items():
            kind = declared.get(name, {}).get("type")
            if kind is None:
                kind = (
                    5
                    if isinstance(value, bool)
                    else 4
                    if isinstance(value, int)
                    else (10 if isinstance(value, float) else 3)
                )
            option: dict[str, Any] = {"name": name, "type": kind, "value": value}
            if name == focused:
                option["focused"] = True
            built.append(option)
        return built

    def _command_data(
        self,
        name: str,
        options: Sequence[dict[str, Any]] | Mapping[str, Any] | None,
        guild_id: int | None,
        focused: str | None = None,
    ) -> dict[str, Any]:
        command = self.command(name, guild_id)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": command.get("type", 1),
            "options": self._options(command, options, focused),
        }
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return data

    async def dispatch_slash_command(
        self,
        name: str,
        options: Sequence[dict[str, Any]] | Mapping[str, Any] | None = None,
        *,
        user: FakeUser | None = None,
        channel_id: int | None = None,
        guild_id: int | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """INTERACTION_CREATE type 2 for a synced chat-input command.

        ``options`` is Discord's option list or ``{name: value}`` (types from the synced command).
        """
        data = self._command_data(name, options, guild_id)
        payload = self._interaction_base(
            APPLICATION_COMMAND,
            data,
            user=user,
            channel_id=channel_id,
            guild_id=guild_id,
            locale=locale,
        )
        return await self._dispatch_interaction(payload)

    # -- images in (issue 14): attachments on commands, message commands, modal submits ----

    def cdn_attachment(
        self, channel_id: int, filename: str, data: bytes, content_type: str = "image/png"
    ) -> dict[str, Any]:
        """An attachment object for ``data``, served from the fake's CDN (as if uploaded)."""
        (attachment,) = self._attachments(
            channel_id, [UploadedFile("files[0]", filename, content_type, data)], []
        )
        return attachment

    async def dispatch_with_attachment(
        self,
        name: str,
        options: Mapping[str, Any],
        attachment_option: str,
        attachment: dict[str, Any],
        *,
        user: FakeUser | None = None,
        channel_id: int | None = None,
    ) -> InteractionRecord:
        """A chat-input command whose ``attachment_option`` (type 11) is ``attachment``."""
        data = self._command_data(name, options, None)
        data["options"].append({"name": attachment_option, "type": 11, "value": attachment["id"]})
        data["resolved"] = {"attachments": {attachment["id"]: attachment}}
        payload = self._interaction_base(
            APPLICATION_COMMAND, data, user=user, channel_id=channel_id, guild_id=None,
            locale="en-US",
        )  # fmt: skip
        return await self._dispatch_interaction(payload)

    async def dispatch_modal_submit(
        self,
        custom_id: str,
        values: Mapping[str, str],
        *,
        user: FakeUser | None = None,
        channel_id: int | None = None,
    ) -> InteractionRecord:
        """INTERACTION_CREATE type 5: a modal's text inputs (``custom_id → value``) submitted."""
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
            for key, value in values.items()
        ]
        payload = self._interaction_base(
            MODAL_SUBMIT, {"custom_id": custom_id, "components": rows}, user=user,
            channel_id=channel_id, guild_id=None, locale="en-US",
        )  # fmt: skip
        return await self._dispatch_interaction(payload)

    async def dispatch_message_command(
        self,
        name: str,
        message: StoredMessage,
        *,
        user: FakeUser | None = None,
        guild_id: int | None = None,
    ) -> InteractionRecord:
        """INTERACTION_CREATE type 2 for a message context-menu command (type 3) on ``message``,
        resolved as Discord sends it."""
        command = self.command(name, guild_id)
        data: dict[str, Any] = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": str(message.id),
            "resolved": {"messages": {str(message.id): message.payload}},
        }
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        payload = self._interaction_base(
            APPLICATION_COMMAND,
            data,
            user=user,
            channel_id=message.channel_id,
            guild_id=guild_id,
            locale="en-US",
        )
        return await self._dispatch_interaction(payload)

    async def dispatch_autocomplete(
        self,
        name: str,
        options: Sequence[dict[str, Any]] | Mapping[str, Any],
        *,
        focused: str | None = None,
        user: FakeUser | None = None,
        channel_id: int | None = None,
        guild_id: int | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """INTERACTION_CREATE type 4; ``focused`` names the option being typed (default: last)."""
        if isinstance(options, Mapping) and focused is None:
            focused = list(options)[-1]
        data = self._command_data(name, options, guild_id, focused)
        payload = self._interaction_base(
            AUTOCOMPLETE, data, user=user, channel_id=channel_id, guild_id=guild_id, locale=locale
        )
        return await self._dispatch_interaction(payload)

    async def dispatch_component(
        self,
        custom_id: str,
        message_id: int | None = None,
        *,
        user: FakeUser | None = None,
        channel_id: int | None = None,
        component_type: int = 2,
        values: list[str] | None = None,
        locale: str = "en-US",
    ) -> InteractionRecord:
        """INTERACTION_CREATE type 3: a click on ``custom_id`` in a message.

        The message is the stored one with that id; an unknown id (or none) gets a bot message
        holding just that button, as after a restart when the bot has never seen the message."""
        stored = self.messages.get(message_id) if message_id is not None else None
        if stored is not None:
            message = stored.payload
            channel_id = stored.channel_id
        else:
            channel_id = channel_id or self.guild.channel("campaign-spring").id
            button = {"type": 2, "style": 2, "label": custom_id, "custom_id": custom_id}
            body = {"content": "", "components": [{"type": 1, "components": [button]}]}
            message = self._message_payload(message_id or snowflake(), channel_id, body, [])
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        payload = self._interaction_base(
            MESSAGE_COMPONENT, data, user=user, channel_id=channel_id, guild_id=None, locale=locale
        )
        payload["message"] = message
        return await self._dispatch_interaction(payload)

    def _reaction_payload(
        self, message_id: int, emoji: str, user_id: int | None, channel_id: int | None
    ) -> dict[str, Any]:
        stored = self.messages.get(message_id)
        if channel_id is None:
            channel_id = stored.channel_id if stored else self.guild.channel("campaign-spring").id
        name, _, emoji_id = emoji.partition(":")
        return {
            "user_id": str(user_id or self._user(None).id),
            "channel_id": str(channel_id),
            "message_id": str(message_id),
            "guild_id": str(self.guild.id),
            "emoji": {"id": emoji_id or None, "name": name},
            "type": 0,  # normal; 1 is a super reaction
            "burst": False,
        }

    async def dispatch_reaction_add(
        self,
        message_id: int,
        emoji: str,
        user_id: int | None = None,
        *,
        channel_id: int | None = None,
    ) -> dict[str, Any]:
        """MESSAGE_REACTION_ADD (``emoji``: a character or ``name:id``); returns the payload."""
        data = self._reaction_payload(message_id, emoji, user_id, channel_id)
        member = self.guild.get_member(int(data["user_id"]))
        if member is not None:
            data["member"] = member.member_payload()
        stored = self.messages.get(message_id)
        data["burst_colors"] = []
        if stored is not None:
            data["message_author_id"] = stored.payload["author"]["id"]
            stored.reactions.setdefault(emoji, set()).add(int(data["user_id"]))
        await self._dispatch("MESSAGE_REACTION_ADD", data)
        return data

    async def dispatch_reaction_remove(
        self,
        message_id: int,
        emoji: str,
        user_id: int | None = None,
        *,
        channel_id: int | None = None,
    ) -> dict[str, Any]:
        """MESSAGE_REACTION_REMOVE; returns the payload."""
        data = self._reaction_payload(message_id, emoji, user_id, channel_id)
        stored = self.messages.get(message_id)
        if stored is not None:
            stored.reactions.get(emoji, set()).discard(int(data["user_id"]))
        await self._dispatch("MESSAGE_REACTION_REMOVE", data)
        return data

    # -- REST: plumbing --------------------------------------------------------------------

    def _endpoint(
        self, handler: _Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a REST handler: read the body, apply faults and auth, record the request."""

        async def endpoint(request: web.Request) -> web.StreamResponse:
            at = time.monotonic()
            path = request.path[len(f"/api/v{API_VERSION}") :]
            body, files = await self._read_body(request)
            fault = self._take_fault(request.method, path)
            public = path.startswith(("/interactions/", "/webhooks/"))  # the token is the auth
            if fault is not None and not fault.after:
                response: web.StreamResponse = _json_response(fault.body, fault.status)
                response.headers.update(fault.headers)
            elif not public and request.headers.get("Authorization") != f"Bot {self.token}":
                response = _error(401, 0, "401: Unauthorized")
            else:
                try:
                    response = await handler(_Call(request, body, files, at))
                except Exception as exc:  # a bug in the fake: fail fast, keep it for the test
                    self.bugs.append(exc)
                    response = _error(400, 0, f"fake Discord bug: {exc!r}")
                if fault is not None:  # it took effect; the answer is lost
                    response = _json_response(fault.body, fault.status)
                    response.headers.update(fault.headers)
            query = dict(request.query)
            self.requests.append(
                RestRequest(request.method, path, query, body, files, response.status, at)
            )
            self._notify()
            return response

        return endpoint

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, tuple[UploadedFile, ...]]:
        """The JSON body (or multipart's ``payload_json``) and any uploaded files."""
        if request.content_type == "multipart/form-data":
            body: Any = None
            files: list[UploadedFile] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue  # a nested multipart, which Discord does not use
                data = await part.read()
                if part.filename:
                    content_type = part.headers.get("Content-Type", "application/octet-stream")
                    files.append(UploadedFile(part.name or "", part.filename, content_type, data))
                elif part.name == "payload_json":
                    body = json.loads(data)
            return body, tuple(files)
        raw = await request.read()
        return (json.loads(raw) if raw else None), ()

    def _attachments(
        self, channel_id: int, files: Sequence[UploadedFile], declared: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Attachment objects for uploaded files (``declared``: the body's ``attachments``)."""
        found = []
        for index, upload in enumerate(files):
            meta = next((a for a in declared if str(a.get("id")) == str(index)), {})
            attachment_id = snowflake()
            self._cdn_files[str(attachment_id)] = upload
            url = f"{self.base_url}/cdn/attachments/{channel_id}/{attachment_id}/{upload.filename}"
            attachment: dict[str, Any] = {
                "id": str(attachment_id),
                "filename": upload.filename,
                "size": len(upload.data),
                "url": url,
                "proxy_url": url,
                "content_type": upload.content_type,
                "description": meta.get("description"),
                "ephemeral": False,
            }
            with contextlib.suppress(Exception), Image.open(io.BytesIO(upload.data)) as image:
                attachment["width"], attachment["height"] = image.size  # images only
            found.append(attachment)
        return found

    def _message_payload(
        self,
        message_id: int,
        channel_id: int,
        body: dict[str, Any],
        attachments: list[dict[str, Any]],
        *,
        author: FakeUser | None = None,
        type: int = 0,
        interaction: InteractionRecord | None = None,
    ) -> dict[str, Any]:
        author = author or self.bot
        payload: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "guild_id": str(self.guild.id),
            "author": author.payload(),
            "content": body.get("content") or "",
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "reactions": [],
            "pinned": False,
            "type": type,
            "flags": int(body.get("flags") or 0),
            "nonce": body.get("nonce"),
        }
        if interaction is not None:
            user = interaction.payload["member"]["user"]
            payload["webhook_id"] = str(self.application_id)
            payload["application_id"] = str(self.application_id)
            payload["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": {"0": str(self.guild.id)},
                "name": interaction.payload["data"].get("name"),
            }
        return payload

    def _store(
        self,
        channel_id: int,
        body: dict[str, Any],
        files: Sequence[UploadedFile],
        *,
        source: str,
        type: int = 0,
        interaction: InteractionRecord | None = None,
    ) -> StoredMessage:
        attachments = self._attachments(channel_id, files, body.get("attachments") or [])
        message_id = snowflake()
        payload = self._message_payload(
            message_id, channel_id, body, attachments, type=type, interaction=interaction
        )
        message = StoredMessage(
            message_id,
            channel_id,
            payload,
            files=list(files),
            source=source,
            interaction_id=interaction.id if interaction else None,
        )
        self.messages[message_id] = message
        return message

    def _edit(
        self, message: StoredMessage, body: dict[str, Any], files: Sequence[UploadedFile]
    ) -> None:
        """Apply a PATCH: given fields replace, ``attachments`` keeps the ids it lists."""
        message.edits.append(body)
        for key in ("content", "embeds", "components", "flags"):
            if key in body and body[key] is not None:
                message.payload[key] = body[key]
        if "attachments" in body or files:
            declared = body.get("attachments") or []
            kept_ids = {str(a.get("id")) for a in declared}
            kept = [a for a in message.payload["attachments"] if a["id"] in kept_ids]
            fresh = self._attachments(message.channel_id, files, declared)
            message.payload["attachments"] = kept + fresh
            kept_names = {a["filename"] for a in kept}
            message.files = [f for f in message.files if f.filename in kept_names] + list(files)
        message.payload["flags"] = int(message.payload.get("flags", 0)) & ~FLAG_LOADING
        message.payload["edited_timestamp"] = _now_iso()

    async def _echo(self, event: str, message: StoredMessage) -> None:
        """Discord tells the bot about its own messages; ephemeral ones stay private."""
        if self.echo_own_events and not message.flags & FLAG_EPHEMERAL and self._session:
            data = dict(message.payload)
            if event == "MESSAGE_CREATE":
                data["member"] = {
                    k: v for k, v in self.bot_member.member_payload().items() if k != "user"
                }
            await self._dispatch(event, data)

    # -- REST: login, gateway, commands -------------------------------------------------------

    async def _get_me(self, call: _Call) -> web.Response:
        extra = {"verified": True, "mfa_enabled": False, "flags": 0, "email": None}
        return _json_response(self.bot.payload() | extra)

    async def _get_application(self, call: _Call) -> web.Response:
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot.username,
                "icon": None,
                "description": "On-brand campaign images.",
                "summary": "",
                "type": None,
                "hook": True,
                "bot_public": False,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "owner": self.owner.payload(),
                "team": None,
                "flags": 0,
                "bot": self.bot.payload(),
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
                "integration_types_config": {"0": {}},
                "approximate_guild_count": 1,
            }
        )

    async def _get_gateway(self, call: _Call) -> web.Response:
        return _json_response({"url": self.gateway_url.rstrip("/")})

    async def _get_gateway_bot(self, call: _Call) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        body = {"url": self.gateway_url.rstrip("/"), "shards": 1, "session_start_limit": limit}
        return _json_response(body)

    def _check_app(self, call: _Call) -> web.Response | None:
        if call.request.match_info["app"] != str(self.application_id):
            return _error(403, 50001, "Missing Access")
        return None

    async def _get_commands(self, call: _Call) -> web.Response:
        if (refused := self._check_app(call)) is not None:
            return refused
        guild = call.request.match_info.get("guild")
        return _json_response(self.commands.get(int(guild) if guild else None, []))

    async def _put_commands(self, call: _Call) -> web.Response:
        if (refused := self._check_app(call)) is not None:
            return refused
        guild = call.request.match_info.get("guild")
        scope = int(guild) if guild else None
        if scope is not None and scope != self.guild.id:
            return _error(403, 50001, "Missing Access")
        previous = {(c["name"], c.get("type", 1)): c for c in self.commands.get(scope, [])}
        synced = []
        for given in call.body or []:
            kind = given.get("type", 1)
            old = previous.get((given["name"], kind))
            command = {
                "id": old["id"] if old else str(snowflake()),
                "application_id": str(self.application_id),
                "version": str(snowflake()),
                "type": kind,
                "name": given["name"],
                "description": given.get("description", ""),
                "options": given.get("options", []),
                "default_member_permissions": given.get("default_member_permissions"),
                "dm_permission": given.get("dm_permission", True),
                "nsfw": given.get("nsfw", False),
                "contexts": given.get("contexts"),
                "integration_types": given.get("integration_types", [0]),
            }
            if scope is not None:
                command["guild_id"] = str(scope)
            synced.append(command)
        self.commands[scope] = synced
        return _json_response(synced)

    # -- REST: interactions ----------------------------------------------------------------

    async def _callback(self, call: _Call) -> web.Response:
        at = call.at
        body: dict[str, Any] = call.body or {}
        files: tuple[UploadedFile, ...] = call.files
        record = self.interactions.get(int(call.request.match_info["interaction"]))
        if record is None or record.token != call.request.match_info["token"]:
            return _error(404, 10062, "Unknown interaction")
        kind, data = int(body.get("type", 0)), body.get("data") or {}
        elapsed = at - record.dispatched_at

        def refuse(status: int, code: int, message: str) -> web.Response:
            record.callbacks.append(
                CallbackRecord(record.id, kind, data, files, at, elapsed, status, code)
            )
            return _error(status, code, message)

        if elapsed > self.callback_deadline:
            return refuse(404, 10062, "Unknown interaction")
        if record.callback is not None:
            return refuse(400, 40060, "Interaction has already been acknowledged.")
        allowed = {
            APPLICATION_COMMAND: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_MODAL},
            MESSAGE_COMPONENT: {
                CB_MESSAGE,
                CB_DEFERRED_MESSAGE,
                CB_DEFERRED_UPDATE,
                CB_UPDATE_MESSAGE,
                CB_MODAL,
            },
            AUTOCOMPLETE: {CB_AUTOCOMPLETE_RESULT},
            MODAL_SUBMIT: {CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE},
        }[record.type]
        if kind not in allowed:
            return refuse(400, 50035, "Invalid Form Body")

        channel_id = int(record.payload["channel_id"])
        resource: dict[str, Any] = {"type": kind}
        message: StoredMessage | None = None
        if kind in (CB_MESSAGE, CB_DEFERRED_MESSAGE):
            message_body = dict(data)
            if kind == CB_DEFERRED_MESSAGE:
                flags = int(data.get("flags") or 0) & FLAG_EPHEMERAL
                message_body = {"content": "", "flags": flags | FLAG_LOADING}
            message_type = 20 if record.type == APPLICATION_COMMAND else 19
            message = self._store(
                channel_id,
                message_body,
                files,
                source="interaction",
                type=message_type,
                interaction=record,
            )
            record.original = message
        elif kind == CB_UPDATE_MESSAGE:
            message = self.messages.get(int(record.payload["message"]["id"]))
            if message is not None:
                self._edit(message, data, files)
        record.callbacks.append(CallbackRecord(record.id, kind, data, files, at, elapsed, 200))
        if message is not None:
            resource["message"] = message.payload
            if kind == CB_MESSAGE:
                await self._echo("MESSAGE_CREATE", message)
            elif kind == CB_UPDATE_MESSAGE:
                await self._echo("MESSAGE_UPDATE", message)
        if call.request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        interaction: dict[str, Any] = {"id": str(record.id), "type": record.type}
        if message is not None:
            interaction["response_message_id"] = str(message.id)
            interaction["response_message_loading"] = bool(message.flags & FLAG_LOADING)
            interaction["response_message_ephemeral"] = bool(message.flags & FLAG_EPHEMERAL)
        return _json_response({"interaction": interaction, "resource": resource})

    def _webhook_record(self, call: _Call) -> InteractionRecord | web.Response:
        """The interaction behind ``/webhooks/{app}/{token}``, or Discord's refusal."""
        if call.request.match_info["app"] != str(self.application_id):
            return _error(404, 10015, "Unknown Webhook")
        token = call.request.match_info["token"]
        record = next((r for r in self.interactions.values() if r.token == token), None)
        if record is None or record.callback is None:
            return _error(404, 10015, "Unknown Webhook")
        if time.monotonic() - record.dispatched_at > self.token_lifetime:
            return _error(401, 50027, "Invalid Webhook Token")
        return record

    async def _followup(self, call: _Call) -> web.Response:
        record = self._webhook_record(call)
        if isinstance(record, web.Response):
            return record
        body: dict[str, Any] = call.body or {}
        files: tuple[UploadedFile, ...] = call.files
        original = record.original
        if original is not None and original.flags & FLAG_LOADING:
            # Discord: the first followup after a deferred reply edits the "thinking" message.
            ephemeral = original.flags & FLAG_EPHEMERAL
            self._edit(original, body, files)  # the defer decided whether it is ephemeral
            original.payload["flags"] = (original.flags & ~FLAG_EPHEMERAL) | ephemeral
            message = original
            await self._echo("MESSAGE_UPDATE", message)
        else:
            message = self._store(
                int(record.payload["channel_id"]),
                body,
                files,
                source="followup",
                interaction=record,
            )
            await self._echo("MESSAGE_CREATE", message)
        record.followups.append(message)
        if call.request.query.get("wait") in ("1", "true", "True"):
            return _json_response(message.payload)
        return web.Response(status=204)

    def _webhook_message(
        self, call: _Call
    ) -> tuple[InteractionRecord, StoredMessage] | web.Response:
        record = self._webhook_record(call)
        if isinstance(record, web.Response):
            return record
        wanted = call.request.match_info["message"]
        if wanted == "@original":
            message = record.original
        else:
            message = self.messages.get(int(wanted))
            if message is not None and message.interaction_id != record.id:
                message = None
        if message is None:
            return _error(404, 10008, "Unknown Message")
        return record, message

    async def _get_webhook_message(self, call: _Call) -> web.Response:
        found = self._webhook_message(call)
        if isinstance(found, web.Response):
            return found
        return _json_response(found[1].payload)

    async def _edit_webhook_message(self, call: _Call) -> web.Response:
        found = self._webhook_message(call)
        if isinstance(found, web.Response):
            return found
        _, message = found
        self._edit(message, call.body or {}, call.files)
        await self._echo("MESSAGE_UPDATE", message)
        return _json_response(message.payload)

    async def _delete_webhook_message(self, call: _Call) -> web.Response:
        found = self._webhook_message(call)
        if isinstance(found, web.Response):
            return found
        self.messages.pop(found[1].id, None)
        return web.Response(status=204)

    # -- REST: channel messages and reactions ------------------------------------------------

    async def _open_dm(self, call: _Call) -> web.Response:
        """A direct-message channel with a member of the guild (the same one each time)."""
        body: dict[str, Any] = call.body or {}
        user_id = int(body.get("recipient_id", 0))
        member = next((m for m in self.guild.members if m.id == user_id), None)
        if member is None:
            return _error(400, 50007, "Cannot send messages to this user")
        channel_id = next((c for c, u in self.dm_channels.items() if u == user_id), None)
        if channel_id is None:
            channel_id = snowflake()
            self.dm_channels[channel_id] = user_id
        return _json_response(
            {"id": str(channel_id), "type": 1, "last_message_id": None,
             "recipients": [member.payload()]}
        )  # fmt: skip

    def _channel(self, call: _Call) -> int | web.Response:
        channel_id = int(call.request.match_info["channel"])
        if channel_id in self.dm_channels:
            return channel_id
        if all(c.id != channel_id for c in self.guild.channels):
            return _error(404, 10003, "Unknown Channel")
        return channel_id

    def _channel_message(self, call: _Call) -> StoredMessage | web.Response:
        channel_id = self._channel(call)
        if isinstance(channel_id, web.Response):
            return channel_id
        message = self.messages.get(int(call.request.match_info["message"]))
        if message is None or message.channel_id != channel_id or message.flags & FLAG_EPHEMERAL:
            return _error(404, 10008, "Unknown Message")
        return message

    async def _post_message(self, call: _Call) -> web.Response:
        channel_id = self._channel(call)
        if isinstance(channel_id, web.Response):
            return channel_id
        body: dict[str, Any] = call.body or {}
        files: tuple[UploadedFile, ...] = call.files
        if not (body.get("content") or body.get("embeds") or files or body.get("components")):
            return _error(400, 50006, "Cannot send an empty message")
        if sum(len(f.data) for f in files) > ATTACHMENT_SIZE_LIMIT:
            return _error(413, 40005, "Request entity too large")
        if body.get("enforce_nonce") and (same := self._same_nonce(channel_id, body.get("nonce"))):
            return _json_response(same.payload)  # Discord: the message made before, not a new one
        message = self._store(channel_id, body, files, source="channel")
        await self._echo("MESSAGE_CREATE", message)
        return _json_response(message.payload)

    def _same_nonce(self, channel_id: int, nonce: Any) -> StoredMessage | None:
        """The bot's message in the channel with this nonce from the last few minutes (Discord
        checks ``enforce_nonce`` for "the past few minutes"; five here)."""
        if not nonce:
            return None
        recent = datetime.now(UTC) - NONCE_WINDOW
        for message in self.messages.values():
            if (
                message.channel_id == channel_id
                and message.payload.get("nonce") == nonce
                and int(message.payload["author"]["id"]) == self.bot.id
                and datetime.fromisoformat(message.payload["timestamp"]) >= recent
            ):
                return message
        return None

    async def _get_message(self, call: _Call) -> web.Response:
        message = self._channel_message(call)
        if isinstance(message, web.Response):
            return message
        return _json_response(message.payload)

    async def _edit_message(self, call: _Call) -> web.Response:
        message = self._channel_message(call)
        if isinstance(message, web.Response):
            return message
        if int(message.payload["author"]["id"]) != self.bot.id:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        self._edit(message, call.body or {}, call.files)
        await self._echo("MESSAGE_UPDATE", message)
        return _json_response(message.payload)

    async def _delete_message(self, call: _Call) -> web.Response:
        message = self._channel_message(call)
        if isinstance(message, web.Response):
            return message
        del self.messages[message.id]
        return web.Response(status=204)

    async def _react(self, call: _Call) -> web.Response:
        message = self._channel_message(call)
        if isinstance(message, web.Response):
            return message
        emoji = call.request.match_info["emoji"]
        users = message.reactions.setdefault(emoji, set())
        if self.bot.id not in users:
            users.add(self.bot.id)
            if self.echo_own_events:
                data = self._reaction_payload(message.id, emoji, self.bot.id, message.channel_id)
                data["member"] = self.bot_member.member_payload()
                data["burst_colors"] = []
                data["message_author_id"] = message.payload["author"]["id"]
                await self._dispatch("MESSAGE_REACTION_ADD", data)
        return web.Response(status=204)

    async def _unreact(self, call: _Call) -> web.Response:
        message = self._channel_message(call)
        if isinstance(message, web.Response):
            return message
        emoji = call.request.match_info["emoji"]
        users = message.reactions.get(emoji, set())
        if self.bot.id in users:
            users.discard(self.bot.id)
            if self.echo_own_events:
                data = self._reaction_payload(message.id, emoji, self.bot.id, message.channel_id)
                await self._dispatch("MESSAGE_REACTION_REMOVE", data)
        return web.Response(status=204)

    async def _cdn(self, request: web.Request) -> web.Response:
        upload = self._cdn_files.get(request.match_info["attachment"])
        if upload is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=upload.data, content_type=upload.content_type)


# -- pointing discord.py at the fake ---------------------------------------------------------


@contextlib.contextmanager
def point_discord_at(fake: FakeDiscord) -> Iterator[None]:
    """Aim discord.py's REST base and gateway at ``fake`` (what ``DISCORD_API_BASE`` and
    ``DISCORD_GATEWAY_URL`` do in the bot), restoring both afterwards.

    ``DEFAULT_GATEWAY`` keeps its type: a ``yarl.URL`` since discord.py 2.1."""
    import discord.gateway
    import discord.http

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = type(old_gateway)(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


@contextlib.asynccontextmanager
async def run_client(
    client: discord.Client,
    fake: FakeDiscord,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109
) -> AsyncIterator[discord.Client]:
    """Log ``client`` in against ``fake``, connect, wait for on_ready; close it on the way out.

    Give the client a small ``guild_ready_timeout`` (e.g. 0.05): discord.py waits that long
    after the last GUILD_CREATE before it is ready (2 s by default)."""
    with point_discord_at(fake):
        connecting: asyncio.Task[None] | None = None
        try:
            await client.login(fake.token)
            connecting = asyncio.create_task(client.connect(reconnect=True))
            ready = asyncio.create_task(client.wait_until_ready())
            done, _ = await asyncio.wait(
                {ready, connecting}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if ready not in done:
                ready.cancel()
                if connecting in done:
                    connecting.result()  # raises the connection's error
                raise TimeoutError(f"discord.py was not ready after {timeout}s")
            yield client
        finally:
            await client.close()
            if connecting is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connecting, timeout)
