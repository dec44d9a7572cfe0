"""``onbrand verify FILE…``: Content Credentials, IPTC fields and the watermark of each file, and
the image of ours it is (from ``core.service.verify``).

Exit status: 0 when every file is verified as ours, 1 when one is not ours or was tampered with,
2 when one can't be read at all (missing, too large, not PNG/JPEG/WebP).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bots.cli_common import err, load_settings, out, with_app
from core.errors import UserError

if TYPE_CHECKING:
    from core.bootstrap import App
    from core.service.verify import Verification


def _read(path: Path, most: int) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(most + 1)
    except OSError as exc:
        raise UserError(f"can't read it: {exc.strerror or exc}") from exc
    return data


def _as_dict(v: Verification) -> dict[str, Any]:
    e, c = v.evidence, v.evidence.credentials
    return {
        "verdict": v.verdict,
        "how": v.how,
        "format": e.format,
        "size": [e.width, e.height],
        "c2pa": {
            "state": c.state,
            "reason": c.reason,
            "signer": c.signer,
            "generation_id": c.generation_id,
            "index": c.index,
            "actions": list(c.actions),
            "ingredients": list(c.ingredients),
        },
        "iptc": e.iptc,
        "watermark": None
        if e.watermark is None
        else {
            "id": f"{e.watermark.image_id:010x}",
            "mac": "valid",
            "scale": round(e.watermark.scale, 3),
        },
        "records": [
            {
                "generation_id": str(r.generation_id),
                "index": r.index,
                "kind": r.kind,
                "status": r.status,
                "made_at": r.made_at.isoformat(),
                "platform": r.platform,
                "campaign": r.campaign,
                "preset": r.preset,
                "made_by": r.made_by,
                "approved": r.approvals > 0,
                "lineage": list(r.lineage),
            }
            for r in v.records
        ],
    }


def _print(name: str, v: Verification) -> None:
    e, c = v.evidence, v.evidence.credentials
    colour = "green" if v.verified else "red"
    out.print(f"{name}: [{colour}]{v.verdict}[/{colour}] ({v.how})", highlight=False)
    for r in v.records:
        approved = "approved" if r.approvals else "not approved"
        out.print(
            f"  generation {r.generation_id} #{r.index} ({r.kind}, {r.status}), "
            f"campaign {r.campaign or '—'}, preset {r.preset}, by {r.made_by} on {r.platform}, "
            f"{r.made_at:%Y-%m-%d %H:%M} UTC, {approved}",
            highlight=False,
        )
        if r.lineage:
            out.print(f"  lineage: {' ← '.join(r.lineage)}", highlight=False)
    line = f"  C2PA: {c.state}"
    if c.reason:
        line += f" ({c.reason})"
    if c.signer:
        line += f", signer {c.signer}"
    if c.actions:
        line += f", actions {', '.join(c.actions)}"
    if c.ingredients:
        line += f", ingredients {' ← '.join(c.ingredients)}"
    out.print(line, highlight=False)
    if e.iptc:
        out.print(
            "  IPTC: " + ", ".join(f"{k}={val}" for k, val in e.iptc.items()), highlight=False
        )
    mark = e.watermark
    out.print(
        "  watermark: none of ours"
        if mark is None
        else f"  watermark: id {mark.image_id:010x}, MAC valid, found at scale {mark.scale:.2f}",
        highlight=False,
    )


def verify(
    files: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, WebP).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
    trust: Annotated[
        list[Path] | None,
        typer.Option("--trust", help="A CA certificate (PEM) to trust as well; repeatable."),
    ] = None,
) -> None:
    """Is this image ours? Content Credentials, IPTC fields, the watermark and the records."""
    from core.provenance.inspect import MAX_BYTES, Unreadable
    from core.provenance.setup import from_settings
    from core.service.verify import verify as verify_one

    anchors: list[bytes] = []
    for path in trust or []:
        try:
            anchors.append(path.read_bytes())
        except OSError as exc:
            err.print(f"[red]error:[/red] --trust {path}: {exc.strerror or exc}", highlight=False)
            raise typer.Exit(2) from exc

    async def go(app: App) -> int:
        provenance = from_settings(app.settings)
        worst = 0
        results: dict[str, Any] = {}
        for path in files:
            try:
                v = await verify_one(app.db, provenance, _read(path, MAX_BYTES), anchors)
            except (Unreadable, UserError) as exc:
                message = exc.user_message if isinstance(exc, UserError) else str(exc)
                err.print(f"[red]{path}: unreadable:[/red] {message}", highlight=False)
                results[str(path)] = {"verdict": "unreadable", "reason": message}
                worst = 2
                continue
            if as_json:
                results[str(path)] = _as_dict(v)
            else:
                _print(str(path), v)
            if not v.verified and worst == 0:
                worst = 1
        if as_json:
            sys.stdout.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        return worst

    load_settings()
    raise typer.Exit(with_app(go))
