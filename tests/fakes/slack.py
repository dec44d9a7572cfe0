"""A fake Slack on 127.0.0.1, for driving the real slack_sdk / slack-bolt clients in tests.

Two halves:

* ``FakeSlack`` — the Web API (``/api/<method>``), the file upload URLs that
  ``files.getUploadURLExternal`` hands out, and ``response_url`` endpoints. It runs on its own
  event loop in a background thread, so a client that blocks (the sync ``WebClient`` uploads
  with urllib; so may a handler that forgets an ``await``) cannot deadlock it, and tests on any
  loop, or none, can use it::

      with running_fake_slack() as fake:
          client = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
          await client.chat_postMessage(channel=CHANNEL_ID, text="hi")
          fake.fail_next("chat.postMessage", status=429, retry_after=0)
          ...
          message = await fake.wait_for(lambda f: f.messages(CHANNEL_ID)[-1:])

  Every request is recorded in ``fake.calls`` (failed ones too). State — messages per channel
  with their edits and reactions, uploaded files with their bytes, ephemerals, opened views,
  posts to response URLs — is read through methods that take the lock and return copies.

  Files: ``files.completeUploadExternal`` without a channel uploads privately (no message, no
  share; only the uploader can see the file). Blocks are checked like Slack checks them: an
  ``image`` block with a ``slack_file`` (``id``, or ``url``: the file's ``url_private`` or
  ``permalink``) must name a completed png/jpg/jpeg/gif file the bot can see (it uploaded it, or
  the file is shared in a channel the bot is in), else ``invalid_blocks`` with Slack's
  ``invalid slack file [json-pointer:/blocks/N/slack_file]``. ``refuse_slack_files()`` makes
  every such block fail that way, as Slack does while a fresh upload is still being processed.

* ``SlackSender`` — builds the HTTP requests Slack sends to an app (slash commands,
  ``block_actions``, Events API callbacks), signs them like Slack (``v0=`` HMAC-SHA256 of
  ``v0:{timestamp}:{body}``), optionally breaks the signature, the body or the timestamp, POSTs
  them with aiohttp and reports status, body and time to the response; ``post_raw`` sends any
  bytes with any headers (``signed_headers`` signs bytes that are not UTF-8 too). ``serve_bolt_app``
  serves an ``AsyncApp`` over its real aiohttp adapter on 127.0.0.1.

* Socket Mode — ``fake.socket`` (``tests.fakes.slack_socket.FakeSocketMode``):
  ``apps.connections.open`` with the app-level token, the websocket it points to, envelopes that
  must be acked within 3 s, ``disconnect`` messages, dropped connections and redelivery of what
  was not acked; ``SocketSender`` is ``SlackSender``'s interface over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import mimetypes
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlencode

import aiohttp
import yaml
from aiohttp import web
from multidict import MultiDictProxy

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

T = TypeVar("T")

# -- the fake workspace's defaults ----------------------------------------------------------------

TEAM_ID = "T0ONBRAND1"
TEAM_NAME = "onbrand test workspace"
TEAM_DOMAIN = "onbrand-test"
APP_ID = "A0ONBRAND1"
BOT_TOKEN = "xoxb-1000000001-2000000002-onbrandFakeBotToken"
BOT_USER_ID = "U0BOTONBRD"
BOT_ID = "B0BOTONBRD"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the format of Slack's own docs example
CHANNEL_ID = "C0CAMPAIGN"
CHANNEL_NAME = "spring-launch"
USER_ID = "U0MARKETER"
USER_NAME = "maria.marketer"
ADMIN_ID = "U0ADMIN001"
ADMIN_NAME = "alex.admin"
# the bot token's grant: the app installed from deploy/slack-manifest.yaml
MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "slack-manifest.yaml"
GRANTED_SCOPES = tuple(yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"])

UPLOAD = "upload"  # the method name recorded for POSTs to an upload URL
_BLOCK_IMAGE_TYPES = {"png", "jpg", "jpeg", "gif"}  # the files an image block's slack_file may show
RESPONSE_URL = "response_url"  # the method name recorded for POSTs to a response URL

# A 1×1 transparent PNG, for uploads that need real image bytes.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001"
    "0d0a2db40000000049454e44ae426082"
)


# -- recorded state -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request the fake received, as the fake understood it."""

    method: str  # "chat.postMessage", or UPLOAD / RESPONSE_URL
    http_method: str  # "GET" / "POST"
    token: str | None  # the bearer token or ``token`` param
    params: dict[str, Any]  # query, form and JSON body merged (JSON-in-form values left as text)
    files: dict[str, bytes]  # multipart file parts; for UPLOAD, {"file": raw body}
    content_type: str
    status: int  # the HTTP status answered
    ok: bool | None  # the ``ok`` answered (None for non-API answers)
    error: str | None  # the ``error`` answered
    at: float  # time.monotonic() on arrival

    def param(self, name: str) -> Any:
        """A parameter, decoded when it was sent as JSON text (``blocks`` in a form, say)."""
        return _maybe_json(self.params.get(name))


@dataclass(frozen=True)
class MessageVersion:
    text: str | None
    blocks: list[dict[str, Any]] | None
    at: float  # time.monotonic() when this version was replaced


@dataclass
class Message:
    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    user: str
    bot_id: str | None
    thread_ts: str | None = None
    subtype: str | None = None
    attachments: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)  # file ids shared with this message
    edits: list[MessageVersion] = field(default_factory=list)  # older versions, oldest first
    reactions: dict[str, list[str]] = field(default_factory=dict)  # name → user ids
    deleted: bool = False

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def to_api(self) -> dict[str, Any]:
        """The message as the Web API and interactivity payloads show it."""
        body: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.user}
        if self.text is not None:
            body["text"] = self.text
        if self.bot_id is not None:
            body |= {"bot_id": self.bot_id, "app_id": APP_ID}
        if self.subtype is not None:
            body["subtype"] = self.subtype
        if self.blocks is not None:
            body["blocks"] = copy.deepcopy(self.blocks)
        if self.attachments is not None:
            body["attachments"] = copy.deepcopy(self.attachments)
        if self.metadata is not None:
            body["metadata"] = copy.deepcopy(self.metadata)
        if self.thread_ts is not None:
            body["thread_ts"] = self.thread_ts
        if self.edits:
            body["edited"] = {"user": self.user, "ts": self.ts}
        if self.reactions:
            body["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in self.reactions.items()
            ]
        body["team"] = TEAM_ID
        return body


