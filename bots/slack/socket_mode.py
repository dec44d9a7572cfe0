"""Slack's Socket Mode for the bolt app: connect, say whether the socket is up, close.

bolt's ``AsyncSocketModeHandler`` runs slack_sdk's aiohttp ``SocketModeClient``, which asks
``apps.connections.open`` for a websocket URL, acks each envelope with bolt's ack, follows
Slack's ``disconnect`` messages to a new connection, and notices a dead connection by its pings
(every ``ping_interval`` seconds) and reconnects. What it does not do is done here:

* A token Slack refuses (revoked, or not an app-level ``xapp-`` token) is retried by the client
  forever, every ``ping_interval``, while the process looks alive: ``connect`` asks for the
  first URL itself and stops with a ``ConfigError`` saying what to fix.
* Whether the socket is up right now (``check``, for readiness): ``connected`` once, at
  start-up, says nothing about the minutes after a dropped connection.
* A stop while Slack can't be reached: the client's connect loop never ends by itself, so
  ``run`` waits for whichever comes first, the connection or the stop.
* A graceful stop (``stop``): envelopes that arrive from then on are left unacked (Slack
  delivers them again, to another connection or the next start) while the ones in hand finish
  and send their acks over the socket, which closes only then. Closing first would drop the
  acks of a slow ``/imagine`` in flight, and Slack would deliver it again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from core.errors import ConfigError

log = logging.getLogger(__name__)

PING_INTERVAL_S = 10.0  # bolt's default: a dead connection is noticed within about this long
# apps.connections.open errors that no retry cures: the token is wrong, not that Slack is down.
TOKEN_REFUSED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "not_allowed_token_type",
        "token_revoked",
        "token_expired",
        "account_inactive",
    }
)


class SocketMode:
    """One Socket Mode connection (reconnected as needed) feeding ``bolt``."""

    def __init__(
        self, bolt: AsyncApp, app_token: str, *, ping_interval: float = PING_INTERVAL_S
    ) -> None:
        self.handler = AsyncSocketModeHandler(bolt, app_token, ping_interval=ping_interval)
        self.client = self.handler.client
        self.stopping = False
        self._handling: set[asyncio.Task[Any]] = set()
        self.client.socket_mode_request_listeners[:] = [self._handle]

    async def _handle(self, client: Any, request: Any) -> None:
        """bolt's envelope handler (dispatch, then the ack), counted while it runs."""
        if self.stopping:  # not acked: Slack delivers it again elsewhere or later
            log.info(
                "slack: stopping; left envelope %s for Slack to deliver again", request.envelope_id
            )
            return
        task = asyncio.current_task()
        if task is not None:
            self._handling.add(task)
        try:
            await self.handler.handle(client, request)
        finally:
            if task is not None:
                self._handling.discard(task)

    async def connect(self) -> None:
        """Open the first connection; ``ConfigError`` when Slack refuses the app token."""
        try:
            self.client.wss_uri = await self.client.issue_new_wss_url()
        except SlackApiError as exc:
            error = _error(exc)
            if error in TOKEN_REFUSED:
                raise ConfigError(
                    f"Slack refused SLACK_APP_TOKEN ({error}): set it to an app-level token "
                    "(xapp-…) with the connections:write scope, from the Slack app's Basic "
                    "Information page"
                ) from exc
            log.warning("slack: apps.connections.open failed (%s); retrying", error)
            self.client.wss_uri = None  # the client asks again, every ping interval
        except (aiohttp.ClientError, TimeoutError) as exc:  # Slack unreachable for now
            log.warning("slack: apps.connections.open failed (%r); retrying", exc)
            self.client.wss_uri = None
        await self.handler.connect_async()  # type: ignore[no-untyped-call]

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, take envelopes until ``stop``, let those in hand be acked, close.
        ``ConfigError`` when Slack refuses the app token."""
        connecting = asyncio.ensure_future(self.connect())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if connecting.done():
                connecting.result()  # a refused token raises here
                log.info("slack: connected in Socket Mode")
                await stopping
            await self.stop()  # the acks of envelopes in hand go out first
        finally:
            for task in (connecting, stopping):
                task.cancel()
            await asyncio.gather(connecting, stopping, return_exceptions=True)
            await self.close()

    async def connected(self) -> bool:
        return bool(await self.client.is_connected())

    async def check(self) -> tuple[bool, str]:
        """Readiness: whether the socket is up now."""
        if await self.connected():
            return True, "socket connected"
        if self.client.closed:
            return False, "socket closed"
        return False, "socket disconnected; reconnecting"

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Take no more envelopes; wait (up to ``timeout``) for those in hand to be acked."""
        self.stopping = True
        pending = {t for t in self._handling if t is not asyncio.current_task()}
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def close(self) -> None:
        await self.handler.close_async()  # type: ignore[no-untyped-call]


def _error(exc: SlackApiError) -> str:
    try:
        return str(exc.response["error"])
    except (KeyError, TypeError):
        return type(exc).__name__
