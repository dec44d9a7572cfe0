"""The composition root: the one place that turns settings into connected adapters.

Nothing connects at import time; each process calls ``build_app`` once at start and hands the
``App`` (store, engines, deliveries, readiness) to its adapters, processes and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.brand.preset_files import load_presets
from core.brand.presets import Preset
from core.db import Database, resolve_database_url
from core.db.migrate import head_revision, upgrade
from core.db.outage import fault_of
from core.delivery.sweep import Delivery
from core.domain import Platform
from core.errors import ConfigError, DatabaseUnavailable, PresetError
from core.ops.readiness import Readiness
from core.ports import ChatSink, Embedder, ImageStore
from core.service import Service
from core.service.base import ServiceConfig
from core.settings import Settings

if TYPE_CHECKING:
    from core.jobs.worker import Worker
    from core.ops.metrics import InstrumentedEngines


async def open_database(settings: Settings, *, migrate: bool = True) -> Database:
    """Connect to ``DATABASE_URL`` (or start the embedded server) and optionally migrate."""
    try:
        url = resolve_database_url(settings)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ConfigError(f"database: {exc}") from exc
    db = Database(url)
    if migrate:
        try:
            await upgrade(db)
        except Exception as exc:  # an unreachable database is said in one line, not a traceback
            await db.dispose()
            if fault_of(exc) is None:
                raise
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            raise DatabaseUnavailable(
                f"The database at {db.display_url} can't be reached ({reason}), so nothing was "
                "done. Start it or fix DATABASE_URL, then try again."
            ) from None
    return db


async def migrate_database(settings: Settings) -> str | None:
    """Bring the schema to head (``onbrand migrate``); the head revision."""
    db = await open_database(settings)
    await db.dispose()
    return head_revision()


def load_brand_presets(settings: Settings) -> dict[str, Preset]:
    try:
        presets = load_presets(settings.presets_dir)
    except PresetError as exc:
        raise ConfigError(f"presets in {settings.presets_dir}:\n{exc.user_message}") from exc
    except OSError as exc:
        raise ConfigError(f"presets directory {settings.presets_dir}: {exc.strerror}") from exc
    if not presets:
        raise ConfigError(f"no presets in {settings.presets_dir} (set ONBRAND_PRESETS_DIR)")
    if settings.default_preset not in presets:
        raise ConfigError(
            f"ONBRAND_DEFAULT_PRESET={settings.default_preset} is not one of: "
            f"{', '.join(sorted(presets))}"
        )
    return presets


def service_config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(
        default_preset=settings.default_preset,
        global_banned=tuple(settings.banned_terms),
        admins=frozenset(settings.admins),
        reviewers=frozenset(settings.reviewers),
    )


@dataclass
class App:
    """What one process shares: settings, database, service, image store, engines (built when
    first asked for, metrics-wrapped), the result deliveries of its chat adapters, and its
    readiness (what ``/readyz`` answers)."""

    settings: Settings
    db: Database
    service: Service
    store: ImageStore
    readiness: Readiness = field(default_factory=Readiness)
    deliveries: dict[Platform, Delivery] = field(default_factory=dict)
    embedder: Embedder | None = None  # vector search (ONBRAND_EMBEDDER), shared with search

    @cached_property
    def engines(self) -> InstrumentedEngines:
        return build_engines(self.settings)

    def delivery(self, sink: ChatSink, *, sweep_interval_s: float = 10.0) -> Delivery:
        """The result delivery to ``sink``'s platform (one per platform and process)."""
        delivery = Delivery(
            self.db, self.service, self.store, sink, sweep_interval_s=sweep_interval_s
        )
        self.deliveries[sink.platform] = delivery
        return delivery

    async def close(self) -> None:
        await self.db.dispose()


