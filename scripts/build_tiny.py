"""Build (and optionally train) the bundled offline demo checkpoint ``core/engines/tiny``.

The checkpoint is a complete Stable-Diffusion-layout pipeline (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel, CLIPTokenizer, DDIMScheduler) in diffusers format with
safetensors weights, small enough to ship inside the wheel (under 10 MB) and fast enough to
run on a laptop CPU. It only knows one tiny world: "COLOUR SHAPE on COLOUR background"
pictures, so prompts such as ``a red circle on a blue background`` visibly steer it.

Everything is generated here from fixed seeds (the tokenizer vocabulary, the captioned
dataset and all weights); nothing is downloaded. Usage::

    # quick, untrained pipeline (seconds): lets engine code be written against the layout
    python scripts/build_tiny.py build --out /tmp/tiny-untrained

    # the real thing: the VAE, then the UNet (v-prediction, EMA), then a decoder-only polish;
    # checkpoints under --work, the result in --out (default core/engines/tiny)
    nice -n 10 python scripts/build_tiny.py train --work /tmp/tiny-train

    # the steering numbers of a saved pipeline (mean R−B of a red vs a blue shape)
    python scripts/build_tiny.py eval core/engines/tiny

    # (re)make the random-weight brand looks inside a saved pipeline: ip_adapter/ (IP-Adapter +
    # CLIP image encoder) and loras/tiny-brand.safetensors (scripts/tiny_looks.py); every save
    # above makes them too
    python scripts/build_tiny.py looks --out core/engines/tiny

Training runs a fixed number of steps so a rerun on the same machine gives the same
weights; ``--max-minutes`` only stops it early (and then says so in the log: pass
``--stop-after STEP`` to repeat such a run exactly). The shipped checkpoint is the defaults
stopped by the 48-minute budget on a shared 2-core CPU at UNet step 3785 of 4000, i.e.
``train --max-minutes 48 --stop-after 3785`` (its decoder polish ran as ``polish --threads 1``
and then ``assemble``; other thread counts or CPUs may round differently).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", message=".*torchvision.*")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

diffusers_logging.set_verbosity_error()
diffusers_logging.disable_progress_bar()
transformers_logging.set_verbosity_error()
transformers_logging.disable_progress_bar()

log = logging.getLogger("build_tiny")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "core" / "engines" / "tiny"

# ---------------------------------------------------------------------------------------------
# The tiny world: colours, shapes, captions
# ---------------------------------------------------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 210, 30),
}
SHAPES = ("circle", "square")
TEMPLATES = (
    "a {fg} {shape} on a {bg} background",
    "{fg} {shape} on {bg} background",
)
# Extra words get whole-word tokens so common prompts tokenize the same way as the captions.
EXTRA_WORDS = (
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "with",
    "and",
    "background",
    "photo",
    "picture",
    "image",
    "shape",
    "sneaker",
    "beach",
    "sunset",
    "white",
    "black",
    "orange",
    "purple",
    "pink",
    "triangle",
    "star",
    "logo",
    "product",
)
IMAGE_SIZE = 64  # training resolution in pixels
VAE_FACTOR = 4  # the VAE downsamples twice: the UNet sees 16x16 latents
LATENT_CHANNELS = 4
MAX_TOKENS = 77
NEUTRAL_PROMPT_DROP = 0.1  # share of training captions replaced by "" (classifier-free guidance)

# ---------------------------------------------------------------------------------------------
# Tokenizer: a CLIP byte-level BPE vocabulary written from scratch
# ---------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """The byte → printable character table of GPT-2 / CLIP BPE."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _bpe(word: tuple[str, ...], ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
    """CLIP's BPE merge loop (lowest-rank pair first), enough to plan the merges."""
    while len(word) > 1:
        pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        best = min(pairs, key=lambda p: ranks.get(p, math.inf))
        if best not in ranks:
            break
        merged: list[str] = []
        i = 0
        while i < len(word):
            if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                merged.append(word[i] + word[i + 1])
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = tuple(merged)
    return word


def vocabulary_words() -> list[str]:
    words = [*COLOURS, *SHAPES, *EXTRA_WORDS]
    return list(dict.fromkeys(words))


