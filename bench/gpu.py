"""GPU throughput of a Stable-Diffusion-1.5- or SDXL-shaped pipeline: images/s, eager vs compiled
UNet.

The pipeline is built from configs with random weights (SD 1.5's UNet and VAE, CLIP ViT-L/14's
text encoder, a byte-level CLIP tokenizer written here): nothing is downloaded, and the speed of a
pipeline does not depend on what its weights learned. It runs 512×512, 25 DDIM steps, CFG on,
float16, batches of 1, 4 and 8, first eager, then with ``torch.compile`` on the UNet, and prints a
table plus JSON (written to ``bench/results/gpu.json``).

Without CUDA it says so, runs a tiny CPU smoke test (64 px, 2 steps) and exits 0.

    python -m bench gpu            # full run (3 timed runs per cell, well under 8 minutes)
    python -m bench gpu --quick    # 1 timed run per cell
    python -m bench gpu --shape sdxl --batches 1 4   # SDXL base 1.0's shapes at 1024 px,
                                                     # Euler, two text encoders, time ids
    python -m bench gpu --shape sdxl --style         # + a random IP-Adapter (style code with
                                                     # two references, scale 0.7): its cost
    python -m bench gpu --shape sdxl --tiny          # the CPU smoke run even where CUDA is
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from bench.gpu_style import add_style

RESULTS = Path(__file__).resolve().parent / "results" / "gpu.json"  # gpu-sdxl.json for --shape sdxl

# Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5) shapes.
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD15_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "sample_size": 512,
}
CLIP_L14_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
# A few-million-parameter version of the same layout for the CPU smoke run.
TINY_UNET: dict[str, Any] = {
    **SD15_UNET,
    "sample_size": 8,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "norm_num_groups": 16,
}
TINY_VAE: dict[str, Any] = {
    **SD15_VAE,
    "layers_per_block": 1,
    "block_out_channels": (16, 32),
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "norm_num_groups": 16,
    "sample_size": 64,
}
TINY_TEXT: dict[str, Any] = {
    **CLIP_L14_TEXT,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
}
# Stable Diffusion XL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0) shapes: two text
# encoders (CLIP ViT-L/14 and OpenCLIP ViT-bigG/14, the second with a projection), a UNet fed
# their hidden states side by side (2048) and added time ids (6 x 256 + the 1280 pooled = 2816).
SDXL_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SDXL_VAE: dict[str, Any] = {**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025}
CLIP_BIGG14_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
# The SDXL layout at a few million parameters, for the CPU smoke run.
TINY_SDXL_UNET: dict[str, Any] = {
    **SDXL_UNET,
    "sample_size": 8,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2),
    "attention_head_dim": (2, 4),
    "cross_attention_dim": 64,
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 80,  # 6 x 8 + 32
    "norm_num_groups": 16,
}
SDXL_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}
SD15_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def _byte_chars() -> list[str]:
    """GPT-2/CLIP's byte → printable character table."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def make_tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer with a byte-level vocabulary and no merges (one token per character)."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77
    )


