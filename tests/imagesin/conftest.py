"""Images-in fixtures: a 64 px preset on the bundled ``tiny`` model, the service on the real
database with a local image store and the uploads table."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.brand.preset_files import parse_preset
from core.brand.presets import Preset
from core.db import Database
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.domain import Actor, Platform, ReplyTarget
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore

PRESET_YAML = """\
name: shop
brand: Shop
prompt: "{prompt}, studio light"
aspect_ratios: {"1:1": [64, 64], "3:2": [96, 64]}
default_aspect: "1:1"
engine: {kind: diffusers, model: tiny, steps: 4, guidance: 4.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
product: {anchor: bottom, scale: 0.6, margin: 0.06}
"""

ACTOR = Actor(Platform.CLI, "local", "tester", "Tester")
WHERE = ReplyTarget(Platform.CLI, "local", "terminal")


def shop_preset(extra: str = "") -> Preset:
    return parse_preset(PRESET_YAML + extra, "shop.yaml")


@pytest.fixture
def store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


@pytest.fixture
def service(db: Database, store: LocalImageStore) -> Service:
    presets = {"shop": shop_preset(), "locked": parse_preset(
        PRESET_YAML.replace("name: shop", "name: locked")
        + "image_prompt: {iw: 1.0, locked: true}\n",
        "locked.yaml",
    ), "plain": parse_preset(
        PRESET_YAML.replace("name: shop", "name: plain").replace(
            "product: {anchor: bottom, scale: 0.6, margin: 0.06}",
            "product: {allowed: false}\nimage_prompt: {allowed: false}",
        ),
        "plain.yaml",
    )}  # fmt: skip
    return Service(
        sql_uow_factory(db),
        presets,
        ServiceConfig(default_preset="shop"),
        store=store,
        uploads=SqlUploads(db),
    )


def stored_files(store: LocalImageStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file()] if store.root.exists() else []
