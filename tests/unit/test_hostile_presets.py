"""Hostile preset files: logos outside the folder or not images, decompression bombs, YAML bombs.

Each is refused at load and by ``presets validate`` with a ``file:line: key: problem`` message,
quickly and without decoding pixels; the worker checks the logo again before each use and decodes
it once per process.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import uuid
import zlib
from pathlib import Path

import pytest
from PIL import Image

from core.brand.logo import MAX_LOGO_BYTES, MAX_LOGO_SIDE
from core.brand.preset_files import (
    MAX_PRESET_BYTES,
    MAX_YAML_VALUES,
    load_preset,
    load_presets,
    parse_preset,
    validate_files,
)
from core.brand.presets import Preset
from core.db.jobs import StartedJob
from core.domain import GenerationKind, Params
from core.errors import PresetError
from core.jobs.finishing import finish_image, watermark_logo

GOOD = """\
name: test-brand
brand: Testco
prompt: "{prompt}, Testco style"
aspect_ratios: {"1:1": [128, 128]}
default_aspect: "1:1"
engine: {kind: fake, model: tiny, steps: 8, guidance: 5.0}
"""
LOGO_LINE = 7  # the line of ``watermark:`` in GOOD + a watermark line


def png(size: tuple[int, int] = (40, 20), colour: tuple[int, ...] = (255, 0, 0, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, colour).save(out, format="PNG")
    return out.getvalue()


def with_logo(folder: Path, logo: str, name: str = "brand.yaml") -> Path:
    path = folder / name
    path.write_text(
        GOOD + f"watermark: {{logo: {logo!r}, position: top-left, scale: 0.5, opacity: 1.0}}\n"
    )
    return path


def only_problem(path: Path) -> str:
    problems = validate_files([path])
    assert len(problems) == 1, problems
    with pytest.raises(PresetError):
        load_preset(path)
    with pytest.raises(PresetError):
        load_presets(path.parent)
    return problems[0]


@pytest.fixture
def presets(tmp_path: Path) -> Path:
    folder = tmp_path / "presets"
    (folder / "logos").mkdir(parents=True)
    (folder / "logos" / "brand.png").write_bytes(png())
    return folder


# --- where a logo may live ---------------------------------------------------------------------


def test_a_logo_inside_the_folder_is_accepted(presets: Path) -> None:
    (presets / "logos" / "same.png").symlink_to(presets / "logos" / "brand.png")
    for logo in ("logos/brand.png", "./logos/../logos/brand.png", "logos/same.png"):
        path = with_logo(presets, logo)
        assert validate_files([path]) == []
        assert load_preset(path).watermark is not None


@pytest.mark.parametrize("logo", ["../../../../etc/passwd", "logos/../../outside.png"])
def test_a_logo_up_and_out_of_the_folder_is_refused(presets: Path, logo: str) -> None:
    (presets.parent / "outside.png").write_bytes(png())
    path = with_logo(presets, logo)
    assert only_problem(path) == (
        f"{path}:{LOGO_LINE}: watermark.logo: {logo!r} leads outside the preset folder; put the "
        "logo inside the folder of the preset file (e.g. logos/brand.png) and name it relative "
        "to it"
    )


@pytest.mark.parametrize("logo", ["/etc/passwd", "~/logo.png"])
def test_an_absolute_logo_path_is_refused(presets: Path, logo: str) -> None:
    problem = only_problem(with_logo(presets, logo))
    assert f"watermark.logo: {logo!r} is an absolute path; give a path relative" in problem


def test_a_symlink_out_of_the_folder_is_refused(presets: Path) -> None:
    outside = presets.parent / "secret.png"
    outside.write_bytes(png())
    (presets / "logos" / "link.png").symlink_to(outside)
    (presets / "logos" / "dir").symlink_to(presets.parent, target_is_directory=True)
    for logo in ("logos/link.png", "logos/dir/secret.png"):
        problem = only_problem(with_logo(presets, logo))
        assert f"{logo!r} leads outside the preset folder through a symlink" in problem


def test_a_missing_logo_still_says_not_found(presets: Path) -> None:
    path = with_logo(presets, "logos/missing.png")
    assert only_problem(path) == (
        f"{path}:{LOGO_LINE}: watermark.logo: file {presets / 'logos/missing.png'} not found "
        "(the path is relative to the preset file)"
    )


# --- what a logo may be ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"root:x:0:0:root:/root:/bin/bash\n", b"", b"GIF89a" + bytes(100), b"<svg></svg>"],
    ids=["text", "empty", "gif", "svg"],
)
def test_a_logo_that_is_not_a_png_jpeg_or_webp_is_refused(presets: Path, data: bytes) -> None:
    (presets / "logos" / "fake.png").write_bytes(data)
    problem = only_problem(with_logo(presets, "logos/fake.png"))
    assert problem.endswith(
        "watermark.logo: is not an image: a logo must be a PNG, JPEG or WebP file"
    )


def test_a_truncated_png_is_refused(presets: Path) -> None:
    (presets / "logos" / "cut.png").write_bytes(png()[:40])
    assert "watermark.logo: is not a readable PNG image" in only_problem(
        with_logo(presets, "logos/cut.png")
    )


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_logos_are_accepted(presets: Path, fmt: str) -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 32), (0, 0, 255)).save(out, format=fmt)
    (presets / "logos" / "logo.img").write_bytes(out.getvalue())  # the bytes decide, not the name
    assert validate_files([with_logo(presets, "logos/logo.img")]) == []


def _png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header says ``width`` x ``height`` (never decodable in full)."""
    data = bytearray(png((1, 1)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_a_decompression_bomb_is_refused_quickly_without_decoding(presets: Path) -> None:
    # 10000 x 10000 one-bit pixels compress to about 12 kB and decode to 400 MB as RGBA
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(out, format="PNG", optimize=True)
    assert len(out.getvalue()) < 100_000
    (presets / "logos" / "bomb.png").write_bytes(out.getvalue())
    (presets / "logos" / "huge.png").write_bytes(_png_claiming(50_000, 50_000))
    (presets / "logos" / "wide.png").write_bytes(png((MAX_LOGO_SIDE + 1, 1)))
    for logo, size in (
        ("bomb.png", "10000x10000"),
        ("huge.png", None),
        ("wide.png", f"{MAX_LOGO_SIDE + 1}x1"),
    ):
        started = time.monotonic()
        problem = only_problem(with_logo(presets, f"logos/{logo}"))
        assert time.monotonic() - started < 2  # a generous bound: decoding would take far longer
        assert f"a logo may be at most {MAX_LOGO_SIDE} pixels a side" in problem
        if size:
            assert f"watermark.logo: is {size} pixels;" in problem


def test_a_logo_over_the_byte_cap_is_refused(presets: Path) -> None:
    (presets / "logos" / "big.png").write_bytes(png() + bytes(MAX_LOGO_BYTES))
    problem = only_problem(with_logo(presets, "logos/big.png"))
    assert f"more than the {MAX_LOGO_BYTES:,} a logo may have" in problem


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_as_logo_is_refused_without_blocking(presets: Path) -> None:
    os.mkfifo(presets / "logos" / "pipe.png")
    assert "watermark.logo: is not a regular file" in only_problem(
        with_logo(presets, "logos/pipe.png")
    )


# --- YAML that expands ---------------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    text = 'lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for n in range(1, levels + 1):
        text += f"lol{n}: &lol{n} [" + ", ".join([f"*lol{n - 1}"] * 9) + "]\n"
    # before the fix, the error message for this value alone wrote out 9**10 "lol"s
    return GOOD + text + f"description: *lol{levels}\n"


def test_a_billion_laughs_file_is_refused_in_well_under_a_second(tmp_path: Path) -> None:
    path = tmp_path / "lol.yaml"
    path.write_text(billion_laughs())
    assert path.stat().st_size < 1024
    started = time.monotonic()
    problems = validate_files([path])
    assert time.monotonic() - started < 2  # a generous bound; before the fix: minutes, GBs
    assert problems == [
        f"{path}:11: invalid YAML: aliases (*name) expand this document past "
        f"{MAX_YAML_VALUES:,} values; write the values out instead of nesting aliases"
    ]
    with pytest.raises(PresetError, match="aliases"):
        load_presets(tmp_path)


def test_merge_keys_that_double_at_every_level_are_refused() -> None:
    text = GOOD + "m0: &m0 {a: 1, b: 2}\n"
    for n in range(1, 40):
        text += f"m{n}: &m{n} {{<<: [*m{n - 1}, *m{n - 1}], k{n}: 1}}\n"
    started = time.monotonic()
    with pytest.raises(PresetError, match="aliases"):
        parse_preset(text, "merge.yaml")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [1, *a]\n", "alias *a is used inside its own anchor &a"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "values are nested more than 32 deep"),
    ],
    ids=["recursive", "deep"],
)
def test_recursive_and_deep_yaml_get_a_message(text: str, problem: str) -> None:
    with pytest.raises(PresetError) as info:
        parse_preset(GOOD + text, "p.yaml")
    assert f"p.yaml:7: invalid YAML: {problem}" in info.value.user_message


