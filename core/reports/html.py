"""The HTML contact sheet: one self-contained file with inline SVG charts and JPEG thumbnails."""

from __future__ import annotations

import base64
import io
import itertools
import shlex
from collections.abc import Mapping, Sequence
from html import escape

from PIL import Image

from core.humanise import duration, number, percent
from core.reports.ancestry import ancestor_keys, strips
from core.reports.charts import ACCENT, MAX_BARS, bar_chart, column_chart, nice_max
from core.reports.memory_html import memory_sections
from core.reports.model import CampaignReport, ImageRow, Slice

__all__ = ["shown_keys", "thumbnail", "to_html"]

THUMB_PX = 256
MAX_SHEET = 120  # cards per contact sheet section: the file stays a few MB at most


def thumbnail(data: bytes, size: int = THUMB_PX) -> str:
    """A ``data:`` URI of a JPEG no larger than ``size`` px on its long side."""
    with Image.open(io.BytesIO(data)) as img:
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        rgb = img.convert("RGB")
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=82, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _card(label: str, value: str, note: str = "") -> str:
    sub = f'<div class="note">{escape(note)}</div>' if note else ""
    return (
        f'<div class="kpi"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div>{sub}</div>'
    )


def _picture(image: ImageRow, thumbs: Mapping[str, str], alt: str) -> str:
    """The inline thumbnail of ``image``, or a placeholder when the store no longer has it."""
    src = thumbs.get(image.storage_key)
    if not src:
        return '<div class="missing">image unavailable</div>'
    return f'<img src="{src}" alt="{escape(alt)}" loading="lazy">'


def shown_keys(report: CampaignReport) -> set[str]:
    """The storage keys of every picture the HTML shows: the thumbnails ``to_html`` needs."""
    return _card_keys(report) | ancestor_keys(report, MAX_SHEET)


def _card_keys(report: CampaignReport) -> set[str]:
    shown = (*report.recent_images, *report.top_images, *report.approved_images[:MAX_SHEET])
    return {i.storage_key for i in shown}


def _image_card(image: ImageRow, thumbs: Mapping[str, str], strip: str = "") -> str:
    picture = _picture(image, thumbs, image.prompt)
    badges = f'<span class="badge fav">★ {image.favourites}</span>' if image.favourites else ""
    if image.likes:
        badges += f'<span class="badge">{image.likes} like{"s" if image.likes > 1 else ""}</span>'
    if image.approved:
        badges += '<span class="badge ok">✓ approved</span>'
    facts = [
        ("by", image.user),
        ("seed", "–" if image.seed is None else str(image.seed)),
        ("model", image.model or "–"),
        ("preset", f"{image.preset} @ {image.preset_version[:10]}"),
        ("size", f"{image.width}×{image.height}"),
        ("kind", image.kind),
    ]
    if image.approved_by:
        facts.append(("approved by", ", ".join(image.approved_by)))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return (
        f'<article class="shot"><div class="frame">{picture}</div>'
        f'<div class="meta"><div class="badges">{badges}</div>'
        f'<p class="prompt">{escape(image.prompt)}</p>'
        f"<details><summary>final prompt</summary><p>{escape(image.final_prompt)}</p></details>"
        f'<dl>{rows}</dl>{strip}<div class="id">{escape(image.generation_id[:8])} · '
        f"#{image.index}</div></div></article>"
    )


