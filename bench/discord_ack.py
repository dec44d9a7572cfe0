"""``python -m bench discord-ack``: how fast ``/imagine`` is acknowledged with a full queue.

Real discord.py (the onbrand bot) against the fake Discord on 127.0.0.1, real PostgreSQL. Creates a
scratch database on the server of ``DATABASE_URL`` (else postgres on 127.0.0.1:5432), migrates it,
queues ``--queued`` jobs (1,000) through the service, then dispatches ``--pairs`` pairs of
interactions, alternating ``/imagine`` and a no-op command that only defers, and reads the latency
from INTERACTION_CREATE dispatch to the defer callback reaching the fake (``ack_latency``). Each
interaction is dispatched as soon as the previous one was acknowledged, so the ``/imagine`` work
after the ack (enqueue, Queued message, its recording) overlaps the next acknowledgement, as in a
busy channel. No worker runs: the queue only grows. The database is dropped at the end.

Goal: ``/imagine`` p99 ≤ 50 ms and p99 ratio to the no-op ≤ 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

import discord
from discord import app_commands

from bench._setup import bench_preset, bench_service, scratch_database
from bench.runner import Row, median, percentile, report
from bots.discord import OnbrandBot
from core.domain import Actor, Platform, ReplyTarget
from core.service import Service
from tests.fakes.discord import FakeDiscord, FakeUser, InteractionRecord, run_client, snowflake

PERMUTATIONS = "{a,b,c,d,e,f,g,h}"  # 8 generations per request: the grammar's maximum
GOAL_P99_S = 0.050
GOAL_RATIO = 2.0


class BenchBot(OnbrandBot):
    """The onbrand bot plus ``/noop``, which defers and does nothing else (the yardstick)."""

    def __init__(self, service: Service, **kwargs: Any) -> None:
        super().__init__(service, **kwargs)

        async def noop(interaction: discord.Interaction[OnbrandBot]) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)

        self.tree.add_command(
            app_commands.Command(name="noop", description="Defers, nothing else", callback=noop)
        )


async def _fill_queue(service: Service, guild_id: int, channel_id: int, jobs: int) -> float:
    """Queue ``jobs`` generations (8 per request) by a handful of users; seconds taken."""
    where = ReplyTarget(Platform.DISCORD, str(guild_id), str(channel_id))
    started = time.perf_counter()
    requests = -(-jobs // 8)
    for i in range(requests):
        actor = Actor(Platform.DISCORD, str(guild_id), f"filler-{i % 7}", "Filler")
        count = min(8, jobs - 8 * i)
        options = (
            PERMUTATIONS
            if count == 8
            else "{" + ",".join("x" * (k + 1) for k in range(count)) + "}"
        )
        await service.imagine(f"filler {i} {options} --n 1", actor, where)
    return time.perf_counter() - started


async def _measure(
    fake: FakeDiscord, bot: OnbrandBot, pairs: int, warmup: int
) -> tuple[list[float], list[float]]:
    users = [FakeUser(snowflake(), f"marketer{i}", f"Marketer {i}") for i in range(8)]
    imagine: list[InteractionRecord] = []
    noop: list[InteractionRecord] = []
    for i in range(warmup + pairs):
        for name, records in (("imagine", imagine), ("noop", noop)):
            options = {"prompt": f"a poster, take {i}"} if name == "imagine" else None
            record = await fake.dispatch_slash_command(name, options, user=users[i % len(users)])
            await fake.wait_for(lambda _, r=record: r.callbacks, timeout=10)
            if i >= warmup:
                records.append(record)
    # let the last /imagine handlers finish their Queued messages before the bot closes
    await fake.wait_for(
        lambda _: all(
            r.original is None or r.followups or r.original.id not in fake.messages for r in imagine
        ),
        timeout=30,
    )
    assert bot.is_ready()

    def latencies(records: list[InteractionRecord]) -> list[float]:
        found = [r.ack_latency for r in records]
        missing = sum(1 for f in found if f is None)
        if missing:
            raise RuntimeError(f"{missing} interactions were not acknowledged in time")
        return [f for f in found if f is not None]

    return latencies(imagine), latencies(noop)


async def run(args: argparse.Namespace) -> int:
    async with scratch_database() as db, FakeDiscord() as fake:
        service = bench_service(db, bench_preset())
        bot = BenchBot(service, guild_ids=[fake.guild.id], guild_ready_timeout=0.05)
        channel = fake.guild.channel("campaign-spring").id
        fill_s = await _fill_queue(service, fake.guild.id, channel, args.queued)
        async with run_client(bot, fake):
            imagine, noop = await _measure(fake, bot, args.pairs, args.warmup)
        posted = sum(
            1 for m in fake.messages_in(channel) if any(c.startswith("ob:x:") for c in m.custom_ids)
        )

    ms = 1000.0
    p99_ratio = percentile(imagine, 99) / percentile(noop, 99)
    p50_ratio = median(imagine) / median(noop)
    rows = [
        Row("imagine ack p50", median(imagine) * ms, "ms", {"n": len(imagine)}),
        Row(
            "imagine ack p99",
            percentile(imagine, 99) * ms,
            "ms",
            {"max": f"{max(imagine) * ms:.1f}"},
        ),
        Row("no-op ack p50", median(noop) * ms, "ms", {"n": len(noop)}),
        Row("no-op ack p99", percentile(noop, 99) * ms, "ms", {"max": f"{max(noop) * ms:.1f}"}),
    ]
    met = percentile(imagine, 99) <= GOAL_P99_S and p99_ratio <= GOAL_RATIO
    notes = (
        f"{args.queued} jobs queued before ({fill_s:.1f} s to queue them), "
        f"{posted} Queued messages posted during the run; goal p99 ≤ "
        f"{GOAL_P99_S * ms:.0f} ms and ratio ≤ {GOAL_RATIO:g}: {'met' if met else 'NOT met'}"
    )
    report(
        "discord-ack",
        rows,
        ratios={"imagine/no-op p99": p99_ratio, "imagine/no-op p50": p50_ratio},
        notes=notes,
    )
    return 0 if met else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench discord-ack", description=__doc__)
    parser.add_argument("--queued", type=int, default=1000, help="jobs queued before measuring")
    parser.add_argument("--pairs", type=int, default=300, help="/imagine + no-op pairs timed")
    parser.add_argument("--warmup", type=int, default=20, help="pairs run first, not timed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run(args))
