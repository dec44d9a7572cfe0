"""``python -m bench slack-ack [--queued N] [--samples N]``: how fast ``/imagine`` is acked.

The real bolt app (``bots.slack``) over its aiohttp adapter on 127.0.0.1, the fake Slack Web API
(``tests.fakes.slack``) and a scratch PostgreSQL database (``bench._setup``: ``DATABASE_URL``'s
server, else postgres on 127.0.0.1:5432; dropped afterwards) with ``--queued`` jobs waiting, queued
through the service for 50 other users. Signed slash commands are sent the way Slack sends them;
each sample is the time from sending to the app's HTTP answer (the ack). ``/imagine`` and a no-op
command on the same app alternate, one at a time, after the previous command's post-ack work
(the Queued message) has finished. Reported: p50/p99 of each, and their ratios.

Goal: ``/imagine`` p99 ≤ 50 ms and p99 ratio ≤ 2. Note that bolt polls for the ack every 10 ms,
so every command's answer is quantised to that step (the no-op's p50 is that floor).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench._setup import bench_preset, bench_service, scratch_database
from bench.runner import Row, percentile, report

NOOP = "/onbrand-noop"


async def run(queued: int, samples: int) -> None:
    from pydantic import SecretStr
    from slack_bolt.async_app import AsyncAck

    from bots.slack import SlackBot, slack_client
    from core.bootstrap import App
    from core.domain import Actor, Platform, ReplyTarget
    from core.settings import Settings
    from tests.fakes.slack import (
        SIGNING_SECRET,
        TEAM_ID,
        SlackSender,
        running_fake_slack,
        serve_bolt_app,
    )

    async with scratch_database() as db:
        with running_fake_slack() as fake:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                SLACK_BOT_TOKEN=SecretStr(fake.bot_token),
                SLACK_SIGNING_SECRET=SecretStr(SIGNING_SECRET),
                SLACK_API_URL=fake.api_url,
            )
            service = bench_service(db, bench_preset())
            app = App(settings, db, service)

            print(f"queueing {queued} jobs for 50 other users…", flush=True)
            elsewhere = ReplyTarget(Platform.SLACK, TEAM_ID, "C0ELSEWHERE")
            for n in range(queued // 2):
                someone = Actor(Platform.SLACK, TEAM_ID, f"U0BENCH{n % 50:03d}")
                await service.imagine("{a,b} poster", someone, elsewhere)

            bot = SlackBot(app, client=slack_client(settings))

            @bot.bolt.command(NOOP)
            async def noop(ack: AsyncAck) -> None:
                await ack()

            direct: list[float] = []
            me = Actor(Platform.SLACK, TEAM_ID, "U0DIRECT01")
            for _ in range(samples // 2):
                started = time.perf_counter()
                await service.imagine("a sneaker on a beach", me, elsewhere)
                direct.append(time.perf_counter() - started)

            async with serve_bolt_app(bot.bolt) as endpoint:
                sender = SlackSender(endpoint, SIGNING_SECRET, fake)
                imagine: list[float] = []
                noops: list[float] = []
                for i in range(samples + 20):
                    user = f"U0ASKER{i % 10:02d}"
                    sent_imagine = await sender.slash_command("a sneaker --seed 7", user_id=user)
                    await bot.drain()  # its Queued message is posted
                    sent_noop = await sender.slash_command("", command=NOOP, user_id=user)
                    assert sent_imagine.status == sent_noop.status == 200, sent_imagine.body
                    if i >= 20:  # warm-up: bolt's auth.test, connection pools, caches
                        imagine.append(sent_imagine.elapsed)
                        noops.append(sent_noop.elapsed)

    def ms(values: list[float], q: float) -> float:
        return percentile(values, q) * 1000

    rows = [
        Row("imagine ack p50", ms(imagine, 50), "ms", {"queued": queued, "n": len(imagine)}),
        Row("imagine ack p99", ms(imagine, 99), "ms", {"queued": queued}),
        Row("no-op ack p50", ms(noops, 50), "ms", {"n": len(noops)}),
        Row("no-op ack p99", ms(noops, 99), "ms"),
        Row("service.imagine p50 (in-process)", ms(direct, 50), "ms", {"n": len(direct)}),
        Row("service.imagine p99 (in-process)", ms(direct, 99), "ms"),
    ]
    ratios = {
        "imagine/no-op p50": percentile(imagine, 50) / percentile(noops, 50),
        "imagine/no-op p99": percentile(imagine, 99) / percentile(noops, 99),
    }
    verdict = "met" if ms(imagine, 99) <= 50 and ratios["imagine/no-op p99"] <= 2 else "NOT met"
    report(
        "slack-ack",
        rows,
        ratios=ratios,
        notes=f"goal p99 <= 50 ms and p99 ratio <= 2: {verdict}; bolt polls for acks every 10 ms",
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench slack-ack")
    parser.add_argument("--queued", type=int, default=1000, help="jobs waiting (default 1000)")
    parser.add_argument("--samples", type=int, default=200, help="commands of each kind")
    args = parser.parse_args(argv)
    asyncio.run(run(args.queued, args.samples))
    return 0
