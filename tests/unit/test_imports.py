"""The bots and core stay light: importing them must not import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULES = [
    "bots.cli",
    "bots.processes",
    "core.bootstrap",
    "core.service",
    "core.jobs.worker",
    "core.delivery.sweep",
    "core.engines.registry",
    "core.engines.diffusers",
    "core.engines.openai",
]


def test_bots_and_core_import_without_torch() -> None:
    optional = ["bots.slack", "bots.discord"]
    code = (
        "import importlib, importlib.util, sys\n"
        f"for name in {MODULES!r}: importlib.import_module(name)\n"
        f"for name in {optional!r}:\n"
        "    if importlib.util.find_spec(name): importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
