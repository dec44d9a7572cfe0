"""Health checks shared by ``onbrand doctor`` and the processes' readiness endpoints."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alembic.util.exc import CommandError
from sqlalchemy.exc import SQLAlchemyError

from core.db import Database
from core.db import delivery as delivery_queries
from core.db.migrate import current_revision, head_revision, missing_tables, revisions_behind
from core.errors import ConfigError
from core.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _reason(exc: BaseException) -> str:
    """A one-line reason that never contains a password (asyncpg's messages don't)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text}"


async def check_database(settings: Settings) -> tuple[list[Check], Database | None]:
    from core.bootstrap import open_database

    try:
        db = await open_database(settings, migrate=False)
    except ConfigError as exc:
        return [Check("database", False, str(exc))], None
    try:
        version = await asyncio.wait_for(db.ping(), timeout=15)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:  # unreachable: the finding itself
        await db.dispose()
        where = "DATABASE_URL" if settings.database_url else "the embedded server"
        return [Check("database", False, f"cannot reach {where}: {_reason(exc)}")], None
    checks = [Check("database", True, f"PostgreSQL {version} at {db.display_url}")]
    checks.append(await check_migrations(db))
    if await current_revision(db) == head_revision():
        checks.append(await check_deliveries(db))
        checks.append(await check_search(db, settings.embedder.strip()))
    return checks, db


async def check_search(db: Database, embedder: str = "") -> Check:
    """Keyword search with or without typo tolerance, vectors or not, hashes or not."""
    from core.memory.store import search_features

    ok, detail = await search_features(db, embedder)
    return Check("search", ok, detail)


async def check_deliveries(db: Database, *, days: int = 7) -> Check:
    """Results given up lately (the channel was gone, or every try failed): not a fault of this
    installation, so not unhealthy, but worth a look."""
    count, newest = await delivery_queries.given_up(
        db, since=datetime.now(UTC) - timedelta(days=days), limit=1
    )
    if not count:
        return Check("deliveries", True, f"every result of the last {days} days was posted")
    last = newest[0]
    return Check(
        "deliveries",
        True,
        f"{count} result(s) of the last {days} days never posted; newest: {last.generation_id} "
        f"({last.platform}: {last.reason})",
    )


async def check_migrations(db: Database) -> Check:
    """Where the schema stands. Behind head (a new database included) is healthy: ``run``,
    ``worker`` and ``imagine`` migrate on start. A revision this code doesn't know (a newer
    onbrand migrated it), more than one, or tables missing at head is a real problem."""
    try:
        current = await current_revision(db)
    except (SQLAlchemyError, CommandError) as exc:  # e.g. two rows in alembic_version
        return Check("migrations", False, f"cannot read the schema version: {_reason(exc)}")
    head = head_revision()
    if current == head:
        missing = await missing_tables(db)
        if missing:
            return Check(
                "migrations",
                False,
                f"schema says {head} but tables are missing ({', '.join(missing)}): "
                "restore the database or recreate it",
            )
        return Check("migrations", True, f"schema at head ({head})")
    if current is None:
        return Check(
            "migrations",
            True,
            f"new database: the schema ({head}) is created on first start, or by `onbrand migrate`",
        )
    behind = revisions_behind(current)
    if behind is None:
        return Check(
            "migrations",
            False,
            f"schema at {current}, which this version of onbrand does not know (head is "
            f"{head}): it was migrated by a newer onbrand; upgrade this one",
        )
    return Check(
        "migrations",
        True,
        f"schema at {current}, {behind} revision(s) behind {head}: applied on next start, "
        "or by `onbrand migrate`",
    )


def check_presets(settings: Settings) -> list[Check]:
    """The presets exactly as the processes load them (default preset included)."""
    from core.bootstrap import load_brand_presets

    try:
        presets = load_brand_presets(settings)
    except ConfigError as exc:
        return [Check("presets", False, str(exc))]
    return [Check("presets", True, f"{len(presets)} valid in {settings.presets_dir}")]


def check_adapters(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    if settings.slack_enabled:
        mode_ok = settings.slack_app_token is not None or settings.slack_signing_secret is not None
        mode = "Socket Mode" if settings.slack_app_token else "HTTP mode"
        detail = (
            f"token present, {mode}"
            if mode_ok
            else "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) "
            "nor SLACK_SIGNING_SECRET (HTTP mode) is (an empty value counts as unset): set "
            "SLACK_SIGNING_SECRET to the Signing Secret on the Slack app's Basic Information page"
        )
        checks.append(Check("slack", mode_ok, detail))
    if settings.discord_enabled:
        checks.append(Check("discord", True, "token present"))
    if not checks:
        checks.append(Check("chat adapters", True, "none configured: CLI only"))
    return checks


def check_engines(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    if importlib.util.find_spec("torch") and importlib.util.find_spec("diffusers"):
        checks.append(Check("diffusers engine", True, f"installed, device {settings.device}"))
    else:
        checks.append(
            Check("diffusers engine", False, "not installed: pip install 'onbrand[diffusers]'")
        )
    return checks


def check_matting(settings: Settings) -> list[Check]:
    """The product cut-out: the key-out, or the configured learned model loads."""
    from core.errors import ConfigError
    from core.imaging.matting import OnnxMatter, matter_from_settings

    try:
        matter = matter_from_settings(settings)
    except ConfigError as exc:
        return [Check("product cut-out", False, str(exc))]
    if isinstance(matter, OnnxMatter):
        w, h = matter.size
        return [Check("product cut-out", True, f"ONNX model {matter.folder} loads ({w}×{h})")]
    return [Check("product cut-out", True, "key-out from the borders (no model configured)")]


def check_data_dir(settings: Settings) -> list[Check]:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        writable = os.access(settings.data_dir, os.W_OK)
    except OSError as exc:
        return [Check("data dir", False, f"{settings.data_dir}: {exc.strerror}")]
    return [Check("data dir", writable, f"{settings.data_dir.resolve()}")]


def check_provenance(settings: Settings) -> list[Check]:
    """The C2PA signer signs a test image that reads back intact (the embedded default is made
    on first use)."""
    import io

    from PIL import Image

    from core.provenance.inspect import inspect
    from core.provenance.setup import ProvenanceError, from_settings
    from core.provenance.sign import Facts, sign

    try:
        made = from_settings(settings)
        picture = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 30, 30)).save(picture, "PNG")
        facts = Facts("onbrand doctor", "imagine", "doctor", 1, 0, "doctor", "doctor")
        signed = sign(picture.getvalue(), facts, made.keys)
        state = inspect(signed, made.watermark_secret).credentials.state
    except (ProvenanceError, OSError) as exc:
        return [Check("provenance", False, str(exc))]
    if state not in ("valid", "trusted"):
        return [Check("provenance", False, f"a test signature reads back {state}")]
    who = (
        f"local CA, not publicly trusted (verifiers: --trust {made.keys.trust_anchor})"
        if made.keys.embedded
        else "the operator's certificate"
    )
    return [Check("provenance", True, f"C2PA signing works: {who}")]


async def run_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    db_checks, db = await check_database(settings)
    checks += db_checks
    if db is not None:
        await db.dispose()
    checks += check_presets(settings)
    checks += check_adapters(settings)
    checks += check_engines(settings)
    checks += check_matting(settings)
    checks += check_data_dir(settings)
    checks += check_provenance(settings)
    return checks