@dataclass
class FakeFile:
    id: str
    name: str
    length: int  # as announced to files.getUploadURLExternal
    alt_txt: str | None = None
    title: str | None = None
    data: bytes | None = None  # None until the upload URL received the bytes
    completed: bool = False  # files.completeUploadExternal done
    channels: list[str] = field(default_factory=list)
    thread_ts: str | None = None
    initial_comment: str | None = None
    message_ts: str | None = None  # the message that shared the file
    user: str = BOT_USER_ID
    created: int = 0

    @property
    def mimetype(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    def to_api(self, base_url: str) -> dict[str, Any]:
        shares: dict[str, Any] = {}
        for channel in self.channels:
            share: dict[str, Any] = {"ts": self.message_ts, "channel_name": channel}
            if self.thread_ts is not None:
                share["thread_ts"] = self.thread_ts
            shares.setdefault("public", {})[channel] = [share]
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": self.mimetype,
            "filetype": self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "binary",
            "user": self.user,
            "size": len(self.data) if self.data is not None else self.length,
            "url_private": f"{base_url}/files-pri/{TEAM_ID}-{self.id}/{self.name}",
            "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{self.user}/{self.id}/{self.name}",
            "alt_txt": self.alt_txt,
            "channels": list(self.channels),
            "shares": shares,
        }


@dataclass(frozen=True)
class Ephemeral:
    channel: str
    user: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    message_ts: str


@dataclass(frozen=True)
class ResponsePost:
    """A POST to a ``response_url`` (what bolt's ``respond()`` sends)."""

    path: str
    body: dict[str, Any]
    at: float

    @property
    def text(self) -> str | None:
        text = self.body.get("text")
        return text if isinstance(text, str) else None

    @property
    def response_type(self) -> str:
        return str(self.body.get("response_type") or "ephemeral")


@dataclass
class FakeUser:
    id: str
    name: str
    real_name: str = ""
    is_admin: bool = False
    is_owner: bool = False
    is_primary_owner: bool = False
    is_bot: bool = False
    deleted: bool = False
    tz: str = "Europe/Berlin"

    def to_api(self) -> dict[str, Any]:
        real_name = self.real_name or self.name
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": real_name,
            "tz": self.tz,
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_primary_owner,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1700000000,
            "profile": {
                "real_name": real_name,
                "display_name": self.name,
                "real_name_normalized": real_name,
                "display_name_normalized": self.name,
                "team": TEAM_ID,
                "image_72": f"https://avatars.slack-edge.com/{self.id}_72.png",
            },
        }


@dataclass
class FakeChannel:
    id: str
    name: str
    is_private: bool = False
    is_member: bool = True  # is the bot in it (else chat.postMessage → not_in_channel)
    is_archived: bool = False
    topic: str = ""

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": self.is_member,
            "created": 1700000000,
            "creator": ADMIN_ID,
            "context_team_id": TEAM_ID,
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }


@dataclass(frozen=True)
class _Fault:
    status: int
    error: str | None
    retry_after: int | None
    delay: float
    after: bool = False  # the call takes effect first; only its answer is the fault


