"""The one duration wording of core, and the report's percentages and figures."""

from __future__ import annotations

import pytest

from core.humanise import duration, number, percent


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "–"),
        (-3, "0 s"),
        (0, "0 s"),
        (0.44, "0.4 s"),
        (3, "3 s"),
        (9.94, "9.9 s"),
        (9.96, "10 s"),
        (40, "40 s"),
        (89.4, "89 s"),
        (90, "2 min"),  # 1.5 min rounds to even, as the status card always did
        (150, "2 min"),
        (3569, "59 min"),
        (3571, "1 h"),
        (5400, "1 h 30 min"),
        (30_600, "8 h 30 min"),
        (2 * 86_400 - 60, "47 h 59 min"),
        (2 * 86_400, "2 d"),
        (3 * 86_400 + 4 * 3600 + 600, "3 d 4 h"),
    ],
)
def test_duration(seconds: float | None, words: str) -> None:
    assert duration(seconds) == words


def test_percent_and_number() -> None:
    assert (percent(3 / 11), percent(None), percent(1)) == ("27.3%", "–", "100.0%")
    assert (number(1234.56), number(None), number(2, digits=0)) == ("1,234.6", "–", "2")
