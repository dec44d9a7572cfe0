"""Search on real PostgreSQL: keyword ranking, typos, filters, workspace scope, more like this."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from PIL import Image

from core.db import Database
from core.domain import Actor, Platform, Role
from core.errors import NotFound, UserError
from core.memory.model import ImageRef, Scope, SearchFilters
from core.memory.search import search
from core.memory.store import MemoryStore
from core.reports.queries import pseudonym
from core.service import Service
from core.service.base import ServiceConfig
from core.storage.local import LocalImageStore
from tests.memory.seed import B1, B2, B3, D1, E1, U1, V1, image_id, picture, seed

pytestmark = pytest.mark.integration

T1 = Scope("slack", "T1")


@pytest.fixture
async def team(db: Database, tmp_path: Path) -> Database:
    await seed(db, LocalImageStore(tmp_path / "images"))
    return db


async def ids(db: Database, query: str, scope: Scope = T1, **filters: object) -> list[str]:
    found = await search(db, query, SearchFilters(**filters), scope)  # type: ignore[arg-type]
    return [str(h.ref) for h in found.hits]


async def test_blue_square_comes_first_and_red_square_after(team: Database) -> None:
    found = await search(team, "blue square", SearchFilters(limit=50), T1)
    gens = [h.generation_id for h in found.hits]
    # The phrase "blue square" is in B1, V1 and U1; "red square on a blue background" matches
    # both words apart and ranks after every one of them; B3 (no square) never matches.
    assert set(gens[:9]) == {B1, V1, U1}
    assert set(gens[9:]) == {B2}
    assert B3 not in gens
    assert D1 not in gens
    assert found.hits[0].prompt == "a blue square on a red background"
    assert found.hits[0].user.startswith("user-")


async def test_typos_still_find_it(team: Database) -> None:
    found = await search(team, "blu sqare", SearchFilters(limit=50), T1)
    assert found.hits[0].prompt == "a blue square on a red background"
    assert {h.generation_id for h in found.hits} == {B1, V1, U1, B2}
    transposed = await search(team, "sqaure", SearchFilters(limit=50), T1)
    assert {h.generation_id for h in transposed.hits} == {B1, V1, U1, B2}
    # "-word" excludes, in the typo-tolerant arm too
    found = await search(team, "backgrund -red", SearchFilters(limit=50), T1)
    assert {h.generation_id for h in found.hits} == {B3}
    found = await search(team, "yelow circel", SearchFilters(), T1)
    assert found.hits
    assert {h.generation_id for h in found.hits} == {B3}


async def test_without_pg_trgm_words_match_as_prefixes(team: Database) -> None:
    # the embedded server has no pg_trgm: there a cut-short word still finds, a typo doesn't
    found = await search(team, "yell circ", SearchFilters(), T1, trigrams=False)
    assert {h.generation_id for h in found.hits} == {B3}
    assert any("pg_trgm" in note for note in found.notes)
    assert (await search(team, "yelow circel", SearchFilters(), T1, trigrams=False)).hits == ()
    # one cut-short word is enough for the prefix arm; known words alone skip it (same hits)
    mixed = await search(team, "yellow circ", SearchFilters(), T1, trigrams=False)
    assert {h.generation_id for h in mixed.hits} == {B3}
    known = await search(team, "yellow circle", SearchFilters(), T1, trigrams=False)
    assert {h.generation_id for h in known.hits} == {B3}
    both = await search(team, "blue square", SearchFilters(limit=50), T1, trigrams=False)
    assert {h.generation_id for h in both.hits} == {B1, B2, V1, U1}


async def test_another_workspace_is_never_seen(team: Database) -> None:
    everything = await ids(team, "blue square", limit=50)
    assert not any(i.startswith(str(E1)) for i in everything)
    theirs = await search(team, "blue square", SearchFilters(limit=50), Scope("slack", "T2"))
    assert {h.generation_id for h in theirs.hits} == {E1}
    with pytest.raises(NotFound):  # their image can't be the --like source either
        await search(team, "", SearchFilters(like=ImageRef(E1, 1)), T1)
    operator = await search(team, "blue square", SearchFilters(limit=50), Scope())
    assert E1 in {h.generation_id for h in operator.hits}


async def test_filters(team: Database) -> None:
    approved = set(await ids(team, "", approved=True, limit=50))
    assert approved == {f"{B1}:3", f"{B3}:1", f"{B3}:2"}
    assert set(await ids(team, "square", favourites=True)) == {f"{B1}:2", f"{V1}:1"}
    assert {i.split(":")[0] for i in await ids(team, "square", campaign="spring", limit=50)} == {
        str(B1),
        str(B2),
        str(V1),
        str(U1),
    }
    assert await ids(team, "square", campaign="autumn") == []
    assert {i.split(":")[0] for i in await ids(team, "", since=date(2026, 3, 3), limit=50)} == {
        str(B3),
        str(D1),
    }
    ann = pseudonym("slack", "T1", "U1")
    for who in ("Ann", "ann", "U1", ann):
        assert {i.split(":")[0] for i in await ids(team, "square", user=who, limit=50)} == {
            str(B1),
            str(U1),
        }
    assert len(await ids(team, "square", limit=3)) == 3
    with pytest.raises(NotFound, match="no campaign called winter"):
        await ids(team, "x", campaign="winter")
    with pytest.raises(UserError, match="one of --approved or --favourites"):
        await ids(team, "x", approved=True, favourites=True)


async def test_more_like_this_finds_the_image_itself_first(team: Database) -> None:
    found = await search(team, "", SearchFilters(like=ImageRef(B2, 3), limit=5), T1)
    assert str(found.hits[0].ref) == f"{B2}:3"
    assert found.hits[0].distance == 0
    assert all(h.distance is not None and h.distance > 0 for h in found.hits[1:])
    assert found.notes  # says what "like" means here
    # B1#3's lighter copy (D1) is its nearest other image
    near = await search(team, "", SearchFilters(like=ImageRef(B1, 3), limit=2), T1)
    assert [h.ref for h in near.hits] == [ImageRef(B1, 3), ImageRef(D1, 1)]
    assert near.hits[1].distance is not None
    assert near.hits[1].distance <= 6
    collapsed = await search(
        team, "", SearchFilters(like=ImageRef(B1, 3), limit=3, collapse=True), T1
    )
    assert collapsed.hits[0].ref == ImageRef(B1, 3)
    assert ImageRef(D1, 1) not in [h.ref for h in collapsed.hits]  # folded into B1#3
    assert len(collapsed.hits) == 3


async def test_service_scopes_chat_to_its_workspace(team: Database) -> None:
    service = Service(
        lambda: None,  # type: ignore[arg-type,return-value]
        {},
        ServiceConfig(default_preset="acme"),
        memory=MemoryStore(team),
    )
    eve = Actor(Platform.SLACK, "T2", "U9", "Eve")
    found = await service.search(eve, "blue square", SearchFilters(limit=50))
    assert {h.generation_id for h in found.hits} == {E1}
    operator = Actor(Platform.CLI, "local", "op", roles=frozenset({Role.ADMIN}))
    found = await service.search(operator, "blue square", SearchFilters(limit=50))
    assert {B1, E1} <= {h.generation_id for h in found.hits}
    with pytest.raises(UserError, match="Say what to look for"):
        await service.search(eve, "  ", SearchFilters())
    with pytest.raises(UserError, match="500"):
        await service.search(eve, "x" * 501, SearchFilters())


async def test_chat_card_thumbnails_and_buttons(team: Database, tmp_path: Path) -> None:
    service = Service(
        lambda: None,  # type: ignore[arg-type,return-value]
        {},
        ServiceConfig(default_preset="acme"),
        memory=MemoryStore(team, LocalImageStore(tmp_path / "images")),
    )
    ann = Actor(Platform.SLACK, "T1", "U1", "Ann")
    card = await service.search_chat(ann, "blue square --campaign spring --limit 3")
    assert card.ephemeral
    assert card.text.splitlines()[1].startswith("**1.** a blue square on a red background")
    assert [a.label for a in card.actions] == [
        "Open 1", "Open 2", "Open 3", "Like 1", "Like 2", "Like 3", "📦 1", "📦 2", "📦 3"
    ]  # fmt: skip
    assert {a.custom_id.split(":")[1] for a in card.actions[6:]} == {"pk"}  # the pack buttons'
    (sheet,) = card.images
    (tmp_path / "search-card.png").write_bytes(sheet.data)
    with Image.open(io.BytesIO(sheet.data)) as image:
        assert image.size == (3 * 160, 160)
    like = card.actions[3]
    again = await service.memory_button(ann, like.custom_id)
    assert f"images like `{like.generation_id}:{like.index}`" in again.text
    assert f"`{like.generation_id}:{like.index}`" in again.text.splitlines()[1]
    opened = await service.memory_button(ann, card.actions[0].custom_id)
    (original,) = opened.images
    assert [a.label for a in opened.actions] == ["More like this", "📦 Pack"]
    assert original.data == picture(image_id(like.generation_id, like.index))
    eve = Actor(Platform.SLACK, "T2", "U9", "Eve")
    with pytest.raises(NotFound):
        await service.memory_button(eve, card.actions[0].custom_id)
    with pytest.raises(UserError, match="no option --colour"):
        await service.search_chat(ann, "blue --colour red")


def test_a_chat_card_holds_what_fits_its_25_buttons() -> None:
    """Three buttons per result (Open, Like, 📦) and Discord's 25 a message: eight results in
    chat, the default too; more is refused with the range (the CLI goes to 50)."""
    from core.memory.model import MAX_CARD_RESULTS
    from core.memory.query import parse_search

    assert 3 * MAX_CARD_RESULTS <= 25
    assert parse_search("blue square")[1].limit == MAX_CARD_RESULTS
    assert parse_search("blue --limit 8")[1].limit == 8
    with pytest.raises(UserError, match="from 1 to 8"):
        parse_search("blue --limit 9")
