"""Tiny random-weight pipelines of every model family, built offline from configs.

The way diffusers' own tests prove a pipeline (``get_dummy_components`` in
tests/pipelines/{stable_diffusion*,stable_diffusion_xl,stable_diffusion_3,flux}): components from
tiny configs with fixed seeds. Their tokenizers come from the hub (``hf-internal-testing/...``),
which is out of reach here, so both are written from scratch: a byte-level ``CLIPTokenizer``
(vocab.json + merges.txt, no merges) and a ``T5TokenizerFast`` on a tiny ``tokenizers`` Unigram
model. Each pipeline is saved with safetensors into a folder the engine loads with the same
``from_pretrained`` path as a real model.

Sizes are chosen for speed at 64 px: every VAE downsamples by 4, the transformers patch 2x2, so
a 64 px image is 64 tokens.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux", "turbo")
# The folder each family is saved under; the turbo one carries its kind in its name, as hub ids
# of distilled models do (stabilityai/sd-turbo).
FOLDERS = {family: f"tiny-{family}" for family in FAMILIES} | {"turbo": "tiny-sd-turbo"}

CLIP_VOCAB = 1000
T5_VOCAB = 300


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's byte → printable character table."""
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


def clip_tokenizer(folder: Path) -> Any:
    """A byte-level CLIP tokenizer with no merges (every character a token), 515 ids."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|padding|>", *chars, *(c + "</w>" for c in chars)]
    vocab = {token: i for i, token in enumerate(tokens)}
    vocab["<|endoftext|>"] = len(vocab)  # highest id: CLIP pools at argmax(ids) when eos_id == 2
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder, pad_token="<|endoftext|>", model_max_length=77)


def t5_tokenizer() -> Any:
    """A T5 tokenizer (fast) on a Unigram model of lowercase letters and a few words."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    words = ["▁red", "▁blue", "▁green", "▁yellow", "▁circle", "▁square", "▁on", "▁background"]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(w, -1.0) for w in words]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    pieces += [(f"▁{c}", -4.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    model = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    model.normalizer = normalizers.Lowercase()
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return T5TokenizerFast(
        tokenizer_object=model,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=512,
    )


def _clip_config(**changes: Any) -> Any:
    from transformers import CLIPTextConfig

    fields: dict[str, Any] = {
        "bos_token_id": 0,
        "eos_token_id": 2,
        "hidden_size": 32,
        "intermediate_size": 37,
        "layer_norm_eps": 1e-05,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "pad_token_id": 1,
        "vocab_size": CLIP_VOCAB,
        "projection_dim": 32,
    }
    return CLIPTextConfig(**(fields | changes))


def _t5() -> Any:
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=T5_VOCAB,
        d_model=32,
        d_ff=37,
        d_kv=8,
        num_heads=4,
        num_layers=2,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def _vae(latent_channels: int = 4, **changes: Any) -> Any:
    """Three blocks: a downsampling factor of 4."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=64,
        **changes,
    )


def _unet(**changes: Any) -> Any:
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    fields: dict[str, Any] = {
        "block_out_channels": (8, 16),
        "layers_per_block": 1,
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "attention_head_dim": (2, 4),
        "cross_attention_dim": 32,
        "norm_num_groups": 4,
    }
    return UNet2DConditionModel(**(fields | changes))


def _sd(folder: Path, *, sd2: bool, scheduler: Any) -> Any:
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    unet = _unet(use_linear_projection=True) if sd2 else _unet()
    torch.manual_seed(0)
    act = {"hidden_act": "gelu"} if sd2 else {"hidden_act": "quick_gelu"}
    return StableDiffusionPipeline(
        unet=unet,
        vae=_vae(),
        text_encoder=CLIPTextModel(_clip_config(**act)),
        tokenizer=clip_tokenizer(folder / "tokenizer"),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def build_sd1(folder: Path) -> Any:
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        clip_sample=False,
    )
    return _sd(folder, sd2=False, scheduler=scheduler)


def build_sd2(folder: Path) -> Any:
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        clip_sample=False,
        prediction_type="v_prediction",
    )
    return _sd(folder, sd2=True, scheduler=scheduler)


def build_turbo(folder: Path) -> Any:
    """SD-Turbo's layout: SD 2.x weights, Euler ancestral on trailing timesteps."""
    from diffusers import EulerAncestralDiscreteScheduler

    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="trailing",
    )
    return _sd(folder, sd2=True, scheduler=scheduler)


