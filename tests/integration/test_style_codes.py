"""Style codes on the real database: register from image files (hostile ones refused before
anything is written), list, use in /imagine (brand and workspace scope), retire; the worker's
reference loading from the image store."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import text

from core.brand.preset_files import parse_preset
from core.brand.styles import style_code
from core.db import Database
from core.db.styles import SqlStyleCodes
from core.db.uow import sql_uow_factory
from core.db.uploads import SqlUploads
from core.domain import Actor, Platform, ReplyTarget, Role
from core.errors import LockedSetting, NotAllowed, NotFound, UserError
from core.imaging.uploads import UploadRefused
from core.jobs.batching import generate_job
from core.jobs.styles import with_style
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore

PRESET = """\
name: {name}
brand: {brand}
prompt: "{{prompt}}"
aspect_ratios: {{"1:1": [64, 64]}}
default_aspect: "1:1"
engine: {{kind: diffusers, model: tiny, steps: 4, guidance: 4.0}}
limits: {{images_per_user_per_day: 1000, queued_per_user: 50}}
"""
STYLE = "style: {weight: 0.6, user_range: [0.3, 0.9], user_codes: true}\n"

ADMIN = Actor(Platform.CLI, "local", "boss", "Boss", frozenset({Role.MEMBER, Role.ADMIN}))
USER = Actor(Platform.SLACK, "T1", "U1", "Ann")
HERE = ReplyTarget(Platform.SLACK, "T1", "C1")
ELSEWHERE_USER = Actor(Platform.SLACK, "T2", "U9", "Bob")
ELSEWHERE = ReplyTarget(Platform.SLACK, "T2", "C9")


def _png(colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


@pytest.fixture
def service(db: Database, store: LocalImageStore) -> Service:
    presets = {
        "styled": parse_preset(PRESET.format(name="styled", brand="Acme") + STYLE, "s.yaml"),
        "fixed": parse_preset(
            PRESET.format(name="fixed", brand="Acme")
            + "style: {weight: 0.6, user_range: [0.3, 0.9], locked: true, user_codes: true}\n",
            "f.yaml",
        ),
        "plain": parse_preset(PRESET.format(name="plain", brand="Acme"), "p.yaml"),
        "rival": parse_preset(PRESET.format(name="rival", brand="Rival") + STYLE, "r.yaml"),
    }
    return Service(
        sql_uow_factory(db),
        presets,
        ServiceConfig(default_preset="styled"),
        store=store,
        uploads=SqlUploads(db),
        styles=SqlStyleCodes(db),
    )


async def _params(db: Database) -> dict[str, object]:
    async with db.engine.connect() as conn:
        row = (await conn.execute(text("SELECT params FROM generations"))).scalar_one()
    assert isinstance(row, dict)
    return row


async def test_create_use_list_retire(
    service: Service, db: Database, store: LocalImageStore
) -> None:
    files = [("teal.png", _png((0, 166, 166))), ("coral.jpg", _png((255, 111, 89), "JPEG"))]
    info, created = await service.create_style(ADMIN, files, brand="acme", label="Spring")
    assert created
    assert info.brand == "Acme"
    assert len(info.references) == 2
    assert info.code == style_code([sha for sha, _ in info.references], "Acme")
    again, created_again = await service.create_style(ADMIN, list(reversed(files)), brand="ACME")
    assert again.code == info.code  # same images, any order: same code
    assert not created_again
    for _, key in info.references:
        assert await store.exists(key)

    await service.imagine(f"a red circle --style {info.code} --sw 150", USER, HERE)
    params = await _params(db)
    assert params["style_code"] == info.code
    assert params["style_weight"] == pytest.approx(0.9)  # 0.6 × 150 / 100
    assert params["style_refs"] == [f"store:{key}" for _, key in info.references]

    # the worker's side: the references come back from the store as pixels
    from core.db.mapping import params_from_json

    job = await with_style(
        generate_job("j", params_from_json(params)), params_from_json(params), store
    )
    assert job.style is not None
    assert job.style.code == info.code
    assert job.style.images[0].getpixel((0, 0)) == (0, 166, 166)

    listed = await service.style_codes(ADMIN, "Acme")
    assert [c.code for c in listed] == [info.code]
    assert await service.style_codes(ADMIN, "Rival") == []

    retired = await service.retire_style(ADMIN, info.code)
    assert retired.retired_at is not None
    assert retired.retired_by == "cli:local:boss"
    with pytest.raises(UserError, match=f"Style code {info.code} was retired"):
        await service.imagine(f"a red circle --style {info.code}", USER, HERE)
    assert await service.style_codes(ADMIN, "Acme") == []
    assert [c.code for c in await service.style_codes(ADMIN, retired=True)] == [info.code]
    revived, created = await service.create_style(ADMIN, files, brand="Acme")
    assert created
    assert revived.retired_at is None


async def test_scope_brand_workspace_and_preset(service: Service, db: Database) -> None:
    acme, _ = await service.create_style(ADMIN, [("a.png", _png((9, 9, 9)))], brand="Acme")
    rival, _ = await service.create_style(ADMIN, [("a.png", _png((9, 9, 9)))], brand="Rival")
    assert acme.code != rival.code  # the brand is part of the code
    with pytest.raises(NotFound, match=f"no style code {rival.code} for Acme"):
        await service.imagine(f"a cat --style {rival.code}", USER, HERE)
    with pytest.raises(NotFound, match="no style code aaaaaaaaaa for Acme"):
        await service.imagine("a cat --style aaaaaaaaaa", USER, HERE)
    with pytest.raises(LockedSetting, match="style is locked by the Acme brand"):
        await service.imagine(f"a cat --style {acme.code} --preset fixed", USER, HERE)
    with pytest.raises(UserError, match="no reference style"):
        await service.imagine(f"a cat --style {acme.code} --preset plain", USER, HERE)
    with pytest.raises(UserError, match="use --sw 50 to 150"):
        await service.imagine(f"a cat --style {acme.code} --sw 200", USER, HERE)

    slack_admin = dataclasses.replace(USER, roles=frozenset({Role.MEMBER, Role.ADMIN}))
    local, _ = await service.create_style(
        slack_admin, [("b.png", _png((1, 2, 3)))], brand="Acme", this_workspace_only=True
    )
    assert local.workspace == ("slack", "T1")
    with pytest.raises(NotFound):
        await service.imagine(f"a cat --style {local.code}", ELSEWHERE_USER, ELSEWHERE)
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM generations"))).scalar_one() == 0
    await service.imagine(f"a cat --style {local.code}", USER, HERE)
    assert (await _params(db))["style_code"] == local.code


async def test_hostile_files_and_people_are_refused_leaving_nothing(
    service: Service, db: Database, store: LocalImageStore
) -> None:
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, "GIF")
    good = ("ok.png", _png((5, 5, 5)))
    with pytest.raises(UploadRefused, match=r"^bad\.gif: .*GIF"):
        await service.create_style(ADMIN, [good, ("bad.gif", gif.getvalue())], brand="Acme")
    with pytest.raises(UploadRefused, match=r"^notes\.txt: "):
        await service.create_style(
            ADMIN, [good, ("notes.txt", b"hello, not an image")], brand="Acme"
        )
    with pytest.raises(UserError, match="1 to 8 reference images"):
        await service.create_style(ADMIN, [], brand="Acme")
    with pytest.raises(NotFound, match="brands are: Acme, Rival"):
        await service.create_style(ADMIN, [good], brand="Nobody")
    with pytest.raises(NotAllowed, match="Only admins can register style codes"):
        await service.create_style(USER, [good], brand="Acme")
    with pytest.raises(NotAllowed):
        await service.retire_style(USER, "aaaaaaaaaa")
    with pytest.raises(NotFound, match="no style code zzzzzzzzzz"):
        await service.retire_style(ADMIN, "zzzzzzzzzz")
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM style_codes"))).scalar_one() == 0
    assert not (store.root.exists() and any(p.is_file() for p in store.root.rglob("*")))


def test_the_cli_registers_lists_and_retires(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """``onbrand style create/retire`` (three processes: listing is the service's, tested above)
    on the shipped presets (brand ACME); a file that is
    not an image is refused with its name and exit code 2."""
    from tests.integration.test_cli import onbrand

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONBRAND_", "SLACK_"))}
    env |= {
        "DATABASE_URL": database_url,
        "ONBRAND_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "COLUMNS": "200",
    }
    (tmp_path / "a.png").write_bytes(_png((0, 166, 166)))
    (tmp_path / "evil.png").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    refused = onbrand("style", "create", str(tmp_path / "evil.png"), "--brand", "ACME", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "evil.png: " in refused.stderr
    made = onbrand("style", "create", str(tmp_path / "a.png"), "--brand", "acme", env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    code = made.stdout.split()[1]
    assert made.stdout.startswith(f"created {code}  ACME: 1 image(s)")
    retired = onbrand("style", "retire", code, env=env)
    assert retired.returncode == 0
    assert retired.stdout.startswith(f"retired {code}  ACME: 1 image(s), retired ")
