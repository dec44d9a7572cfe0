"""Search results as one neutral ``ResultCard``: a numbered contact sheet of thumbnails, a line
per result, and per result "Open N" (the original, privately), "Like N" (more like this) and
"📦 N" (the campaign pack of that image, queued like the 📦 Pack button under a result)."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Sequence

from PIL import Image, ImageDraw

from core.domain import Action, ActionKind, CardImage, ResultCard
from core.memory.model import Hit, SearchResult

THUMB = 160
COLUMNS = 5


def _sheet(thumbs: Sequence[Image.Image | None]) -> bytes:
    rows = (len(thumbs) + COLUMNS - 1) // COLUMNS
    sheet = Image.new("RGB", (min(len(thumbs), COLUMNS) * THUMB, rows * THUMB), "white")
    draw = ImageDraw.Draw(sheet)
    for n, thumb in enumerate(thumbs):
        x, y = (n % COLUMNS) * THUMB, (n // COLUMNS) * THUMB
        if thumb is not None:
            sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        draw.rectangle((x + 2, y + 2, x + 26, y + 22), fill="black")
        draw.text((x + 8, y + 6), str(n + 1), fill="white")
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    return buffer.getvalue()


async def _thumb(read: Callable[[str], Awaitable[bytes]], key: str) -> Image.Image | None:
    try:
        data = await read(key)
    except KeyError:  # a missing original: its cell stays empty, the line still says which
        return None
    with Image.open(io.BytesIO(data)) as image:
        thumb = image.convert("RGB")
    # enlarge tiny demo images too, so the sheet is legible (nearest: no blur)
    scale = (THUMB - 8) / max(thumb.size)  # a white gutter between cells
    size = (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale)))
    return thumb.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)


def _line(n: int, hit: Hit) -> str:
    state = " · ✅" if hit.approved else ""
    state += f" · ★{hit.favourites}" if hit.favourites else ""
    state += f" · {hit.distance} bits apart" if hit.distance is not None else ""
    campaign = f" · {hit.campaign}" if hit.campaign else ""
    prompt = hit.prompt if len(hit.prompt) <= 80 else hit.prompt[:79] + "…"
    day = f"{hit.created_at:%Y-%m-%d}"
    return f"**{n}.** {prompt} — `{hit.ref}`{campaign} · {hit.user} · {day}{state}"


async def search_card(result: SearchResult, read: Callable[[str], Awaitable[bytes]]) -> ResultCard:
    """The private card for a search: thumbnails, a line and three buttons per result."""
    asked = f"“{result.query}”" if result.query else "your filters"
    if result.filters.like is not None:
        asked = f"images like `{result.filters.like}`" + (
            f" matching “{result.query}”" if result.query else ""
        )
    if not result.hits:
        return ResultCard(text=f"🔎 Nothing found for {asked}.", ephemeral=True)
    hits = result.hits
    lines = [f"🔎 {len(hits)} result(s) for {asked}:"]
    lines += [_line(n, h) for n, h in enumerate(hits, 1)]
    lines += [f"_{note}_" for note in result.notes]
    thumbs = [await _thumb(read, h.storage_key) for h in hits]
    actions = tuple(
        Action(kind, h.generation_id, h.index, f"{word} {n}")
        for kind, word in (
            (ActionKind.OPEN, "Open"),
            (ActionKind.LIKE, "Like"),
            (ActionKind.PACK, "📦"),
        )
        for n, h in enumerate(hits, 1)
    )
    return ResultCard(
        text="\n".join(lines),
        images=(CardImage("search.png", _sheet(thumbs)),),
        actions=actions,
        ephemeral=True,
    )


def original_card(hit: Hit, data: bytes) -> ResultCard:
    """One original, privately, with its details."""
    suffix = hit.storage_key.rpartition(".")[2] or "png"
    return ResultCard(
        text=_line(hit.index, hit).replace(f"**{hit.index}.** ", "", 1),
        images=(CardImage(f"{hit.generation_id}-{hit.index}.{suffix}", data),),
        actions=(
            Action(ActionKind.LIKE, hit.generation_id, hit.index, "More like this"),
            Action(ActionKind.PACK, hit.generation_id, hit.index, "📦 Pack"),
        ),
        ephemeral=True,
    )
