"""``clean_upload``: every kind of bad file gets a message that says what to send; good files
come out as metadata-free 8-bit sRGB PNGs (orientation applied, first frame, colour converted)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from core.imaging.uploads import UploadRefused, clean_upload, sniff


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1×1 PNG whose header (with a correct CRC) claims ``width``×``height``."""
    data = bytearray(_encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _gps_jpeg(orientation: int) -> bytes:
    image = Image.new("RGB", (40, 20), (200, 30, 30))
    image.paste((20, 20, 220), (0, 0, 10, 20))  # a blue stripe on the left
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (51.0, 30.0, 0.0)
    return _encode(image, "JPEG", exif=exif.tobytes(), quality=95)


BAD = [
    (b"", "empty"),
    (b"GIF89a" + b"\0" * 100, "a GIF"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
    (b"%PDF-1.7 ...", "a PDF"),
    (b"\x00\x00\x00\x18ftypheic" + b"\0" * 40, "HEIC"),
    (_encode(Image.new("RGB", (64, 64), "red"), "PNG")[:60], "can't be"),
    (_png_claiming(50_000, 50_000), "megapixels"),
    (_png_claiming(13_000, 10), "a side"),
]


@pytest.mark.parametrize(("data", "says"), BAD, ids=[s for _, s in BAD])
def test_bad_files_are_refused_with_what_to_send(data: bytes, says: str) -> None:
    with pytest.raises(UploadRefused) as refused:
        clean_upload(data)
    message = refused.value.user_message
    assert says in message
    assert "PNG, JPEG or WebP" in message


def test_too_many_bytes_is_refused_before_looking_inside() -> None:
    with pytest.raises(UploadRefused, match=r"the most is 0\.0 MB"):
        clean_upload(_encode(Image.new("RGB", (64, 64)), "PNG"), max_bytes=10)


def test_type_comes_from_the_bytes() -> None:
    assert sniff(_encode(Image.new("RGB", (4, 4)), "WEBP")) == "WEBP"
    assert sniff(_encode(Image.new("RGB", (4, 4)), "JPEG")) == "JPEG"
    assert sniff(b"\x89PNG\r\n\x1a\n") == "PNG"
    assert sniff(b"GIF89a") is None


def test_exif_orientation_is_applied_and_gps_dropped() -> None:
    clean = clean_upload(_gps_jpeg(orientation=6))  # 6: rotate 90° clockwise to display
    assert clean.image.size == (20, 40)
    top = np.asarray(clean.image)[:5].mean(axis=(0, 1))
    assert top[2] > 150 > top[0]  # the blue stripe, left in the file, is now on top
    stored = Image.open(io.BytesIO(clean.png))
    assert stored.format == "PNG"
    assert not stored.getexif()
    assert set(stored.info) <= {"dpi"}, stored.info  # no exif, xmp, icc, text
    assert b"PhoneMaker" not in clean.png
    assert b"GPS" not in clean.png
    assert clean.mime == "image/jpeg"


def test_cmyk_sixteen_bit_palette_and_la_become_8_bit_srgb() -> None:
    cmyk = clean_upload(_encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.image.mode == "RGB"
    assert np.asarray(cmyk.image)[4, 4, 0] > 200 > np.asarray(cmyk.image)[4, 4, 1] + 100

    grey16 = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))
    deep = clean_upload(_encode(grey16, "PNG"))
    assert deep.image.mode == "RGB"
    assert abs(int(np.asarray(deep.image)[0, 0, 0]) - 128) <= 1
    assert any("8 bits" in note for note in deep.notes)

    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    clear = clean_upload(_encode(palette, "PNG", transparency=0))
    assert clear.image.mode == "RGBA"
    assert clear.image.getpixel((0, 0))[3] == 0
    assert clear.image.getpixel((4, 4)) == (255, 0, 0, 255)

    la = Image.merge("LA", (Image.new("L", (8, 8), 90), Image.new("L", (8, 8), 128)))
    assert clean_upload(_encode(la, "PNG")).image.getpixel((1, 1)) == (90, 90, 90, 128)

    opaque = Image.new("RGBA", (8, 8), (1, 2, 3, 255))
    assert clean_upload(_encode(opaque, "PNG")).image.mode == "RGB"  # alpha without use dropped


def test_an_icc_profile_is_converted_to_srgb_and_not_kept() -> None:
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    image = Image.new("RGB", (8, 8), (10, 120, 240))
    clean = clean_upload(_encode(image, "PNG", icc_profile=lab.tobytes()))
    assert clean.image.getpixel((0, 0)) == pytest.approx((10, 120, 240), abs=2)
    assert "icc_profile" not in Image.open(io.BytesIO(clean.png)).info


def test_an_animated_file_gives_its_first_frame_and_says_so() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "green", "blue")]
    data = _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    clean = clean_upload(data)
    assert clean.image.getpixel((8, 8)) == (255, 0, 0)
    assert any("first frame" in note and "3 frames" in note for note in clean.notes)
