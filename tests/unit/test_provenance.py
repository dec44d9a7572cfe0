"""Provenance without a database: keys, C2PA signing and reading, the watermark."""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.imaging.metadata import ImageMetadata, encode_png
from core.provenance import keys, watermark
from core.provenance.inspect import Unreadable, inspect
from core.provenance.sign import Facts, sign

SECRET = b"s" * 32


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keys.local_folder(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def signer(folder: Path) -> keys.SigningKeys:
    return keys.embedded_keys(folder.parent)


def photo(size: int, seed: int = 1) -> Image.Image:
    """A picture with photo-like texture: smooth colour fields plus grain."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (size // 16 + 2, size // 16 + 2, 3))
    small = Image.fromarray(np.uint8(np.clip(128 + 60 * base, 0, 255)))
    a = np.asarray(small.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    a = a + rng.normal(0, 6, a.shape)
    return Image.fromarray(np.uint8(np.clip(a, 0, 255)))


def meta(size: int = 64) -> ImageMetadata:
    return ImageMetadata(
        "a red circle", "", 7, 4, 5.0, size, size, "tiny", "demo", "v1", "g", 1, "diffusers", "DDIM"
    )


def signed(
    image: Image.Image,
    kind: str,
    signer: keys.SigningKeys,
    parent: bytes | None = None,
    title: str = "t",
    parent_title: str | None = None,
) -> bytes:
    facts = Facts(
        title,
        kind,
        "9b5f0000-0000-4000-8000-000000000001",
        1,
        5,
        "tiny",
        "diffusers",
        parent,
        parent_title,
    )
    return sign(encode_png(image, meta(image.width)), facts, signer)


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        out.append((png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def assemble(parts: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(
        struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d)) for t, d in parts
    )
    return b"\x89PNG\r\n\x1a\n" + body


def test_the_local_ca_is_made_once_with_private_files_0600(tmp_path: Path) -> None:
    made: list[Path] = []
    threads = [
        threading.Thread(target=lambda: made.append(keys.local_folder(tmp_path))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["provenance"]  # no leftovers
    folder = made[0]
    assert os.stat(folder / keys.KEY_FILE).st_mode & 0o777 == 0o600
    assert os.stat(folder / keys.WATERMARK_FILE).st_mode & 0o777 == 0o600
    assert b"BEGIN CERTIFICATE" in (folder / keys.CA_FILE).read_bytes()


def test_signed_original_is_trusted_with_the_ca_and_only_valid_without(
    signer: keys.SigningKeys, folder: Path
) -> None:
    data = signed(photo(64), "imagine", signer)
    ca = (folder / keys.CA_FILE).read_bytes()
    trusted = inspect(data, SECRET, [ca]).credentials
    assert trusted.state == "trusted"
    assert trusted.actions == ("c2pa.created",)
    assert trusted.generation_id == "9b5f0000-0000-4000-8000-000000000001"
    plain = inspect(data, SECRET).credentials
    assert plain.state == "valid"
    assert "not among the trusted" in (plain.reason or "")
    iptc = inspect(data, SECRET).iptc
    assert iptc["AISystemUsed"] == "tiny"
    assert iptc["DigitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert "AIPromptInformation" not in iptc  # the prompt does not travel by default


def test_changed_pixels_after_signing_are_invalid(signer: keys.SigningKeys) -> None:
    image = photo(64)
    data = signed(image, "imagine", signer)
    changed = image.copy()
    changed.putpixel((3, 3), (0, 0, 0))
    other = encode_png(changed, meta())
    new_idat = [c for c in chunks(other) if c[0] == b"IDAT"]
    parts: list[tuple[bytes, bytes]] = []
    for part in chunks(data):
        if part[0] == b"IDAT":
            parts.extend(new_idat)
            new_idat = []
        else:
            parts.append(part)
    result = inspect(assemble(parts), SECRET).credentials
    assert result.state == "invalid"
    assert "dataHash.mismatch" in (result.reason or "")


def test_an_xmp_edit_after_signing_is_invalid(signer: keys.SigningKeys) -> None:
    data = signed(photo(64), "imagine", signer)
    parts = [
        (t, d.replace(b"Made with AI", b"Made by hand")) if t == b"iTXt" else (t, d)
        for t, d in chunks(data)
    ]
    assert assemble(parts) != data
    assert inspect(assemble(parts), SECRET).credentials.state == "invalid"


def test_an_upscale_of_a_variation_names_both_parents(signer: keys.SigningKeys) -> None:
    first = signed(photo(64, 1), "imagine", signer, title="onbrand A#1")
    variation = signed(photo(64, 2), "variation", signer, first, "onbrand V#1", "onbrand A#1")
    upscale = signed(photo(128, 3), "upscale", signer, variation, "onbrand U#1", "onbrand V#1")
    read = inspect(upscale, SECRET).credentials
    assert read.state == "valid"
    assert read.actions == ("c2pa.opened", "c2pa.resized")
    assert read.ingredients == ("onbrand V#1", "onbrand A#1")


def _encode(image: Image.Image, fmt: str, **options: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return Image.open(io.BytesIO(buf.getvalue()))


def screenshot(image: Image.Image) -> Image.Image:
    """Shown at 80 %, captured with window chrome around it, saved as JPEG 90."""
    shown = image.resize((int(image.width * 0.8), int(image.height * 0.8)))
    canvas = Image.new("RGB", (shown.width + 57, shown.height + 90), (240, 240, 240))
    canvas.paste(shown, (23, 61))
    return _encode(canvas, "JPEG", quality=90)


def crop10(image: Image.Image) -> Image.Image:
    w, h = image.size
    return image.crop(
        (w // 20 + 3, h // 20 + 1, w // 20 + 3 + w * 9 // 10, h // 20 + 1 + h * 9 // 10)
    )


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "png": lambda im: im,
    "jpeg q80": lambda im: _encode(im, "JPEG", quality=80),
    "resize 50 %": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "crop 10 %": crop10,
    "webp": lambda im: _encode(im, "WEBP", quality=80),
    "screenshot": screenshot,
}


@pytest.fixture(scope="module")
def marked512() -> Image.Image:
    return watermark.embed(photo(512), SECRET, 0x12_3456_789A)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_the_watermark_survives(marked512: Image.Image, name: str) -> None:
    found = watermark.read(TRANSFORMS[name](marked512), SECRET)
    assert found is not None
    assert found.image_id == 0x12_3456_789A


def test_a_full_size_jpeg_of_a_128_px_image_keeps_its_mark() -> None:
    image = Image.new("RGB", (128, 128), (30, 60, 200))
    image.paste((250, 120, 20), (30, 30, 90, 80))  # a flat shape, like the demo model's
    marked = watermark.embed(image, SECRET, 42)
    assert watermark.read(_encode(marked, "JPEG", quality=80), SECRET) is not None
    diff = np.asarray(marked, float) - np.asarray(image, float)
    assert 10 * np.log10(255**2 / np.mean(diff**2)) > 33  # PSNR in dB


def test_a_foreign_image_and_a_forged_mark_are_not_ours() -> None:
    assert watermark.read(photo(256, 9), SECRET) is None
    forged = watermark.embed(photo(256, 9), b"another install's secret!", 7)
    assert watermark.read(forged, b"another install's secret!") is not None
    assert watermark.read(forged, SECRET) is None  # its MAC doesn't hold under ours


@pytest.mark.parametrize(
    "data", [b"", b"GIF89a" + b"\0" * 20, b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"x" * 100]
)
def test_unreadable_input_is_refused(data: bytes) -> None:
    with pytest.raises(Unreadable):
        inspect(data, SECRET)


def test_a_huge_image_header_is_refused_before_decoding() -> None:
    header = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    data = assemble([(b"IHDR", ihdr), (b"IEND", b"")])
    assert data.startswith(header)
    with pytest.raises(Unreadable, match="pixels"):
        inspect(data, SECRET)


def test_a_broken_operator_signer_is_a_failed_check_not_a_silent_fallback(tmp_path: Path) -> None:
    from core.health import check_provenance
    from core.settings import Settings

    def check(**env: object) -> tuple[bool, str]:
        settings = Settings(_env_file=None, ONBRAND_DATA_DIR=tmp_path, **env)  # type: ignore[call-arg]
        [result] = check_provenance(settings)
        return result.ok, result.detail

    ok, detail = check()
    assert ok, detail
    assert "local CA" in detail
    ok, detail = check(ONBRAND_C2PA_CERT=tmp_path / "missing.pem", ONBRAND_C2PA_KEY=tmp_path / "k")
    assert not ok
    assert "can't be read" in detail
    ok, detail = check(ONBRAND_C2PA_CERT=tmp_path / "provenance" / keys.CHAIN_FILE)
    assert not ok
    assert "Set both" in detail


def test_an_operator_signer_from_pem_in_the_environment(folder: Path, tmp_path: Path) -> None:
    from pydantic import SecretStr

    from core.provenance.setup import from_settings
    from core.settings import Settings

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        ONBRAND_DATA_DIR=tmp_path,
        ONBRAND_C2PA_CERT_PEM=(folder / keys.CHAIN_FILE).read_text(),
        ONBRAND_C2PA_KEY_PEM=SecretStr((folder / keys.KEY_FILE).read_text()),
        ONBRAND_C2PA_TRUST=folder / keys.CA_FILE,
        ONBRAND_WATERMARK_SECRET=SecretStr("a shared secret of some length"),
    )
    made = from_settings(settings)
    assert not made.keys.embedded
    assert made.trust_anchors == (folder / keys.CA_FILE,)
    assert made.watermark_secret == b"a shared secret of some length"
    assert "PRIVATE" not in repr(made)
    data = signed(photo(64), "imagine", made.keys)
    anchors = [p.read_bytes() for p in made.trust_anchors]
    assert inspect(data, made.watermark_secret, anchors).credentials.state == "trusted"


def test_a_preset_can_ask_for_a_visible_ai_badge(tmp_path: Path) -> None:
    import uuid

    from core.brand.preset_files import load_preset
    from core.db.jobs import StartedJob
    from core.domain import GenerationKind, Params
    from core.errors import PresetError
    from core.jobs.finishing import finish_image

    body = (
        "name: badged\nbrand: B\nprompt: '{prompt}'\naspect_ratios: {'1:1': [128, 128]}\n"
        "default_aspect: '1:1'\nengine: {kind: fake, model: m, steps: 2, guidance: 5.0}\n"
    )
    (tmp_path / "badged.yaml").write_text(body + "ai_badge: {position: bottom-right, size: 0.2}\n")
    (tmp_path / "bad.yaml").write_text(body.replace("badged", "bad") + "ai_badge: {size: 2}\n")
    preset = load_preset(tmp_path / "badged.yaml")
    params = Params("a cat", "", 128, 128, 8, 5.0, 1, 1, "fake", "m", "badged", "v")
    job = StartedJob(uuid.uuid4(), GenerationKind.IMAGINE, "cli", params, 1, None, None)
    white = Image.new("RGB", (128, 128), (255, 255, 255))
    data = finish_image(job, preset, 1, white).data
    out = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=float)
    assert out[100:120, 90:120].mean() < 150  # a dark label in the bottom-right corner
    assert out[5:30, 5:40].mean() > 240  # and nothing in the top-left
    Image.open(io.BytesIO(data)).save(tmp_path / "badged.png")
    with pytest.raises(PresetError):
        load_preset(tmp_path / "bad.yaml")


@pytest.mark.parametrize("shape", [(7, 5), (130, 97), (64, 256), (300, 260)])
@pytest.mark.parametrize("radius", [2, 3])
def test_the_fast_box_blur_gives_numpys_sums_bit_for_bit(shape: tuple[int, int], radius: int
                                                        ) -> None:  # fmt: skip
    """The watermark's blur (cumulative sums along memory: on a transposed copy for small
    pictures, a row at a time down the columns for large ones) computes exactly what
    ``np.cumsum`` along each axis does: marks made before and after it are the same."""
    a = (np.random.default_rng(5).random(shape) * 255).astype(np.float32)
    expected = a
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(expected, pad, mode="edge"), axis=axis, dtype=np.float32)
        n, side = expected.shape[axis], 2 * radius + 1
        hi = np.take(c, np.arange(side, side + n), axis=axis)
        expected = (hi - np.take(c, np.arange(n), axis=axis)) / side
    got = watermark._box(a, radius)
    assert got.dtype == np.float32
    assert np.array_equal(got, expected)
