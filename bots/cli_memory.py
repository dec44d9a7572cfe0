"""``onbrand search …`` and ``onbrand history …``: the team's memory on the command line."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from bots.cli_common import (
    cli_actor,
    err,
    out,
    output_file,
    parse_day,
    refuse,
    with_app,
    written_atomically,
)
from core.errors import UserError
from core.memory.model import MAX_RESULTS, Hit, ImageRef, SearchFilters, SearchResult

if TYPE_CHECKING:
    from core.bootstrap import App
    from core.memory.lineage import Node


async def index_new(app: App, generation_ids: list[uuid.UUID]) -> None:
    """Hash (and, with ONBRAND_EMBEDDER, embed) the images just made, so ``--like`` and vector
    search find them at once; quietly nothing without the memory extra or pgvector: ``onbrand
    search reindex`` catches up later."""
    from core.memory.indexer import hash_pending
    from core.memory.phash import can_hash
    from core.memory.vectors import embed_pending, vectors_available

    if can_hash():
        await hash_pending(app.db, app.store, only=generation_ids)
    if app.embedder is not None and await vectors_available(app.db):
        await embed_pending(app.db, app.store, app.embedder, only=generation_ids)


def _path(app: App, key: str) -> str:
    path_for = getattr(app.store, "path_for", None)  # a local store knows where files lie
    return str(path_for(key)) if path_for is not None else key


def hit_dict(hit: Hit, path: str) -> dict[str, Any]:
    return {
        "image": str(hit.ref),
        "generation_id": str(hit.generation_id),
        "index": hit.index,
        "prompt": hit.prompt,
        "campaign": hit.campaign,
        "user": hit.user,
        "created_at": hit.created_at.isoformat(),
        "status": hit.status,
        "kind": hit.kind,
        "approved": hit.approved,
        "favourites": hit.favourites,
        "score": round(hit.score, 4),
        "distance": hit.distance,
        "path": path,
    }


def search(
    query: Annotated[
        str,
        typer.Argument(help='What to look for, e.g. "blue square" (`reindex`: hash every image).'),
    ] = "",
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    approved: Annotated[bool, typer.Option("--approved", help="Only approved images.")] = False,
    favourites: Annotated[
        bool, typer.Option("--favourites", help="Only favourited images.")
    ] = False,
    since: Annotated[str | None, typer.Option(help="Made on or after YYYY-MM-DD.")] = None,
    user: Annotated[
        str | None, typer.Option(help="Made by this user (id, display name or pseudonym).")
    ] = None,
    like: Annotated[
        str | None, typer.Option(help="More like this image: GEN:INDEX (perceptual hash).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_RESULTS, help="How many images.")] = 10,
    collapse: Annotated[
        bool, typer.Option("--collapse", help="One image per group of near-duplicates.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines for scripts.")] = False,
) -> None:
    """Search past work: prompts, final prompts, presets and campaigns, typo-tolerant.

    `onbrand search reindex` computes the perceptual hash of every image that has none yet,
    and with ONBRAND_EMBEDDER set, its embedding."""
    if query == "reindex":
        _reindex()
        return
    try:
        filters = SearchFilters(
            campaign=campaign,
            approved=approved,
            favourites=favourites,
            since=parse_day(since, "--since"),
            user=user,
            like=ImageRef.parse(like) if like is not None else None,
            limit=limit,
            collapse=collapse,
        ).check()
    except UserError as exc:
        raise refuse(exc.user_message) from None

    async def go(app: App) -> tuple[SearchResult, list[str]]:
        found = await app.service.search(cli_actor(), query, filters)
        return found, [_path(app, h.storage_key) for h in found.hits]

    found, paths = with_app(go)
    if as_json:
        for hit, path in zip(found.hits, paths, strict=True):
            sys.stdout.write(json.dumps(hit_dict(hit, path), ensure_ascii=False) + "\n")
        return
    for note in found.notes:
        err.print(note, highlight=False)
    if not found.hits:
        err.print("nothing found", highlight=False)
        raise typer.Exit(1)
    from rich.table import Table

    table = Table("image", "prompt", "campaign", "who", "when", "state", "path")
    for hit, path in zip(found.hits, paths, strict=True):
        state = "approved" if hit.approved else f"{hit.favourites}★" if hit.favourites else ""
        if hit.distance is not None:
            state = f"{state} d={hit.distance}".strip()
        table.add_row(
            str(hit.ref),
            hit.prompt,
            hit.campaign or "—",
            hit.user,
            f"{hit.created_at:%Y-%m-%d %H:%M}",
            state or hit.status,
            path,
        )
    out.print(table)


def _reindex() -> None:
    from rich.progress import Progress

    from core.memory.indexer import reindex
    from core.memory.vectors import reindex_vectors, vectors_available

    async def go(app: App) -> tuple[int, int, str]:
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("hashing images", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            hashed, skipped = await reindex(app.db, app.store, progress)
            if app.embedder is None:
                return hashed, skipped, ""
            if not await vectors_available(app.db):
                return hashed, skipped, "; no embeddings: this database has no pgvector"
            task = bar.add_task("embedding images", total=None)
            embedded, _ = await reindex_vectors(app.db, app.store, app.embedder, progress)
            return hashed, skipped, f"; embedded {embedded} images ({app.embedder.name})"

    hashed, skipped, vectors = with_app(go)
    out.print(
        f"hashed {hashed} images"
        + (f"; {skipped} missing from the store" if skipped else "")
        + escape(vectors)
    )


def history(
    generation: Annotated[str, typer.Argument(help="A generation id (GEN or GEN:INDEX).")],
) -> None:
    """A generation's family tree: imagine → variation → upscale → …, with who, when, feedback."""
    from rich.tree import Tree

    try:
        generation_id = ImageRef.parse(generation, "history").generation_id
    except UserError as exc:
        raise refuse(exc.user_message) from None

    async def go(app: App) -> Node:
        return await app.service.history(cli_actor(), generation_id)

    root = with_app(go)

    def label(node: Node) -> str:
        made = f" from #{node.from_index}" if node.from_index is not None else ""
        mark = " [bold]◀[/bold]" if node.generation_id == generation_id else ""
        feedback = node.feedback_text()
        return (
            f"[bold]{node.kind}[/bold]{made} {node.generation_id} · {node.user} · "
            f"{node.created_at:%Y-%m-%d %H:%M} · {node.status}, {node.images} image(s)"
            + (f" · {feedback}" if feedback else "")
            + f"{mark}\n[dim]{escape(node.prompt)}[/dim]"
        )

    def grow(tree: Tree, node: Node) -> None:
        for child in node.children:
            grow(tree.add(label(child)), child)

    tree = Tree(label(root))
    grow(tree, root)
    out.print(tree, highlight=False)


def export_pairs(campaign: str, output: Path, *, other_choice: bool) -> None:
    """``onbrand export CAMPAIGN --pairs -o pairs.parquet``."""
    from core.memory.pairs import export_pairs as write_pairs

    if other_choice:
        raise refuse("--pairs exports every grid choice: leave out --approved and --favourites")
    target = output_file(output, "-o", f"{campaign}-pairs.parquet")
    with written_atomically(target, "-o") as part:

        async def go(app: App) -> int:
            return await write_pairs(app.db, campaign, part, app.store.get)

        count = with_app(go)
    out.print(f"wrote {count} preference pairs to {output}", highlight=False)
