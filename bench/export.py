"""``python -m bench export --database NAME``: peak memory of the per-image exports.

Runs on a database seeded and kept by ``python -m bench report --keep`` (the 1M-generation
shape; its largest campaign is "flagship": 40,000 generations, 160,000 images). Each case runs in
a fresh process of its own and reports that process's peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), side by side:

- ``floor``: the same imports and one query (what any export costs before its rows);
- ``buffered CSV``: ``build_report(include_images=True)`` then ``to_csv`` (how ``onbrand report
  --format csv`` worked before the rows streamed; ``export_zip`` built the same report);
- ``streamed CSV``: ``open_report`` + ``write_csv`` to a file (``onbrand report --format csv``);
- ``streamed JSON``: ``open_report`` + ``write_json`` with the summary (``--format json``);
- ``zip (favourites)``: ``export_zip`` of the favourited originals (1 KB stand-ins for the
  originals: the store is not what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import DEFAULT_ADMIN, _with_database
from bench.runner import Row, report
from core.db import plain_url

CASES = ("floor", "buffered CSV", "streamed CSV", "streamed JSON", "zip (favourites)")


async def _child(url: str, case: str, campaign: str, out: Path) -> int:
    from sqlalchemy import text

    from core.db import Database
    from core.reports.build import build_report, open_report
    from core.reports.export import export_zip
    from core.reports.text import to_csv, write_csv, write_json

    db = Database(url)
    rows = 0
    try:
        if case == "floor":
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        elif case == "buffered CSV":
            made = await build_report(db, campaign, sheet=0)
            await asyncio.to_thread(out.write_text, to_csv(made), encoding="utf-8")
            rows = len(made.images or ())
        elif case in ("streamed CSV", "streamed JSON"):
            json = case == "streamed JSON"
            with out.open("w", encoding="utf-8", newline="") as f:
                async with open_report(db, campaign, summary=json) as opened:
                    if opened.report is None:
                        rows = await write_csv(opened.images, f)
                    else:
                        rows = await write_json(opened.report, opened.images, f)
        else:

            async def read_image(key: str) -> bytes:
                return key.encode().ljust(1024, b".")

            rows = await export_zip(db, campaign, "favourites", out, read_image)
    finally:
        await db.dispose()
    return rows


def _run_case(database: str, case: str, campaign: str) -> tuple[float, float, int, int]:
    """(peak RSS MiB, seconds, rows, output bytes) of ``case`` in a process of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "bench", "export", "--child", case, "--database", database,
             "--campaign", campaign, "--out", str(out)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        peak_kib, rows = (int(v) for v in done.stdout.split()[-2:])
        size = out.stat().st_size if out.exists() else 0
    return peak_kib / 1024, seconds, rows, size


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench export", description=__doc__)
    parser.add_argument("--database", required=True, help="a database kept by bench report")
    parser.add_argument("--campaign", default="flagship")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    admin = plain_url(os.environ.get("DATABASE_URL") or DEFAULT_ADMIN)
    url = _with_database(admin, args.database)
    if args.child:
        rows = asyncio.run(_child(url, args.child, args.campaign, args.out))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(peak, rows)
        return 0
    results = {case: _run_case(args.database, case, args.campaign) for case in CASES}
    out_rows = []
    for case, (mib, seconds, rows, size) in results.items():
        where = {"rows": rows, "output MB": round(size / 1e6, 1), "seconds": round(seconds, 1)}
        out_rows.append(Row(f"peak RSS {case}", mib, "MiB", where))
    floor = results["floor"][0]
    ratios = {f"{case} above the floor, MiB": results[case][0] - floor for case in CASES[1:]}
    report("export", out_rows, ratios=ratios, notes=f"campaign={args.campaign}")
    return 0
