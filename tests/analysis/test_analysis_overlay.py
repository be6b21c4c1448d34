"""Heat-map rendering: the overlay PNG and the burned-in export image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medvault.analysis.overlay import composite, display_rgb, overlay_png, png_rgba


def test_overlay_is_transparent_where_cold_and_coloured_where_hot() -> None:
    heat = np.zeros((40, 60), dtype=np.float32)
    heat[10:20, 30:40] = 1.0
    image = Image.open(io.BytesIO(overlay_png(heat)))
    assert image.format == "PNG" and "transparency" in image.info and image.size == (60, 40)
    rgba = np.asarray(image.convert("RGBA"))
    assert rgba[0, 0, 3] == 0
    r, g, b, a = rgba[15, 35]
    assert a > 100 and r > 200 and b < 50


def test_overlay_is_resized_to_the_image() -> None:
    image = Image.open(io.BytesIO(overlay_png(np.ones((7, 7), np.float32), size=(128, 96))))
    assert image.size == (128, 96)


def test_overlay_rejects_a_non_2d_heatmap_and_tames_nan() -> None:
    with pytest.raises(ValueError):
        overlay_png(np.zeros((2, 2, 2), np.float32))
    heat = np.full((4, 4), np.nan, np.float32)
    assert png_rgba(overlay_png(heat))[..., 3].max() == 0


def test_composite_burns_in_only_the_hot_region() -> None:
    grey = display_rgb(
        np.arange(100 * 80, dtype=np.int16).reshape(100, 80) - 2000, window=(0.0, 8000.0)
    )
    heat = np.zeros((100, 80), np.float32)
    heat[:20, :20] = 1.0
    burned = composite(grey, png_rgba(overlay_png(heat)))
    assert np.array_equal(burned[50:, 40:], grey[50:, 40:])
    assert burned[5, 5, 0] > burned[5, 5, 2] + 50


def test_display_rgb_windows_and_passes_colour_through() -> None:
    ct = np.array([[-2000, -1000], [0, 3000]], dtype=np.int16)
    rendered = display_rgb(ct, window=(-600.0, 1500.0))
    assert rendered.shape == (2, 2, 3) and rendered[0, 0, 0] == 0 and rendered[1, 1, 0] == 255
    colour = np.zeros((3, 3, 3), np.uint8)
    colour[1, 1] = (10, 20, 30)
    assert np.array_equal(display_rgb(colour), colour)
