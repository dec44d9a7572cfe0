"""Cutting a product out of a photo: the ``Matter`` port's two implementations.

- ``KeyOut`` (the default): the deterministic key-out from the photo's borders
  (``core.imaging.product.product_alpha``): plain backgrounds only, no model.
- ``OnnxMatter``: a learned matting / salient-object model in **ONNX** format from a local folder,
  run by ONNX Runtime on the CPU (the ``matting`` extra: ``pip install 'onbrand[matting]'``; no
  torch, so a bot process can run it). Never downloaded: the operator puts the files there. The
  interface is the one the common background-removal models exported to ONNX share (U²-Net,
  IS-Net, BiRefNet, RMBG…): one input ``1 × 3 × H × W`` (RGB, scaled to 0–1, then ``(x - mean) /
  std``), the first output ``1 × 1 × H × W`` (or ``1 × H × W``), higher = product. The folder:

  - ``model.onnx``
  - ``matting.json`` (optional): ``{"size": [W, H], "mean": [..3], "std": [..3],
    "output": "minmax" | "sigmoid" | "clip"}``. ``size`` defaults to the model's own input size
    when that is fixed (else 1024 × 1024); ``mean``/``std`` default to ImageNet's;
    ``output`` says how raw outputs become 0–1 (``minmax``, the default, as rembg does for
    U²-Net; ``sigmoid`` for logits; ``clip`` when the model already gives 0–1).

  The photo is resized to ``size`` (bilinear), the output resized back (bilinear) to the photo's
  size and scaled to 0–255; then confident levels are snapped (``SOLID``: 16 or less is
  background, 239 or more product, exactly), since a model's "sure" is 0.98 rather than 1 and
  only fully opaque pixels are kept bit for bit in a product shot. A PNG with real transparency
  keeps its own alpha whichever matter is configured. The result must show a clear subject
  (0.5 %–95 % of the photo), else the same ``UserError`` as the key-out: what to send instead.

``matter_from_settings`` builds the configured one (``ONBRAND_MATTING_MODEL``) **at start-up**:
a folder that is missing, has no ``model.onnx``, or holds a model ONNX Runtime can't load, or the
extra not installed, is a ``ConfigError`` naming the setting, before any request; ``onbrand
doctor`` runs the same check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image

from core.errors import ConfigError, UserError
from core.imaging.product import SEND_PRODUCT, product_alpha
from core.ports import Matter
from core.settings import Settings

__all__ = ["KeyOut", "OnnxMatter", "matter_from_settings"]

SETTING: Final = "ONBRAND_MATTING_MODEL"
IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
IMAGENET_STD: Final = (0.229, 0.224, 0.225)
OUTPUTS: Final = ("minmax", "sigmoid", "clip")
SOLID: Final = (16, 239)  # a matte at or past these is background / product, exactly 0 / 255
# the levels in between stretched to 1–254: a model's "sure" is 0.98, not 1.0, and only fully
# opaque pixels are kept bit for bit in a product shot
_SNAP: Final = [
    0 if v <= SOLID[0] else 255 if v >= SOLID[1] else
    max(1, min(254, round((v - SOLID[0]) * 255 / (SOLID[1] - SOLID[0]))))
    for v in range(256)
]  # fmt: skip


class KeyOut:
    """The deterministic key-out from the borders (the default ``Matter``)."""

    name = "key-out"

    def alpha(self, image: Image.Image) -> Image.Image:
        return product_alpha(image)


@dataclass(frozen=True)
class _Spec:
    size: tuple[int, int]  # width, height the model takes
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str


class OnnxMatter:
    """A learned matting model (ONNX) from ``folder``; loaded here, once (``ConfigError`` when
    it can't be)."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        model = folder / "model.onnx"
        if not folder.is_dir():
            raise ConfigError(f"{SETTING}={folder}: there is no such folder.")
        if not model.is_file():
            raise ConfigError(
                f"{SETTING}={folder}: the folder has no model.onnx (put the ONNX matting model "
                "there; onbrand never downloads one)."
            )
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError(
                f"{SETTING} is set but ONNX Runtime isn't installed: "
                "pip install 'onbrand[matting]'."
            ) from None
        try:
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3  # errors only
            self._session = onnxruntime.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ONNX Runtime raises its own untyped errors
            raise ConfigError(
                f"{SETTING}={folder}: ONNX Runtime can't load model.onnx: {exc}"
            ) from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
            shapes = [i.shape for i in inputs]
            raise ConfigError(
                f"{SETTING}={folder}: the model takes {shapes}; a matting model takes one "
                "1 × 3 × H × W image."
            )
        self._input = inputs[0].name
        self._spec = _read_spec(folder, inputs[0].shape)
        self.folder = folder
        self.name = f"onnx:{folder.name}"

    @property
    def size(self) -> tuple[int, int]:
        return self._spec.size

    def alpha(self, image: Image.Image) -> Image.Image:
        """The product's alpha: its own transparency, or the model's matte."""
        if image.mode == "RGBA" and int(np.asarray(image.getchannel("A")).min()) < 255:
            return product_alpha(image)  # used as is (and a fully transparent one refused)
        matte = self.matte(image)
        subject = float((np.asarray(matte) >= 128).mean())
        if not 0.005 <= subject <= 0.95:
            raise UserError(
                f"No clear product stands out in the photo ({100 * subject:.1f}% of it looks like "
                f"one). {SEND_PRODUCT}."
            )
        return matte

    def matte(self, image: Image.Image) -> Image.Image:
        """The model's output for ``image`` as an ``L`` image of its size (0–255)."""
        spec = self._spec
        rgb = image.convert("RGB").resize(spec.size, Image.Resampling.BILINEAR)
        mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
        x = (np.asarray(rgb, dtype=np.float32) / np.float32(255.0) - mean) / std
        batch = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
        raw = np.asarray(self._session.run(None, {self._input: batch})[0], dtype=np.float64)
        if raw.ndim < 2 or raw.size != raw.shape[-1] * raw.shape[-2]:
            raise RuntimeError(f"the matting model answered {raw.shape}, not one H × W map")
        out: np.ndarray[Any, np.dtype[np.float64]] = raw.reshape(raw.shape[-2:])
        if spec.output == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-out))
        elif spec.output == "minmax":
            low, high = float(out.min()), float(out.max())
            out = (out - low) / (high - low) if high > low else np.zeros_like(out)
        out = np.clip(out, 0.0, 1.0)
        matte = Image.fromarray(np.round(out * 255).astype(np.uint8), "L")
        matte = matte.resize(image.size, Image.Resampling.BILINEAR)
        return matte.point(_SNAP)


