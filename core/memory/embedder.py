"""The real ``Embedder``: a CLIP model from transformers, loaded from a local folder or the
Hugging Face cache, never downloaded (``local_files_only``).

``ONBRAND_EMBEDDER=/models/clip-vit-base-patch32`` (a folder written by ``save_pretrained``, or
a hub id such as ``openai/clip-vit-base-patch32`` that is already in the cache). torch and
transformers are imported when the model is first used, so a process that never embeds never
pays for them; a bot process without them (the torch-free container) searches by keyword.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.ports import Embedder
    from core.settings import Settings

log = logging.getLogger(__name__)

NAME_MAX = 200  # image_embeddings.model


class ClipEmbedder:
    """``Embedder`` on transformers' ``CLIPModel`` + ``CLIPProcessor``. Thread-safe: one model,
    loaded once, used under a lock (torch uses every core for one batch anyway)."""

    def __init__(self, source: str, *, device: str = "cpu", batch: int = 32) -> None:
        folder = Path(source).expanduser()
        self.source = str(folder.resolve()) if folder.is_dir() else source
        self.name = self.source[-NAME_MAX:]
        self.device = device
        self.batch = batch
        self._lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None
        try:
            from transformers import CLIPConfig

            config = CLIPConfig.from_pretrained(self.source, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"ONBRAND_EMBEDDER={source}: no CLIP model there ({exc}). Give a folder written "
                "by save_pretrained, or a Hugging Face id already in the cache (onbrand never "
                "downloads models)."
            ) from None
        self.dims = int(getattr(config, "projection_dim", 0) or 0)
        if self.dims <= 0:
            raise ConfigError(f"ONBRAND_EMBEDDER={source}: the model has no projection width")

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import CLIPModel, CLIPProcessor
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # quiet CLI

            processor = CLIPProcessor.from_pretrained(self.source, local_files_only=True)
            model: Any = CLIPModel.from_pretrained(self.source, local_files_only=True)
            model.eval()
            self._model, self._processor = model.to(self.device), processor
        return self._model, self._processor

    def embed_images(self, images: Sequence[Image.Image]) -> list[list[float]]:
        return self._embed(list(images), image=True)

    def embed_texts(self, texts: Sequence[str]) -> list[list[float]]:
        return self._embed(list(texts), image=False)

    def _embed(self, items: list[Any], *, image: bool) -> list[list[float]]:
        import torch

        out: list[list[float]] = []
        with self._lock, torch.inference_mode():
            model, processor = self._load()
            for start in range(0, len(items), self.batch):
                chunk = items[start : start + self.batch]
                if image:
                    inputs = processor(
                        images=[i.convert("RGB") for i in chunk], return_tensors="pt"
                    )
                    features = model.get_image_features(**inputs.to(self.device))
                else:
                    inputs = processor(
                        text=chunk, return_tensors="pt", padding=True, truncation=True
                    )
                    features = model.get_text_features(**inputs.to(self.device))
                # transformers 5 returns the model output with the projection as pooler_output
                vectors = getattr(features, "pooler_output", features)
                vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
                out.extend(vectors.cpu().tolist())
        return out


def build_embedder(settings: Settings) -> Embedder | None:
    """The configured embedder, or None (unset, or transformers missing in this process: said
    once in the log; search is then keyword + perceptual hash)."""
    source = settings.embedder.strip()
    if not source:
        return None
    if (
        importlib.util.find_spec("transformers") is None
        or importlib.util.find_spec("torch") is None
    ):
        log.warning(
            "ONBRAND_EMBEDDER is set but this process has no transformers/torch (install "
            "onbrand[diffusers]): vector search is off here, keyword search still works"
        )
        return None
    return ClipEmbedder(source, device=settings.embedder_device)
