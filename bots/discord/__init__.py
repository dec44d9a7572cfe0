"""The Discord adapter: ``serve_discord(app, stop)`` runs the bot and its result delivery.

Needs the ``discord`` extra (discord.py). Imports no torch: the bot only talks to PostgreSQL and
Discord; workers make the images.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import discord
import discord.gateway
import discord.http
import yarl

from bots.discord.bot import OnbrandBot
from bots.discord.sink import DiscordSink
from bots.discord.verify import verifier_for
from core.bootstrap import App
from core.errors import ConfigError

__all__ = ["DiscordSink", "OnbrandBot", "discord_endpoints", "serve_discord"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def discord_endpoints(api_base: str | None, gateway_url: str | None) -> Iterator[None]:
    """Point discord.py's REST base and gateway elsewhere (a proxy, a test server) for a while.

    ``DEFAULT_GATEWAY`` stays a ``yarl.URL``, as discord.py expects since 2.1."""
    socket = discord.gateway.DiscordWebSocket
    old_base, old_gateway = discord.http.Route.BASE, socket.DEFAULT_GATEWAY
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        socket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE, socket.DEFAULT_GATEWAY = old_base, old_gateway


async def serve_discord(
    app: App, stop: asyncio.Event, *, bot: OnbrandBot | None = None, sweep_interval_s: float = 10.0
) -> None:
    """Run the bot and the delivery of results to Discord until ``stop`` is set.

    Raises ``ConfigError`` when the token is missing or refused, and whatever ended the gateway
    connection or the delivery loop otherwise."""
    settings = app.settings
    if settings.discord_token is None:
        raise ConfigError("DISCORD_TOKEN is not set; the Discord adapter needs the bot's token")
    with discord_endpoints(settings.discord_api_base, settings.discord_gateway_url):
        bot = bot or OnbrandBot(app.service, guild_ids=settings.discord_guild_ids)
        bot.verifier = bot.verifier or verifier_for(app)
        delivery = app.delivery(bot.sink, sweep_interval_s=sweep_interval_s)
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                await bot.login(settings.discord_token.get_secret_value())
            except discord.LoginFailure as exc:
                raise ConfigError("DISCORD_TOKEN was refused by Discord; check the token") from exc
            tasks = [
                asyncio.create_task(bot.connect(reconnect=True), name="discord-gateway"),
                asyncio.create_task(delivery.run(), name="discord-delivery"),
            ]
            stopping = asyncio.create_task(stop.wait(), name="discord-stop")
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for task in tasks:
                if task in done and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            log.info("discord adapter stopping (%d results delivered)", delivery.delivered)
        finally:
            delivery.stop()  # the result being posted, if any, finishes first
            await bot.close()  # flushes pending status edits, then closes the gateway
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 10)