def _sheet(
    title: str,
    images: Sequence[ImageRow],
    thumbs: Mapping[str, str],
    ancestry: Mapping[tuple[str, int], str] | None = None,
) -> str:
    if not images:
        body = '<p class="empty">None yet.</p>'
    else:
        lines = ancestry or {}
        cards = (_image_card(i, thumbs, lines.get((i.generation_id, i.index), "")) for i in images)
        body = '<div class="sheet">' + "".join(itertools.islice(cards, MAX_SHEET)) + "</div>"
        if len(images) > MAX_SHEET:
            body += (
                f'<p class="empty">… and {len(images) - MAX_SHEET:,} more: '
                "the CSV export lists every image.</p>"
            )
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def _tile(image: ImageRow, thumbs: Mapping[str, str]) -> str:
    """One image on the contact sheet: the thumbnail, its number and its marks (★ n, ✅)."""
    picture = _picture(image, thumbs, f"{image.prompt} #{image.index}")
    marks = f'<span class="mark fav">★ {image.favourites}</span>' if image.favourites else ""
    if image.approved:
        marks += '<span class="mark ok" title="approved">✅</span>'
    seed = "" if image.seed is None else f" · seed {image.seed}"
    return (
        f'<figure class="tile" style="aspect-ratio:{image.width} / {image.height}" '
        f'title="#{image.index}{seed}">{picture}<span class="ix">{image.index}</span>'
        f'<span class="marks">{marks}</span></figure>'
    )


def _generation_card(images: Sequence[ImageRow], thumbs: Mapping[str, str]) -> str:
    """One generation on the contact sheet: its images, then what was asked, by whom, when."""
    first = images[0]
    layout = "one" if len(images) == 1 else "grid"
    tiles = "".join(_tile(i, thumbs) for i in images)
    grid_fav = (
        f'<div class="gmarks"><span class="mark fav">★ {first.grid_favourites} on the grid</span>'
        "</div>"
        if first.grid_favourites
        else ""
    )
    return (
        f'<article class="gen" data-generation="{escape(first.generation_id)}">'
        f'<div class="tiles {layout}">{tiles}</div>'
        f'<div class="meta"><p class="prompt" title="{escape(first.final_prompt)}">'
        f"{escape(first.prompt)}</p>"
        f'<div class="byline">{escape(first.user)} · {first.created_at:%Y-%m-%d %H:%M} UTC · '
        f"{escape(first.kind)}</div>"
        f'<div class="id">{escape(first.generation_id[:8])} · '
        f"{escape(first.preset)}@{escape(first.preset_version[:10])}</div>{grid_fav}"
        "</div></article>"
    )


def _more_command(report: CampaignReport) -> str:
    """The command that renders this report's contact sheet with every image on it."""
    words = ["onbrand", "report", report.campaign.name, "--format", "html"]
    if report.since is not None:
        words += ["--since", report.since.isoformat()]
    if report.until is not None:
        words += ["--until", report.until.isoformat()]
    if report.pseudonymised:
        words.append("--pseudonymise")
    words += ["--sheet", str(report.totals.images)]
    return shlex.join(words)


def _contact_sheet(report: CampaignReport, thumbs: Mapping[str, str]) -> str:
    """Every generation in scope, newest first, up to the report's cap, then how many more."""
    images, total = report.recent_images, report.totals.images
    groups: list[list[ImageRow]] = []
    for image in images:
        if groups and groups[-1][0].generation_id == image.generation_id:
            groups[-1].append(image)
        else:
            groups.append([image])
    if not total:
        body = '<p class="empty">Nothing made yet.</p>'
    else:
        shown = len(images)
        if shown < total:
            what = f"The newest {shown:,} of {total:,} images"
        else:
            what = f"All {total:,} images, newest first" if total > 1 else "The only image"
        body = f'<p class="lede">{what} · ★ favourites · ✅ approved</p>'
        if groups:
            body += '<div class="gens">' + "".join(_generation_card(g, thumbs) for g in groups)
            body += "</div>"
        if shown < total:
            body += (
                f'<p class="more">{total - shown:,} more not shown. '
                f"<code>{escape(_more_command(report))}</code> puts them all on the sheet; "
                "<code>--format csv</code> lists every image.</p>"
            )
    return f"<section><h2>Contact sheet</h2>{body}</section>"


