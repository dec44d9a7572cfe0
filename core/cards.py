"""The neutral cards the adapters render: status while queued/running, then the result."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

from core.domain import (
    EDIT_ACTIONS,
    Action,
    ActionKind,
    CardImage,
    Generation,
    GenerationKind,
    GenerationStatus,
    ResultCard,
)
from core.humanise import duration
from core.imaging.canvas import REGIONS
from core.imaging.grid import make_grid
from core.imaging.preview import encode_preview

# The "Vary (Region)" menu: (value, label) in reading order; the values are
# core.imaging.canvas.REGIONS' names, what ``Service.edit(region=…)`` takes.
REGION_CHOICES: tuple[tuple[str, str], ...] = tuple(
    (name, name.replace("-", " ").capitalize())
    for name in (
        *("top-left", "top-center", "top-right"),
        *("middle-left", "center", "middle-right"),
        *("bottom-left", "bottom-center", "bottom-right"),
        *("top-half", "bottom-half", "left-half", "right-half"),
    )
)
assert set(dict(REGION_CHOICES)) == set(REGIONS), "the menu offers every region, and only those"

DEFAULT_PREVIEW_BYTES = 8 * 1024 * 1024  # under Discord's 10 MB and Slack's limits
PREVIEW_SIDE = 2048
SMALL_SIDE = 512  # tiny demo images are enlarged to this so chat shows them legibly


def status_card(
    generation: Generation,
    *,
    position: int | None = None,
    eta_seconds: float | None = None,
    progress: float | None = None,
) -> ResultCard:
    """'Queued (#3, ~40 s)' or 'Generating… 60%', with ✖ while it can still be cancelled."""
    what = _what(generation)
    if generation.status is GenerationStatus.RUNNING or (progress and progress > 0):
        text = f"⏳ Generating {what}… {round((progress or 0) * 100)}%"
    else:
        where = f"#{position}" if position else "waiting"
        eta = f", about {duration(eta_seconds)}" if eta_seconds else ""
        text = f"🕒 Queued ({where}{eta}): {what}"
    return ResultCard(
        text=text,
        actions=(Action(ActionKind.CANCEL, generation.id),),
        fields=_fields(generation),
    )


def result_card(
    generation: Generation,
    originals: Sequence[bytes],
    *,
    max_bytes: int = DEFAULT_PREVIEW_BYTES,
    placements: Sequence[tuple[str, str]] = (),
) -> ResultCard:
    """The finished result: a grid preview (or the single image) and its buttons. A single
    image gets 📦 Pack and, given its preset's ``placements`` (value, label), a menu of them."""
    if generation.status is GenerationStatus.FAILED:
        return ResultCard(text=f"⚠️ {generation.error or 'generation failed'}: {_what(generation)}")
    if generation.status is GenerationStatus.CANCELLED:
        return ResultCard(text=f"✖ {generation.error or 'Cancelled'}: {_what(generation)}")
    images = [Image.open(io.BytesIO(data)) for data in originals]
    picture: Image.Image
    if len(images) == 1:
        picture = images[0]
        actions: tuple[Action, ...] = (
            Action(ActionKind.VARY, generation.id, 1),
            Action(ActionKind.REMIX, generation.id, 1),  # this image alone, its seed kept
            *(Action(kind, generation.id, 1) for kind in EDIT_ACTIONS),  # zoom out, pan
            Action(ActionKind.VARY_REGION, generation.id, 1),  # a menu of REGION_CHOICES
            Action(ActionKind.PACK, generation.id, 1),
        )
        if placements:
            pick = Action(ActionKind.PACK_SELECT, generation.id, 1, choices=tuple(placements))
            actions = (*actions, pick)
        name = f"onbrand-{generation.id}-1.jpg"
    else:
        picture = make_grid(images)
        count = len(images)
        actions = (
            *(Action(ActionKind.UPSCALE, generation.id, i) for i in range(1, count + 1)),
            *(Action(ActionKind.VARY, generation.id, i) for i in range(1, count + 1)),
            Action(ActionKind.REROLL, generation.id),
            Action(ActionKind.REMIX, generation.id),
        )
        name = f"onbrand-{generation.id}-grid.jpg"
    if max(picture.size) < SMALL_SIDE:
        factor = max(1, SMALL_SIDE // max(picture.size))
        picture = picture.resize(
            (picture.width * factor, picture.height * factor), Image.Resampling.NEAREST
        )
    preview = encode_preview(picture, max_bytes=max_bytes, max_side=PREVIEW_SIDE)
    return ResultCard(
        text=f"✅ {_what(generation)}",
        images=(CardImage(name, preview, "image/jpeg"),),
        actions=actions,
        fields=_fields(generation),
    )


def closing_card(generation: Generation) -> ResultCard:
    """What the status message says once the result is posted (no buttons any more)."""
    text = {
        GenerationStatus.DONE: "✅ Done — the images are below.",
        GenerationStatus.FAILED: "⚠️ Failed — details below.",
        GenerationStatus.CANCELLED: "✖ Cancelled.",
    }.get(generation.status, "")
    return ResultCard(text=text)


def _what(generation: Generation) -> str:
    prompt = generation.raw_prompt
    short = prompt if len(prompt) <= 120 else prompt[:117] + "…"
    label = {
        GenerationKind.IMAGINE: "",
        GenerationKind.REROLL: f"remix of image {generation.source_index} of "
        if generation.source_index
        else "reroll of ",
        GenerationKind.VARIATION: f"variation of image {generation.source_index} of ",
        GenerationKind.UPSCALE: f"upscale of image {generation.source_index} of ",
        GenerationKind.IMAGE_PROMPT: "from your image: ",
        GenerationKind.PRODUCT: "product shot: ",
        GenerationKind.ZOOM_OUT: f"zoom out of image {generation.source_index} of ",
        GenerationKind.PAN: f"pan of image {generation.source_index} of ",
        GenerationKind.VARY_REGION: f"region of image {generation.source_index} varied, ",
        GenerationKind.PACK: f"📦 pack of image {generation.source_index} of ",
    }[generation.kind]
    return f"{label}“{short}”"


def _fields(generation: Generation) -> tuple[tuple[str, str], ...]:
    params = generation.params
    fields = [
        ("seed", str(params.seed)),
        ("preset", f"{params.preset} ({params.preset_version})"),
        ("size", f"{params.width}×{params.height}"),
    ]
    if params.style_code:  # the brand look: shown on every card of a styled generation
        fields.append(("style", f"{params.style_code} at {params.style_weight:g}"))
    if generation.campaign:
        fields.append(("campaign", generation.campaign))
    return tuple(fields)
