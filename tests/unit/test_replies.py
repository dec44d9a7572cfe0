"""The chat flow's neutral pieces: typed options → ``/imagine`` text, answers, per-message ETAs."""

from __future__ import annotations

import logging
import uuid

import pytest

from core.brand import grammar
from core.delivery.announce import eta
from core.domain import Binding, Platform, Ticket
from core.errors import UserError
from core.replies import GENERIC_ERROR, REFERENCE_LENGTH, bound, error_reply, imagine_text


def test_imagine_text_appends_the_typed_options_as_flags() -> None:
    assert imagine_text("a cat") == "a cat"
    assert (
        imagine_text(" a cat ", aspect="16:9", seed=0, n=2, preset="acme", campaign="spring")
        == "a cat --ar 16:9 --seed 0 --n 2 --preset acme --campaign spring"
    )
    assert imagine_text("a cat", aspect=" ", preset="") == "a cat"  # blank options: none


def test_imagine_text_keeps_the_prompts_own_flags_and_parses_back() -> None:
    text = imagine_text("a {red, blue} kite --ar 2:1", n=1, preset="acme")
    requests = grammar.parse(text)
    assert [(r.prompt, r.aspect, r.n, r.preset) for r in requests] == [
        ("a red kite", "2:1", 1, "acme"),
        ("a blue kite", "2:1", 1, "acme"),
    ]


def test_a_user_error_is_answered_in_its_own_words_anything_else_with_a_reference(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("tests.replies")
    assert error_reply(UserError("Use --ar 1:1."), what="/imagine", log=log).text == "Use --ar 1:1."
    with caplog.at_level(logging.ERROR, logger="tests.replies"):
        answer = error_reply(RuntimeError("disk on fire"), what="/imagine", log=log)
    [logged] = caplog.records
    reference = logged.getMessage().rsplit(" ", 1)[-1].strip("]")
    assert len(reference) == REFERENCE_LENGTH
    assert answer.text == GENERIC_ERROR.format(ref=reference)
    assert answer.ephemeral
    assert "disk on fire" not in answer.text
    assert logged.exc_info is not None


def test_binding_answers_name_what_was_bound() -> None:
    campaign = Binding(Platform.SLACK, "T", "C", "acme", "spring", locked=True)
    assert bound(campaign).text == (
        "This channel is now bound to campaign **spring** with preset **acme** "
        "(locked: flags can't override it)."
    )
    assert bound(Binding(Platform.SLACK, "T", "C", "bold")).text == (
        "This channel is now bound to preset **bold**."
    )


def test_each_queued_message_gets_its_own_eta() -> None:
    ids = tuple(uuid.uuid4() for _ in range(3))
    ticket = Ticket(ids, position=4, eta_seconds=60.0)  # the last one's: position 6
    assert [eta(ticket, i) for i in range(3)] == [40.0, 50.0, 60.0]
    assert eta(Ticket(ids, position=4), 0) is None
