"""The Slack adapter (slack-bolt): ``serve_slack`` runs it until ``stop`` is set.

Socket Mode when ``SLACK_APP_TOKEN`` is set (no public URL needed; ``bots.slack.socket_mode``:
readiness says whether the socket is up now, a token Slack refuses stops it with a
``ConfigError``, a stop acks the envelopes in hand first), else HTTP on
``ONBRAND_HTTP_HOST:ONBRAND_HTTP_PORT`` at ``/slack/events``, where ``bots.slack.http`` checks
Slack's signature before the bolt app sees the request.
Results reach Slack through a ``Delivery`` (worker events + a periodic sweep) that runs alongside.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from bots.slack.app import SlackBot, build_slack_app, slack_client
from bots.slack.scopes import missing_scopes
from bots.slack.sink import SlackSink
from bots.slack.socket_mode import PING_INTERVAL_S, SocketMode
from core.bootstrap import App

__all__ = ["SlackBot", "SlackSink", "build_slack_app", "serve_slack", "slack_client"]

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


async def serve_slack(
    app: App, stop: asyncio.Event, *, socket_ping_interval_s: float = PING_INTERVAL_S
) -> None:
    """Take commands and deliver results until ``stop``; then stop taking commands, let the
    listeners in flight finish, send the pending status edits, and return.

    ``socket_ping_interval_s``: how often the Socket Mode client pings, which is also about how
    long a connection that died silently goes unnoticed."""
    settings = app.settings
    client = slack_client(settings)
    bot = SlackBot(app, client=client)
    sink = bot.sink
    # logged, beside the rest: a grant older than this version's manifest
    checking = asyncio.create_task(missing_scopes(client), name="slack-scopes")
    delivery = app.delivery(sink)
    delivering = asyncio.create_task(delivery.run(), name="slack-delivery")
    try:
        if settings.slack_app_token is not None:
            socket = SocketMode(
                bot.bolt,
                settings.slack_app_token.get_secret_value(),
                ping_interval=socket_ping_interval_s,
            )
            app.readiness.add_check("slack", socket.check)  # ready while the socket is up
            await socket.run(stop)
        else:
            runner = web.AppRunner(bot.web_app(EVENTS_PATH), access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, settings.http_host, settings.http_port)
            await site.start()
            log.info(
                "slack: listening on http://%s:%d%s",
                settings.http_host,
                settings.http_port,
                EVENTS_PATH,
            )
            try:
                await stop.wait()
            finally:
                await site.stop()  # no new requests; answered ones finish
                await bot.drain()
                await runner.cleanup()
        await bot.drain()
    finally:
        checking.cancel()
        delivery.stop()  # the result being posted, if any, finishes first
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(delivering, 30)
        await sink.flush()
        log.info("slack: stopped")
