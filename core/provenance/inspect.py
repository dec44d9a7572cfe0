"""Reading an untrusted file back: its C2PA manifest, its IPTC fields, its watermark.

Files come from anyone: at most ``MAX_BYTES``, their type sniffed from their first bytes (PNG,
JPEG, WebP; nothing else is opened), their pixel count checked from the header before anything is
decoded (``MAX_PIXELS``). Anything else is ``Unreadable`` (a ``UserError`` saying why).
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from PIL import Image

from core.errors import UserError
from core.provenance.sign import ASSERTION
from core.provenance.watermark import Found, read

MAX_BYTES: Final = 64 * 1024 * 1024
MAX_PIXELS: Final = 64_000_000
_KINDS: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}

C2paState = Literal["trusted", "valid", "invalid", "absent"]


class Unreadable(UserError):
    """The file is not an image we can read (too large, not PNG/JPEG/WebP, corrupt)."""


def sniff(data: bytes) -> str | None:
    """PNG, JPEG or WEBP from the first bytes; ``None`` for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


@dataclass(frozen=True)
class Credentials:
    """What the C2PA manifest says, and whether it holds."""

    state: C2paState
    reason: str | None = None  # why it is invalid (the SDK's failure codes), or untrusted
    signer: str | None = None  # the certificate's common name
    generation_id: str | None = None  # from our own assertion
    index: int | None = None
    kind: str | None = None
    actions: tuple[str, ...] = ()
    ingredients: tuple[str, ...] = ()  # titles, parent first, then its parents


@dataclass(frozen=True)
class Evidence:
    format: str
    width: int
    height: int
    credentials: Credentials
    iptc: dict[str, str] = field(default_factory=dict)
    watermark: Found | None = None


def _open(data: bytes) -> tuple[str, Image.Image]:
    if len(data) > MAX_BYTES:
        raise Unreadable(
            f"The file is {len(data):,} bytes; the most verify reads is {MAX_BYTES:,}."
        )
    kind = sniff(data)
    if kind is None:
        raise Unreadable("The file is not a PNG, JPEG or WebP image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=(kind,))
            if image.width * image.height > MAX_PIXELS:
                raise Unreadable(
                    f"The image is {image.width}×{image.height} pixels; the most verify reads is "
                    f"{MAX_PIXELS:,} pixels."
                )
            image.load()
    except Unreadable:
        raise
    except Image.DecompressionBombError as exc:
        raise Unreadable(f"The image has too many pixels to read safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise Unreadable(f"The {kind} file can't be decoded: {exc}") from exc
    return kind, image


def _credentials(kind: str, data: bytes, anchors: Sequence[bytes]) -> Credentials:
    import c2pa

    settings: dict[str, Any] = {"verify": {"verify_trust": bool(anchors)}}
    if anchors:
        settings["trust"] = {"trust_anchors": b"\n".join(anchors).decode("ascii", "replace")}
    try:
        with c2pa.Context(settings=c2pa.Settings.from_dict(settings)) as context:
            reader = c2pa.Reader(_KINDS[kind], io.BytesIO(data), context=context)
            with reader:
                state = reader.get_validation_state() or ""
                results = reader.get_validation_results() or {}
                store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        text = str(exc)
        if "ManifestNotFound" in text or "JumbfNotFound" in text or "not found" in text.lower():
            return Credentials("absent")
        return Credentials("invalid", reason=text.splitlines()[0][:300])
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    failures = [
        f["code"]
        for f in (results.get("activeManifest") or {}).get("failure", [])
        if isinstance(f, dict) and "code" in f
    ]
    ours: dict[str, Any] = next(
        (a.get("data", {}) for a in active.get("assertions", []) if a.get("label") == ASSERTION),
        {},
    )
    actions = tuple(
        str(action.get("action"))
        for a in active.get("assertions", [])
        if str(a.get("label", "")).startswith("c2pa.actions")
        for action in a.get("data", {}).get("actions", [])
    )
    ingredients: list[str] = []
    manifest = active
    for _ in range(32):  # follow parentOf ingredients down the chain
        parent = next(
            (i for i in manifest.get("ingredients", []) if i.get("relationship") == "parentOf"),
            None,
        )
        if parent is None:
            break
        ingredients.append(str(parent.get("title", "?")))
        manifest = store.get("manifests", {}).get(parent.get("active_manifest", ""), {})
    mapped: C2paState
    if state == "Trusted":
        mapped, reason = "trusted", None
    elif state == "Valid":
        mapped = "valid"
        reason = "signed by a certificate that is not among the trusted ones"
        if any(c != "signingCredential.untrusted" for c in failures):
            reason = ", ".join(failures)
    else:
        mapped, reason = "invalid", ", ".join(failures) or state or "invalid"
    index = ours.get("index")
    return Credentials(
        mapped,
        reason,
        signer=(active.get("signature_info") or {}).get("common_name"),
        generation_id=ours.get("generation_id")
        if isinstance(ours.get("generation_id"), str)
        else None,
        index=index if isinstance(index, int) else None,
        kind=ours.get("kind") if isinstance(ours.get("kind"), str) else None,
        actions=actions,
        ingredients=tuple(ingredients),
    )


_IPTC = re.compile(r'Iptc4xmpExt:(\w+)="([^"]*)"')


def inspect(data: bytes, secret: bytes, anchors: Sequence[bytes] = ()) -> Evidence:
    """Everything an untrusted file says about where it came from (``Unreadable`` if nothing)."""
    kind, image = _open(data)
    with image:
        xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or ""
        if isinstance(xmp, bytes):
            xmp = xmp.decode("utf-8", "replace")
        iptc = dict(_IPTC.findall(str(xmp)))
        found = read(image, secret)
        width, height = image.size
    return Evidence(kind, width, height, _credentials(kind, data, anchors), iptc, found)
