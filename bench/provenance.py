"""``python -m bench provenance [--trials N] [--sizes 64,128,…] [--no-model]``: what the invisible
watermark survives, how much it changes the picture, and what provenance costs per image.

1. **Robustness.** For each content type (``photo``: smooth colour fields with grain, like a
   photograph; ``flat``: the demo model ``tiny``'s own 128 px output resized, flat colours with hard
   edges) and each size, ``--trials`` pictures are watermarked (each with its own id) and put
   through each transform; a cell is the share of trials whose id and MAC read back. "smallest" is
   the smallest size from which that transform holds in every trial at every larger size.
   Transforms: JPEG q80; resize to 50 % (Lanczos); a 10 % crop (90 % of each side kept, off
   centre); PNG → WebP (q80); a screenshot (shown at 80 %, bilinear, pasted into window chrome at
   an offset, saved as JPEG q90); also the untouched PNG.
2. **PSNR** of the watermarked picture against the original, per content type and size.
3. **Cost.** Watermark + PNG encoding + C2PA signing of one 128 px original (as finishing does it)
   next to generating that image with ``tiny`` at the ``acme-spring`` settings (128 px, 8 steps,
   CFG 5) on this machine, timed right after it (the ratio is the median of the per-image
   ratios): how much of a job provenance takes.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bench.runner import Row, report
from core.imaging.metadata import ImageMetadata, encode_png
from core.provenance import keys, watermark
from core.provenance.sign import Facts, sign

SECRET = b"bench-secret-bench-secret-123456"


def _encode(image: Image.Image, fmt: str, **options: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return Image.open(io.BytesIO(buf.getvalue()))


def _crop(image: Image.Image) -> Image.Image:
    w, h = image.size
    left, top = w // 20 + 3, h // 20 + 1
    return image.crop((left, top, left + w * 9 // 10, top + h * 9 // 10))


def _screenshot(image: Image.Image) -> Image.Image:
    shown = image.resize(
        (int(image.width * 0.8), int(image.height * 0.8)), Image.Resampling.BILINEAR
    )
    canvas = Image.new("RGB", (shown.width + 57, shown.height + 90), (240, 240, 240))
    canvas.paste(shown, (23, 61))
    return _encode(canvas, "JPEG", quality=90)


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "png": lambda im: im,
    "jpeg80": lambda im: _encode(im, "JPEG", quality=80),
    "resize50": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "crop10": _crop,
    "webp": lambda im: _encode(im, "WEBP", quality=80),
    "screenshot": _screenshot,
}


def photo(size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (size // 16 + 2, size // 16 + 2, 3))
    small = Image.fromarray(np.uint8(np.clip(128 + 60 * base, 0, 255)))
    a = np.asarray(small.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    return Image.fromarray(np.uint8(np.clip(a + rng.normal(0, 6, a.shape), 0, 255)))


Finish = Callable[[Image.Image], tuple[float, float, float]]


def tiny_images(count: int, finish: Finish) -> tuple[list[Image.Image], list[float], list[float]]:
    """``count`` 128 px images from ``tiny`` at acme-spring's settings, and per image the ratio
    of its provenance (``finish``: watermark + signing, timed right after it was made, so a
    machine that slows down slows both) to its generation time."""
    import torch

    from core.engines.pipelines import diffusers_module, resolve_model

    diffusers = diffusers_module()
    pipe = diffusers.AutoPipelineForText2Image.from_pretrained(resolve_model("tiny"))
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a red circle on a blue background", "a yellow square on a green background"]
    made, ratios, times = [], [], []
    for i in range(count + 1):  # the first is a warm-up
        started = time.perf_counter()
        out = pipe(
            prompts[i % 2],
            negative_prompt="text, watermark, blurry",
            width=128,
            height=128,
            num_inference_steps=8,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(i),
        ).images[0]
        took = time.perf_counter() - started
        if i:
            made.append(out.convert("RGB"))
            marking, _, signing = finish(made[-1])
            ratios.append((marking + signing) / took)
            times.append(took)
    return made, ratios, times


def flat(tiny: list[Image.Image], size: int, seed: int) -> Image.Image:
    source = tiny[seed % len(tiny)]
    return source if size == source.width else source.resize((size, size), Image.Resampling.LANCZOS)


def psnr(a: Image.Image, b: Image.Image) -> float:
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255**2 / max(float(np.mean(d**2)), 1e-12)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench provenance")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--sizes", default="64,96,128,192,256,384,512,768,1024")
    parser.add_argument("--no-model", action="store_true", help="no tiny: synthetic flat shapes")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    folder = tempfile.TemporaryDirectory()
    signer = keys.embedded_keys(Path(folder.name))
    meta = ImageMetadata(
        "a red circle",
        "",
        1,
        8,
        5.0,
        128,
        128,
        "tiny",
        "acme-spring",
        "v1",
        "g",
        1,
        "diffusers",
        "DDIM",
    )
    facts = Facts("onbrand g#1", "imagine", "g", 1, 1, "tiny", "diffusers")
    costs: list[tuple[float, float, float]] = []

    def finish(image: Image.Image) -> tuple[float, float, float]:
        """Watermark, encode and sign ``image`` as finishing does; the seconds of each."""
        t0 = time.perf_counter()
        marked = watermark.embed(image, SECRET, 1)
        t1 = time.perf_counter()
        png = encode_png(marked, meta)
        t2 = time.perf_counter()
        sign(png, facts, signer)
        cost = (t1 - t0, t2 - t1, time.perf_counter() - t2)
        costs.append(cost)
        return cost

    per_image: list[float] = []
    generation: list[float] = []
    if args.no_model:
        tiny = []
        for i in range(max(args.trials, 2)):
            im = Image.new("RGB", (128, 128), (30 + 40 * i % 200, 60, 200))
            im.paste((250, 120, 20), (20 + 5 * i, 30, 90, 80 + 3 * i))
            tiny.append(im)
            finish(im)
    else:
        tiny, per_image, generation = tiny_images(max(args.trials, 5), finish)
    makers = {"photo": lambda size, seed: photo(size, seed), "flat": lambda s, k: flat(tiny, s, k)}

    rows: list[Row] = []
    smallest: dict[str, dict[str, int | None]] = {}
    print(f"{'content':<7} {'size':>5} {'PSNR':>6}  " + " ".join(f"{t:>10}" for t in TRANSFORMS))
    for content, make in makers.items():
        held: dict[str, list[bool]] = {t: [] for t in TRANSFORMS}
        for size in sizes:
            ok = {t: 0 for t in TRANSFORMS}
            quality = []
            for trial in range(args.trials):
                original = make(size, trial)
                marked = watermark.embed(original, SECRET, 1000 + trial)
                quality.append(psnr(original, marked))
                for name, transform in TRANSFORMS.items():
                    found = watermark.read(transform(marked), SECRET)
                    ok[name] += found is not None and found.image_id == 1000 + trial
            cells = {t: ok[t] / args.trials for t in TRANSFORMS}
            for t in TRANSFORMS:
                held[t].append(ok[t] == args.trials)
            print(
                f"{content:<7} {size:>5} {statistics.mean(quality):>6.1f}  "
                + " ".join(f"{cells[t]:>10.0%}" for t in TRANSFORMS)
            )
            rows.append(
                Row(
                    f"{content} {size}px PSNR",
                    statistics.mean(quality),
                    "dB",
                    {t: f"{cells[t]:.0%}" for t in TRANSFORMS},
                )
            )
        smallest[content] = {}
        for t in TRANSFORMS:
            marks = held[t]
            first = next((i for i in range(len(marks)) if all(marks[i:])), None)
            smallest[content][t] = None if first is None else sizes[first]
    for content, by_transform in smallest.items():
        print(
            f"smallest size that holds ({content}): "
            + ", ".join(f"{t} {v if v is not None else '—'}" for t, v in by_transform.items())
        )

    wm_s, enc_s, sign_s = map(statistics.median, zip(*costs, strict=True))
    rows += [
        Row("watermark 128px", wm_s * 1000, "ms"),
        Row("encode PNG 128px", enc_s * 1000, "ms"),
        Row("C2PA sign 128px", sign_s * 1000, "ms"),
    ]
    if generation:
        rows.append(Row("tiny 128px 8 steps", statistics.median(generation) * 1000, "ms"))
    ratios = {}
    if per_image:
        ratios["(watermark + C2PA sign) / tiny generation"] = statistics.median(per_image)
    notes = "; ".join(
        f"smallest size ({c}): " + ", ".join(f"{t} {v}" for t, v in s.items())
        for c, s in smallest.items()
    )
    report("provenance", rows, ratios=ratios, notes=notes)
    folder.cleanup()
    return 0