def _read_spec(folder: Path, shape: list[Any]) -> _Spec:
    path = folder / "matting.json"
    raw: dict[str, Any] = {}
    if path.is_file():
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{SETTING}: {path} isn't readable JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{SETTING}: {path} must hold a JSON object.")
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape[2:]]
    default = (fixed[1], fixed[0]) if None not in fixed else (1024, 1024)
    try:
        size = tuple(int(v) for v in raw.get("size", default))
        mean = tuple(float(v) for v in raw.get("mean", IMAGENET_MEAN))
        std = tuple(float(v) for v in raw.get("std", IMAGENET_STD))
    except (TypeError, ValueError):
        raise ConfigError(
            f"{SETTING}: {path}: size, mean and std must be lists of numbers."
        ) from None
    output = str(raw.get("output", "minmax"))
    if len(size) != 2 or min(size) < 8 or len(mean) != 3 or len(std) != 3 or 0.0 in std:
        raise ConfigError(f"{SETTING}: {path}: size is [W, H] (8 px or more), mean and std 3 each.")
    if output not in OUTPUTS:
        raise ConfigError(f"{SETTING}: {path}: output is one of {', '.join(OUTPUTS)}.")
    if None not in fixed and size != default:
        raise ConfigError(
            f"{SETTING}: {path}: size {list(size)} but the model takes {default[0]} × "
            f"{default[1]}; leave size out."
        )
    return _Spec((size[0], size[1]), (mean[0], mean[1], mean[2]), (std[0], std[1], std[2]), output)


def matter_from_settings(settings: Settings) -> Matter:
    """The configured ``Matter``: ``OnnxMatter`` when ``ONBRAND_MATTING_MODEL`` names a folder,
    else the key-out. Raises ``ConfigError`` (at start-up) when the folder can't be used."""
    if settings.matting_model is None:
        return KeyOut()
    return OnnxMatter(settings.matting_model)