def build_pipeline(shape: str, device: str, dtype: Any) -> Any:
    """An SD-layout pipeline with random weights, built directly on ``device``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    unet_cfg, vae_cfg, text_cfg = (
        (SD15_UNET, SD15_VAE, CLIP_L14_TEXT)
        if shape == "sd15"
        else (TINY_UNET, TINY_VAE, TINY_TEXT)
    )
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = make_tokenizer(Path(tmp))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SD15_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_sdxl_pipeline(shape: str, device: str, dtype: Any) -> Any:
    """An SDXL-layout pipeline with random weights (``sdxl`` or ``tiny-sdxl``) on ``device``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if shape == "sdxl":
        unet_cfg, vae_cfg, text_cfg, text2_cfg = (
            SDXL_UNET,
            SDXL_VAE,
            CLIP_L14_TEXT,
            CLIP_BIGG14_TEXT,
        )
    else:
        unet_cfg, vae_cfg, text_cfg, text2_cfg = TINY_SDXL_UNET, TINY_VAE, TINY_TEXT, TINY_TEXT
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text2_cfg))
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = make_tokenizer(Path(tmp))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
    )
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def time_batch(
    pipe: Any,
    batch: int,
    size: int,
    steps: int,
    runs: int,
    device: str,
    extra: dict[str, Any] | None = None,
) -> float:
    """Seconds per call (mean of ``runs``) for ``batch`` images; NaNs of random weights ignored."""
    import numpy as np
    import torch

    def call() -> None:
        generators = [torch.Generator("cpu").manual_seed(i) for i in range(batch)]
        with np.errstate(all="ignore"):
            pipe(
                prompt=["a sneaker on a beach at sunset"] * batch,
                negative_prompt=["blurry"] * batch,
                width=size,
                height=size,
                num_inference_steps=steps,
                guidance_scale=7.5,
                generator=generators,
                output_type="np",
                **(extra or {}),
            )
        if device == "cuda":
            torch.cuda.synchronize()

    call()  # warm-up (and compilation)
    start = time.perf_counter()
    for _ in range(runs):
        call()
    return (time.perf_counter() - start) / runs


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'mode':<9} {'batch':>5} {'s/call':>8} {'images/s':>9} {'vs eager':>9}"
    lines = [head, "-" * len(head)]
    eager = {r["batch"]: r["images_per_s"] for r in rows if r["mode"] == "eager"}
    for r in rows:
        if r.get("skipped"):
            lines.append(f"{r['mode']:<9} {r['batch']:>5} {'skipped: ' + r['skipped']:>28}")
            continue
        ratio = r["images_per_s"] / eager[r["batch"]] if r["batch"] in eager else float("nan")
        lines.append(
            f"{r['mode']:<9} {r['batch']:>5} {r['s_per_call']:>8.3f} "
            f"{r['images_per_s']:>9.2f} {ratio:>8.2f}×"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one timed run per cell")
    parser.add_argument(
        "--shape",
        choices=["sd15", "sdxl"],
        default="sd15",
        help="sd15: 512 px, one text encoder; sdxl: 1024 px, two text encoders, added time ids",
    )
    parser.add_argument("--size", type=int, default=None, help="default: 512 sd15, 1024 sdxl")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument(
        "--compile-mode", default=None, help="torch.compile mode (default: default)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=420, help="skip the cells left after this many seconds"
    )
    parser.add_argument("--style", action="store_true", help="with a random IP-Adapter (style)")
    parser.add_argument("--tiny", action="store_true", help="the CPU smoke run only")
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    args = parser.parse_args(argv)
    size = args.size or (1024 if args.shape == "sdxl" else 512)
    out = args.out or (RESULTS.with_name("gpu-sdxl.json") if args.shape == "sdxl" else RESULTS)
    if args.style and args.out is None:
        out = out.with_name(out.stem + "-style.json")
    build = build_sdxl_pipeline if args.shape == "sdxl" else build_pipeline

    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("transformers.utils.import_utils").setLevel(logging.ERROR)
    import diffusers
    import torch

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()  # casting random weights to fp16 "warns"
    started = time.perf_counter()
    if args.tiny or not torch.cuda.is_available():
        print("no CUDA device here (or --tiny): running the CPU smoke test instead")
        pipe = build("tiny" if args.shape == "sd15" else "tiny-sdxl", "cpu", torch.float32)
        style = add_style(pipe) if args.style else None
        rows = []
        for batch in (1, 2):
            seconds = time_batch(pipe, batch, 64, 2, 1, "cpu", style)
            rows.append(
                {
                    "mode": "eager",
                    "batch": batch,
                    "s_per_call": seconds,
                    "images_per_s": batch / seconds,
                }
            )
        print(table(rows))
        smoke = {"cuda": False, "shape": args.shape, "style": args.style, "smoke": rows}
        print(json.dumps(smoke, indent=2))
        return 0

    runs = 1 if args.quick else 3
    device, dtype = "cuda", torch.float16
    pipe = build(args.shape, device, dtype)
    style = add_style(pipe) if args.style else None
    build_s = time.perf_counter() - started
    rows = []
    modes = ["eager"] if args.no_compile else ["eager", "compiled"]
    for mode in modes:
        if mode == "compiled":
            pipe.unet.compile(mode=args.compile_mode, dynamic=False)
        for batch in args.batches:
            elapsed = time.perf_counter() - started
            if elapsed > args.budget_s:
                rows.append({"mode": mode, "batch": batch, "skipped": f"over {args.budget_s:.0f}s"})
                continue
            t0 = time.perf_counter()
            seconds = time_batch(pipe, batch, size, args.steps, runs, device, style)
            rows.append(
                {
                    "mode": mode,
                    "batch": batch,
                    "s_per_call": seconds,
                    "images_per_s": batch / seconds,
                    "cell_wall_s": time.perf_counter() - t0,  # includes warm-up / compilation
                }
            )
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    result = {
        "cuda": True,
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "dtype": "float16",
        "shape": args.shape,
        "style": "random IP-Adapter, 2 references, scale 0.7" if args.style else None,
        "size": size,
        "steps": args.steps,
        "guidance": 7.5,
        "scheduler": type(pipe.scheduler).__name__,
        "attention": "SDPA",
        "compile_mode": args.compile_mode or "default",
        "timed_runs_per_cell": runs,
        "build_s": build_s,
        "total_s": time.perf_counter() - started,
        "rows": rows,
    }
    print()
    print(table(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
