"""Draw the example brand logos under ``presets/logos/`` (run once; the PNGs are committed).

python scripts/make_logos.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "presets" / "logos"
SIZE = 64


def acme() -> Image.Image:
    """ACME: a coral triangle on a teal disc."""
    img = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((2, 2, SIZE - 3, SIZE - 3), fill="#00A6A6")
    d.polygon([(SIZE // 2, 12), (SIZE - 14, SIZE - 16), (14, SIZE - 16)], fill="#FF6F59")
    return img


def northwind() -> Image.Image:
    """Northwind Coffee: a cream coffee bean on a brown rounded square."""
    img = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((2, 2, SIZE - 3, SIZE - 3), radius=12, fill="#6F4E37")
    d.ellipse((16, 10, SIZE - 16, SIZE - 10), fill="#F5EBDC")
    d.arc((22, 10, SIZE - 10, SIZE - 10), start=100, end=260, fill="#6F4E37", width=4)
    return img


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, draw in (("acme", acme), ("northwind", northwind)):
        path = OUT / f"{name}.png"
        draw().save(path, optimize=True)
        print(path)


if __name__ == "__main__":
    main()
