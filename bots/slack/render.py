"""``ResultCard`` → Slack Block Kit, private answers and report markdown → mrkdwn. Pure functions.

Everything a user typed reaches Slack escaped (``&``, ``<``, ``>``), so a prompt can't ping
``<!channel>`` or forge a link. Slack allows 5 elements per actions block: buttons go in rows of
their kind (U1–U4, V1–V4, then 🔄 / ✖), at most 5 to a row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import groupby
from typing import Any

from core.cards import REGION_CHOICES
from core.domain import Action, ActionKind, ResultCard

Block = dict[str, Any]

MAX_BUTTONS_PER_ROW = 5
MAX_SECTION_TEXT = 3000  # Slack's limit for a section's text
MAX_HEADER_TEXT = 150
MAX_ALT_TEXT = 2000  # Slack's limit for an image block's alt_text
MAX_BLOCKS = 50
MAX_OPTIONS = 100  # Slack's limit for a select's options
_ROWS = {ActionKind.UPSCALE: 0, ActionKind.VARY: 1, ActionKind.REROLL: 2, ActionKind.CANCEL: 2}
_ROWS |= {ActionKind.REMIX: 2, ActionKind.VARY_REGION: 5}  # the region menu: a row of its own
_ROWS |= {ActionKind.PACK: 6, ActionKind.PACK_SELECT: 6}  # 📦 Pack and its placements menu
_ROWS |= {kind: 3 if kind.value.startswith("z") else 4 for kind in ActionKind if kind not in _ROWS}
REACTION_HINT = "React 1️⃣–4️⃣ or ⭐ to pick favourites, 👍 / 👎 to rate, ✅ to approve (reviewers)."


def escape(text: str) -> str:
    """Slack's three control characters, escaped (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fallback_text(card: ResultCard) -> str:
    """The ``text`` beside the blocks: what notifications and screen readers show."""
    return escape(card.text)[:MAX_SECTION_TEXT] or " "


def reply_text(card: ResultCard) -> str:
    """A private answer (``core.replies``, CommonMark) as Slack mrkdwn, escaped."""
    return "\n".join(_mrkdwn(line) for line in card.text.splitlines()) or " "


def button(action: Action) -> Block:
    """A button, or for "Vary (Region)" a menu of the regions (``core.cards.REGION_CHOICES``),
    or for "📦 Pack only…" a multi-select of the placements the action carries."""
    if action.kind is ActionKind.VARY_REGION:
        return {
            "type": "static_select",
            "action_id": action.custom_id,
            "placeholder": {"type": "plain_text", "text": action.label},
            "options": [
                {"text": {"type": "plain_text", "text": label}, "value": value}
                for value, label in REGION_CHOICES
            ],
        }
    if action.kind is ActionKind.PACK_SELECT:
        return {
            "type": "multi_static_select",
            "action_id": action.custom_id,
            "placeholder": {"type": "plain_text", "text": action.label, "emoji": True},
            "options": [
                {"text": {"type": "plain_text", "text": label[:75]}, "value": value}
                for value, label in action.choices[:MAX_OPTIONS]
            ],
        }
    element: Block = {
        "type": "button",
        "action_id": action.custom_id,
        "text": {"type": "plain_text", "text": action.label, "emoji": True},
        "value": str(action.index),
    }
    if action.kind is ActionKind.CANCEL:
        element["style"] = "danger"
    return element


def action_rows(actions: Sequence[Action]) -> list[Block]:
    """Actions blocks: one row per kind group, each split into rows of at most five."""
    blocks: list[Block] = []
    for _, group in groupby(actions, key=lambda a: _ROWS[a.kind]):
        items = list(group)
        for start in range(0, len(items), MAX_BUTTONS_PER_ROW):
            row = items[start : start + MAX_BUTTONS_PER_ROW]
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"ob-actions-{len(blocks) + 1}",
                    "elements": [button(a) for a in row],
                }
            )
    return blocks


def context_line(fields: Sequence[tuple[str, str]], *extra: str) -> Block | None:
    """``seed 42 · preset acme (v1) · campaign spring``, plus any extra mrkdwn pieces."""
    parts = [f"*{escape(label)}* {escape(value)}" for label, value in fields]
    parts += [piece for piece in extra if piece]
    if not parts:
        return None
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(parts)}]}


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION_TEXT]}}