def build_sdxl(folder: Path) -> Any:
    """Two text encoders (the second with a projection) and added time ids."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = _unet(
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + 32 pooled
        cross_attention_dim=64,  # both encoders' hidden states side by side
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_config(hidden_act="gelu"))
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(hidden_act="gelu"))
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(folder / "tokenizer"),
        tokenizer_2=clip_tokenizer(folder / "tokenizer_2"),
        unet=unet,
        scheduler=scheduler,
    )


def build_sd3(folder: Path) -> Any:
    """Three text encoders: two CLIPs with projections and a T5."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(_clip_config(hidden_act="gelu"))
    torch.manual_seed(1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(hidden_act="gelu"))
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609),
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(folder / "tokenizer"),
        text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tokenizer(folder / "tokenizer_2"),
        text_encoder_3=_t5(),
        tokenizer_3=t5_tokenizer(),
    )


def build_flux(folder: Path) -> Any:
    """A CLIP and a T5 encoder, no negative prompt, guidance embedded (FLUX.1-dev's layout)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,  # 1 latent channel, packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_config(hidden_act="gelu"))
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(
            latent_channels=1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609
        ),
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(folder / "tokenizer"),
        text_encoder_2=_t5(),
        tokenizer_2=t5_tokenizer(),
        transformer=transformer,
    )


BUILDERS: dict[str, Callable[[Path], Any]] = {
    "sd1": build_sd1,
    "sd2": build_sd2,
    "sdxl": build_sdxl,
    "sd3": build_sd3,
    "flux": build_flux,
    "turbo": build_turbo,
}


def build(family: str, root: Path) -> Path:
    """Build ``family``'s tiny pipeline and save it (safetensors) under ``root``; its folder."""
    folder = root / FOLDERS[family]
    scratch = root / f".{family}-tokenizers"
    pipe = BUILDERS[family](scratch)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def fake_hub_cache(root: Path, repos: dict[str, Path | None]) -> Path:
    """A hub cache folder as huggingface_hub lays it out: blobs, snapshots linking to them."""
    cache = root / "hub"
    for n, (repo_id, source) in enumerate(repos.items()):
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        commit = f"{n:040x}"
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
        (repo / "blobs").mkdir()
        if source is None:
            (repo / "blobs" / "c0").write_text("{}")
            os.symlink(repo / "blobs" / "c0", snapshot / "config.json")
            continue
        for i, file in enumerate(p for p in sorted(source.rglob("*")) if p.is_file()):
            blob = repo / "blobs" / f"{i:x}"
            shutil.copyfile(file, blob)
            target = snapshot / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(blob, target)
    return cache


def build_lora(model: Path, out: Path, *, seed: int = 0, rank: int = 4) -> Path:
    """A random LoRA (rank ``rank``, non-zero, fixed seed) on the attention projections of the
    denoiser of the pipeline in ``model``, saved as ``out`` (a .safetensors file) in the
    format diffusers' ``save_lora_weights`` writes (what LoRA trainers ship)."""
    import torch
    from diffusers import DiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(model)
    unet = getattr(pipe, "unet", None)
    denoiser = unet if unet is not None else pipe.transformer
    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        init_lora_weights=False,  # random B too, so the LoRA changes the output
    )
    denoiser.add_adapter(config)
    layers = get_peft_model_state_dict(denoiser)
    key = "unet_lora_layers" if unet is not None else "transformer_lora_layers"
    type(pipe).save_lora_weights(
        str(out.parent), weight_name=out.name, safe_serialization=True, **{key: layers}
    )
    return out
