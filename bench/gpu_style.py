"""The ``--style`` cell of ``bench/gpu.py``: a random IP-Adapter on the benchmarked pipeline."""

from __future__ import annotations

from typing import Any


def add_style(pipe: Any, refs: int = 2, scale: float = 0.7) -> dict[str, Any]:
    """Load a random IP-Adapter for ``pipe``'s UNet (``scripts/tiny_looks.py``, image embeddings
    1280 wide as SDXL's ViT-bigG gives) with diffusers' loader, as onbrand's engine does for a
    style code; the call arguments with ``refs`` cached reference embeddings (CFG halves)."""
    import torch

    from scripts.tiny_looks import ip_adapter_state_dict

    flat = ip_adapter_state_dict(pipe.unet, image_embed_dim=1280)
    nested: dict[str, dict[str, Any]] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        part, _, name = key.partition(".")
        nested[part][name] = value.to(pipe.unet.device, pipe.unet.dtype)
    pipe.load_ip_adapter(nested, subfolder="", weight_name="", image_encoder_folder=None)
    pipe.set_ip_adapter_scale(scale)
    embeds = torch.randn((2, refs, 1280), device=pipe.unet.device, dtype=pipe.unet.dtype)
    return {"ip_adapter_image_embeds": [embeds]}