def card_blocks(card: ResultCard, *, show_text: bool = True, note: str = "") -> list[Block]:
    """A card as blocks: its text, a context line with its fields, then its buttons."""
    blocks: list[Block] = []
    if show_text and card.text:
        blocks.append(section(escape(card.text)))
    if (context := context_line(card.fields, note)) is not None:
        blocks.append(context)
    blocks += action_rows(card.actions)
    if not blocks:
        blocks.append(section(escape(card.text) or " "))
    return blocks


def status_blocks(card: ResultCard) -> list[Block]:
    """The 'Queued…' / 'Generating… 60%' message; a closing card (no buttons) drops the ✖."""
    return card_blocks(card)


def image_block(file_id: str, alt_text: str) -> Block:
    """An image block showing a file uploaded to Slack (``slack_file``; the poster must be able
    to see the file, as the uploader of a private upload can)."""
    return {
        "type": "image",
        "slack_file": {"id": file_id},
        "alt_text": alt_text[:MAX_ALT_TEXT] or "image",
    }


def result_blocks(
    card: ResultCard,
    *,
    images: Sequence[Block] = (),
    image_posted: bool = False,
    mention: str = "",
) -> list[Block]:
    """The result message: the card's text, who asked, ``images`` (image blocks), a context
    line and the buttons. ``image_posted``: the images went out in an upload of their own,
    whose comment carries the text (the two-message fallback), so the text is left out."""
    blocks: list[Block] = []
    if card.text and not image_posted:
        blocks.append(section(escape(card.text)))
    if mention:
        blocks.append(section(f"for {mention}"))
    blocks += images
    note = REACTION_HINT if card.images else ""
    if (context := context_line(card.fields, note)) is not None:
        blocks.append(context)
    blocks += action_rows(card.actions)
    return blocks or [section(escape(card.text) or " ")]


def requester_mention(requester: str) -> str:
    """``slack:T1:U1`` → ``<@U1>``; empty for other platforms."""
    platform, _, rest = requester.partition(":")
    user = rest.rpartition(":")[2]
    return f"<@{user}>" if platform == "slack" and user else ""


# --- report markdown → Block Kit ----------------------------------------------------------------

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _mrkdwn(line: str) -> str:
    """One line of CommonMark in Slack's mrkdwn: ``**b**`` → ``*b*``, links, ``- `` bullets."""
    text = escape(line)
    text = _BOLD.sub(r"*\1*", text)
    text = _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", text)
    if text.startswith(("- ", "* ")):
        text = "• " + text[2:]
    return text


def markdown_blocks(markdown: str) -> list[Block]:
    """Headings become header blocks, tables monospace sections, other lines mrkdwn sections.

    Sections are cut under Slack's 3,000 characters and the whole under 50 blocks (the rest is
    in the attached files).
    """
    blocks: list[Block] = []
    paragraph: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if paragraph:
            _append_text(blocks, "\n".join(paragraph))
            paragraph.clear()
        if table:
            _append_text(blocks, "\n".join(table), code=True)
            table.clear()

    for raw in markdown.splitlines():
        line = raw.rstrip()
        if line.startswith("|"):
            if paragraph:
                flush()
            table.append(escape(line))
            continue
        if table:
            flush()
        if line.startswith("#"):
            flush()
            title = line.lstrip("#").strip()
            blocks.append(
                {
                    "type": "header",
                    "text": {"type": "plain_text", "text": title[:MAX_HEADER_TEXT] or " "},
                }
            )
        elif not line:
            flush()
        else:
            paragraph.append(_mrkdwn(line))
    flush()
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[: MAX_BLOCKS - 1], section("_…the rest is in the attached files._")]
    return blocks


def _append_text(blocks: list[Block], text: str, *, code: bool = False) -> None:
    fence = "```"
    room = MAX_SECTION_TEXT - (2 * len(fence) + 2 if code else 0)
    chunk: list[str] = []
    size = 0
    for line in text.split("\n"):
        if chunk and size + len(line) + 1 > room:
            blocks.append(_text_block("\n".join(chunk), code))
            chunk, size = [], 0
        chunk.append(line[:room])
        size += len(line[:room]) + 1
    if chunk:
        blocks.append(_text_block("\n".join(chunk), code))


def _text_block(text: str, code: bool) -> Block:
    return section(f"```\n{text}\n```" if code else text)