def write_tokenizer_files(folder: Path) -> None:
    """Write vocab.json + merges.txt: every byte (alone and word-final) plus whole-word merges."""
    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = list(_bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars]
    ranks: dict[tuple[str, str], int] = {}
    merges: list[tuple[str, str]] = []
    for w in vocabulary_words():
        # Merge left to right until the word is one token; a new merge always ranks last, so
        # it never changes how an earlier word is split.
        while len(tokens := _bpe((*w[:-1], w[-1] + "</w>"), ranks)) > 1:
            pair = (tokens[0], tokens[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab_list.append(pair[0] + pair[1])
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2 - written by scripts/build_tiny.py"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_tokenizer(folder: Path) -> CLIPTokenizer:
    write_tokenizer_files(folder)
    tok = CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)
    for w in vocabulary_words():  # every vocabulary word must be a single token
        ids = tok(w, add_special_tokens=False).input_ids
        assert len(ids) == 1, (w, ids)
    return tok


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------


def make_text_encoder(tok: CLIPTokenizer) -> CLIPTextModel:
    torch.manual_seed(1)
    config = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        projection_dim=64,
    )
    return CLIPTextModel(config).eval()


def make_vae() -> AutoencoderKL:
    torch.manual_seed(2)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
        scaling_factor=1.0,
    )


def make_unet(text_dim: int) -> UNet2DConditionModel:
    torch.manual_seed(3)
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // VAE_FACTOR,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=16,
        cross_attention_dim=text_dim,
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def make_pipeline(
    tok: CLIPTokenizer, te: CLIPTextModel, vae: AutoencoderKL, unet: UNet2DConditionModel
) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(pipe: StableDiffusionPipeline, out: Path, tokenizer_src: Path) -> None:
    """Save atomically-ish (tmp folder + rename), keep vocab.json/merges.txt, fix modes."""
    out = out.resolve()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copyfile(tokenizer_src / name, tmp / "tokenizer" / name)
    (tmp / "README.md").write_text(MODEL_CARD, encoding="utf-8")
    add_looks(pipe, tmp)
    for path in tmp.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log.info("saved %s (%.2f MB)", out, size / 1e6)


LORA_FILE = Path("loras") / "tiny-brand.safetensors"


def add_looks(pipe: StableDiffusionPipeline, folder: Path) -> None:
    """The random-weight IP-Adapter (+ image encoder) and LoRA beside the pipeline in
    ``folder`` (``scripts/tiny_looks.py``), from fixed seeds."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_looks import save_ip_adapter, save_lora

    save_ip_adapter(pipe.unet, folder, seed=5)
    save_lora(pipe, folder / LORA_FILE, seed=6)


MODEL_CARD = """\
# tiny: onbrand's bundled offline demo checkpoint

Built by `scripts/build_tiny.py` from fixed seeds, with nothing downloaded: a
Stable-Diffusion-layout pipeline (UNet2DConditionModel with a text add-embedding, an
AutoencoderKL that downsamples 4x, a random frozen two-layer CLIP text encoder with its own
626-token vocabulary, DDIM with v-prediction). Trained for 48 minutes on a 2-core CPU, only on
flat 64 px pictures of "COLOUR SHAPE on COLOUR background" (red, green, blue, yellow; circle,
square). It is a demo and test fixture, not a useful image model: other prompts give colourful
blobs. Load it with `diffusers.AutoPipelineForText2Image.from_pretrained(path)`.

