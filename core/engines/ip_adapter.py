"""Reference images (style codes) on a loaded pipeline, through diffusers' IP-Adapter loader.

A job's ``style`` (``core.ports.StyleJob``) names an IP-Adapter (a folder or hub id, its
subfolder and weight file, the image encoder's folder), the reference images of a style code
and a scale. ``style_kwargs`` runs on the pipeline's thread under the model's lock, like
``core.engines.loras.activate``, and returns the extra arguments of the pipeline call:

- the adapter is loaded the first time a call asks for it (``pipe.load_ip_adapter``: its
  image projection and ``IPAdapterAttnProcessor`` layers go into the shared UNet, its CLIP image
  encoder is registered on the pipeline) and stays loaded with the base model; another adapter
  replaces it (``unload_ip_adapter`` first);
- the reference set's image embeddings are computed once per (style code, adapter) and cached
  with the pipeline; each call gets ``ip_adapter_image_embeds`` (with the unconditional half when
  the call runs classifier-free guidance) and the scale (``set_ip_adapter_scale``);
- once an adapter is loaded, the UNet needs image embeddings on every call: a call without a
  style runs it at scale 0 with zero embeddings, which adds exactly nothing (the tests measure
  it equal to the base model's pixels).

The UNet families (SD 1.x/2.x, SDXL) take IP-Adapters here; a pipeline without diffusers'
IP-Adapter loader raises ``StyleLoadError`` naming the model.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from core.brand.families import model_folder
from core.ports import StyleJob

__all__ = ["StyleLoadError", "loaded_adapter", "style_kwargs"]

_ADAPTER = "_onbrand_ip_adapter"  # attribute on the loaded pipeline: which adapter is in it
_EMBEDS = "_onbrand_style_embeds"  # {(code, adapter): tensor [uncond; cond]}
_MAX_CACHED = 32


class StyleLoadError(ValueError):
    """An IP-Adapter could not be loaded onto a model."""


def _key(style: StyleJob) -> tuple[str, str, str, str]:
    return (style.adapter, style.subfolder, style.weight_name, style.image_encoder)


def loaded_adapter(pipe: Any) -> tuple[str, str, str, str] | None:
    """The adapter loaded on ``pipe`` (source, subfolder, weights, image encoder), if any."""
    found: tuple[str, str, str, str] | None = getattr(pipe, _ADAPTER, None)
    return found


def _load(pipe: Any, style: StyleJob, local_files_only: bool) -> None:
    model = type(pipe).__name__
    if not hasattr(pipe, "load_ip_adapter") or getattr(pipe, "unet", None) is None:
        raise StyleLoadError(
            f"{model} takes no IP-Adapter here: style codes run on SD 1.x/2.x and SDXL models"
        )
    if loaded_adapter(pipe) is not None:
        pipe.unload_ip_adapter()
        setattr(pipe, _ADAPTER, None)
        getattr(pipe, _EMBEDS, {}).clear()
    quiet = logging.getLogger("diffusers.models.modeling_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "modules that should be kept in float32: []"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe.load_ip_adapter(
                str(model_folder("tiny")) if style.adapter == "tiny" else style.adapter,
                subfolder=style.subfolder,
                weight_name=style.weight_name,
                image_encoder_folder=style.image_encoder,
                local_files_only=local_files_only,
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shapes = "its layers have other shapes than the model's: is it for another model family?"
        why = shapes if "size mismatch" in str(exc) or "shape" in str(exc) else first
        if hasattr(pipe, "unload_ip_adapter") and getattr(pipe, "image_encoder", None):
            pipe.unload_ip_adapter()
        raise StyleLoadError(
            f"could not load IP-Adapter {style.adapter!r} ({style.subfolder}/"
            f"{style.weight_name}) onto {model}: {why}"
        ) from exc
    finally:
        quiet.setLevel(level)
    setattr(pipe, _ADAPTER, _key(style))
    setattr(pipe, _EMBEDS, {})


def _embeds(pipe: Any, style: StyleJob) -> Any:
    """[unconditional; conditional] image embeddings of the style's references (cached)."""
    cache: dict[tuple[str, tuple[str, str, str, str]], Any] = getattr(pipe, _EMBEDS)
    key = (style.code, _key(style))
    if key not in cache:
        images = [image.convert("RGB") for image in style.images]
        (both,) = pipe.prepare_ip_adapter_image_embeds([images], None, pipe.unet.device, 1, True)
        both = both.detach()  # called outside the pipeline's no_grad: keep no graph
        if len(cache) >= _MAX_CACHED:
            cache.pop(next(iter(cache)))
        cache[key] = both
    return cache[key]


def _zeros(pipe: Any) -> Any:
    """Embeddings for a call without a style on a pipeline that has an adapter loaded."""
    weight = pipe.unet.encoder_hid_proj.image_projection_layers[0].image_embeds.weight
    return weight.new_zeros((2, 1, int(weight.shape[1])))


def _uses_cfg(pipe: Any, guidance: float) -> bool:
    """Whether the pipeline call runs classifier-free guidance (and so wants both halves)."""
    return guidance > 1.0 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None


def style_kwargs(
    pipe: Any, style: StyleJob | None, guidance: float, *, local_files_only: bool = False
) -> dict[str, Any]:
    """The IP-Adapter arguments of a call on ``pipe`` (none when no adapter was ever loaded)."""
    if style is None:
        if loaded_adapter(pipe) is None:
            return {}
        pipe.set_ip_adapter_scale(0.0)
        both = _zeros(pipe)
    else:
        if not style.images:
            raise StyleLoadError(f"style {style.code} has no reference images")
        if loaded_adapter(pipe) != _key(style):
            _load(pipe, style, local_files_only)
        pipe.set_ip_adapter_scale(float(style.scale))
        both = _embeds(pipe, style)
    return {"ip_adapter_image_embeds": [both if _uses_cfg(pipe, guidance) else both.chunk(2)[1]]}
