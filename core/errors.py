"""Errors that carry the text a user sees.

A ``UserError`` is raised for anything the person who typed the command can fix. Its
``user_message`` is safe to show (to that user only); adapters render it ephemerally. Anything else
is a bug or an outage: adapters show a generic message with a reference id and log the traceback.
"""

from __future__ import annotations

from datetime import datetime


class UserError(Exception):
    """Bad input or a refused request; ``user_message`` says what to change."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class GrammarError(UserError):
    """The ``/imagine`` text could not be parsed."""


class PresetError(UserError):
    """A preset file is invalid, or a request conflicts with its preset."""


class LockedSetting(PresetError):
    """The user tried to change something the brand locked."""


class BlockedPrompt(UserError):
    """The prompt contains a banned term."""

    def __init__(self, term: str) -> None:
        super().__init__(
            f"This prompt can't be used: it contains the banned term “{term}”. "
            "Rephrase it without that term and try again."
        )
        self.term = term


class RefusedByProvider(UserError):
    """An external image service refused the request (its content policy); the worker shows
    ``user_message`` to the requester, where any other engine failure gets a generic reply."""


class ProviderFailed(RefusedByProvider):
    """An external image service refused or failed a request for good (its content policy, a
    refused key, no credit, still failing after the retries): ``user_message`` says what
    happened and who can fix it, and the worker shows it to the requester like a refusal."""


class CannotMake(UserError):
    """A queued job the worker can't make, for a reason the requester can act on (a pack
    placement no encoding fits under its byte limit, a source image no longer stored): the
    worker shows ``user_message`` as it shows a provider's refusal. Other ``UserError``s raised
    in the worker (a preset's, say) may name operator files: those get a reference instead."""


class QuotaExceeded(UserError):
    """A quota or budget is used up; ``retry_at`` says when trying again can work."""

    def __init__(self, user_message: str, retry_at: datetime | None = None) -> None:
        super().__init__(user_message)
        self.retry_at = retry_at


class NotAllowed(UserError):
    """The actor's role does not permit this action."""


class NotFound(UserError):
    """A named thing (preset, campaign, generation) does not exist."""


class DuplicateRequest(Exception):
    """This request was handled already: the platform delivered it again (a replay, a retry,
    a redelivery after a resume or a restart). Nothing was done; adapters answer it quietly
    (acknowledged, nothing shown), so the platform stops retrying and the person sees one answer.
    Not a ``UserError``: there is nothing for anyone to change."""


class StoreRefused(Exception):
    """The image store refused a request for good (access denied, no such bucket, …): trying
    again can't help until an operator fixes the store or its credentials. The message names
    the store and the refusal (never a secret); the job fails at once instead of retrying."""


class ConfigError(Exception):
    """The process is misconfigured; the message says which setting to fix (never a secret)."""


class Unavailable(UserError):
    """Something onbrand depends on is down for the moment; nothing was recorded, and the same
    request can be sent again later. Adapters show it like any ``UserError``."""


class DatabaseUnavailable(Unavailable):
    """PostgreSQL can't be reached (or can't write) right now."""

    def __init__(
        self,
        user_message: str = (
            "The database is unreachable right now, so nothing was done; try again in a moment."
        ),
    ) -> None:
        super().__init__(user_message)
