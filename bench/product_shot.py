"""Time per product shot vs a plain imagine, side by side in one run (engine + compositing).

    python -m bench.product_shot [--size 128] [--steps 8] [--reps 3] [--out DIR] [--device cpu]

Each rep runs, on the same loaded model, one plain text-to-image call of 4 images and one product
shot of 4 (inpainting around the placed product, then shadow, ring and paste-back), alternating so
both see the same machine state; prints the medians and their ratio, and writes a contact sheet of
the last rep (plain row, raw inpaint row, finished product-shot row) to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from PIL import Image, ImageDraw

from core.engines.diffusers import DiffusersEngine
from core.imaging.product import finish_product_shot, inpaint_inputs, place_product, product_alpha
from core.ports import GenerateJob, InpaintJob

PROMPT = "a kitchen counter at dawn"


def bottle() -> Image.Image:
    image = Image.new("RGB", (200, 260), (248, 248, 248))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((60, 40, 140, 230), 20, fill=(200, 30, 40))
    draw.rectangle((80, 100, 120, 150), fill=(250, 250, 250))
    return image


async def main(size: int, steps: int, reps: int, out: Path, device: str) -> None:
    engine = DiffusersEngine(device=device)
    seeds = (1, 2, 3, 4)
    photo = bottle()
    placed = place_product(photo, product_alpha(photo), (size, size))
    canvas, mask = inpaint_inputs(placed.image, placed.box, (size, size))
    plain_job = GenerateJob("plain", PROMPT, "", size, size, steps, 5.0, seeds)
    shot_job = InpaintJob("shot", canvas, mask, PROMPT, "", steps, 5.0, seeds)
    await engine.generate("tiny", [plain_job])  # load and warm both paths once
    await engine.inpaint("tiny", shot_job)
    plain_times, shot_times = [], []
    for _ in range(reps):
        started = time.perf_counter()
        (plain,) = await engine.generate("tiny", [plain_job])
        plain_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        raw = await engine.inpaint("tiny", shot_job)
        shots = [finish_product_shot(s, placed.image, placed.box) for s in raw.images]
        shot_times.append(time.perf_counter() - started)
    p, s = statistics.median(plain_times), statistics.median(shot_times)
    print(f"{size} px, {steps} steps, 4 images, {engine.device}, median of {reps}:")
    print(f"  plain imagine {p:.2f} s   product shot {s:.2f} s   ratio {s / p:.2f}x")
    rows = [list(plain.images), list(raw.images), shots]
    path = await asyncio.to_thread(_sheet, rows, size, out / f"product_shot_{size}.png")
    print(f"  contact sheet: {path}")


def _sheet(rows: list[list[Image.Image]], size: int, path: Path) -> Path:
    sheet = Image.new("RGB", (4 * size, len(rows) * size))
    for j, row in enumerate(rows):
        for i, image in enumerate(row):
            sheet.paste(image, (i * size, j * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.resize((sheet.width * 2, sheet.height * 2), Image.Resampling.NEAREST).save(path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    asyncio.run(main(args.size, args.steps, args.reps, args.out, args.device))
