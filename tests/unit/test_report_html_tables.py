"""The HTML report's per-user table: the busiest people first, and a line for the rest."""

from __future__ import annotations

import re

from core.reports.html import _table
from core.reports.model import Slice


def _slice(name: str, requests: int) -> Slice:
    return Slice(name, requests, requests * 4, 1, 0, 0, 0, None, None, 0.0)


def test_a_long_breakdown_shows_the_busiest_and_says_how_many_more() -> None:
    people = [_slice(f"Person {i:02}", requests=100 + i) for i in range(17)]
    page = _table("Per user", people, most=15)
    shown = re.findall(r"<tr><td>(Person \d+)</td>", page)
    assert shown == [f"Person {i:02}" for i in range(16, 1, -1)]  # most requests first
    assert "Person 00" not in page
    assert "Person 01" not in page
    assert "and 2 more: these are the 15 with the most requests" in page
    assert "lists all 17" in page


def test_a_short_breakdown_is_shown_whole_in_its_own_order() -> None:
    people = [_slice("Zoe", 1), _slice("Ann", 9)]
    page = _table("Per user", people, most=15)
    assert re.findall(r"<tr><td>(\w+)</td>", page) == ["Zoe", "Ann"]
    assert "more:" not in page
    assert _table("Per user", []) == ""


def test_the_acceptance_chart_shows_the_latest_weeks_and_the_table_all_of_them() -> None:
    from datetime import date, timedelta
    from types import SimpleNamespace

    from core.reports.acceptance import Acceptance
    from core.reports.memory_html import _acceptance_table

    weeks = [
        Acceptance(date(2026, 1, 5) + timedelta(weeks=n), "m", "p@v", 4, 16, 0.1, 0.02, 0.03, 0)
        for n in range(20)
    ]
    page = _acceptance_table(SimpleNamespace(acceptance=tuple(weeks)))  # type: ignore[arg-type]
    chart, table = page.split('<div class="panel wide">')
    assert "(the latest 15 of 20)" in chart
    assert "2026-W21 m p@v" in chart  # the last week (the first, 5 January, is W02)
    assert "2026-W07 m p@v" in chart  # the 15th from the end
    assert "2026-W06 m p@v" not in chart
    assert re.findall(r"<tr><td>(2026-W\d+)</td>", table) == [f"2026-W{n:02}" for n in range(2, 22)]
