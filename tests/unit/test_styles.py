"""Style codes without a database or a model: the code, the preset's ``style:`` section and its
checks at load, ``--style``/``--sw`` in the grammar and against a preset, and what the image's
metadata says about its look."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from core.brand.grammar import parse, render
from core.brand.preset_files import load_preset, parse_preset
from core.brand.presets import apply_preset
from core.brand.styles import style_code
from core.domain import ImagineRequest
from core.errors import GrammarError, LockedSetting, PresetError
from core.imaging.metadata import (
    ImageMetadata,
    encode_png,
    iptc_fields,
    parameter_settings,
    read_parameters,
    read_xmp,
)

PRESETS = Path(__file__).resolve().parents[2] / "presets"
BASE = """\
name: looks
brand: Acme
prompt: "{prompt}"
aspect_ratios: {"1:1": [64, 64]}
default_aspect: "1:1"
engine: {kind: diffusers, model: tiny, steps: 4, guidance: 4.0}
"""


def test_a_style_code_is_stable_order_free_and_changes_with_any_image_or_scope() -> None:
    code = style_code(["a" * 64, "b" * 64], "Acme")
    assert code == style_code(["b" * 64, "a" * 64], "ACME")
    assert len(code) == 10
    assert code.isalnum()
    assert code == code.lower()
    assert code != style_code(["a" * 64, "c" * 64], "Acme")
    assert code != style_code(["a" * 64, "b" * 64], "Rival")
    assert code != style_code(["a" * 64, "b" * 64], "Acme", "slack:T1")


def test_grammar_takes_a_code_an_sref_alias_and_a_weight() -> None:
    (req,) = parse("a cat --style K3V7X2M4QA --sw 250")
    assert (req.style_code, req.style_weight, req.style_raw) == ("k3v7x2m4qa", 250, False)
    (sref,) = parse("a cat --sref k3v7x2m4qa")
    assert sref.style_code == "k3v7x2m4qa"
    assert parse(render(req)) == (req,)
    assert parse("a cat --style raw")[0].style_raw
    for bad, words in [
        ("a cat --style vivid", ["--style “vivid”", "raw", "style code"]),
        ("a cat --sw 1001", ["--sw", "0 to 1000"]),
        ("a cat --sw high", ["--sw “high”", "whole number"]),
    ]:
        with pytest.raises(GrammarError) as caught:
            parse(bad)
        assert all(word in caught.value.user_message for word in words)


def test_the_shipped_styled_example_has_a_code_a_lora_and_bounded_weights() -> None:
    preset = load_preset(PRESETS / "acme-styled.yaml")
    assert preset.style_code is not None
    assert len(preset.style_digests) == 2
    assert preset.lora_sources[0][0].endswith("core/engines/tiny/loras/tiny-brand.safetensors")
    params = apply_preset(ImagineRequest("a cat", style_weight=120), preset, seed_source=lambda: 0)
    assert (params.style_code, params.style_weight) == (preset.style_code, pytest.approx(0.84))
    assert all(ref.startswith("file:") for ref in params.style_refs)
    assert len(params.style_refs) == 2
    with pytest.raises(PresetError, match=r"--sw 200 gives style weight 1\.4.*use --sw 50 to 150"):
        apply_preset(ImagineRequest("a cat", style_weight=200), preset)
    other = apply_preset(ImagineRequest("a cat", style_code="k3v7x2m4qa"), preset)
    assert other.style_code == "k3v7x2m4qa"
    assert other.style_refs == ()  # the service fills them


def test_changing_a_reference_changes_the_code_and_the_version(tmp_path: Path) -> None:
    shutil.copytree(PRESETS / "looks", tmp_path / "looks")
    shutil.copy(PRESETS / "acme-styled.yaml", tmp_path / "acme-styled.yaml")
    shutil.copytree(PRESETS / "logos", tmp_path / "logos")
    before = load_preset(tmp_path / "acme-styled.yaml")
    assert before.style_code == load_preset(PRESETS / "acme-styled.yaml").style_code
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "looks" / "acme-styled" / "rings.png")
    after = load_preset(tmp_path / "acme-styled.yaml")
    assert after.style_code != before.style_code
    assert after.version != before.version


def test_user_codes_and_locks_are_the_preset_s_call() -> None:
    own = parse_preset(BASE + "style: {code: k3v7x2m4qa, weight: 0.5}\n", "own.yaml")
    assert apply_preset(ImagineRequest("x"), own).style_code == "k3v7x2m4qa"
    with pytest.raises(
        LockedSetting, match="allows no other style codes; remove --style abcdefghij"
    ):
        apply_preset(ImagineRequest("x", style_code="abcdefghij"), own)
    locked = parse_preset(BASE + "style: {code: k3v7x2m4qa, locked: true}\n", "locked.yaml")
    with pytest.raises(LockedSetting, match="style is locked"):
        apply_preset(ImagineRequest("x", style_weight=50), locked)
    plain = parse_preset(BASE, "plain.yaml")
    assert apply_preset(ImagineRequest("x"), plain).style_code is None
    with pytest.raises(PresetError, match="no reference style"):
        apply_preset(ImagineRequest("x", style_code="abcdefghij"), plain)


def _write(folder: Path, style: str, engine: str = "") -> Path:
    text = (
        BASE.replace(
            "engine: {kind: diffusers, model: tiny, steps: 4, guidance: 4.0}\n", engine or ""
        )
        if engine
        else BASE
    )
    path = folder / "p.yaml"
    path.write_text(text + style, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("style", "engine", "words"),
    [
        ("style: {references: [nope.png]}\n", "", ["style.references[0]", "nope.png not found"]),
        ("style: {references: [fake.png]}\n", "", ["fake.png is not a PNG, JPEG or WebP"]),
        ("style: {references: [ok.png], code: k3v7x2m4qa}\n", "", ["references or a code"]),
        ("style: {references: [ok.png], weight: 1.5}\n", "", ["inside user_range"]),
        ("style: {code: NOTACODE}\n", "", ["not a style code"]),
        (
            "style: {references: [ok.png]}\n",
            "engine: {kind: openai, steps: 1, guidance: 0}\n",
            ["only the diffusers engine takes reference images"],
        ),
        (
            "style: {references: [ok.png]}\n",
            "engine: {kind: diffusers, model: some/model, steps: 4, guidance: 4.0}\n",
            ["style.adapter", "name the IP-Adapter"],
        ),
        (
            "style: {references: [ok.png], adapter: {model: ./ipa, weight_name: x.safetensors}}\n",
            "",
            ["IP-Adapter weights", "x.safetensors not found"],
        ),
    ],
)
def test_bad_style_sections_are_refused_at_load_with_file_and_line(
    tmp_path: Path, style: str, engine: str, words: list[str]
) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "fake.png").write_bytes(b"GIF89a not really")
    (tmp_path / "ipa").mkdir()
    path = _write(tmp_path, style, engine)
    with pytest.raises(PresetError) as caught:
        load_preset(path)
    message = caught.value.user_message
    assert str(path) in message
    assert all(word in message for word in words), message


def test_parameters_and_xmp_carry_the_loras_and_the_style() -> None:
    meta = ImageMetadata(
        prompt="a cat", negative_prompt="", seed=1, steps=4, guidance=5.0, width=8, height=8,
        model="tiny", preset="looks", preset_version="v1", generation_id="g", index=1,
        engine="diffusers", sampler="DDIM",
        loras=(("brand", 0.8, "0ab873ca2807"), ("hub", 1.0, None)),
        style_code="k3v7x2m4qa", style_weight=0.7,
    )  # fmt: skip
    png = encode_png(Image.new("RGB", (8, 8)), meta)
    parameters = read_parameters(png) or ""
    assert parameters.splitlines()[0] == "a cat <lora:brand:0.8> <lora:hub:1>"
    settings = parameter_settings(parameters)
    assert settings["Lora hashes"] == "brand: 0ab873ca2807"
    assert (settings["Style code"], settings["Style weight"]) == ("k3v7x2m4qa", "0.7")
    assert list(settings)[:2] == ["Steps", "Sampler"]  # still A1111's own order first
    own = iptc_fields(read_xmp(png) or "", namespace="onbrand")
    assert own == {"StyleCode": "k3v7x2m4qa", "StyleWeight": "0.7", "Loras": "brand:0.8; hub:1"}
    plain = encode_png(Image.new("RGB", (8, 8)), ImageMetadata(**{**meta.__dict__, "loras": (),
                       "style_code": None, "style_weight": None}))  # fmt: skip
    assert "Style code" not in (read_parameters(plain) or "")
    assert iptc_fields(read_xmp(plain) or "", namespace="onbrand") == {}
    assert io.BytesIO(png).getbuffer().nbytes > 0


def test_the_status_card_shows_the_style_code_and_weight() -> None:
    import uuid

    from core.cards import status_card
    from core.domain import Generation, GenerationKind, GenerationStatus, Platform, ReplyTarget

    preset = load_preset(PRESETS / "acme-styled.yaml")
    params = apply_preset(ImagineRequest("a cat", style_weight=120), preset, seed_source=lambda: 0)
    where = ReplyTarget(Platform.CLI, "local", "t")
    generation = Generation(
        uuid.uuid4(), GenerationKind.IMAGINE, GenerationStatus.QUEUED, 1, "cli:local:u", "a cat",
        params, where,
    )  # fmt: skip
    fields = dict(status_card(generation).fields)
    assert fields["style"] == f"{preset.style_code} at 0.84"
    plain = dataclasses.replace(generation, params=dataclasses.replace(params, style_code=None))
    assert "style" not in dict(status_card(plain).fields)
