"""What the chat adapters say, platform-neutral: the same action gets the same answer everywhere.

Every answer is a ``ResultCard`` whose text is CommonMark (``**bold**``, `` `code` ``, ``•``
lists); Discord shows it as it is, Slack renders it to mrkdwn. Private answers are
``ephemeral``. Also here: the ``/imagine`` text for options a platform offers as typed fields
(Discord's slash-command options, the CLI's flags), written by ``grammar.render``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from core.brand import grammar
from core.domain import Binding, Campaign, ImagineRequest, ResultCard, Ticket
from core.errors import UserError

REFERENCE_LENGTH = 10
GENERIC_ERROR = (
    "Something went wrong on our side (reference `{ref}`). Please try again; "
    "if it keeps happening, give an admin this reference."
)
CANCELLED = "✖ Cancelled."
NO_CAMPAIGNS = "There are no campaigns yet; create one with `onbrand campaign create`."
REPORT_FILES_NOTE = "The full report: a CSV row per image, and the HTML contact sheet."


def private(text: str) -> ResultCard:
    """An answer only the person who acted sees."""
    return ResultCard(text=text, ephemeral=True)


def new_reference() -> str:
    """A reference id that ties an answer to the log line with the traceback."""
    return uuid.uuid4().hex[:REFERENCE_LENGTH]


def error_reply(error: BaseException, *, what: str, log: logging.Logger) -> ResultCard:
    """A ``UserError`` as its own words; anything else as the generic text with a reference,
    the traceback logged (to ``log``, the adapter's) under the same reference."""
    if isinstance(error, UserError):
        return private(error.user_message)
    reference = new_reference()
    log.error("error in %s [reference %s]", what, reference, exc_info=error)
    return private(GENERIC_ERROR.format(ref=reference))


def imagine_text(
    prompt: str,
    *,
    aspect: str | None = None,
    seed: int | None = None,
    n: int | None = None,
    preset: str | None = None,
    campaign: str | None = None,
) -> str:
    """Typed options as ``--flags`` after the prompt (which may hold flags of its own): one
    ``/imagine`` text for the grammar."""
    options = ImagineRequest(
        "",
        aspect=_given(aspect),
        seed=seed,
        n=n,
        preset=_given(preset),
        campaign=_given(campaign),
    )
    return f"{prompt.strip()} {grammar.render(options).strip()}".strip()


def _given(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def warnings(ticket: Ticket) -> ResultCard | None:
    """What the requester should know about a queued request (e.g. a flag the binding locks)."""
    return private("\n".join(ticket.warnings)) if ticket.warnings else None


def cancelled() -> ResultCard:
    return private(CANCELLED)


def bound(binding: Binding) -> ResultCard:
    what = f"campaign **{binding.campaign}** with preset **{binding.preset}**"
    if binding.campaign is None:
        what = f"preset **{binding.preset}**"
    lock = " (locked: flags can't override it)" if binding.locked else ""
    return private(f"This channel is now bound to {what}{lock}.")


def unbound(removed: bool) -> ResultCard:
    return private("This channel is no longer bound." if removed else "This channel wasn't bound.")


def campaigns(found: Sequence[Campaign]) -> ResultCard:
    """One line per campaign: preset, dates, GPU budget, rush."""
    if not found:
        return private(NO_CAMPAIGNS)
    lines = []
    for c in found:
        dates = ""
        if c.starts_on or c.ends_on:
            dates = f", {c.starts_on or '…'} → {c.ends_on or '…'}"
        budget = f", GPU budget {c.gpu_budget_seconds:.0f} s" if c.gpu_budget_seconds else ""
        rush = ", rush" if c.rush else ""
        lines.append(f"• **{c.name}** — preset {c.preset}{dates}{budget}{rush}")
    return private("\n".join(lines))


def report_title(campaign: str) -> str:
    return f"Campaign report: {campaign}"


def report_files(campaign: str, csv: str, html: str) -> list[tuple[str, bytes]]:
    """The report's attachments, (file name, bytes): a CSV row per image, the contact sheet."""
    stem = f"onbrand-report-{campaign}"
    return [(f"{stem}.csv", csv.encode("utf-8")), (f"{stem}.html", html.encode("utf-8"))]
