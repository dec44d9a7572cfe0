"""``onbrand imagine --product`` and ``--image`` on the shipped presets and the bundled model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

from bots.cli_images import check_image_options
from tests.imagesin.test_product_pixels import photo_on_white
from tests.integration.test_cli import env, onbrand

pytestmark = pytest.mark.integration
__all__ = ["env"]  # the CLI's environment fixture, on the run's database


def test_a_product_shot_from_the_cli_writes_four_scenes_around_the_product(
    env: dict[str, str], tmp_path: Path
) -> None:
    photo, _ = photo_on_white()
    product = tmp_path / "product.png"
    photo.save(product)
    out = tmp_path / "out"
    result = onbrand(
        "imagine", "a kitchen counter at dawn", "--product", str(product), "--seed", "7",
        "--out", str(out), env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    paths = [Path(line) for line in result.stdout.split()]
    assert [p.name for p in paths] == ["1.png", "2.png", "3.png", "4.png", "grid.png"]
    shots = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:4]]
    assert shots[0].shape == (128, 128, 3)  # acme-spring's 1:1
    # The product's middle (the bottle's label, fully opaque) is the same in all four scenes,
    # and the scenes around it differ.
    same = [np.array_equal(shot[65:110, 56:72], shots[0][65:110, 56:72]) for shot in shots]
    assert all(same)
    assert not np.array_equal(shots[0][:30], shots[1][:30])


def test_image_options_are_checked_before_anything_runs() -> None:
    with pytest.raises(typer.Exit):
        check_image_options(Path("a.png"), None, Path("b.png"))
    with pytest.raises(typer.Exit):
        check_image_options(None, 2.0, None)
    check_image_options(Path("a.png"), 2.0, None)


def test_a_bad_file_is_refused_without_a_traceback(env: dict[str, str], tmp_path: Path) -> None:
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (8, 8)).save(gif)
    refused = onbrand("imagine", "x", "--image", str(gif), env=env)
    assert refused.returncode == 2
    assert "a GIF" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_remix_refuses_flags_and_unknown_results_without_a_traceback(env: dict[str, str]) -> None:
    some = "00000000-0000-0000-0000-00000000abcd"
    flags = onbrand("remix", some, "a lighthouse --ar 2:1", env=env)
    assert flags.returncode == 2, flags.stdout + flags.stderr
    assert "remove the --flags" in flags.stderr
    missing = onbrand("remix", some, "a lighthouse at night", env=env)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "no longer exists" in missing.stderr
    assert "Traceback" not in flags.stderr + missing.stderr
