"""The shared runner: timing helpers, a printed table and a JSON record per benchmark."""

from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


@dataclass
class Row:
    """One measured configuration: a name, a rate or latency, and extra columns."""

    name: str
    value: float
    unit: str
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) by linear interpolation."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def report(
    name: str,
    rows: Sequence[Row],
    *,
    ratios: dict[str, float] | None = None,
    notes: str = "",
) -> Path:
    """Print the rows and the headline ratios; write them with machine facts as JSON."""
    width = max([len(r.name) for r in rows] + [8])
    print(f"\n== bench {name} ==")
    for r in rows:
        extra = "  ".join(f"{k}={v}" for k, v in r.extra.items())
        print(f"  {r.name:<{width}}  {r.value:>12.4g} {r.unit:<10} {extra}")
    for label, value in (ratios or {}).items():
        print(f"  ratio {label}: {value:.3f}")
    if notes:
        print(f"  note: {notes}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {
        "bench": name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or "?"},
        "rows": [asdict(r) for r in rows],
        "ratios": ratios or {},
        "notes": notes,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"  wrote {path}")
    return path