def _table(title: str, slices: Sequence[Slice], most: int | None = None) -> str:
    """A breakdown; with ``most``, the busiest ``most`` slices (by requests) and a line saying
    how many more there are (the markdown report lists every one)."""
    if not slices:
        return ""
    more = ""
    if most is not None and len(slices) > most:
        more = (
            f'<tr><td colspan="7" class="more">and {len(slices) - most:,} more: these are the '
            f"{most} with the most requests; the markdown report lists all {len(slices):,}"
            "</td></tr>"
        )
        slices = sorted(slices, key=lambda s: (-s.requests, s.key))[:most]
    head = (
        "<tr><th></th><th>requests</th><th>images</th><th>users</th><th>★ rate</th>"
        "<th>✓ images</th><th>GPU s</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{escape(s.key)}</td><td>{s.requests:,}</td><td>{s.images:,}</td>"
        f"<td>{s.users:,}</td><td>{percent(s.favourite_rate)}</td><td>{s.approved_images:,}</td>"
        f"<td>{number(s.gpu_seconds)}</td></tr>"
        for s in slices
    )
    return f'<div class="panel"><h3>{escape(title)}</h3><table>{head}{rows}{more}</table></div>'


CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f6f7fb; --accent:__ACCENT__; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 15px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Inter, Roboto,
        "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 40px 32px 64px; }
header { display:flex; justify-content:space-between; align-items:flex-end; gap:24px;
  border-bottom:1px solid var(--line); padding-bottom:20px; margin-bottom:28px; }
.eyebrow { text-transform:uppercase; letter-spacing:.12em; font-size:12px; color:var(--accent);
  font-weight:600; }
h1 { font-size:34px; line-height:1.15; margin:6px 0 4px; letter-spacing:-.02em; }
.sub { color:var(--muted); }
.stamp { color:var(--muted); font-size:13px; text-align:right; }
h2 { font-size:20px; margin:40px 0 14px; letter-spacing:-.01em; }
h3 { font-size:14px; margin:0 0 10px; color:var(--muted); font-weight:600; }
.kpis { display:grid; grid-template-columns:repeat(5, minmax(0, 1fr)); gap:14px; }
.kpi { background:#fff; border:1px solid var(--line); border-radius:12px; padding:14px 16px; }
.kpi .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.06em; }
.kpi .value { font-size:26px; font-weight:650; letter-spacing:-.02em; margin-top:2px;
  font-variant-numeric: tabular-nums; }
.kpi .note { color:var(--muted); font-size:12px; }
.panel { background:#fff; border:1px solid var(--line); border-radius:12px; padding:16px 18px;
  margin:0; }
