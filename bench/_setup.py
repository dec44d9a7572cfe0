"""Shared set-up for the benchmarks: a scratch database, the service and workers around it."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg

from core.brand.preset_files import parse_preset
from core.brand.presets import Preset
from core.db import Database, plain_url
from core.db.migrate import upgrade
from core.db.uow import sql_uow_factory
from core.domain import Actor, Platform, ReplyTarget
from core.service import Service
from core.service.base import ServiceConfig

DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
HERE = ReplyTarget(Platform.CLI, "bench", "bench")


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[Database]:
    """A migrated database of its own on the test server, dropped afterwards."""
    admin_url = plain_url(os.environ.get("DATABASE_URL") or DEFAULT_ADMIN)
    name = f"onbrand_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_url.partition("?")
    db = Database(f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else ""))
    try:
        await upgrade(db)
        yield db
    finally:
        await db.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def bench_preset(
    *,
    engine: str = "fake",
    model: str = "fake-1",
    size: int = 64,
    steps: int = 1,
    guidance: float = 5.0,
) -> Preset:
    return parse_preset(
        f"""
name: bench
brand: Bench
prompt: "{{prompt}}"
aspect_ratios: {{"1:1": [{size}, {size}]}}
default_aspect: "1:1"
engine: {{kind: {engine}, model: {json.dumps(model)}, steps: {steps}, guidance: {guidance}}}
limits: {{images_per_user_per_day: 1000000, queued_per_user: 1000000}}
"""
    )


def bench_service(db: Database, preset: Preset) -> Service:
    return Service(sql_uow_factory(db), {preset.name: preset}, ServiceConfig(preset.name))


def bench_actor(i: int) -> Actor:
    return Actor(Platform.CLI, "bench", f"user-{i % 16}")


PROMPTS = (
    "red circle on blue background",
    "green square on yellow background",
    "white triangle on black background",
    "orange star on purple background",
)


def model_source(model: str) -> str:
    """``tiny`` → the bundled checkpoint's folder; a folder → its absolute path; else as given."""
    from core.engines.pipelines import resolve_model

    return resolve_model(model)