Beside it, random-weight (untrained) brand looks from fixed seeds: `ip_adapter/` (an IP-Adapter
and its two-layer CLIP image encoder: `pipe.load_ip_adapter(path, subfolder="ip_adapter",
weight_name="ip-adapter_tiny.safetensors")`) and `loras/tiny-brand.safetensors` (a rank-4 LoRA).
They change the pixels repeatably; they carry no recognisable look.
"""

# ---------------------------------------------------------------------------------------------
# Synthetic dataset
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    fg: str
    shape: str
    bg: str
    caption: str


def draw(sample: Sample, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """One picture as float32 CHW in [-1, 1]: a flat shape on a flat background."""

    def jitter(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in rgb)  # type: ignore[return-value]

    img = Image.new("RGB", (size, size), jitter(COLOURS[sample.bg]))
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.2, 0.34) * size  # half the shape's extent
    cx, cy = rng.uniform(r + 2, size - r - 2, size=2)
    box = (cx - r, cy - r, cx + r, cy + r)
    fill = jitter(COLOURS[sample.fg])
    if sample.shape == "circle":
        d.ellipse(box, fill=fill)
    else:
        d.rectangle(box, fill=fill)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return arr.transpose(2, 0, 1)


def random_samples(rng: np.random.Generator, n: int) -> list[Sample]:
    colours = list(COLOURS)
    out = []
    for _ in range(n):
        fg = colours[rng.integers(len(colours))]
        bg = colours[rng.integers(len(colours) - 1)]
        if bg == fg:
            bg = colours[-1]
        shape = SHAPES[rng.integers(len(SHAPES))]
        template = TEMPLATES[rng.integers(len(TEMPLATES))]
        out.append(Sample(fg, shape, bg, template.format(fg=fg, shape=shape, bg=bg)))
    return out


def image_batches(rng: np.random.Generator, batch: int) -> Iterator[torch.Tensor]:
    while True:
        yield torch.from_numpy(np.stack([draw(s, rng) for s in random_samples(rng, batch)]))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train_vae(vae: AutoencoderKL, steps: int, deadline: float) -> None:
    rng = np.random.default_rng(10)
    torch.manual_seed(10)
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    batches = image_batches(rng, 16)
    t0 = time.monotonic()
    for step in range(1, steps + 1):
        x = next(batches)
        post = vae.encode(x).latent_dist
        z = post.sample()
        rec = vae.decode(z).sample
        rec_loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x)
        kl = post.kl().mean() / (x[0].numel())
        loss = rec_loss + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            log.info(
                "vae step %d/%d rec %.4f kl %.1f (%.0f s)",
                step,
                steps,
                rec_loss.item(),
                kl.item(),
                time.monotonic() - t0,
            )
        if time.monotonic() > deadline:
            log.warning("vae: time budget reached at step %d of %d", step, steps)
            break
    vae.eval()


def polish_decoder(vae: AutoencoderKL, steps: int) -> None:
    """Fine-tune only the decoder (the encoder, hence the latents the UNet learnt, stay fixed)."""
    rng = np.random.default_rng(40)
    torch.manual_seed(40)
    vae.requires_grad_(False)
    trainable = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    vae.train()
    opt = torch.optim.AdamW(trainable, lr=5e-4, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-4, total_steps=steps, pct_start=0.05)
    batches = image_batches(rng, 16)
    t0 = time.monotonic()
    for step in range(1, steps + 1):
        x = next(batches)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            log.info(
                "decoder step %d/%d rec %.4f (%.0f s)",
                step,
                steps,
                loss.item(),
                time.monotonic() - t0,
            )
    vae.requires_grad_(False)
    vae.eval()


@torch.no_grad()
def encode_dataset(
    vae: AutoencoderKL, te: CLIPTextModel, tok: CLIPTokenizer, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latents (scaled) for n pictures, plus the caption-embedding table and index per picture."""
    rng = np.random.default_rng(20)
    samples = random_samples(rng, n)
    captions = ["", *sorted({s.caption for s in samples})]
    ids = tok(captions, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt")
    table = te(ids.input_ids)[0]
    index = torch.tensor([captions.index(s.caption) for s in samples])
    lat = []
    for i in range(0, n, 64):
        x = torch.from_numpy(np.stack([draw(s, rng) for s in samples[i : i + 64]]))
        lat.append(vae.encode(x).latent_dist.mode())
    latents = torch.cat(lat)
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)
    log.info("encoded %d pictures, %d captions, scaling_factor %.4f", n, len(captions), scale)
    return latents * scale, table, index