figcaption { font-size:14px; font-weight:600; color:var(--muted); margin-bottom:8px; }
.charts { display:grid; grid-template-columns:1fr 1fr; gap:16px; margin-top:16px; }
.charts .wide, .tables .wide { grid-column: 1 / -1; }
.chart { width:100%; height:auto; display:block; }
.chart .grid { stroke:#eef0f6; stroke-width:1; }
.chart .tick { fill:var(--muted); font-size:11px; }
.chart .label { fill:var(--ink); font-size:12px; }
.chart .value { fill:var(--muted); font-size:12px; font-variant-numeric: tabular-nums; }
.tables { display:grid; grid-template-columns:1fr 1fr; gap:16px; }
table { width:100%; border-collapse:collapse; font-size:13px; font-variant-numeric: tabular-nums; }
th, td { padding:5px 8px; text-align:right; border-bottom:1px solid var(--line); }
th:first-child, td:first-child { text-align:left; max-width:220px; overflow:hidden;
  text-overflow:ellipsis; white-space:nowrap; }
th { color:var(--muted); font-weight:600; font-size:12px; }
tr:last-child td { border-bottom:0; }
td.more { max-width:none; white-space:normal; color:var(--muted); font-size:13px; }
.sheet { display:grid; grid-template-columns:repeat(auto-fill, minmax(250px, 1fr)); gap:18px; }
.shot { background:#fff; border:1px solid var(--line); border-radius:12px; overflow:hidden;
  display:flex; flex-direction:column; }
.frame { aspect-ratio: 1 / 1; background:#eef0f6; display:flex; align-items:center;
  justify-content:center; }
.frame img { width:100%; height:100%; object-fit:cover; display:block; }
.missing { color:var(--muted); font-size:13px; }
.meta { padding:12px 14px 14px; font-size:13px; }
.badges { display:flex; gap:6px; flex-wrap:wrap; margin-bottom:6px; }
.badge { background:#f3f4f6; border-radius:999px; padding:1px 9px; font-size:12px;
  font-weight:600; }
.badge.fav { background:#fef3c7; color:#92400e; }
.badge.ok { background:#dcfce7; color:#166534; }
.prompt { margin:0 0 6px; font-weight:550; }
details { color:var(--muted); margin-bottom:6px; }
details p { margin:4px 0 0; }
summary { cursor:pointer; font-size:12px; }
dl { display:grid; grid-template-columns:auto 1fr; gap:1px 10px; margin:0; }
dt { color:var(--muted); }
dd { margin:0; overflow-wrap:anywhere; }
.id { color:var(--muted); font-size:11px; margin-top:8px; font-family: ui-monospace, Menlo,
  monospace; }
.empty { color:var(--muted); }
.lede { color:var(--muted); margin:-6px 0 14px; font-size:13px; }
.gens { display:grid; grid-template-columns:repeat(auto-fill, minmax(250px, 1fr)); gap:18px;
  align-items:start; }
.gen { background:#fff; border:1px solid var(--line); border-radius:12px; overflow:hidden; }
.tiles { display:grid; grid-template-columns:1fr 1fr; gap:2px; background:var(--line); }
.tiles.one { grid-template-columns:1fr; }
.tile { position:relative; margin:0; background:#eef0f6; display:flex; align-items:center;
  justify-content:center; overflow:hidden; }
.tile img { width:100%; height:100%; object-fit:cover; display:block; }
.tile .ix { position:absolute; left:6px; top:6px; background:rgba(17,24,39,.72); color:#fff;
  border-radius:6px; padding:0 6px; font-size:11px; font-weight:600; }
.tile .marks { position:absolute; right:6px; bottom:6px; display:flex; gap:4px; }
.mark { background:rgba(255,255,255,.92); border-radius:999px; padding:0 7px; font-size:12px;
  font-weight:600; line-height:20px; }
.mark.fav { background:#fef3c7; color:#92400e; }
.gmarks { margin-top:6px; }
.gen .meta { padding:10px 12px 12px; }
.gen .prompt { overflow:hidden; display:-webkit-box; -webkit-line-clamp:2;
  -webkit-box-orient:vertical; }
.byline { color:var(--muted); font-size:12px; }
.gen .id { margin-top:4px; }
.more { color:var(--muted); margin-top:14px; }
code { font-family: ui-monospace, Menlo, monospace; font-size:12px; background:#eef0f6;
  border-radius:4px; padding:1px 5px; overflow-wrap:anywhere; }
footer { margin-top:48px; color:var(--muted); font-size:12px; }
.ancestry { display:flex; align-items:center; flex-wrap:wrap; gap:4px; margin-top:10px;
  font-size:10px; color:var(--muted); }
.ancestry figure { margin:0; width:56px; text-align:center; }
.ancestry img, .ancestry .gone { width:56px; height:56px; object-fit:cover; display:block;
  border-radius:6px; border:1px solid var(--line); }
.ancestry .gone { line-height:56px; }
.ancestry figcaption { font-size:10px; font-weight:400; line-height:1.3; white-space:nowrap; }
@media (max-width: 800px) { .charts, .tables { grid-template-columns:1fr; }
  .kpis { grid-template-columns:repeat(2, minmax(0, 1fr)); } }
@media print { body { background:#fff; } .panel, .kpi, .shot, .gen { break-inside: avoid; } }
""".replace("__ACCENT__", ACCENT)


def to_html(report: CampaignReport, thumbnails: Mapping[str, bytes]) -> str:
    """The report as one HTML file: KPIs, three SVG charts, tables and the contact sheet.

    ``thumbnails`` maps storage keys to the original bytes; a missing or unreadable one is
    shown as unavailable.
    """
    t, e, c = report.totals, report.engagement, report.cost
    wanted = _card_keys(report)
    thumbs: dict[str, str] = {}
    for key in wanted:
        data = thumbnails.get(key)
        if data:
            try:
                thumbs[key] = thumbnail(data)
            except OSError:
                continue  # not an image Pillow can read: shown as unavailable
    when = (
        "all time"
        if report.since is None and report.until is None
        else (f"{report.since or '…'} → {report.until or '…'}")
    )
    kpis = "".join(
        (
            _card(
                "Requests",
                f"{t.requests:,}",
                f"{t.variations:,} var · {t.upscales:,} up · {t.rerolls:,} reroll",
            ),
            _card(
                "Images",
                f"{t.images:,}",
                f"{t.failed:,} failed · {t.cancelled:,} cancelled"
                + (f" · {t.undelivered:,} undelivered" if t.undelivered else ""),
            ),
            _card("People", f"{t.users:,}", f"{t.blocked_prompts:,} blocked prompts"),
            _card("Favourite rate", percent(e.favourite_rate), f"{e.favourites:,} ★"),
            _card("Approval rate", percent(e.approval_rate), f"{e.approved_images:,} approved"),
            _card(
                "GPU time",
                duration(c.gpu_seconds),
                f"{duration(c.gpu_seconds_per_approved_image)} per approved",
            ),
            _card("Queue wait", duration(c.queue_wait_p50), f"p95 {duration(c.queue_wait_p95)}"),
            _card("Generation", duration(c.generation_p50), f"p95 {duration(c.generation_p95)}"),
            _card("To first ★", duration(e.median_seconds_to_first_favourite), "median"),
            _card("To approval", duration(e.median_seconds_to_approval), "median"),
        )
    )
    fav_rows = [
        (s.key, s.favourite_rate or 0.0, percent(s.favourite_rate))
        for s in report.per_preset_version
    ]
    fav_peak = max([r for _, r, _ in fav_rows] + [0.0])
    gpu_rows = sorted(
        ((s.key, s.gpu_seconds, duration(s.gpu_seconds)) for s in report.per_user),
        key=lambda r: -r[1],
    )
    charts = (
        '<div class="charts">'
        f'<div class="wide">{column_chart(report.per_day, "Images per day")}</div>'
        + bar_chart(
            fav_rows,
            "Favourite rate per preset version",
            peak=min(1.0, nice_max(fav_peak * 100) / 100) if fav_peak else 1.0,
        )
        + bar_chart(gpu_rows, "GPU time per user")
        + "</div>"
    )
    tables = (
        '<div class="tables">'
        + _table("Per user", report.per_user, most=MAX_BARS)
        + _table("Per preset version", report.per_preset_version)
        + _table("Per platform", report.per_platform)
        + memory_sections(report)
        + "</div>"
    )
    pseudo = " · users pseudonymised" if report.pseudonymised else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(report.campaign.name)} — campaign report</title>"
        f"<style>{CSS}</style></head><body><main>"
        '<header><div><div class="eyebrow">Campaign report</div>'
        f"<h1>{escape(report.campaign.name)}</h1>"
        f'<div class="sub">Preset {escape(report.campaign.preset)} · {escape(when)}'
        f"{pseudo}</div></div>"
        f'<div class="stamp">generated {report.generated_at:%Y-%m-%d %H:%M} UTC</div></header>'
        f'<section class="kpis">{kpis}</section>'
        f"<section><h2>Activity</h2>{charts}</section>"
        f"<section><h2>Breakdowns</h2>{tables}</section>"
        + _contact_sheet(report, thumbs)
        + _sheet("Most favourited", report.top_images, thumbs)
        + _sheet(
            "Approved",
            report.approved_images,
            thumbs,
            strips(report, MAX_SHEET, thumbnails, thumbnail),
        )
        + "<footer>onbrand · images are AI-generated · figures defined in docs/reports.md"
        "</footer></main></body></html>\n"
    )
