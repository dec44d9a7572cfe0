"""Slack's Socket Mode, faked on the ``FakeSlack`` server, for the real slack_sdk Socket Mode
client (bolt's ``AsyncSocketModeHandler`` runs slack_sdk's aiohttp ``SocketModeClient``).

How Slack does it, and what this fake does the same way:

* ``apps.connections.open``, called with the app-level token (``xapp-…``; a bot token gets
  ``not_allowed_token_type``), answers ``{"ok": true, "url": "ws://127.0.0.1:<port>/link/?…"}``.
* On connecting, the server sends ``{"type": "hello", "num_connections": n, …}``; then
  envelopes ``{"envelope_id", "type": slash_commands | interactive | events_api, "payload",
  "accepts_response_payload"}``. The app acks each with ``{"envelope_id": …}`` (and, where
  ``accepts_response_payload``, a ``payload``: the ack's message) within 3 s. Every ack is
  recorded (``acks``), with how long it took; an envelope not acked within ``ack_timeout``
  is recorded in ``missed`` (and an ack that comes later is marked ``late``).
* ``disconnect(reason)`` sends ``{"type": "disconnect", "reason": …}`` (``refresh_requested``,
  ``warning``, ``link_disabled``); the client opens a new connection and closes the old one.
  ``drop()`` kills the connection without a close frame (a network failure); ``close()``
  sends a close frame. ``refuse_connections()`` answers 503 to websocket upgrades (Slack
  unreachable) until called with False. Envelopes go to the newest open connection; one
  delivered while no connection is open waits for the next.
* An envelope not acked within ``ack_timeout`` of being sent (on any connection: an ack may
  come back on the connection that replaced the one it was sent on) is delivered again, on the
  newest connection or the next one, with the same payload, a new ``envelope_id``,
  ``retry_attempt`` counted up and ``retry_reason: "timeout"``, at most ``max_retries`` times.
  So what a dropped connection swallowed arrives after the reconnect. (Slack retries Events API
  envelopes so; the fake does it for every kind, the worst case an app must survive.)
  ``redeliver(envelope)`` sends one again on purpose.

The server side runs on the ``FakeSlack``'s own loop and thread; the methods here are called
from the tests' loop and hand their work over (``_call``). ``SocketSender`` gives tests the
interface of ``SlackSender`` over Socket Mode: each call delivers an envelope and returns the
ack as a ``SentRequest`` (status 200 and the ack's payload as the body; 504 when no ack came
within ``ack_timeout``), so one scenario test can run over both transports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import itertools
import json
import threading
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from aiohttp import web

from tests.fakes.slack import (
    APP_ID,
    CHANNEL_ID,
    CHANNEL_NAME,
    USER_ID,
    USER_NAME,
    SentRequest,
    SlackSender,
    slash_command_form,
)

if TYPE_CHECKING:
    from tests.fakes.slack import FakeSlack

T = TypeVar("T")

APP_TOKEN = "xapp-1-A0ONBRAND1-1000000003-onbrandFakeAppToken"
ACK_TIMEOUT_S = 3.0  # Slack's deadline for an ack
LINK_PATH = "/link/"
KINDS = ("slash_commands", "interactive", "events_api")
DISCONNECT_REASONS = ("refresh_requested", "warning", "link_disabled")


@dataclass
class Envelope:
    """One envelope the fake delivers (and, until acked, delivers again after a reconnect)."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    retry_attempt: int = 0
    retry_reason: str | None = None
    first_id: str = ""  # the envelope_id of the first delivery of this payload
    connection: int | None = None  # the connection it was sent on (None: not sent yet)
    sent_at: float | None = None
    acked: bool = False

    def message(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
        }
        if self.retry_attempt:
            body |= {"retry_attempt": self.retry_attempt, "retry_reason": self.retry_reason}
        return body


@dataclass(frozen=True)
class Ack:
    """An ack the app sent: for which envelope, with what, on which connection, how late."""

    envelope_id: str
    payload: dict[str, Any] | None
    connection: int
    delay: float | None  # seconds after the envelope was sent; None: no such envelope
    late: bool  # after ``ack_timeout``


@dataclass
class _Connection:
    number: int
    ws: web.WebSocketResponse
    request: web.Request
    opened_at: float
    closed_at: float | None = None
    how: str = ""  # "client" / "dropped" / "closed" once it is over
    received: list[Any] = field(default_factory=list)  # non-ack messages from the app