class SlackApiFailure(Exception):
    """Raised inside a handler: answer ``{"ok": false, "error": error}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# -- the fake server --------------------------------------------------------------------------


class FakeSlack:
    """The Slack Web API, file upload URLs and response URLs, on 127.0.0.1 in its own thread.

    ``start()`` binds a random port and returns once the server answers; ``stop()`` shuts it
    down. All state is guarded by one lock; the reading methods return copies.
    """

    def __init__(
        self,
        *,
        bot_token: str = BOT_TOKEN,
        team_id: str = TEAM_ID,
        bot_user_id: str = BOT_USER_ID,
        bot_id: str = BOT_ID,
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tokens: set[str] = {bot_token}
        self._users: dict[str, FakeUser] = {}
        self._channels: dict[str, FakeChannel] = {}
        self._ids = itertools.count(1)
        self._last_ts = 0
        from tests.fakes.slack_socket import FakeSocketMode  # it builds on this module

        self.socket = FakeSocketMode(self)
        self._tokens.add(self.socket.app_token)
        self._init_state()
        self.add_channel(CHANNEL_ID, CHANNEL_NAME)
        self.add_user(USER_ID, USER_NAME, real_name="Maria Marketer")
        self.add_user(ADMIN_ID, ADMIN_NAME, real_name="Alex Admin", is_admin=True)
        self.add_user(bot_user_id, "onbrand", real_name="onbrand", is_bot=True)

    def _init_state(self) -> None:
        self._calls: list[Call] = []
        self._messages: dict[str, list[Message]] = {}
        self._files: dict[str, FakeFile] = {}
        self._ephemerals: list[Ephemeral] = []
        self._responses: list[ResponsePost] = []
        self._views: list[dict[str, Any]] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._bugs: list[Exception] = []
        self._refuse_slack_files = False
        self.scopes = list(GRANTED_SCOPES)  # sent as X-OAuth-Scopes on every answer

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        if not self.port:
            raise RuntimeError("FakeSlack is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The ``base_url`` for slack_sdk clients: ``http://127.0.0.1:<port>/api/``."""
        return f"{self.url}/api/"

    def start(self) -> FakeSlack:
        if self._thread is not None:
            raise RuntimeError("FakeSlack is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="fake-slack", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=10):
            raise RuntimeError("FakeSlack did not start within 10 s")
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise RuntimeError("FakeSlack failed to start") from failure[0]
        return self

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None
        self.port = 0

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_post("/response/{tail:.*}", self._response_url)
        app.router.add_get("/files-pri/{team_file}/{name}", self._file_download)
        app.router.add_get("/link/", self.socket.websocket)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # -- configuration and scripting --------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str = "",
        is_admin: bool = False,
        is_owner: bool = False,
        is_primary_owner: bool = False,
        is_bot: bool = False,
        deleted: bool = False,
    ) -> FakeUser:
        user = FakeUser(
            user_id,
            name,
            real_name=real_name,
            is_admin=is_admin,
            is_owner=is_owner,
            is_primary_owner=is_primary_owner,
            is_bot=is_bot,
            deleted=deleted,
        )
        with self._lock:
            self._users[user_id] = user
        return copy.copy(user)

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_private: bool = False,
        is_member: bool = True,
        is_archived: bool = False,
    ) -> FakeChannel:
        channel = FakeChannel(
            channel_id, name, is_private=is_private, is_member=is_member, is_archived=is_archived
        )
        with self._lock:
            self._channels[channel_id] = channel
        return copy.copy(channel)

    def add_token(self, token: str) -> None:
        """Accept another token (e.g. a second bot) as valid."""
        with self._lock:
            self._tokens.add(token)

    def fail_next(
        self,
        method: str,
        *,
        status: int | None = None,
        error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        delay: float = 0.0,
        after: bool = False,
    ) -> None:
        """Fail the next ``times`` calls of ``method`` (before any other check).

        * default, or ``status=429``: HTTP 429, ``Retry-After: retry_after`` (default 1),
          ``{"ok": false, "error": "ratelimited"}``;
        * ``error="..."`` alone: HTTP 200 ``{"ok": false, "error": "..."}``;
        * ``status=500`` (or any other status): that status with ``{"ok": false, "error":
          error or "internal_error"}``.

        ``method`` is a Web API method name, or ``UPLOAD`` / ``RESPONSE_URL``. ``delay`` waits
        that many seconds (on the fake's loop) before answering. ``after=True``: the call
        takes effect (a message is posted) and only the answer is the fault, as when Slack
        posts a message and then its answer fails.
        """
        if status is None:
            status = 200 if error is not None else 429
        if status == 429:
            error = error or "ratelimited"
            retry_after = 1 if retry_after is None else retry_after
        elif status != 200:
            error = error or "internal_error"
        fault = _Fault(
            status=status, error=error, retry_after=retry_after, delay=delay, after=after
        )
        with self._lock:
            self._faults.setdefault(method, deque()).extend([fault] * times)

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` normally, but ``seconds`` late."""
        with self._lock:
            self._faults.setdefault(method, deque()).extend(
                [_Fault(status=0, error=None, retry_after=None, delay=seconds)] * times
            )

    def refuse_slack_files(self, refuse: bool = True) -> None:
        """Refuse every ``slack_file`` image block with ``invalid_blocks`` (until reset)."""
        with self._lock:
            self._refuse_slack_files = refuse

    def upload_file(
        self, name: str, data: bytes, *, user: str = USER_ID, channels: tuple[str, ...] = ()
    ) -> FakeFile:
        """A completed file uploaded by ``user`` (no API call recorded), shared in ``channels``
        (none: private to ``user``)."""
        with self._lock:
            file_id = self._next_id("F")
            upload = FakeFile(
                id=file_id,
                name=name,
                length=len(data),
                data=data,
                completed=True,
                channels=list(channels),
                user=user,
                created=int(time.time()),
            )
            self._files[file_id] = upload
            return copy.deepcopy(upload)

    def react(self, channel: str, ts: str, name: str, user: str) -> None:
        """Record a user's reaction in the fake's state (pair with ``SlackSender.reaction``)."""
        with self._lock:
            message = self._find_message(channel, ts)
            users = message.reactions.setdefault(name, [])
            if user not in users:
                users.append(user)

    def unreact(self, channel: str, ts: str, name: str, user: str) -> None:
        """Remove a user's reaction from the fake's state."""
        with self._lock:
            message = self._find_message(channel, ts)
            users = message.reactions.get(name, [])
            if user in users:
                users.remove(user)
            if not users:
                message.reactions.pop(name, None)

    def post_as_user(self, channel: str, text: str, user: str = USER_ID) -> str:
        """Put a user's message into a channel (no API call recorded); returns its ts."""
        with self._lock:
            ts = self._next_ts()
            self._messages.setdefault(channel, []).append(
                Message(channel=channel, ts=ts, text=text, blocks=None, user=user, bot_id=None)
            )
        return ts

    def reset(self) -> None:
        """Forget calls, messages, files, ephemerals, responses, views and pending faults
        (users, channels and tokens stay)."""
        with self._lock:
            self._init_state()
        self.socket.reset()

    # -- reading state (copies, under the lock) --------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self._calls if call.method == method]

    def messages(self, channel: str, *, include_deleted: bool = False) -> list[Message]:
        """Every message in ``channel`` (thread replies included), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(message)
                for message in self._messages.get(channel, [])
                if include_deleted or not message.deleted
            ]

    def message(self, channel: str, ts: str) -> Message:
        with self._lock:
            return copy.deepcopy(self._find_message(channel, ts))

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The parent and its replies, oldest first."""
        return [
            message
            for message in self.messages(channel)
            if message.ts == thread_ts or message.thread_ts == thread_ts
        ]

    @property
    def files(self) -> list[FakeFile]:
        """Files whose upload was completed (``files.completeUploadExternal``)."""
        with self._lock:
            return [copy.deepcopy(f) for f in self._files.values() if f.completed]

    @property
    def pending_files(self) -> list[FakeFile]:
        """Files announced or uploaded but never completed."""
        with self._lock:
            return [copy.deepcopy(f) for f in self._files.values() if not f.completed]

    @property
    def ephemerals(self) -> list[Ephemeral]:
        with self._lock:
            return list(self._ephemerals)

    @property
    def responses(self) -> list[ResponsePost]:
        with self._lock:
            return list(self._responses)

    @property
    def views(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._views)

    @property
    def bugs(self) -> list[Exception]:
        """Exceptions raised inside the fake's own handlers (each answered with HTTP 500)."""
        with self._lock:
            return list(self._bugs)

    def user(self, user_id: str) -> FakeUser:
        with self._lock:
            return copy.copy(self._users[user_id])

    async def wait_for(
        self,
        predicate: Callable[[FakeSlack], T | None],
        timeout: float = 5.0,  # noqa: ASYNC109 -- polls, so a plain number reads best
        *,
        interval: float = 0.01,
    ) -> T:
        """Poll ``predicate(self)`` until it returns something truthy, and return that.

        Runs on the caller's loop (``asyncio.sleep`` between polls). Raises ``TimeoutError``
        naming the last calls the fake received."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() >= deadline:
                recent = [f"{c.method}→{c.error or c.status}" for c in self.calls[-10:]]
                raise TimeoutError(f"condition not met within {timeout} s; last calls: {recent}")
            await asyncio.sleep(interval)

    async def wait_for_calls(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[Call]:
        """Wait until ``method`` was called at least ``count`` times; return those calls."""
        return await self.wait_for(
            lambda fake: calls if len(calls := fake.calls_to(method)) >= count else None,
            timeout,
        )

    # -- HTTP handlers (on the fake's own loop) ---------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files = await _read_params(request)
        token = _bearer(request) or _str(params.pop("token", None))
        fault = await self._take_fault(method)
        if fault is not None and fault.status and not fault.after:
            return self._answer_fault(request, method, token, params, files, fault)

        status = 200
        try:
            with self._lock:
                if method not in self._API:
                    raise SlackApiFailure("unknown_method")
                if token is None:
                    raise SlackApiFailure("not_authed")
                if token not in self._tokens:
                    raise SlackApiFailure("invalid_auth")
                if (token == self.socket.app_token) != (method == "apps.connections.open"):
                    raise SlackApiFailure("not_allowed_token_type")  # xapp- only opens sockets
                body = {"ok": True} | self._API[method](self, params)
        except SlackApiFailure as failure:
            body = {"ok": False, "error": failure.error} | failure.extra
        except Exception as exc:  # a bug in the fake: answer 500, keep it for the test to see
            with self._lock:
                self._bugs.append(exc)
            status, body = 500, {"ok": False, "error": f"fake_slack_bug: {exc!r}"}
        if fault is not None and fault.status and fault.after:  # done, but the answer fails
            return self._answer_fault(request, method, token, params, files, fault)
        self._record(request, method, token, params, files, status, body)
        return web.json_response(
            body, status=status, headers={"X-OAuth-Scopes": ",".join(self.scopes)}
        )

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        if request.content_type == "multipart/form-data":
            data = b""
            async for part in await request.multipart():
                if isinstance(part, aiohttp.BodyPartReader) and part.filename is not None:
                    data = bytes(await part.read())
        else:
            data = await request.read()
        fault = await self._take_fault(UPLOAD)
        files = {"file": data}
        if fault is not None and fault.status:
            return self._answer_fault(request, UPLOAD, None, {"file_id": file_id}, files, fault)
        with self._lock:
            upload = self._files.get(file_id)
            if upload is None or upload.completed:
                status, text = 404, "file_not_found"
            else:
                upload.data = data
                status, text = 200, f"OK - {len(data)}"
        self._record(request, UPLOAD, None, {"file_id": file_id}, files, status, None)
        return web.Response(status=status, text=text, content_type="text/plain")

    async def _file_download(self, request: web.Request) -> web.Response:
        """``url_private``: the bytes of a completed file, for a valid token only (as Slack)."""
        file_id = request.match_info["team_file"].rpartition("-")[2]
        with self._lock:
            upload = self._files.get(file_id)
            if _bearer(request) not in self._tokens:
                return web.Response(status=302, headers={"Location": "/login"})  # Slack's way
            if upload is None or not upload.completed or upload.data is None:
                return web.Response(status=404, text="file_not_found")
            return web.Response(body=upload.data, content_type=upload.mimetype)

    async def _response_url(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"_raw": raw.decode(errors="replace")}
        fault = await self._take_fault(RESPONSE_URL)
        if fault is not None and fault.status:
            return self._answer_fault(request, RESPONSE_URL, None, body, {}, fault)
        with self._lock:
            self._responses.append(ResponsePost(request.path, body, time.monotonic()))
        self._record(request, RESPONSE_URL, None, body, {}, 200, None)
        return web.Response(text="ok", content_type="text/plain")

    async def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(method)
            fault = queue.popleft() if queue else None
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        return fault

    def _answer_fault(
        self,
        request: web.Request,
        method: str,
        token: str | None,
        params: dict[str, Any],
        files: dict[str, bytes],
        fault: _Fault,
    ) -> web.Response:
        body = {"ok": False, "error": fault.error}
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        self._record(request, method, token, params, files, fault.status, body)
        return web.json_response(body, status=fault.status, headers=headers)

    def _record(
        self,
        request: web.Request,
        method: str,
        token: str | None,
        params: dict[str, Any],
        files: dict[str, bytes],
        status: int,
        body: dict[str, Any] | None,
    ) -> None:
        call = Call(
            method=method,
            http_method=request.method,
            token=token,
            params=params,
            files=files,
            content_type=request.content_type,
            status=status,
            ok=None if body is None else bool(body.get("ok")),
            error=None if body is None else body.get("error"),
            at=time.monotonic(),
        )
        with self._lock:
            self._calls.append(call)

    # -- Web API methods (called with the lock held; raise SlackApiFailure) -----------------

    def _next_ts(self) -> str:
        micros = max(int(time.time() * 1_000_000), self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):08X}"

    def _channel(self, params: dict[str, Any], key: str = "channel") -> FakeChannel:
        wanted = _str(params.get(key))
        if not wanted:
            raise SlackApiFailure("channel_not_found")
        if wanted in self._channels:
            return self._channels[wanted]
        for channel in self._channels.values():
            if channel.name == wanted.removeprefix("#"):
                return channel
        raise SlackApiFailure("channel_not_found")

    def _find_message(self, channel: str, ts: str | None) -> Message:
        for message in self._messages.get(channel, []):
            if message.ts == ts and not message.deleted:
                return message
        raise SlackApiFailure("message_not_found")

    def _content(
        self, params: dict[str, Any]
    ) -> tuple[str | None, list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
        text = _str(params.get("text"))
        blocks = _maybe_json(params.get("blocks"))
        attachments = _maybe_json(params.get("attachments"))
        if blocks is not None and (
            not isinstance(blocks, list)
            or not all(isinstance(b, dict) and "type" in b for b in blocks)
        ):
            raise SlackApiFailure("invalid_blocks")
        if blocks is not None and len(blocks) > 50:
            raise SlackApiFailure("invalid_blocks", errors=["too many blocks (max 50)"])
        for index, block in enumerate(blocks or []):
            if block["type"] == "image":
                self._check_image_block(block, f"/blocks/{index}")
        if attachments is not None and not isinstance(attachments, list):
            raise SlackApiFailure("invalid_attachments")
        return text, blocks, attachments

    def _check_image_block(self, block: dict[str, Any], pointer: str) -> None:
        """An image block as Slack checks it: alt text, and one source it can show."""
        alt_text = block.get("alt_text")
        if not isinstance(alt_text, str) or not alt_text or len(alt_text) > 2000:
            raise _invalid_blocks(
                "must provide a string of 1 to 2000 characters", pointer, "alt_text"
            )
        has_url, slack_file = "image_url" in block, block.get("slack_file")
        if has_url == (slack_file is not None):
            raise _invalid_blocks("must provide exactly one of image_url or slack_file", pointer)
        if has_url:
            return
        if not isinstance(slack_file, dict) or len(slack_file.keys() & {"id", "url"}) != 1:
            raise _invalid_blocks("must provide exactly one of id or url", pointer, "slack_file")
        wanted = slack_file.get("id")
        if wanted is not None and not re.fullmatch(r"F[A-Z0-9]{8,}", str(wanted)):
            raise _invalid_blocks(
                "input must match regex pattern: ^[F][A-Z0-9]{8,}$", pointer, "slack_file/id"
            )
        url = slack_file.get("url")
        found = next(
            (
                f
                for f in self._files.values()
                if f.id == wanted or (url is not None and url in self._file_urls(f))
            ),
            None,
        )
        if (
            self._refuse_slack_files
            or found is None
            or not found.completed
            or found.name.rsplit(".", 1)[-1].lower() not in _BLOCK_IMAGE_TYPES
            or not self._bot_sees(found)
        ):
            raise _invalid_blocks("invalid slack file", pointer, "slack_file")

    def _file_urls(self, upload: FakeFile) -> set[str]:
        api = upload.to_api(self.url)
        return {api["url_private"], api["permalink"]}

    def _bot_sees(self, upload: FakeFile) -> bool:
        """The bot uploaded the file, or it is shared in a channel the bot is in."""
        if upload.user == self.bot_user_id:
            return True
        return any(
            (channel := self._channels.get(c)) is not None and channel.is_member
            for c in upload.channels
        )

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": "onbrand",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _api_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"args": params}

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        if channel.is_archived:
            raise SlackApiFailure("is_archived")
        if not channel.is_member:
            raise SlackApiFailure("not_in_channel")
        text, blocks, attachments = self._content(params)
        if not text and not blocks and not attachments:
            raise SlackApiFailure("no_text")
        thread_ts = _str(params.get("thread_ts"))
        if thread_ts:
            parent = self._find_message(channel.id, thread_ts)
            if parent.is_reply:  # replies to a reply land in the parent's thread
                thread_ts = parent.thread_ts
        metadata = _maybe_json(params.get("metadata"))
        message = Message(
            channel=channel.id,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=thread_ts or None,
            attachments=attachments,
            metadata=metadata if isinstance(metadata, dict) else None,
        )
        self._messages.setdefault(channel.id, []).append(message)
        return {"channel": channel.id, "ts": message.ts, "message": message.to_api()}

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        user = _str(params.get("user"))
        if not user or user not in self._users:
            raise SlackApiFailure("user_not_found")
        if not channel.is_member:
            raise SlackApiFailure("not_in_channel")
        text, blocks, _ = self._content(params)
        if not text and not blocks:
            raise SlackApiFailure("no_text")
        ephemeral = Ephemeral(
            channel=channel.id,
            user=user,
            text=text,
            blocks=blocks,
            thread_ts=_str(params.get("thread_ts")),
            message_ts=self._next_ts(),
        )
        self._ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.message_ts}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        message = self._find_message(channel.id, _str(params.get("ts")))
        if message.bot_id != self.bot_id:
            raise SlackApiFailure("cant_update_message")
        text, blocks, attachments = self._content(params)
        if text is None and blocks is None and attachments is None:
            raise SlackApiFailure("no_text")
        message.edits.append(MessageVersion(message.text, message.blocks, time.monotonic()))
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = blocks
        if attachments is not None:
            message.attachments = attachments
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text or "",
            "message": message.to_api(),
        }

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        message = self._find_message(channel.id, _str(params.get("ts")))
        if message.bot_id != self.bot_id:
            raise SlackApiFailure("cant_delete_message")
        message.deleted = True
        return {"channel": channel.id, "ts": message.ts}

    def _get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = _str(params.get("filename"))
        length = _str(params.get("length"))
        if not filename or not length or not length.isdigit() or int(length) <= 0:
            raise SlackApiFailure("invalid_arguments")
        file_id = self._next_id("F")
        self._files[file_id] = FakeFile(
            id=file_id,
            name=filename,
            length=int(length),
            alt_txt=_str(params.get("alt_txt")),
            created=int(time.time()),
        )
        return {"upload_url": f"{self.url}/upload/v1/{file_id}", "file_id": file_id}

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        wanted = _maybe_json(params.get("files"))
        if not isinstance(wanted, list) or not wanted:
            raise SlackApiFailure("invalid_arguments")
        channel_ids: list[str] = []
        if params.get("channel_id"):
            channel_ids.append(self._channel(params, "channel_id").id)
        for name in filter(None, (_str(params.get("channels")) or "").split(",")):
            channel_ids.append(self._channel({"channel": name}).id)
        thread_ts = _str(params.get("thread_ts"))
        if thread_ts and len(channel_ids) != 1:
            raise SlackApiFailure("invalid_arguments")
        uploads: list[FakeFile] = []
        for item in wanted:
            upload = self._files.get(str(item.get("id"))) if isinstance(item, dict) else None
            if upload is None or upload.completed:
                raise SlackApiFailure("file_not_found")
            if upload.data is None:
                raise SlackApiFailure("file_upload_incomplete")
            if len(upload.data) != upload.length:
                raise SlackApiFailure("file_size_mismatch")
            uploads.append(upload)
        for channel_id in channel_ids:
            if thread_ts:
                self._find_message(channel_id, thread_ts)
            if not self._channels[channel_id].is_member:
                raise SlackApiFailure("not_in_channel")
        comment = _str(params.get("initial_comment"))
        message_ts: str | None = None
        for channel_id in channel_ids:
            message = Message(
                channel=channel_id,
                ts=self._next_ts(),
                text=comment or "",
                blocks=None,
                user=self.bot_user_id,
                bot_id=self.bot_id,
                thread_ts=thread_ts,
                subtype="file_share",
                files=[u.id for u in uploads],
            )
            self._messages.setdefault(channel_id, []).append(message)
            message_ts = message_ts or message.ts
        for upload, item in zip(uploads, wanted, strict=True):
            upload.completed = True
            upload.title = _str(item.get("title")) or upload.name
            upload.channels = channel_ids
            upload.thread_ts = thread_ts
            upload.initial_comment = comment
            upload.message_ts = message_ts
        return {"files": [u.to_api(self.url) for u in uploads]}

    def _files_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        upload = self._files.get(_str(params.get("file")) or "")
        if upload is None:
            raise SlackApiFailure("file_not_found")
        if upload.user != self.bot_user_id:
            raise SlackApiFailure("cant_delete_file")
        del self._files[upload.id]
        return {}

    def _reaction_target(self, params: dict[str, Any]) -> tuple[Message, str]:
        channel = self._channel(params)
        message = self._find_message(channel.id, _str(params.get("timestamp")))
        name = _str(params.get("name"))
        if not name or ":" in name or " " in name:
            raise SlackApiFailure("invalid_name")
        return message, name

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(params)
        users = message.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise SlackApiFailure("already_reacted")
        users.append(self.bot_user_id)
        return {}

    def _reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(params)
        users = message.reactions.get(name, [])
        if self.bot_user_id not in users:
            raise SlackApiFailure("no_reaction")
        users.remove(self.bot_user_id)
        if not users:
            del message.reactions[name]
        return {}

    def _reactions_get(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        message = self._find_message(channel.id, _str(params.get("timestamp")))
        return {"type": "message", "channel": channel.id, "message": message.to_api()}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(_str(params.get("user")) or "")
        if user is None:
            raise SlackApiFailure("user_not_found")
        return {"user": user.to_api()}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self._channel(params).to_api()}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """The channel's top-level messages (thread replies left out), newest first."""
        channel = self._channel(params)
        if not channel.is_member:
            raise SlackApiFailure("not_in_channel")
        messages = [m for m in self._messages.get(channel.id, []) if not m.is_reply]
        return self._page(messages[::-1], params)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """A thread: its parent, then the replies, oldest first."""
        channel = self._channel(params)
        parent = self._find_message(channel.id, _str(params.get("ts")))
        thread = parent.thread_ts or parent.ts
        messages = [
            m for m in self._messages.get(channel.id, []) if m.ts == thread or m.thread_ts == thread
        ]
        return self._page(messages, params)

    def _page(self, messages: list[Message], params: dict[str, Any]) -> dict[str, Any]:
        """``oldest`` / ``latest`` (exclusive, as Slack's default), ``limit`` (default 100),
        metadata only with ``include_all_metadata``; no cursor (``has_more`` says if cut)."""
        oldest, latest = _str(params.get("oldest")), _str(params.get("latest"))
        shown = [
            m
            for m in messages
            if not m.deleted
            and (not oldest or float(m.ts) > float(oldest))
            and (not latest or float(m.ts) < float(latest))
        ]
        limit = int(_str(params.get("limit")) or 100)
        metadata = _str(params.get("include_all_metadata")) in {"1", "true", "True"}
        out = []
        for message in shown[:limit]:
            body = message.to_api()
            if not metadata:
                body.pop("metadata", None)
            out.append(body)
        return {"messages": out, "has_more": len(shown) > limit}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        upload = self._files.get(_str(params.get("file")) or "")
        if upload is None or not upload.completed:
            raise SlackApiFailure("file_not_found")
        return {"file": upload.to_api(self.url)}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if not _str(params.get("trigger_id")):
            raise SlackApiFailure("invalid_trigger_id")
        view = _maybe_json(params.get("view"))
        if not isinstance(view, dict) or view.get("type") not in {"modal", "home"}:
            raise SlackApiFailure("invalid_arguments")
        opened = copy.deepcopy(view) | {
            "id": self._next_id("V"),
            "team_id": self.team_id,
            "state": {"values": {}},
            "hash": uuid.uuid4().hex[:20],
            "app_id": APP_ID,
            "bot_id": self.bot_id,
        }
        self._views.append(opened)
        return {"view": opened}

    def _connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.socket.open_url()

    _API: ClassVar[dict[str, Callable[[FakeSlack, dict[str, Any]], dict[str, Any]]]] = {
        "api.test": _api_test,
        "apps.connections.open": _connections_open,
        "auth.test": _auth_test,
        "chat.postMessage": _post_message,
        "chat.postEphemeral": _post_ephemeral,
        "chat.update": _update,
        "chat.delete": _delete,
        "files.getUploadURLExternal": _get_upload_url,
        "files.completeUploadExternal": _complete_upload,
        "files.delete": _files_delete,
        "files.info": _files_info,
        "reactions.add": _reactions_add,
        "reactions.remove": _reactions_remove,
        "reactions.get": _reactions_get,
        "users.info": _users_info,
        "conversations.info": _conversations_info,
        "conversations.history": _conversations_history,
        "conversations.replies": _conversations_replies,
        "views.open": _views_open,
    }


@contextlib.contextmanager
def running_fake_slack(**kwargs: Any) -> Iterator[FakeSlack]:
    """``with running_fake_slack() as fake:`` — a started ``FakeSlack``, stopped afterwards."""
    fake = FakeSlack(**kwargs).start()
    try:
        yield fake
    finally:
        fake.stop()


# -- request parsing helpers --------------------------------------------------------------------


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    params: dict[str, Any] = dict(request.query)
    files: dict[str, bytes] = {}
    if request.method != "POST" or not request.can_read_body:
        return params, files
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params |= body
    elif request.content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form: MultiDictProxy[str | bytes | bytearray | web.FileField] = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files[name] = value.file.read()
            elif isinstance(value, bytes | bytearray):
                params[name] = value.decode()
            else:
                params[name] = value
    return params, files


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    return header.removeprefix("Bearer ").strip() or None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _invalid_blocks(problem: str, pointer: str, field: str = "") -> SlackApiFailure:
    """Slack's answer to a block it can't accept: the problem and where it is."""
    where = f"{pointer}/{field}" if field else pointer
    detail = f"{problem} [json-pointer:{where}]"
    return SlackApiFailure(
        "invalid_blocks", errors=[detail], response_metadata={"messages": [f"[ERROR] {detail}"]}
    )


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in {"[", "{"}:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


# -- requests from Slack to the app ----------------------------------------------------------------


def sign(signing_secret: str, body: str, timestamp: str) -> str:
    """Slack's request signature: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``
    (the scheme ``slack_sdk.signature.SignatureVerifier`` checks)."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SentRequest:
    """What the app answered to a request ``SlackSender`` sent."""

    status: int
    body: str
    headers: dict[str, str]
    elapsed: float  # seconds from sending to the full response
    sent_body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def slash_command_form(
    command: str,
    text: str,
    *,
    user_id: str = USER_ID,
    user_name: str = USER_NAME,
    channel_id: str = CHANNEL_ID,
    channel_name: str = CHANNEL_NAME,
    team_id: str = TEAM_ID,
    trigger_id: str | None = None,
    response_url: str,
) -> dict[str, str]:
    """The form fields Slack POSTs for a slash command."""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }


def block_actions_payload(
    action_id: str,
    *,
    value: str = "",
    block_id: str = "onbrand",
    user_id: str = USER_ID,
    user_name: str = USER_NAME,
    channel_id: str = CHANNEL_ID,
    channel_name: str = CHANNEL_NAME,
    team_id: str = TEAM_ID,
    message: dict[str, Any] | None = None,
    message_ts: str | None = None,
    response_url: str,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` interaction for a button click on a message."""
    if message is None:
        message = {"type": "message", "ts": message_ts or "1700000000.000100", "text": ""}
    ts = str(message["ts"])
    action_ts = f"{time.time():.6f}"
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": ts,
        "channel_id": channel_id,
        "is_ephemeral": False,
    }
    if message.get("thread_ts"):
        container["thread_ts"] = message["thread_ts"]
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": APP_ID,
        "token": "fake-verification-token",
        "container": container,
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": action_ts,
            }
        ],
    }


def event_callback(
    event: dict[str, Any], *, team_id: str = TEAM_ID, bot_user_id: str = BOT_USER_ID
) -> dict[str, Any]:
    """The Events API envelope around ``event``."""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev0{uuid.uuid4().hex[:9].upper()}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


def reaction_event(
    kind: str,
    reaction: str,
    *,
    channel: str,
    ts: str,
    user: str = USER_ID,
    item_user: str = BOT_USER_ID,
    event_ts: str | None = None,
) -> dict[str, Any]:
    """A ``reaction_added`` / ``reaction_removed`` event. ``reaction`` is the emoji NAME
    (``one``, ``star``, ``+1``, ``white_check_mark``), without colons; ``event_ts`` defaults to
    now (Slack orders a key's events by it, but may deliver them in any order)."""
    if kind not in {"reaction_added", "reaction_removed"}:
        raise ValueError(f"not a reaction event: {kind!r}")
    return {
        "type": kind,
        "user": user,
        "reaction": reaction,
        "item": {"type": "message", "channel": channel, "ts": ts},
        "item_user": item_user,
        "event_ts": event_ts or f"{time.time():.6f}",
    }


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


class SlackSender:
    """Sends signed requests to an app the way Slack does.

    ``url`` is the app's endpoint (e.g. ``http://127.0.0.1:PORT/slack/events``); response URLs
    in the payloads point at ``fake``. Every ``send`` variant takes the tampering options:

    * ``bad_signature``: sign with the wrong secret;
    * ``alter_body``: sign the body, then send it with one more character;
    * ``age``: seconds to backdate ``X-Slack-Request-Timestamp`` (Slack's limit is 300);
    * ``retry_num``: add ``X-Slack-Retry-Num`` / ``X-Slack-Retry-Reason`` as Slack's retries do.
    """

    def __init__(self, url: str, signing_secret: str, fake: FakeSlack) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self.fake = fake
        self._responses = itertools.count(1)

    def response_url(self, kind: str = "commands") -> str:
        return f"{self.fake.url}/response/{kind}/{TEAM_ID}/{next(self._responses)}/fake"

    async def send(
        self,
        body: str,
        content_type: str,
        *,
        bad_signature: bool = False,
        alter_body: bool = False,
        age: float = 0.0,
        retry_num: int | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 -- the HTTP client's total timeout
    ) -> SentRequest:
        timestamp = str(int(time.time() - age))
        secret = self.signing_secret + ("-wrong" if bad_signature else "")
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": sign(secret, body, timestamp),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        if retry_num is not None:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "timeout"}
        sent = body + ("&" if content_type.endswith("urlencoded") else " ") if alter_body else body
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            started = time.perf_counter()
            async with session.post(self.url, data=sent.encode(), headers=headers) as response:
                text = await response.text()
                elapsed = time.perf_counter() - started
                return SentRequest(
                    status=response.status,
                    body=text,
                    headers=dict(response.headers),
                    elapsed=elapsed,
                    sent_body=sent,
                )

    def signed_headers(
        self, body: bytes, content_type: str, *, timestamp: str | None = None
    ) -> dict[str, str]:
        """The headers Slack sends with ``body`` (its bytes signed as they are)."""
        timestamp = timestamp or str(int(time.time()))
        base = b"v0:" + timestamp.encode() + b":" + body
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": f"v0={digest}",
        }

    async def post_raw(
        self,
        body: bytes,
        headers: dict[str, str],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> SentRequest:
        """POST ``body`` with exactly ``headers`` (nothing signed unless they say so)."""
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            started = time.perf_counter()
            async with session.post(self.url, data=body, headers=headers) as response:
                text = await response.text(errors="replace")
                return SentRequest(
                    status=response.status,
                    body=text,
                    headers=dict(response.headers),
                    elapsed=time.perf_counter() - started,
                    sent_body=body.decode("utf-8", "replace"),
                )

    async def slash_command(
        self,
        text: str,
        *,
        command: str = "/imagine",
        user_id: str = USER_ID,
        user_name: str = USER_NAME,
        channel_id: str = CHANNEL_ID,
        channel_name: str = CHANNEL_NAME,
        trigger_id: str | None = None,
        **tamper: Any,
    ) -> SentRequest:
        form = slash_command_form(
            command,
            text,
            user_id=user_id,
            user_name=user_name,
            channel_id=channel_id,
            channel_name=channel_name,
            team_id=self.fake.team_id,
            trigger_id=trigger_id,
            response_url=self.response_url("commands"),
        )
        return await self.send(urlencode(form), "application/x-www-form-urlencoded", **tamper)

    async def block_action(
        self,
        action_id: str,
        *,
        message_ts: str,
        value: str = "",
        block_id: str = "onbrand",
        user_id: str = USER_ID,
        user_name: str = USER_NAME,
        channel_id: str = CHANNEL_ID,
        channel_name: str = CHANNEL_NAME,
        **tamper: Any,
    ) -> SentRequest:
        """Click a button on message ``message_ts``; the payload carries that message as the
        fake holds it (blocks included), or a bare stub when the fake does not know it."""
        try:
            message: dict[str, Any] | None = self.fake.message(channel_id, message_ts).to_api()
        except (SlackApiFailure, KeyError):
            message = None
        payload = block_actions_payload(
            action_id,
            value=value,
            block_id=block_id,
            user_id=user_id,
            user_name=user_name,
            channel_id=channel_id,
            channel_name=channel_name,
            team_id=self.fake.team_id,
            message=message,
            message_ts=message_ts,
            response_url=self.response_url("actions"),
        )
        return await self.interaction(payload, **tamper)

    async def interaction(self, payload: dict[str, Any], **tamper: Any) -> SentRequest:
        """POST any interactivity payload as ``payload=<json>``."""
        body = urlencode({"payload": json.dumps(payload)})
        return await self.send(body, "application/x-www-form-urlencoded", **tamper)

    async def event(self, event: dict[str, Any], **tamper: Any) -> SentRequest:
        """POST an Events API ``event_callback`` wrapping ``event`` (JSON)."""
        envelope = event_callback(
            event, team_id=self.fake.team_id, bot_user_id=self.fake.bot_user_id
        )
        return await self.send(json.dumps(envelope), "application/json", **tamper)

    async def reaction(
        self,
        reaction: str,
        *,
        ts: str,
        channel: str = CHANNEL_ID,
        user: str = USER_ID,
        added: bool = True,
        item_user: str | None = None,
        **tamper: Any,
    ) -> SentRequest:
        """A user adds (or removes) ``reaction`` on message ``ts``: the fake's state is
        updated first, as Slack's would be, then the event is delivered."""
        if added:
            self.fake.react(channel, ts, reaction, user)
        else:
            self.fake.unreact(channel, ts, reaction, user)
        event = reaction_event(
            "reaction_added" if added else "reaction_removed",
            reaction,
            channel=channel,
            ts=ts,
            user=user,
            item_user=item_user or self.fake.bot_user_id,
        )
        return await self.event(event, **tamper)

    async def url_verification(
        self, challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY"
    ) -> SentRequest:
        body = json.dumps(
            {"token": "fake-verification-token", "challenge": challenge, "type": "url_verification"}
        )
        return await self.send(body, "application/json")


# -- serving an app over HTTP -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_aiohttp(app: web.Application, path: str = "/slack/events") -> AsyncIterator[str]:
    """Serve an aiohttp ``app`` on 127.0.0.1 (random port) on the running loop; yields
    ``http://127.0.0.1:PORT{path}``."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        await runner.cleanup()


def serve_bolt_app(
    bolt_app: AsyncApp, path: str = "/slack/events"
) -> contextlib.AbstractAsyncContextManager[str]:
    """Serve a ``slack_bolt.async_app.AsyncApp`` through bolt's own aiohttp server
    (``AsyncApp.web_app``) on 127.0.0.1; yields the endpoint URL."""
    return serve_aiohttp(bolt_app.web_app(path=path), path)


__all__ = [
    "ADMIN_ID",
    "BOT_ID",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "CHANNEL_ID",
    "RESPONSE_URL",
    "SIGNING_SECRET",
    "TEAM_ID",
    "TINY_PNG",
    "UPLOAD",
    "USER_ID",
    "Call",
    "Ephemeral",
    "FakeChannel",
    "FakeFile",
    "FakeSlack",
    "FakeUser",
    "Message",
    "MessageVersion",
    "ResponsePost",
    "SentRequest",
    "SlackSender",
    "block_actions_payload",
    "event_callback",
    "reaction_event",
    "running_fake_slack",
    "serve_aiohttp",
    "serve_bolt_app",
    "sign",
    "slash_command_form",
]
