"""``ResultCard`` → a Discord message: embed, attachments and a view of ``ActionButton`` s; a
private answer (``core.replies``) → the content of an ephemeral message."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

import discord
from PIL import Image

from bots.discord.buttons import ActionButton
from bots.discord.edits import RegionSelect, RemixButton
from bots.discord.packs import PackSelect
from core.domain import Action, ActionKind, CardImage, ResultCard
from core.imaging.preview import encode_preview

MESSAGE_MAX = 2000
EMBED_DESCRIPTION_MAX = 4096
FIELD_VALUE_MAX = 1024
MAX_ROW_ITEMS = 5
MAX_ROWS = 5
COLOUR = discord.Colour(0x00A6A6)
PANS = (ActionKind.PAN_LEFT, ActionKind.PAN_RIGHT, ActionKind.PAN_UP, ActionKind.PAN_DOWN)
DOWNSIZED_NOTE = (
    "Preview downsized to fit this server's upload limit; "
    "the full-size original is kept in onbrand's image store."
)

TOO_BIG_NOTE = (
    "The file is over this server's upload limit; it is kept in onbrand's image store "
    "(`onbrand fetch <id>` writes it)."
)


@dataclass
class Rendered:
    """The pieces of one message. ``files`` are single-use: render again to send again."""

    embed: discord.Embed
    files: list[discord.File] = field(default_factory=list)
    view: discord.ui.View | None = None
    downsized: bool = False


def render_card(card: ResultCard, *, max_upload_bytes: int) -> Rendered:
    """Render ``card``; images larger than ``max_upload_bytes`` are re-encoded smaller."""
    embed = discord.Embed(description=clip(card.text, EMBED_DESCRIPTION_MAX), colour=COLOUR)
    for label, value in card.fields:
        embed.add_field(name=label, value=clip(value or "—", FIELD_VALUE_MAX), inline=True)
    files: list[discord.File] = []
    downsized = False
    # Other files (a pack's zip) go as they are, within the limit; images share what is left.
    others = [f for f in card.images if not f.content_type.startswith("image/")]
    pictures = [f for f in card.images if f.content_type.startswith("image/")]
    left = max_upload_bytes
    for other in others:
        if len(other.data) > left // 2:  # leave the pictures room
            embed.add_field(name="not attached", value=clip(TOO_BIG_NOTE, FIELD_VALUE_MAX))
            continue
        files.append(discord.File(io.BytesIO(other.data), filename=other.filename))
        left -= len(other.data)
    budget = left // max(1, len(pictures))
    for index, image in enumerate(pictures):
        fitted, shrunk = fit_image(image, budget)
        downsized |= shrunk
        files.append(discord.File(io.BytesIO(fitted.data), filename=fitted.filename))
        if index == 0:
            embed.set_image(url=f"attachment://{fitted.filename}")
    if downsized:
        embed.set_footer(text=DOWNSIZED_NOTE)
    return Rendered(embed, files, action_view(card.actions), downsized)


def fit_image(image: CardImage, max_bytes: int) -> tuple[CardImage, bool]:
    """The image itself when it fits, else a JPEG preview that does (and True)."""
    if len(image.data) <= max_bytes:
        return image, False
    with Image.open(io.BytesIO(image.data)) as opened:
        data = encode_preview(opened, max_bytes=max_bytes)
    name = PurePath(image.filename).with_suffix(".jpg").name
    return CardImage(name, data, "image/jpeg"), True


def action_view(actions: Sequence[Action]) -> discord.ui.View | None:
    """Buttons in rows of at most five: upscales, then variations (and 📦), then 🔄, Remix and ✖
    (one row with the variations when they fit: a single image's edits and two menus need the
    other four of Discord's five rows), zooms, pans, then each menu on a row of its own."""
    if not actions:
        return None
    groups: list[list[Action]] = [
        [a for a in actions if a.kind is ActionKind.UPSCALE],
        [a for a in actions if a.kind in (ActionKind.VARY, ActionKind.PACK)],
        [a for a in actions if a.kind in (ActionKind.REROLL, ActionKind.REMIX, ActionKind.CANCEL)],
        [a for a in actions if a.kind in (ActionKind.ZOOM_OUT_2, ActionKind.ZOOM_OUT_15)],
        [a for a in actions if a.kind in PANS],  # pan ⬅ ➡ ⬆ ⬇
        [a for a in actions if a.kind is ActionKind.VARY_REGION],  # a menu: a row of its own
        [a for a in actions if a.kind is ActionKind.PACK_SELECT],  # a menu: a row of its own
    ]
    if len(groups[1]) + len(groups[2]) <= MAX_ROW_ITEMS:  # a single image: V, 📦, Remix in one
        groups[1:3] = [groups[1] + groups[2]]
    view = discord.ui.View(timeout=None)
    row = 0
    for group in groups:
        for start in range(0, len(group), MAX_ROW_ITEMS):
            if row >= MAX_ROWS:
                raise ValueError(f"too many buttons for one message: {len(actions)}")
            for action in group[start : start + MAX_ROW_ITEMS]:
                button = _item(action)
                button.row = row
                view.add_item(button)
            row += 1
    return view


def _item(action: Action) -> ActionButton | RegionSelect | RemixButton | PackSelect:
    if action.kind is ActionKind.VARY_REGION:
        return RegionSelect.for_action(action)
    if action.kind is ActionKind.PACK_SELECT:
        return PackSelect.for_action(action)
    if action.kind is ActionKind.REMIX:
        return RemixButton.for_action(action)
    return ActionButton.for_action(action)


def reply_content(card: ResultCard) -> str:
    """A private answer: its text (CommonMark, which Discord shows as it is), clipped."""
    return clip(card.text, MESSAGE_MAX)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
