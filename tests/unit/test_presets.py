"""Preset files: loading, precise validation errors, versions, and apply_preset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from core.brand.preset_files import load_preset, load_presets, parse_preset, validate_files
from core.brand.presets import DEFAULT_MODELS, Preset, apply_preset
from core.domain import ImagineRequest, Params
from core.errors import BlockedPrompt, LockedSetting, PresetError

PRESETS = Path(__file__).resolve().parents[2] / "presets"

GOOD = """\
name: test-brand
brand: Testco
description: A test look
prompt: "{prompt}, Testco style"
negative_prompt: "text, blurry"
banned_terms: [nike, "coca cola"]
aspect_ratios: {"1:1": [128, 128], "16:9": [144, 80]}
default_aspect: "1:1"
engine: {kind: fake, model: tiny, steps: 8, guidance: 5.0}
locked: [engine, negative_prompt, steps]
palette: ["#00A6A6", "#ff6f59"]
limits: {images_per_user_per_day: 10, queued_per_user: 2}
"""


def problems_of(text: str) -> str:
    with pytest.raises(PresetError) as info:
        parse_preset(text, "p.yaml")
    return info.value.user_message


def preset(text: str = GOOD, **replace: str) -> Preset:
    for old, new in replace.items():
        text = text.replace(old, new)
    return parse_preset(text)


# --- shipped presets ---------------------------------------------------------------------------


def test_shipped_presets_load_and_are_valid() -> None:
    presets = load_presets(PRESETS)
    assert {"acme-spring", "northwind-coffee"} <= set(presets)
    assert validate_files([PRESETS]) == []
    for p in presets.values():
        assert p.prompt.startswith("{prompt}")  # the tiny model reads the user's words first
        assert p.logo_path is not None
        assert p.logo_path.is_file()
        assert len(p.version) == 12
        assert p.source_path is not None
        assert p.source_text


def test_acme_spring_matches_the_quick_start() -> None:
    acme = load_preset(PRESETS / "acme-spring.yaml")
    assert acme.brand == "ACME"
    assert acme.engine.kind == "diffusers"
    assert acme.engine.model == "tiny"
    assert acme.aspect_ratios["1:1"] == (128, 128)
    assert set(acme.locked) == {"engine", "negative_prompt", "steps"}


# --- validation errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("name: test-brand", "name: Test_Brand", "p.yaml:1: name: 'Test_Brand' is not a valid"),
        ('"{prompt}, Testco style"', '"Testco style"', "p.yaml:4: prompt: must contain {prompt}"),
        ('"{prompt}, Testco style"', '"{prompt} {prompt}"', "exactly once (found 2)"),
        (
            'default_aspect: "1:1"',
            'default_aspect: "4:5"',
            "p.yaml:8: default_aspect: '4:5' is not one of aspect_ratios (1:1, 16:9)",
        ),
        (
            "[144, 80]",
            "[144, 81]",
            "p.yaml:7: aspect_ratios.16:9: size 144x81 is not allowed; width and height must be "
            "multiples of 8",
        ),
        ("[144, 80]", "[144, 144]", "16:9: size 144x144 has ratio 1.000"),
        ("[144, 80]", "[144]", "aspect_ratios.16:9: must be [width, height]"),
        ('"16:9"', '"wide"', "aspect_ratios.wide: 'wide' is not an aspect ratio; write it as W:H"),
        (
            "brand: Testco",
            "brand: Testco\ncolour: teal",
            "p.yaml:3: colour: unknown key 'colour'; allowed keys here: name, brand, description,",
        ),
        (
            "guidance: 5.0}",
            "guidance: 5.0, sampler: ddim}",
            "engine.sampler: unknown key 'sampler'; allowed keys here: kind, model, steps, "
            "guidance, strength, upscaler",
        ),
        ("kind: fake", "kind: torch", "engine.kind: Input should be 'diffusers', 'openai' or"),
        (
            "kind: fake, model: tiny",
            "kind: openai, model: gpt-image-1",
            "p.yaml:9: engine.model: 'gpt-image-1' was shut down by OpenAI on 2026-10-23; name a "
            "current model such as 'gpt-image-2.5-sunburst', or leave model out",
        ),
        ("kind: fake, model: tiny", "kind: diffusers", "engine.model: is required but missing"),
        (
            '"#ff6f59"',
            '"teal"',
            "p.yaml:11: palette: 'teal' not a colour; write colours as #RRGGBB",
        ),
        (
            "locked: [engine, negative_prompt, steps]",
            "locked: [engine, colour]",
            "p.yaml:10: locked[1]: 'colour' cannot be locked; lockable settings: engine, "
            "negative_prompt, steps, aspect, seed, n, style",
        ),
        ("locked: [engine, negative_prompt, steps]", "locked: [n, n]", "lists n more than once"),
        ("brand: Testco\n", "", "brand: is required but missing"),
        ("banned_terms: [nike", 'banned_terms: ["!!!", nike', "'!!!' has no letters or digits"),
        ("name: test-brand", "name: test-brand\nversion: abc", "version: is set by onbrand"),
        ("brand: Testco", "brand: Testco\nbrand: Other", "p.yaml:3: invalid YAML: key 'brand' is"),
        ("brand: Testco", "brand: [Testco", "p.yaml:3: invalid YAML: expected ',' or ']'"),
    ],
)
def test_each_schema_error_is_precise(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert expected in problems_of(GOOD.replace(old, new))


def test_an_openai_preset_without_a_model_gets_the_current_default() -> None:
    preset = parse_preset(GOOD.replace("kind: fake, model: tiny", "kind: openai"), "p.yaml")
    assert preset.engine.model == DEFAULT_MODELS["openai"]
    named = parse_preset(GOOD.replace("kind: fake, model: tiny", "kind: openai, model: x"), "p")
    assert named.engine.model == "x"


def test_all_problems_are_listed_at_once() -> None:
    bad = GOOD.replace("name: test-brand", "name: X").replace("kind: fake", "kind: torch")
    message = problems_of(bad.replace('"#ff6f59"', '"teal"'))
    assert message.startswith("Invalid preset (3 problems):")
    assert "name:" in message
    assert "engine.kind" in message
    assert "palette" in message


def test_a_preset_must_be_a_mapping() -> None:
    assert "must be a YAML mapping" in problems_of("- just\n- a list\n")


def test_version_is_a_content_hash() -> None:
    a, b = preset(), preset(**{"description: A test look": "description: Another look"})
    assert a.version != b.version
    assert len(a.version) == 12
    assert preset().version == a.version
    assert int(a.version, 16) >= 0


def test_validate_files_reports_every_file_and_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    (tmp_path / "c.yaml").write_text(GOOD.replace("name: test-brand", "name: BAD"))
    (tmp_path / "d.yaml").write_text(
        GOOD.replace("name: test-brand", "name: with-logo")
        + "watermark: {logo: logos/missing.png, position: bottom-right}\n"
    )
    problems = validate_files([tmp_path])
    assert len(problems) == 3
    assert problems[0].startswith(f"{tmp_path / 'b.yaml'}: name: preset name 'test-brand'")
    assert problems[1].startswith(f"{tmp_path / 'c.yaml'}:1: name:")
    assert problems[2].startswith(f"{tmp_path / 'd.yaml'}:13: watermark.logo: file")
    with pytest.raises(PresetError, match="3 problems"):
        load_presets(tmp_path)


def test_validating_a_folder_without_presets_is_a_problem_not_a_pass(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a preset")
    (tmp_path / "nested.yaml").mkdir()  # a folder named like a preset is not one
    problems = validate_files([tmp_path])
    assert problems == [
        f"{tmp_path}: holds no preset files (*.yaml, *.yml); is this the right folder?"
    ]
    (tmp_path / "a.yaml").write_text(GOOD)
    assert validate_files([tmp_path]) == []


def test_load_preset_resolves_the_logo_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "logos").mkdir()
    Image.new("RGBA", (8, 4), (255, 0, 0, 255)).save(tmp_path / "logos" / "x.png")
    path = tmp_path / "x.yaml"
    path.write_text(GOOD + "watermark: {logo: logos/x.png}\n")
    loaded = load_preset(path)
    assert loaded.logo_path == tmp_path / "logos" / "x.png"
    assert loaded.watermark is not None
    assert loaded.watermark.position == "bottom-right"
    with pytest.raises(PresetError, match="cannot read"):
        load_preset(tmp_path / "nope.yaml")


# --- apply_preset --------------------------------------------------------------------------------


def apply(
    request: ImagineRequest,
    p: Preset | None = None,
    *,
    global_banned: Sequence[str] = (),
) -> Params:
    return apply_preset(request, p or preset(), global_banned=global_banned, seed_source=lambda: 42)


def test_apply_happy_path() -> None:
    p = preset()
    params = apply(ImagineRequest("red circle on blue background", aspect="16:9"), p)
    assert params == Params(
        prompt="red circle on blue background, Testco style",
        negative_prompt="text, blurry",
        width=144,
        height=80,
        steps=8,
        guidance=5.0,
        seed=42,
        n=4,
        engine="fake",
        model="tiny",
        preset="test-brand",
        preset_version=p.version,
        strength=0.6,
        upscaler=None,
    )


def test_apply_uses_request_values_when_unlocked() -> None:
    p = preset(**{"locked: [engine, negative_prompt, steps]": "locked: []"})
    params = apply(ImagineRequest("cat", seed=7, n=2, steps=3, no=("dogs", " rain ")), p)
    assert (params.seed, params.n, params.steps) == (7, 2, 3)
    assert params.negative_prompt == "text, blurry, dogs, rain"
    assert (params.width, params.height) == (128, 128)


def test_default_seed_source_is_random_and_32_bit() -> None:
    seeds = {apply_preset(ImagineRequest("cat"), preset()).seed for _ in range(5)}
    assert len(seeds) > 1
    assert all(0 <= s < 2**32 for s in seeds)


def test_aspect_not_offered_lists_the_allowed_ones() -> None:
    with pytest.raises(PresetError, match=r"Aspect ratio 9:16 .* use one of: 1:1, 16:9\."):
        apply(ImagineRequest("cat", aspect="9:16"))


def test_locked_steps() -> None:
    with pytest.raises(LockedSetting, match="locked by the Testco brand") as info:
        apply(ImagineRequest("cat", steps=20))
    assert "--steps" in info.value.user_message
    assert apply(ImagineRequest("cat", steps=8)).steps == 8  # asking for the locked value is fine


def test_locked_negative_prompt_refuses_no() -> None:
    with pytest.raises(LockedSetting, match="negative prompt is locked by the Testco brand"):
        apply(ImagineRequest("cat", no=("dogs",)))


@pytest.mark.parametrize(
    ("lock", "request_", "flag"),
    [
        ("seed", ImagineRequest("cat", seed=1), "--seed"),
        ("n", ImagineRequest("cat", n=2), "--n"),
        ("aspect", ImagineRequest("cat", aspect="16:9"), "--ar"),
        ("style", ImagineRequest("cat", style_raw=True), "--style raw"),
    ],
)
def test_other_locks(lock: str, request_: ImagineRequest, flag: str) -> None:
    p = preset(**{"locked: [engine, negative_prompt, steps]": f"locked: [{lock}]"})
    with pytest.raises(LockedSetting, match="Testco") as info:
        apply(request_, p)
    assert flag in info.value.user_message


def test_apply_runs_the_preset_it_is_given_whatever_the_request_names() -> None:
    # Choosing the preset (--preset, the channel's binding, a locked binding) is the service's
    # job: tests/unit/test_service.py test_a_locked_binding_refuses_other_presets_and_campaigns.
    assert apply(ImagineRequest("cat", preset="other")).preset == "test-brand"


def test_banned_term_in_prompt() -> None:
    with pytest.raises(BlockedPrompt) as info:
        apply(ImagineRequest("a N.I.K.E shoe on a beach"))
    assert info.value.term == "nike"


def test_banned_term_in_no() -> None:
    p = preset(**{"locked: [engine, negative_prompt, steps]": "locked: []"})
    with pytest.raises(BlockedPrompt) as info:
        apply(ImagineRequest("cat", no=("coca-cola",)), p)
    assert info.value.term == "coca cola"


def test_global_banned_terms_apply_too() -> None:
    with pytest.raises(BlockedPrompt) as info:
        apply(ImagineRequest("a gun"), global_banned=["gun"])
    assert info.value.term == "gun"


def test_style_raw_uses_just_the_prompt() -> None:
    params = apply(ImagineRequest("  red circle  ", style_raw=True))
    assert params.prompt == "red circle"
    assert params.negative_prompt == "text, blurry"  # the negative prompt still applies
