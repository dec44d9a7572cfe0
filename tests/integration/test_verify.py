"""Signed, watermarked originals from the worker on real PostgreSQL, verified back: in process
(an upscale of a variation carries its whole lineage) and as a user runs ``onbrand verify``."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path

import pytest
from PIL import Image

from core.brand.preset_files import parse_preset
from core.db import Database
from core.db.uow import sql_uow_factory
from core.domain import Action, ActionKind, Actor, Platform, ReplyTarget, Role
from core.engines.fake import FakeEngine
from core.engines.registry import EngineRegistry
from core.imaging.metadata import read_parameters
from core.jobs.finishing import CONFIDENTIAL
from core.jobs.worker import Worker, WorkerConfig
from core.provenance import setup
from core.reports.queries import pseudonym
from core.service import Service
from core.service.base import ServiceConfig
from core.service.verify import verify
from core.storage.local import LocalImageStore
from tests.integration.test_cli import env, onbrand  # noqa: F401  (env is a fixture)
from tests.integration.test_png_info import originals
from tests.unit.test_provenance import assemble, chunks

pytestmark = pytest.mark.integration

PRESET_TEXT = """
name: prov-brand
brand: Test
prompt: "{prompt}"
aspect_ratios: {"1:1": [128, 128]}
default_aspect: "1:1"
engine: {kind: fake, model: fake-1, steps: 3, guidance: 5.0}
limits: {images_per_user_per_day: 1000, queued_per_user: 50}
"""
PRESET = parse_preset(PRESET_TEXT)
HERE = ReplyTarget(Platform.SLACK, "T1", "C9")
ANN = Actor(Platform.SLACK, "T1", "ann", "ann")


async def test_an_upscale_of_a_variation_verifies_with_its_lineage(
    db: Database, tmp_path: Path, provenance: setup.Provenance
) -> None:
    service = Service(sql_uow_factory(db), {PRESET.name: PRESET}, ServiceConfig(PRESET.name))
    store = LocalImageStore(tmp_path / "images")
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    worker = Worker(db, engines, store, {PRESET.name: PRESET}, WorkerConfig(batch_window_s=0.01))

    (first,) = (await service.imagine("a red circle --seed 1 --n 2", ANN, HERE)).generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=30)
    (varied,) = (await service.act(Action(ActionKind.VARY, first, 2).custom_id, ANN)).generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=30)
    (big,) = (
        await service.act(Action(ActionKind.UPSCALE, varied, 1).custom_id, ANN)
    ).generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=30)

    for gid in (first, varied):
        for png in await originals(db, store, gid):
            assert (await verify(db, provenance, png)).evidence.credentials.state == "trusted"
    (upscaled,) = await originals(db, store, big)
    result = await verify(db, provenance, upscaled)
    assert (result.verdict, result.how) == ("ours", "signature")
    cred = result.evidence.credentials
    assert cred.actions == ("c2pa.opened", "c2pa.resized")
    assert cred.ingredients == (f"onbrand {varied}#1", f"onbrand {first}#2")
    (record,) = result.records
    assert (record.generation_id, record.kind) == (big, "upscale")
    assert record.lineage == (f"variation {varied}#1", f"imagine {first}#2")

    edited = [
        (t, d.replace(b"onbrand", b"0nbrand")) if t == b"iTXt" else (t, d)
        for t, d in chunks(upscaled)
    ]
    tampered = await verify(db, provenance, assemble(edited))
    assert tampered.verdict == "tampered"
    assert not tampered.verified

    stripped = io.BytesIO()
    Image.open(io.BytesIO(upscaled)).convert("RGB").save(stripped, "JPEG", quality=80)
    by_mark = await verify(db, provenance, stripped.getvalue())
    assert (by_mark.verdict, by_mark.how) == ("ours", "watermark")
    assert by_mark.evidence.credentials.state == "absent"
    assert by_mark.records[0].generation_id == big


def test_onbrand_verify_on_the_embedded_defaults(
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "prov-brand.yaml").write_text(PRESET_TEXT)
    env = env | {"ONBRAND_PRESETS_DIR": str(presets), "ONBRAND_DEFAULT_PRESET": "prov-brand"}
    made = onbrand("imagine", "a blue square --n 1 --seed 3", "--out", str(tmp_path / "o"), env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    original = Path(made.stdout.split()[0])
    gid = original.parent.name
    ca = Path(env["ONBRAND_DATA_DIR"]) / "provenance" / "ca.pem"

    stripped = tmp_path / "stripped.jpg"
    Image.open(original).convert("RGB").save(stripped, quality=85)  # no metadata left
    foreign = tmp_path / "foreign.png"
    Image.new("RGB", (128, 128), (10, 200, 30)).save(foreign)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")

    ok = onbrand("verify", str(original), str(stripped), "--trust", str(ca), "--json", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    found = json.loads(ok.stdout)
    assert found[str(original)]["c2pa"]["state"] == "trusted"
    assert found[str(original)]["records"][0]["generation_id"] == gid
    assert found[str(stripped)]["how"] == "watermark"
    assert found[str(stripped)]["records"][0]["generation_id"] == gid

    shown = onbrand("verify", str(original), str(foreign), str(junk), env=env)
    assert shown.returncode == 2, shown.stdout + shown.stderr  # one file was unreadable
    text = " ".join(shown.stdout.split())
    assert f"generation {gid} #1" in text
    assert f"{foreign}: not ours" in text
    assert "not a PNG, JPEG or WebP" in shown.stderr
    assert "Traceback" not in shown.stderr
    assert uuid.UUID(gid)


async def test_the_prompt_travels_only_when_the_campaign_allows(
    db: Database, tmp_path: Path, provenance: setup.Provenance
) -> None:
    service = Service(sql_uow_factory(db), {PRESET.name: PRESET}, ServiceConfig(PRESET.name))
    store = LocalImageStore(tmp_path / "images")
    engines = EngineRegistry()
    engines.put("fake", FakeEngine())
    worker = Worker(db, engines, store, {PRESET.name: PRESET}, WorkerConfig(batch_window_s=0.01))
    admin = Actor(Platform.SLACK, "T1", "boss", "boss", frozenset({Role.ADMIN}))
    await service.create_campaign(admin, "open-launch", PRESET.name, share_prompt=True)
    await service.create_campaign(admin, "secret-launch", PRESET.name)
    (shared,) = (
        await service.imagine("a blue lake --campaign open-launch --n 1", ANN, HERE)
    ).generation_ids
    (kept,) = (
        await service.imagine("a red lake --campaign secret-launch --n 1", ANN, HERE)
    ).generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=30)

    (open_png,) = await originals(db, store, shared)
    iptc = (await verify(db, provenance, open_png)).evidence.iptc
    assert iptc["AIPromptInformation"] == "a blue lake"
    assert iptc["AIPromptWriterName"] == pseudonym("slack", "T1", "ann")
    (secret_png,) = await originals(db, store, kept)
    result = await verify(db, provenance, secret_png)
    assert "AIPromptInformation" not in result.evidence.iptc
    assert "AIPromptWriterName" not in result.evidence.iptc
    assert result.records[0].campaign == "secret-launch"
    # nor in the A1111 parameters, which every PNG reader shows (the shared one keeps it)
    assert read_parameters(open_png).startswith("a blue lake")
    secret = read_parameters(secret_png) or ""
    assert "red lake" not in secret
    assert secret.startswith(CONFIDENTIAL)
    assert "Seed: " in secret  # the rest of the settings still travel
    # a variation of the confidential image keeps it confidential
    vary = Action(ActionKind.VARY, kept, 1).custom_id
    (variation,) = (await service.act(vary, ANN, HERE)).generation_ids
    await asyncio.wait_for(worker.run(drain=True), timeout=30)
    for png in await originals(db, store, variation):
        assert "red lake" not in (read_parameters(png) or "")
