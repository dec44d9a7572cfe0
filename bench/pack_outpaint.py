"""Time per campaign pack: blurred extensions vs outpainting on the diffusers engine, one run.

    python -m bench.pack_outpaint [--image PNG] [--size 128] [--steps 8] [--reps 2]
                                  [--work-pixels N] [--refine 0] [--out DIR] [--device cpu]

Builds the pack of every default placement from one image (``--image``, e.g. an image's
logo-free master; else one the ``tiny`` model makes at ``--size``) with the preset's ACME logo,
alternately without an engine (edges carried out and blurred, ``extend (pending outpaint)``) and
with the ``tiny`` model outpainting (``extend (outpaint)``), on the same loaded model; prints the
medians and their ratio, and writes the last rep's zips and contact sheets under ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

from core.brand.placements import default_placements
from core.engines.diffusers import DiffusersEngine
from core.ports import GenerateJob
from core.service.pack_pixels import Pack, PackPrompt, build_pack

PROMPT = "a red circle on a blue background, ACME style, flat vector illustration"
LOGO = Path(__file__).resolve().parent.parent / "presets" / "logos" / "acme.png"


async def main(args: argparse.Namespace) -> None:
    engine = DiffusersEngine(device=args.device)
    prompt = PackPrompt(PROMPT, "text, watermark, blurry", args.steps, 5.0, 7)
    if args.image:
        source = Image.open(args.image).convert("RGB")
    else:
        job = GenerateJob("src", PROMPT, "", args.size, args.size, args.steps, 5.0, (7,))
        (made,) = await engine.generate("tiny", [job])
        source = made.images[0]
    logo = Image.open(LOGO).convert("RGBA") if LOGO.exists() else None
    placements = list(default_placements().values())

    async def pack(outpaint: bool) -> Pack:
        return await build_pack(
            source,
            source_ref="bench:1",
            campaign="bench",
            placements=placements,
            logo=logo,
            inpainter=engine if outpaint else None,
            model="tiny" if outpaint else None,
            prompt=prompt,
            refine=args.refine,
            work_pixels=args.work_pixels,
        )

    await engine.pipelines.get("tiny")  # loaded once, outside the timings
    times: dict[bool, list[float]] = {False: [], True: []}
    last: dict[bool, Pack] = {}
    for _ in range(args.reps):
        for outpaint in (False, True):
            started = time.perf_counter()
            last[outpaint] = await pack(outpaint)
            times[outpaint].append(time.perf_counter() - started)
    blurred, outpainted = statistics.median(times[False]), statistics.median(times[True])
    print(f"source {source.width}x{source.height}, {args.steps} steps, {engine.device}, ", end="")
    print(f"median of {args.reps}, {len(placements)} placements:")
    print(f"  blurred extension {blurred:.2f} s   outpainted {outpainted:.2f} s   ", end="")
    print(f"ratio {outpainted / blurred:.2f}x")
    args.out.mkdir(parents=True, exist_ok=True)
    for outpaint, name in ((False, "blurred"), (True, "outpainted")):
        made = last[outpaint]
        (args.out / f"pack-{name}.zip").write_bytes(made.zip_bytes)
        (args.out / f"contact-sheet-{name}.png").write_bytes(made.contact_sheet)
        for f in made.files:
            print(f"  {name:10} {f.placement:20} {f.size[0]}x{f.size[1]}  {f.method}")
    print(f"  written under {args.out}")


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", type=Path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--work-pixels", type=int, default=768 * 768)
    parser.add_argument("--refine", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=Path("bench-results/pack"))
    parser.add_argument("--device", default="cpu")
    asyncio.run(main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