def test_a_few_aliases_still_work() -> None:
    loaded = parse_preset(
        GOOD.replace('{"1:1": [128, 128]}', '{"1:1": &square [128, 128], "4:4": *square}')
        + 'negative_prompt: &neg "text, blurry"\ndescription: *neg\n'
    )
    assert loaded.aspect_ratios["4:4"] == (128, 128)
    assert loaded.description == "text, blurry"


def test_a_huge_preset_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(GOOD + "# " + "x" * MAX_PRESET_BYTES + "\n")
    assert validate_files([path]) == [
        f"{path}: is longer than {MAX_PRESET_BYTES:,} bytes; a preset is a short YAML file, "
        "is this the right file?"
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_or_device_as_preset_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    for path in (tmp_path / "pipe.yaml", Path("/dev/zero")):
        assert validate_files([path]) == [
            f"{path}: is not a regular file; give a preset's .yaml file"
        ]


# --- the worker: checked before each use, decoded once -------------------------------------------


def job_and_preset(path: Path) -> tuple[StartedJob, Preset]:
    preset = load_preset(path)
    params = Params("a cat", "", 128, 128, 8, 5.0, 1, 1, "fake", "tiny", preset.name, "v")
    job = StartedJob(uuid.uuid4(), GenerationKind.IMAGINE, "slack", params, 1, None, None)
    return job, preset


def corner(png_bytes: bytes) -> tuple[int, ...]:
    """The logo's colour at (10, 10), to the nearest 16 levels: the invisible watermark moves
    every pixel by a few levels (core.provenance.watermark)."""
    with Image.open(io.BytesIO(png_bytes)) as image:
        pixel = image.convert("RGB").getpixel((10, 10))
    assert isinstance(pixel, tuple)
    return tuple(min(255, round(v / 16) * 16) for v in pixel)


def test_a_changed_logo_is_used_and_decoded_once_for_all_threads(presets: Path) -> None:
    job, preset = job_and_preset(with_logo(presets, "logos/brand.png"))
    grey = Image.new("RGB", (128, 128), (128, 128, 128))
    assert corner(finish_image(job, preset, 1, grey)[0]) == (255, 0, 0)

    (presets / "logos" / "brand.png").write_bytes(png((400, 200), (0, 0, 255, 255)))
    assert corner(finish_image(job, preset, 1, grey)[0]) == (0, 0, 255)  # same path, new logo

    (presets / "logos" / "brand.png").write_bytes(png((2000, 1000), (0, 255, 0, 255)))
    start = threading.Barrier(8)
    seen: list[object] = []

    def use() -> None:
        start.wait()
        seen.append(watermark_logo(preset))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert all(logo is seen[0] for logo in seen)  # one decode, shared


@pytest.mark.parametrize("swap", ["text", "bomb", "symlink out"])
def test_a_logo_spoiled_after_load_fails_the_image_with_a_preset_error(
    presets: Path, swap: str
) -> None:
    job, preset = job_and_preset(with_logo(presets, "logos/brand.png"))
    logo = presets / "logos" / "brand.png"
    logo.unlink()
    if swap == "text":
        logo.write_bytes(b"not an image")
    elif swap == "bomb":
        logo.write_bytes(_png_claiming(10_000, 10_000))
    else:
        (presets.parent / "elsewhere.png").write_bytes(png())
        logo.symlink_to(presets.parent / "elsewhere.png")
    started = time.monotonic()
    with pytest.raises(PresetError, match="watermark logo of preset test-brand can't be used"):
        finish_image(job, preset, 1, Image.new("RGB", (128, 128)))
    assert time.monotonic() - started < 2
