"""Random-weight brand looks for a tiny pipeline: an IP-Adapter (+ its CLIP image encoder) and a
LoRA, made the way diffusers' own tests make theirs (``create_ip_adapter_state_dict`` in
``tests/models/unets/test_models_unet_2d_condition.py``), saved in the layouts diffusers'
loaders read (``load_ip_adapter(folder, subfolder=..., weight_name=...)``, ``load_lora_weights``).

They are *random*, not trained: they change the pixels in a repeatable way (the tests measure
by how much), they do not carry a look a person would recognise. Fixed seeds, a few hundred KB.

    python scripts/build_tiny.py looks --out core/engines/tiny
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IP_ADAPTER_FOLDER = "ip_adapter"
IP_ADAPTER_WEIGHTS = "ip-adapter_tiny.safetensors"
IMAGE_ENCODER_FOLDER = "image_encoder"  # inside IP_ADAPTER_FOLDER, where diffusers looks
IMAGE_EMBED_DIM = 32
IP_GAIN = 4.0  # random to_k/to_v weights scaled up so a reference visibly moves the picture


def _hidden_size(unet: Any, name: str) -> int:
    channels = list(unet.config.block_out_channels)
    if name.startswith("mid_block"):
        return int(channels[-1])
    block = int(name.split(".")[1])
    return int(list(reversed(channels))[block] if name.startswith("up_blocks") else channels[block])


def ip_adapter_state_dict(
    unet: Any, *, seed: int = 0, image_embed_dim: int = IMAGE_EMBED_DIM
) -> dict[str, Any]:
    """``image_proj.*`` and ``ip_adapter.*`` tensors (one safetensors file) for ``unet``."""
    import torch
    from diffusers.models.embeddings import ImageProjection

    torch.manual_seed(seed)
    cross = int(unet.config.cross_attention_dim)
    tensors: dict[str, Any] = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        hidden = _hidden_size(unet, name)
        to_k, to_v = (
            torch.nn.Linear(cross, hidden, bias=False),
            torch.nn.Linear(cross, hidden, bias=False),
        )
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = to_k.weight.detach() * IP_GAIN
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = to_v.weight.detach() * IP_GAIN
        key_id += 2
    projection = ImageProjection(
        cross_attention_dim=cross, image_embed_dim=image_embed_dim, num_image_text_embeds=4
    ).state_dict()
    tensors["image_proj.proj.weight"] = projection["image_embeds.weight"]
    tensors["image_proj.proj.bias"] = projection["image_embeds.bias"]
    tensors["image_proj.norm.weight"] = projection["norm.weight"]
    tensors["image_proj.norm.bias"] = projection["norm.bias"]
    return {k: v.contiguous() for k, v in tensors.items()}


def image_encoder(*, seed: int = 0) -> Any:
    """A two-layer CLIP vision model with a projection, 32 px input."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=IMAGE_EMBED_DIM,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=4,
    )
    return CLIPVisionModelWithProjection(config).eval()


def save_ip_adapter(unet: Any, folder: Path, *, seed: int = 0) -> Path:
    """``folder/ip_adapter/{ip-adapter_tiny.safetensors, image_encoder/}``; returns the
    adapter's folder."""
    from safetensors.torch import save_file

    out = folder / IP_ADAPTER_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    save_file(ip_adapter_state_dict(unet, seed=seed), str(out / IP_ADAPTER_WEIGHTS))
    image_encoder(seed=seed).save_pretrained(out / IMAGE_ENCODER_FOLDER, safe_serialization=True)
    _readable(out)
    return out


def save_lora(pipe: Any, out: Path, *, seed: int = 0, rank: int = 4) -> Path:
    """A random LoRA (rank ``rank``, non-zero B) on the UNet's attention projections, saved as
    ``out`` (.safetensors) in the format diffusers' ``save_lora_weights`` writes."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        init_lora_weights=False,
    )
    pipe.unet.add_adapter(config)
    layers = get_peft_model_state_dict(pipe.unet)
    pipe.unet.delete_adapters("default")
    out.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(
        str(out.parent), weight_name=out.name, safe_serialization=True, unet_lora_layers=layers
    )
    _readable(out.parent)
    return out


def _readable(folder: Path) -> None:
    """safetensors files come out 0600: make them readable by the worker's user."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def draw_references(folder: Path) -> list[Path]:
    """Two 64 px reference pictures in the ACME palette (teal, coral, cream) for the styled
    example preset: diagonal stripes and concentric rings, drawn from numbers alone."""
    import numpy as np
    from PIL import Image

    teal, coral, cream = (
        np.array((0, 166, 166)),
        np.array((255, 111, 89)),
        np.array((244, 241, 222)),
    )
    y, x = np.mgrid[0:64, 0:64]
    stripes = np.where((((x + y) // 8) % 2 == 0)[..., None], teal, coral)
    rings = np.where(((np.hypot(x - 32, y - 32) // 6) % 2 == 0)[..., None], cream, teal)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, pixels in (("stripes.png", stripes), ("rings.png", rings)):
        path = folder / name
        Image.fromarray(pixels.astype("uint8"), "RGB").save(path, optimize=True)
        out.append(path)
    return out