class FakeSocketMode:
    """The Socket Mode half of a ``FakeSlack`` (``fake.socket``)."""

    def __init__(self, fake: FakeSlack, *, app_token: str = APP_TOKEN) -> None:
        self.fake = fake
        self.app_token = app_token
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._init_state()

    def _init_state(self) -> None:
        self.ack_timeout = ACK_TIMEOUT_S
        self.max_retries = 3
        self._connections: list[_Connection] = []
        self._envelopes: list[Envelope] = []  # every delivery, in order
        self._acks: list[Ack] = []
        self._missed: list[Envelope] = []
        self._urls_issued = 0
        self._refuse = False

    def reset(self) -> None:
        """Forget envelopes, acks, misses and connections (between tests: the last test's
        client may still be closing its own), and restore ``ack_timeout`` and ``max_retries``."""
        with self._lock:
            self._init_state()

    # -- apps.connections.open (called by FakeSlack with its lock held) ----------------------

    def open_url(self) -> dict[str, Any]:
        with self._lock:
            self._urls_issued += 1
        ticket = uuid.uuid4().hex
        return {
            "url": f"ws://127.0.0.1:{self.fake.port}{LINK_PATH}?ticket={ticket}&app_id={APP_ID}"
        }

    # -- the websocket (on the fake's loop) -------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            refuse = self._refuse
        if refuse or "ticket" not in request.query:
            return web.Response(status=503, text="socket mode is unavailable")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._lock:
            connection = _Connection(next(self._numbers), ws, request, time.monotonic())
            self._connections.append(connection)
            count = sum(1 for c in self._connections if c.closed_at is None)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": count,
                "debug_info": {
                    "host": "applink-fake-1",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": APP_ID},
            }
        )
        await self._send_waiting()
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._received(connection, message.data)
        finally:
            with self._lock:
                if connection.closed_at is None:
                    connection.closed_at = time.monotonic()
                    connection.how = connection.how or "client"
        return ws

    def _received(self, connection: _Connection, data: str) -> None:
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            message = data
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if envelope_id is None:
            with self._lock:
                connection.received.append(message)
            return
        now = time.monotonic()
        with self._lock:
            envelope = next((e for e in self._envelopes if e.envelope_id == envelope_id), None)
            delay = None
            if envelope is not None:
                envelope.acked = True
                delay = None if envelope.sent_at is None else now - envelope.sent_at
            payload = message.get("payload")
            self._acks.append(
                Ack(
                    envelope_id,
                    payload if isinstance(payload, dict) else None,
                    connection.number,
                    delay,
                    late=delay is not None and delay > self.ack_timeout,
                )
            )

    def _open(self) -> _Connection | None:
        with self._lock:
            live = [c for c in self._connections if c.closed_at is None and not c.ws.closed]
            return live[-1] if live else None

    async def _send_waiting(self) -> None:
        """Send every envelope not yet sent (or to be sent again) on the newest connection."""
        while (connection := self._open()) is not None:
            with self._lock:
                waiting = next(
                    (e for e in self._envelopes if not e.acked and e.connection is None), None
                )
                if waiting is None:
                    return
                waiting.connection = connection.number
                waiting.sent_at = time.monotonic()
            try:
                await connection.ws.send_json(waiting.message())
            except (ConnectionError, RuntimeError):  # went away meanwhile: the next one gets it
                with self._lock:
                    waiting.connection = waiting.sent_at = None
                    connection.closed_at = connection.closed_at or time.monotonic()
                continue
            asyncio.get_running_loop().call_later(self.ack_timeout, self._deadline, waiting)

    def _deadline(self, envelope: Envelope) -> None:
        with self._lock:
            current = any(e is envelope for e in self._envelopes)  # not from before a reset
            if envelope.acked or not current or any(e is envelope for e in self._missed):
                return
            self._missed.append(envelope)
            if envelope.retry_attempt >= self.max_retries:
                return
            self._envelopes.append(_retry(envelope, "timeout"))  # Slack's retry
        asyncio.ensure_future(self._send_waiting())  # noqa: RUF006 -- it ends by itself

    # -- scripting (from the tests' side; thread-safe) --------------------------------------

    def _call(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        loop = self.fake._loop  # the fake's own loop runs the server
        if loop is None:
            raise RuntimeError("FakeSlack is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop)  # type: ignore[arg-type]

    async def deliver(
        self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool | None = None
    ) -> Envelope:
        """Queue an envelope and send it on the newest connection (or the next one)."""
        if kind not in KINDS:
            raise ValueError(f"not an envelope type: {kind!r}")
        if accepts_response_payload is None:
            accepts_response_payload = kind == "slash_commands"
        envelope_id = str(uuid.uuid4())
        envelope = Envelope(
            envelope_id,
            kind,
            copy.deepcopy(payload),
            accepts_response_payload,
            first_id=envelope_id,
        )
        with self._lock:
            self._envelopes.append(envelope)
        await asyncio.wrap_future(self._call(self._send_waiting()))
        return envelope

    async def redeliver(self, envelope: Envelope, reason: str = "timeout") -> Envelope:
        """Deliver ``envelope``'s payload again, as Slack's retry of it."""
        again = _retry(envelope, reason)
        with self._lock:
            self._envelopes.append(again)
        await asyncio.wrap_future(self._call(self._send_waiting()))
        return again

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Send ``{"type": "disconnect", "reason": reason}`` on every open connection."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-1"}}

        async def send() -> None:
            for connection in self.connections(open_only=True):
                await connection.ws.send_json(message)

        await asyncio.wrap_future(self._call(send()))

    async def drop(self) -> None:
        """Kill every open connection without a close frame, as a network failure would."""

        async def kill() -> None:
            for connection in self.connections(open_only=True):
                with self._lock:
                    connection.closed_at = time.monotonic()
                    connection.how = "dropped"
                transport = connection.request.transport
                if transport is not None:
                    transport.abort()

        await asyncio.wrap_future(self._call(kill()))

    async def close(self, code: int = 1001) -> None:
        """Close every open connection with a close frame (going away)."""

        async def close() -> None:
            for connection in self.connections(open_only=True):
                with self._lock:
                    connection.how = "closed"
                await connection.ws.close(code=code)

        await asyncio.wrap_future(self._call(close()))

    def refuse_connections(self, refuse: bool = True) -> None:
        """Answer 503 to websocket connections (apps.connections.open still answers)."""
        with self._lock:
            self._refuse = refuse

    # -- reading state -----------------------------------------------------------------------

    def connections(self, *, open_only: bool = False) -> list[_Connection]:
        with self._lock:
            return [c for c in self._connections if not open_only or c.closed_at is None]

    @property
    def connected(self) -> bool:
        return bool(self.connections(open_only=True))

    @property
    def urls_issued(self) -> int:
        with self._lock:
            return self._urls_issued

    @property
    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return [copy.copy(e) for e in self._envelopes]

    @property
    def acks(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    @property
    def missed(self) -> list[Envelope]:
        """Envelopes not acked within ``ack_timeout`` of being sent."""
        with self._lock:
            return [copy.copy(e) for e in self._missed]

    def ack_for(self, envelope: Envelope) -> Ack | None:
        with self._lock:
            return next((a for a in self._acks if a.envelope_id == envelope.envelope_id), None)

    async def wait_for_ack(
        self,
        envelope: Envelope,
        timeout: float | None = None,  # noqa: ASYNC109 -- polls
    ) -> Ack | None:
        """The ack of ``envelope`` once it came, or None after ``timeout`` (``ack_timeout``)."""
        deadline = time.monotonic() + (self.ack_timeout if timeout is None else timeout)
        while True:
            ack = self.ack_for(envelope)
            if ack is not None or time.monotonic() >= deadline:
                return ack
            await asyncio.sleep(0.002)

    async def wait_connected(
        self,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> _Connection:
        """Wait until at least ``count`` connections were made and one is open; the newest."""
        deadline = time.monotonic() + timeout
        while True:
            made = self.connections()
            live = [c for c in made if c.closed_at is None]
            if len(made) >= count and live:
                return live[-1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(made)} connections made, {len(live)} open")
            await asyncio.sleep(0.002)


def _retry(envelope: Envelope, reason: str) -> Envelope:
    """Slack's next delivery of ``envelope``: the same payload in a new envelope."""
    return Envelope(
        str(uuid.uuid4()),
        envelope.type,
        copy.deepcopy(envelope.payload),
        envelope.accepts_response_payload,
        retry_attempt=envelope.retry_attempt + 1,
        retry_reason=reason,
        first_id=envelope.first_id,
    )


class SocketSender(SlackSender):
    """``SlackSender``'s interface over Socket Mode: each request is an envelope, and what comes
    back is its ack (status 200, the ack's payload as JSON text or ``""``), or status 504 when no
    ack came within the fake's ``ack_timeout``. Signing options have no meaning here."""

    def __init__(self, fake: FakeSlack) -> None:
        super().__init__(f"ws://127.0.0.1:{fake.port}{LINK_PATH}", "", fake)
        self.socket = fake.socket
        self.sent: list[Envelope] = []

    async def _deliver(self, kind: str, payload: dict[str, Any], **tamper: Any) -> SentRequest:
        if tamper:
            raise TypeError(f"Socket Mode has no signatures to tamper with: {sorted(tamper)}")
        started = time.perf_counter()
        envelope = await self.socket.deliver(kind, payload)
        self.sent.append(envelope)
        ack = await self.socket.wait_for_ack(envelope)
        elapsed = time.perf_counter() - started
        sent_body = json.dumps(envelope.message())
        if ack is None:
            return SentRequest(504, "", {}, elapsed, sent_body)
        body = json.dumps(ack.payload) if ack.payload else ""
        return SentRequest(200, body, {"Content-Type": "application/json"}, elapsed, sent_body)

    async def send(self, body: str, content_type: str, **tamper: Any) -> SentRequest:
        raise NotImplementedError("Socket Mode delivers envelopes, not HTTP bodies")

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
        return await self._deliver("slash_commands", dict(form), **tamper)

    async def interaction(self, payload: dict[str, Any], **tamper: Any) -> SentRequest:
        return await self._deliver("interactive", payload, **tamper)

    async def event(self, event: dict[str, Any], **tamper: Any) -> SentRequest:
        from tests.fakes.slack import event_callback

        envelope = event_callback(
            event, team_id=self.fake.team_id, bot_user_id=self.fake.bot_user_id
        )
        return await self._deliver("events_api", envelope, **tamper)


__all__ = [
    "ACK_TIMEOUT_S",
    "APP_TOKEN",
    "DISCONNECT_REASONS",
    "Ack",
    "Envelope",
    "FakeSocketMode",
    "SocketSender",
]
