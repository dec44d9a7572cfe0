"""Reactions on a result message: favourites (⭐ ❤ 1️⃣–4️⃣), likes, dislikes and approvals (✅,
counted only from reviewers), recorded and retracted per user."""

from __future__ import annotations

from core.domain import Actor, FeedbackKind, MessageRef, RequestKey, Role
from core.errors import UserError
from core.service.base import ID_MAX, UseCase, check_text

# Reactions → feedback. Keys are normalised (no variation selector); Slack names are included
# because Slack reports reactions by name.
_NUMBERS = {
    "1\u20e3": 1,
    "2\u20e3": 2,
    "3\u20e3": 3,
    "4\u20e3": 4,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
}
_KINDS: dict[str, FeedbackKind] = {
    "⭐": FeedbackKind.FAVOURITE,
    "star": FeedbackKind.FAVOURITE,
    "❤": FeedbackKind.FAVOURITE,
    "heart": FeedbackKind.FAVOURITE,
    "👍": FeedbackKind.LIKE,
    "+1": FeedbackKind.LIKE,
    "thumbsup": FeedbackKind.LIKE,
    "👎": FeedbackKind.DISLIKE,
    "-1": FeedbackKind.DISLIKE,
    "thumbsdown": FeedbackKind.DISLIKE,
    "✅": FeedbackKind.APPROVE,
    "white_check_mark": FeedbackKind.APPROVE,
}


def feedback_for(emoji: str) -> tuple[FeedbackKind, int | None] | None:
    """What a reaction means: (kind, image index or None for the whole result), or None."""
    key = emoji.replace("\ufe0f", "").strip(":")
    key = key.split("::", 1)[0]  # Slack skin tones: "+1::skin-tone-2"
    if (number := _NUMBERS.get(key)) is not None:
        return FeedbackKind.FAVOURITE, number
    if (kind := _KINDS.get(key)) is not None:
        return kind, None
    return None


def _storable(emoji: str, message: MessageRef) -> bool:
    """Whether a reaction's emoji and message ids fit their columns, without control characters
    (a reaction is never answered, so one that doesn't is ignored rather than refused)."""
    try:
        check_text("The emoji", emoji, ID_MAX)
        check_text("The channel id", message.channel_id, ID_MAX)
        check_text("The message id", message.message_id, ID_MAX)
    except UserError:
        return False
    return True


class Feedback(UseCase):
    async def react(
        self,
        message: MessageRef,
        emoji: str,
        actor: Actor,
        *,
        added: bool,
        key: RequestKey | None = None,
    ) -> bool:
        """A reaction on a result message; True when it was recorded (or retracted).

        ``key``: the platform's id for the event (Slack's ``event_id``); a copy of an event
        already applied changes nothing and returns False, so an addition retried after its
        own removal does not bring the feedback back. Without a key a copy of an addition is
        harmless anyway (feedback is one row per user, target and kind)."""
        meaning = feedback_for(emoji)
        if meaning is None or not _storable(emoji, message):
            return False
        kind, index = meaning
        if kind is FeedbackKind.APPROVE and not actor.has(Role.REVIEWER):
            return False  # approvals count only from reviewers
        async with self._uow() as uow:
            if key is not None and not await uow.receipts.record(key):
                return False  # a copy of an event applied already
            generation_id = await uow.repo.generation_for_message(message)
            if generation_id is None:
                return False  # a reaction on some other message
            images = await uow.repo.image_ids(generation_id)
            if index is None and len(images) == 1:
                index = next(iter(images))  # a single image (an upscale): feedback is on it
            if index is not None and index not in images:
                return False
            image_id = images[index] if index is not None else None
            user_id = await uow.repo.ensure_user(actor)
            if added:
                changed = await uow.repo.add_feedback(generation_id, image_id, user_id, kind, emoji)
            else:
                changed = await uow.repo.remove_feedback(generation_id, image_id, user_id, kind)
            await uow.commit()
        return changed
