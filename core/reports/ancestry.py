"""Where an approved image came from, as a strip of small thumbnails in the HTML report:
``imagine #2 → variation #1 → this (upscale)``, oldest first, each the very image the next
step was made from (``LineageStep.used_index``; ``core.reports.queries`` walks the chain)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from html import escape

from core.reports.model import CampaignReport, Lineage

__all__ = ["ANCESTOR_PX", "ancestor_keys", "strips"]

ANCESTOR_PX = 96  # thumbnail size of an ancestor (shown at 56 px; sharp on a 2x screen)


def _chains(report: CampaignReport, shown: int) -> dict[tuple[str, int], Lineage]:
    """The lineage of the first ``shown`` approved images that have ancestors."""
    wanted = {(i.generation_id, i.index) for i in report.approved_images[:shown]}
    return {
        (c.generation_id, c.index): c
        for c in report.lineage
        if (c.generation_id, c.index) in wanted and len(c.steps) > 1
    }


def ancestor_keys(report: CampaignReport, shown: int) -> set[str]:
    """The storage keys of the ancestors the report shows (of the first ``shown`` approved)."""
    return _keys(_chains(report, shown).values())


def _keys(chains: Iterable[Lineage]) -> set[str]:
    return {s.storage_key for c in chains for s in c.steps if s.depth > 0 and s.storage_key}


def strips(
    report: CampaignReport,
    shown: int,
    thumbnails: Mapping[str, bytes],
    thumbnail: Callable[[bytes, int], str],
) -> dict[tuple[str, int], str]:
    """The HTML strip for each of the first ``shown`` approved images that has ancestors, by
    (generation, index); an ancestor whose original is gone shows as a dash."""
    chains = _chains(report, shown)
    small: dict[str, str] = {}
    for key in _keys(chains.values()):
        data = thumbnails.get(key)
        if data:
            try:
                small[key] = thumbnail(data, ANCESTOR_PX)
            except OSError:
                continue  # not an image Pillow can read: a dash
    return {ref: _strip(chain, small) for ref, chain in chains.items()}


def _strip(chain: Lineage, small: Mapping[str, str]) -> str:
    steps = sorted(chain.steps, key=lambda s: s.depth, reverse=True)
    parts = []
    for step in steps[:-1]:  # the last is the approved image's own generation
        src = small.get(step.storage_key or "")
        label = f"{step.kind} #{step.used_index}"
        picture = (
            f'<img src="{src}" alt="{escape(label)}">' if src else '<span class="gone">–</span>'
        )
        about = f"{step.prompt} · {step.user} · {step.created_at:%Y-%m-%d %H:%M} UTC"
        parts.append(
            f'<figure title="{escape(about)}">{picture}<figcaption>{escape(label)}'
            "</figcaption></figure>"
        )
    parts.append(f'<span class="this">this ({escape(steps[-1].kind)})</span>')
    return '<div class="ancestry">' + '<span class="arrow">→</span>'.join(parts) + "</div>"