async def build_app(settings: Settings, *, migrate: bool = True) -> App:
    """Database (migrated), presets, image store and the service, wired once per process."""
    from core.db.packs import SqlPacks
    from core.db.styles import SqlStyleCodes
    from core.db.uow import sql_uow_factory
    from core.db.uploads import SqlUploads
    from core.delivery.bundle import report_source
    from core.imaging.matting import matter_from_settings

    presets = load_brand_presets(settings)
    store = build_store(settings)
    matter = matter_from_settings(settings)  # a bad ONBRAND_MATTING_MODEL fails here, at start
    db = await open_database(settings, migrate=migrate)
    from core.memory.embedder import build_embedder
    from core.memory.store import MemoryStore

    reports = report_source(db, store)
    embedder = build_embedder(settings)
    service = Service(
        sql_uow_factory(db),
        presets,
        service_config(settings),
        reports=reports,
        store=store,
        uploads=SqlUploads(db),
        memory=MemoryStore(db, store, embedder=embedder),
        packs=SqlPacks(db),
        styles=SqlStyleCodes(db),
        matter=matter,
    )
    return App(settings, db, service, store, embedder=embedder)


def build_store(settings: Settings) -> ImageStore:
    """The image store: ``s3://bucket/prefix`` (S3-compatible) or a local directory (the data
    dir's ``images`` unless ``file:///path``). A distributed deployment needs shared storage."""
    from core.storage.local import LocalImageStore

    url = settings.image_store.strip()
    if url.startswith("s3://"):
        from core.storage.s3 import S3ImageStore, parse_s3_url

        try:
            bucket, prefix = parse_s3_url(url)
        except ValueError as exc:
            raise ConfigError(f"ONBRAND_IMAGE_STORE: {exc}") from exc
        key_id, secret = settings.aws_access_key_id, settings.aws_secret_access_key
        return S3ImageStore(
            bucket,
            prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.aws_region,
            access_key_id=key_id.get_secret_value() if key_id else None,
            secret_access_key=secret.get_secret_value() if secret else None,
        )
    if url and not url.startswith("file://"):
        raise ConfigError(
            f"ONBRAND_IMAGE_STORE={url}: expected s3://bucket/prefix (S3, MinIO, R2), "
            "file:///path, or unset for the data dir"
        )
    if settings.deployment == "distributed":
        raise ConfigError(
            "ONBRAND_DEPLOYMENT=distributed needs image storage that bots and workers share, "
            f"but images would go to a local directory ({url or settings.images_dir}). "
            "Set ONBRAND_IMAGE_STORE=s3://bucket/prefix (plus AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_REGION and, for MinIO or R2, ONBRAND_S3_ENDPOINT_URL), "
            "or ONBRAND_DEPLOYMENT=single when everything runs on one machine."
        )
    root = url.removeprefix("file://") or str(settings.images_dir)
    return LocalImageStore(Path(root))


def build_engines(settings: Settings) -> InstrumentedEngines:
    """The engines by kind, each call timed into the metrics (nothing heavy is imported)."""
    from core.engines.registry import EngineRegistry
    from core.ops.metrics import InstrumentedEngines

    openai: dict[str, Any] = {}
    if settings.openai_api_key is not None:
        openai["api_key"] = settings.openai_api_key.get_secret_value()
    if settings.openai_base_url:
        openai["base_url"] = settings.openai_base_url
    registry = EngineRegistry({"diffusers": {"device": settings.device}, "openai": openai})
    return InstrumentedEngines(registry)


def build_worker(app: App, *, one_shot: bool = False, **overrides: Any) -> Worker:
    """The worker of ``app``. ``one_shot``: for a command that makes its images and exits, which
    finishes them in threads unless ``ONBRAND_FINISHING_PROCESSES`` says otherwise (starting
    the finishing processes costs about a second each; a serving worker pays it once)."""
    from core.jobs import finishers
    from core.jobs.worker import Worker, WorkerConfig
    from core.provenance import setup as provenance

    settings = app.settings
    provenance.configure(provenance.provenance_of(settings))  # finishing signs with these
    processes = settings.finishing_processes
    finishers.configure(0 if processes is None and one_shot else processes)
    max_batch = settings.max_batch or (8 if _has_cuda() else 4)
    config = WorkerConfig(
        max_batch=overrides.get("max_batch") or max_batch,
        batch_window_s=(overrides.get("batch_window_ms") or settings.batch_window_ms) / 1000,
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
        max_attempts=settings.max_attempts,
    )
    return Worker(app.db, app.engines, app.store, app.service.presets, config)


def _has_cuda() -> bool:
    """True when torch is installed and sees a CUDA device (without importing torch otherwise)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
