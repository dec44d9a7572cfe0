"""The per-image rows' fast path builds the same ``ImageRow`` its constructor would."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from core.reports.model import ImageRow
from core.reports.rows import image_row_from_db

WHEN = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)


def _columns(approved_by: list[str] | None) -> list[object]:
    values: dict[str, object] = {
        "generation_id": "g-1", "index": 2, "kind": "imagine", "user": "slack:U1",
        "platform": "slack", "created_at": WHEN, "finished_at": None, "prompt": "a cat",
        "final_prompt": "a cat, brand", "seed": 7, "model": "m", "steps": 4, "width": 64,
        "height": 64, "preset": "p", "preset_version": "v", "favourites": 3, "likes": 1,
        "dislikes": 0, "grid_favourites": 2, "grid_likes": 0, "grid_dislikes": 1,
        "approved": True, "approved_by": approved_by, "approved_at": WHEN,
        "palette_score": 0.5, "storage_key": "ab.png",
    }  # fmt: skip
    return [values[f.name] for f in dataclasses.fields(ImageRow)]


@pytest.mark.parametrize("approved_by", [["slack:U2", "discord:9"], [], None])
def test_the_fast_path_is_the_constructor(approved_by: list[str] | None) -> None:
    columns = _columns(approved_by)
    fast = image_row_from_db(columns)
    given = dict(zip([f.name for f in dataclasses.fields(ImageRow)], columns, strict=True))
    slow = ImageRow(**{**given, "approved_by": tuple(approved_by or ())})  # type: ignore[arg-type]
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    assert fast.approved_by == tuple(approved_by or ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.likes = 5  # type: ignore[misc]


def test_image_row_stays_a_plain_frozen_dataclass() -> None:
    """What the fast path relies on: an instance dict, nothing run after ``__init__``."""
    assert not hasattr(ImageRow, "__post_init__")
    assert not hasattr(ImageRow, "__slots__")
    assert ImageRow.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="zip"):
        image_row_from_db(_columns(None)[:-1])
