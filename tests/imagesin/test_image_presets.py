"""The preset's ``image_prompt`` and ``product`` sections: defaults, overrides, located errors."""

from __future__ import annotations

import pytest

from core.brand.preset_files import parse_preset
from core.errors import PresetError
from core.service.images_in import iw_strength
from tests.imagesin.conftest import PRESET_YAML, shop_preset


def test_defaults_and_per_aspect_overrides() -> None:
    preset = shop_preset()
    assert preset.image_prompt.allowed
    assert preset.image_prompt.iw == 1.0
    assert preset.product.placement("1:1").anchor == "bottom"
    custom = parse_preset(
        PRESET_YAML.replace(
            "product: {anchor: bottom, scale: 0.6, margin: 0.06}",
            'product: {anchor: bottom, aspects: {"3:2": {anchor: right, scale: 0.4}}}',
        ),
        "shop.yaml",
    )
    assert custom.product.placement("3:2").anchor == "right"
    assert custom.product.placement("3:2").scale == 0.4
    assert custom.product.placement("1:1").scale == 0.6


def test_bad_values_are_located_by_file_line_and_field() -> None:
    text = PRESET_YAML.replace("scale: 0.6", "scale: 2") + "image_prompt: {iw: 2.5, iw_max: 2}\n"
    with pytest.raises(PresetError) as refused:
        parse_preset(text, "shop.yaml")
    message = str(refused.value)
    assert "shop.yaml:8: product.scale" in message
    assert "shop.yaml:9: image_prompt" in message
    assert "iw 2.5 must lie between" in message


@pytest.mark.parametrize(
    ("iw", "strength"), [(0.0, 1.0), (0.5, 0.6667), (1.0, 0.5), (2.0, 0.3333), (3.0, 0.25)]
)
def test_the_documented_iw_to_strength_mapping(iw: float, strength: float) -> None:
    assert iw_strength(iw) == strength
