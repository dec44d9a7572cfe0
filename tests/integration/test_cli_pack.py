"""``onbrand pack GEN:INDEX -o pack.zip`` as a person runs it (issue 16, first slice)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from core.brand.placements import default_placements
from core.imaging.metadata import iptc_fields, read_xmp
from tests.integration.test_cli import env, fake_presets, onbrand

pytestmark = pytest.mark.integration
__all__ = ["env", "fake_presets"]  # fixtures


def test_pack_writes_every_default_placement_and_refuses_bad_input(
    env: dict[str, str], fake_presets: Path, tmp_path: Path
) -> None:
    env = env | {"ONBRAND_PRESETS_DIR": str(fake_presets), "ONBRAND_DEFAULT_PRESET": "cli-test"}
    made = onbrand("imagine", "a blue square", "--seed", "5", "--out", str(tmp_path), env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    generation = Path(made.stdout.split()[0]).parent.name
    target = tmp_path / "pack.zip"

    result = onbrand("pack", f"{generation}:2", "-o", str(target), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(target) as archive:
        names = set(archive.namelist())
        for placement in default_placements().values():
            data = archive.read(f"onbrand/{placement.name}.{placement.extension}")
            with Image.open(io.BytesIO(data)) as image:
                assert image.size == placement.size
            assert len(data) <= placement.max_bytes
            assert "DigitalSourceType" in iptc_fields(read_xmp(data) or "")
    assert {"onbrand/manifest.csv", "onbrand/contact-sheet.png"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]

    for args, words in (
        ([f"{generation}:2", "--placements", "tiktok"], "Unknown placement 'tiktok'"),
        ([f"{generation}:7"], "has images 1 to 4"),
        (["not-an-id"], "isn't GENERATION-ID:INDEX"),
    ):
        refused = onbrand("pack", *args, "-o", str(tmp_path / "no.zip"), env=env)
        assert refused.returncode == 2
        assert words in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (tmp_path / "no.zip").exists()
