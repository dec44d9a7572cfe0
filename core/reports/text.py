"""The report as text: markdown for the terminal and chat, a CSV of images, a JSON document.

Renderers only: they read a ``CampaignReport`` (``core.reports.model``) and write figures with
``core.humanise``. The JSON keys and the CSV columns are documented in ``docs/reports.md``.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import asdict, fields, replace
from datetime import UTC, date, datetime
from typing import Any, TextIO

from core.humanise import duration, number, percent
from core.reports.model import CampaignReport, ImageRow

__all__ = [
    "CSV_COLUMNS",
    "FORMULA_STARTS",
    "SCHEMA_VERSION",
    "csv_row",
    "csv_table",
    "csv_text",
    "report_dict",
    "to_csv",
    "to_json",
    "to_markdown",
    "write_csv",
    "write_json",
]

SCHEMA_VERSION = 1


def _range_words(report: CampaignReport) -> str:
    if report.since is None and report.until is None:
        return "all time"
    return f"{report.since or '…'} – {report.until or '…'}"


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return out


def to_markdown(report: CampaignReport) -> str:
    """The terminal and chat rendering: headline figures, breakdowns, top and approved images."""
    t, e, c = report.totals, report.engagement, report.cost
    lines = [
        f"# Campaign report: {report.campaign.name}",
        "",
        f"Preset {report.campaign.preset} · {_range_words(report)} · generated "
        f"{report.generated_at:%Y-%m-%d %H:%M} UTC"
        + (" · users pseudonymised" if report.pseudonymised else ""),
        "",
        "## Totals",
        "",
        f"- **{t.requests:,}** requests → **{t.images:,}** images by **{t.users:,}** people",
        f"- {t.imagines:,} imagine · {t.variations:,} variations · {t.upscales:,} upscales · "
        f"{t.rerolls:,} rerolls",
        f"- {t.done:,} done · {t.failed:,} failed · {t.cancelled:,} cancelled · "
        f"{t.pending:,} pending · {t.blocked_prompts:,} blocked prompts",
        *(
            [
                f"- {t.undelivered:,} results never reached their channel (deleted, bot removed "
                "or failing for days); `onbrand doctor` lists them with the reason"
            ]
            if t.undelivered
            else []
        ),
        *([f"- 📦 {t.packs:,} packs · {t.pack_files:,} placement files"] if t.packs else []),
        "",
        "## Engagement",
        "",
        f"- ⭐ {e.favourites:,} favourites (+{e.grid_favourites:,} on whole grids) · "
        f"👍 {e.likes:,} · 👎 {e.dislikes:,} · ✅ {e.approvals:,} approvals",
        f"- favourite rate {percent(e.favourite_rate)} ({e.favourited_images:,} images) · "
        f"approval rate {percent(e.approval_rate)} ({e.approved_images:,} images)",
        f"- median time to first favourite {duration(e.median_seconds_to_first_favourite)} · "
        f"to approval {duration(e.median_seconds_to_approval)}",
        "",
        "## Cost and speed",
        "",
        f"- GPU {number(c.gpu_seconds)} s in all · {number(c.gpu_seconds_per_approved_image)} s "
        "per approved image",
        f"- queue wait p50 {duration(c.queue_wait_p50)} · p95 {duration(c.queue_wait_p95)}",
        f"- generation time p50 {duration(c.generation_p50)} · p95 {duration(c.generation_p95)}",
    ]
    head = ["", "requests", "images", "⭐ rate", "✅ images", "GPU s"]
    for title, slices in (
        ("Per user", report.per_user),
        ("Per preset version", report.per_preset_version),
        ("Per platform", report.per_platform),
        ("Per day", report.per_day),
    ):
        if not slices:
            continue
        lines += ["", f"## {title}", ""]
        lines += _md_table(
            head,
            [
                (
                    s.key,
                    f"{s.requests:,}",
                    f"{s.images:,}",
                    percent(s.favourite_rate),
                    f"{s.approved_images:,}",
                    number(s.gpu_seconds),
                )
                for s in slices
            ],
        )
    for title, images in (
        ("Most favourited", report.top_images),
        ("Approved", report.approved_images),
    ):
        lines += ["", f"## {title}", ""]
        if not images:
            lines.append("_none_")
            continue
        lines += _md_table(
            ["image", "⭐", "by", "approved by", "seed", "preset", "prompt"],
            [
                (
                    f"{i.generation_id[:8]}#{i.index}",
                    i.favourites,
                    i.user,
                    ", ".join(i.approved_by) or "–",
                    i.seed if i.seed is not None else "–",
                    f"{i.preset}@{i.preset_version[:8]}",
                    i.prompt,
                )
                for i in images
            ],
        )
    if report.acceptance:
        lines += ["", "## Acceptance per week, model and preset version", ""]
        lines += _md_table(
            ACCEPTANCE_HEAD,
            [
                (
                    f"{a.week:%G-W%V}",
                    a.model,
                    a.preset,
                    f"{a.grids:,}",
                    f"{a.images:,}",
                    percent(a.favourite_rate),
                    percent(a.approval_rate),
                    percent(a.upscale_rate),
                    percent(a.reroll_rate),
                )
                for a in report.acceptance
            ],
        )
    if report.near_duplicates:
        lines += ["", "## Near-duplicates of approved images", ""]
        lines += _md_table(
            ["image", "looks like (approved)"],
            [
                (
                    f"{str(c.image.generation_id)[:8]}#{c.image.index}",
                    ", ".join(
                        f"{str(r.generation_id)[:8]}#{r.index} ({campaign or '–'}, {d} bits)"
                        for r, campaign, d in c.near
                    ),
                )
                for c in report.near_duplicates
            ],
        )
    if any(len(chain.steps) > 1 for chain in report.lineage):
        lines += ["", "## Lineage of approved images", ""]
        for chain in report.lineage:
            if len(chain.steps) > 1:
                path = " ← ".join(
                    f"{s.kind} {s.generation_id[:8]}"
                    + (f"#{s.used_index}" if s.used_index is not None else "")
                    for s in chain.steps
                )
                lines.append(f"- {chain.generation_id[:8]}#{chain.index}: {path}")
    return "\n".join(lines) + "\n"


CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ImageRow))

# A spreadsheet reads a cell that starts with one of these as a formula (OWASP, "CSV Injection"),
# so ``=cmd|' /C calc'!A0`` as a display name would run when the CSV is opened. Such text cells
# get a leading ``'``; real numbers (ints and floats, negative ones included) stay numbers.
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")


def csv_text(text: str) -> str:
    """``text`` safe for a CSV cell: prefixed with ``'`` when a spreadsheet would read a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, tuple):
        return csv_text("; ".join(str(v) for v in value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return csv_text(value)
    return value


def csv_row(image: ImageRow) -> list[object]:
    """``image`` as a CSV row, one value per ``CSV_COLUMNS``; text cells are ``csv_text``."""
    return [_csv_value(getattr(image, name)) for name in CSV_COLUMNS]


def csv_table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document: text cells quoted, numbers bare, one ``\\n``-ended line per row.

    Quoting every text cell keeps a line break inside one (a carriage return in a display name)
    from starting a new row; Python 3.11's minimal quoting leaves a lone ``\\r`` bare.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(head)
    writer.writerows(rows)
    return out.getvalue()


async def write_csv(images: AsyncIterable[ImageRow], out: TextIO) -> int:
    """``to_csv``'s document written to ``out`` as the rows arrive (``open_report``'s
    ``images``): memory stays flat however many images there are. Returns the row count."""
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(CSV_COLUMNS)
    count = 0
    async for image in images:
        writer.writerow(csv_row(image))
        count += 1
    return count


def to_csv(report: CampaignReport) -> str:
    """One row per image (columns: ``CSV_COLUMNS``); needs a report built with its images."""
    if report.images is None:
        raise ValueError("this report was built with include_images=False; the CSV needs them")
    return csv_table(CSV_COLUMNS, (csv_row(image) for image in report.images))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


ACCEPTANCE_HEAD = (
    "week",
    "model",
    "preset",
    "grids",
    "images",
    "★ rate",
    "✅ rate",
    "U rate",
    "🔄 rate",
)


def report_dict(report: CampaignReport) -> dict[str, Any]:
    """The JSON document as a dict; keys documented in ``docs/reports.md``."""
    doc = {
        "totals": asdict(report.totals),
        "engagement": asdict(report.engagement),
        "cost": asdict(report.cost),
        "breakdowns": {
            "per_user": [asdict(s) for s in report.per_user],
            "per_preset_version": [asdict(s) for s in report.per_preset_version],
            "per_day": [asdict(s) for s in report.per_day],
            "per_platform": [asdict(s) for s in report.per_platform],
        },
        "top_images": [asdict(i) for i in report.top_images],
        "approved_images": [asdict(i) for i in report.approved_images],
        "lineage": [asdict(chain) for chain in report.lineage],
        "acceptance": [asdict(a) for a in report.acceptance],
        "near_duplicates": [
            {
                "image": str(c.image),
                "near": [
                    {"image": str(r), "campaign": campaign, "distance": d}
                    for r, campaign, d in c.near
                ],
            }
            for c in report.near_duplicates
        ],
        "images": None if report.images is None else [asdict(i) for i in report.images],
        "campaign": asdict(report.campaign),
        "range": {"since": report.since, "until": report.until},
        "generated_at": report.generated_at,
        "pseudonymised": report.pseudonymised,
        "schema_version": SCHEMA_VERSION,
    }
    result: dict[str, Any] = _jsonable(doc)
    return result


def to_json(report: CampaignReport) -> str:
    return json.dumps(report_dict(report), ensure_ascii=False, indent=2) + "\n"


# ``to_json`` of a report without images has this line once: at the top level (indent 2) and,
# since JSON escapes line breaks inside strings, nowhere else.
_IMAGES_LINE = '\n  "images": null,\n'


async def write_json(report: CampaignReport, images: AsyncIterable[ImageRow], out: TextIO) -> int:
    """``to_json`` of ``report`` with ``images`` as its per-image rows, written to ``out`` as
    they arrive (the same text as ``to_json`` of a report built with them). Returns the count."""
    head, found, tail = to_json(replace(report, images=None)).partition(_IMAGES_LINE)
    assert found, "to_json's layout changed; update _IMAGES_LINE"
    out.write(head + '\n  "images": [')
    count = 0
    async for image in images:
        item = json.dumps(_jsonable(asdict(image)), ensure_ascii=False, indent=2)
        out.write(("\n" if count == 0 else ",\n") + textwrap.indent(item, "    "))
        count += 1
    out.write(("\n  ],\n" if count else "],\n") + tail)
    return count