def train_unet(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    table: torch.Tensor,
    index: torch.Tensor,
    steps: int,
    batch: int,
    deadline: float,
    stop_after: int,
    checkpoint: Callable[[UNet2DConditionModel, int], None],
    checkpoint_every_s: float,
) -> tuple[UNet2DConditionModel, int]:
    torch.manual_seed(30)
    gen = torch.Generator().manual_seed(30)
    noise_sched = DDPMScheduler(
        **{k: v for k, v in SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"}
    )
    ema = UNet2DConditionModel.from_config(unet.config)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-3, total_steps=steps, pct_start=0.03, final_div_factor=20
    )
    t0 = last_ckpt = time.monotonic()
    running = 0.0
    for step in range(1, steps + 1):
        pick = torch.randint(0, len(latents), (batch,), generator=gen)
        x0 = latents[pick]
        cap = index[pick].clone()
        cap[torch.rand(batch, generator=gen) < NEUTRAL_PROMPT_DROP] = 0  # "" caption
        cond = table[cap]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        xt = noise_sched.add_noise(x0, noise, t)
        target = noise_sched.get_velocity(x0, noise, t)
        pred = unet(xt, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters(), strict=True):
                pe.lerp_(p, 1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        now = time.monotonic()
        if step % 100 == 0 or step == steps:
            log.info("unet step %d/%d loss %.4f (%.0f s)", step, steps, running, now - t0)
        if now - last_ckpt > checkpoint_every_s:
            checkpoint(ema, step)
            last_ckpt = now
        if now > deadline:
            log.warning("unet: time budget reached at step %d of %d", step, steps)
            break
        if step == stop_after:
            log.info("unet: stopping at step %d as asked (schedule length %d)", step, steps)
            break
    return ema.eval(), step


# ---------------------------------------------------------------------------------------------
# Evaluation: does the prompt steer the colours?
# ---------------------------------------------------------------------------------------------


STEERING_PROMPTS = {
    "red": "a red circle on a green background",
    "blue": "a blue circle on a green background",
}
STEERING_SEEDS = tuple(range(8))


@torch.no_grad()
def steering_report(path: Path, steps: int = 20) -> dict[str, object]:
    """Mean R−B per image for a red and a blue shape on the same background, seeds 0–7, 64 px.

    The same measurement as tests/engines/test_tiny_model.py; images are floats in [0, 1].
    """
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    report: dict[str, object] = {}
    per_seed: dict[str, np.ndarray] = {}
    for colour, prompt in STEERING_PROMPTS.items():
        images = pipe(
            [prompt] * len(STEERING_SEEDS),
            height=64,
            width=64,
            num_inference_steps=steps,
            generator=[torch.Generator().manual_seed(s) for s in STEERING_SEEDS],
            output_type="np",
        ).images
        per_seed[colour] = (images[..., 0] - images[..., 2]).mean(axis=(1, 2))
        report[f"{colour}: mean R-B"] = round(float(per_seed[colour].mean()), 4)
        report[f"{colour}: R-B per seed"] = [round(float(v), 3) for v in per_seed[colour]]
    report["seeds where red > blue"] = int((per_seed["red"] > per_seed["blue"]).sum())
    return report


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build(out: Path, work: Path) -> StableDiffusionPipeline:
    tok = make_tokenizer(work / "tokenizer-src")
    te = make_text_encoder(tok)
    vae = make_vae()
    unet = make_unet(te.config.hidden_size)
    pipe = make_pipeline(tok, te, vae, unet)
    save_pipeline(pipe, out, work / "tokenizer-src")
    return pipe


def train(args: argparse.Namespace) -> None:
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    deadline = t_start + args.max_minutes * 60
    tok = make_tokenizer(work / "tokenizer-src")
    te = make_text_encoder(tok)
    te.requires_grad_(False)
    vae = make_vae()
    n_params = {
        "unet": sum(p.numel() for p in make_unet(te.config.hidden_size).parameters()),
        "vae": sum(p.numel() for p in vae.parameters()),
        "text_encoder": sum(p.numel() for p in te.parameters()),
    }
    log.info("parameters: %s", n_params)

    vae_path = work / "vae.safetensors"
    if vae_path.exists() and not args.retrain_vae:
        from safetensors.torch import load_file

        vae.load_state_dict(load_file(vae_path))
        log.info("reusing trained VAE from %s", vae_path)
    else:
        train_vae(vae, args.vae_steps, deadline)
        from safetensors.torch import save_file

        save_file(vae.state_dict(), vae_path)
    vae.requires_grad_(False)
    latents, table, index = encode_dataset(vae, te, tok, args.pictures)

    unet = make_unet(te.config.hidden_size)

    def checkpoint(model: UNet2DConditionModel, step: int) -> None:
        save_pipeline(
            make_pipeline(tok, te, vae, model), work / "checkpoint", work / "tokenizer-src"
        )
        (work / "checkpoint" / "STEP").write_text(f"{step}\n")

    ema, last_step = train_unet(
        unet,
        latents,
        table,
        index,
        steps=args.unet_steps,
        batch=args.batch,
        deadline=deadline,
        stop_after=args.stop_after or args.unet_steps,
        checkpoint=checkpoint,
        checkpoint_every_s=args.checkpoint_minutes * 60,
    )
    checkpoint(ema, last_step)
    log.info("UNet training took %.1f min", (time.monotonic() - t_start) / 60)
    polish(work, args.decoder_steps)
    log.info("training took %.1f min", (time.monotonic() - t_start) / 60)
    assemble(work, args.out)


def polish(work: Path, steps: int) -> None:
    """work/vae.safetensors → work/vae-polished.safetensors (decoder fine-tuned)."""
    from safetensors.torch import load_file, save_file

    vae = make_vae()
    vae.load_state_dict(load_file(work / "vae.safetensors"))
    polish_decoder(vae, steps)
    save_file(vae.state_dict(), work / "vae-polished.safetensors")


def assemble(work: Path, out: Path) -> None:
    """work/checkpoint (EMA UNet) + the polished decoder → out; print the steering numbers."""
    from safetensors.torch import load_file

    pipe = StableDiffusionPipeline.from_pretrained(work / "checkpoint")
    polished = work / "vae-polished.safetensors"
    if polished.exists():
        pipe.vae.load_state_dict(load_file(polished))
    save_pipeline(pipe, out, work / "tokenizer-src")
    log.info("steering (mean R-B by foreground colour): %s", steering_report(out))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="save an untrained pipeline (seconds)")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--work", type=Path, default=Path("/tmp/tiny-build"))
    t = sub.add_parser("train", help="train the VAE then the UNet; save to --out at the end")
    t.add_argument("--work", type=Path, default=Path("/tmp/tiny-train"))
    t.add_argument("--out", type=Path, default=DEFAULT_OUT)
    t.add_argument("--vae-steps", type=int, default=600)
    t.add_argument("--unet-steps", type=int, default=4000)
    t.add_argument("--decoder-steps", type=int, default=800)
    t.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop the UNet at this step (the schedule still spans --unet-steps)",
    )
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--pictures", type=int, default=8192)
    t.add_argument("--max-minutes", type=float, default=50.0)
    t.add_argument("--checkpoint-minutes", type=float, default=4.0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--retrain-vae", action="store_true")
    pol = sub.add_parser("polish", help="fine-tune the decoder of work/vae.safetensors")
    pol.add_argument("--work", type=Path, default=Path("/tmp/tiny-train"))
    pol.add_argument("--decoder-steps", type=int, default=800)
    pol.add_argument("--threads", type=int, default=2)
    asm = sub.add_parser("assemble", help="work/checkpoint + polished decoder → --out")
    asm.add_argument("--work", type=Path, default=Path("/tmp/tiny-train"))
    asm.add_argument("--out", type=Path, default=DEFAULT_OUT)
    lk = sub.add_parser("looks", help="(re)make ip_adapter/ and loras/ in a saved pipeline")
    lk.add_argument("--out", type=Path, default=DEFAULT_OUT)
    lk.add_argument("--references", type=Path, help="also draw the example's reference images here")
    e = sub.add_parser("eval", help="print the steering numbers of a saved pipeline")
    e.add_argument("path", type=Path, nargs="?", default=DEFAULT_OUT)
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.cmd == "build":
        build(args.out, args.work)
    elif args.cmd in ("train", "polish"):
        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(True)
        if args.cmd == "train":
            train(args)
        else:
            polish(args.work, args.decoder_steps)
    elif args.cmd == "assemble":
        assemble(args.work, args.out)
    elif args.cmd == "looks":
        add_looks(StableDiffusionPipeline.from_pretrained(args.out), args.out)
        (args.out / "README.md").write_text(MODEL_CARD, encoding="utf-8")
        if args.references:
            from tiny_looks import draw_references

            draw_references(args.references)
    else:
        print(json.dumps(steering_report(args.path)))


if __name__ == "__main__":
    main()
