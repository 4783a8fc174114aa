"""Small pictures of results, for notebooks' ``_repr_png_`` (a result shows itself in a cell).

Each function returns a uint8 ``(H, W, 3)`` image; :func:`png` encodes one. Batches are cut to
the first ``max_images`` so a cell never draws thousands of tiles.

Example::

    from jaxvis.render import preview
    img = preview.image_strip(np.random.rand(4, 28, 28, 1))  # four images side by side
    preview.png(img)[:4]  # b'\\x89PNG'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvis.render.blend import overlay
from jaxvis.render.colormaps import colorize
from jaxvis.render.encode import png_bytes
from jaxvis.render.norm import from_range, normalize
from jaxvis.render.resample import upscale
from jaxvis.render.tiling import grid

__all__ = ["attribution_strip", "image_strip", "matrix", "png", "time_strip"]

#: The shorter side of a tile in a preview is at least this many pixels (small inputs grow).
MIN_SIDE = 96


def png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image."""
    return png_bytes(image)


def _zoom(h: int, w: int) -> int:
    return max(1, -(-MIN_SIDE // max(1, min(h, w))))


def _strip(tiles: list[np.ndarray]) -> np.ndarray:
    """uint8 RGB tiles of one size side by side, upscaled to :data:`MIN_SIDE`."""
    h, w = tiles[0].shape[:2]
    return grid(np.stack(tiles), ncols=len(tiles), spacing=2, scale=_zoom(h, w), normalize="none")


def _rgb01(images: np.ndarray, value_range: Any) -> np.ndarray:
    x01 = from_range(np.asarray(images, np.float32), value_range)
    return np.repeat(x01, 3, axis=-1) if x01.shape[-1] == 1 else x01[..., :3]


def image_strip(images: Any, value_range: Any = (0.0, 1.0), max_images: int = 8) -> np.ndarray:
    """``(N, H, W, C)`` images in ``value_range`` side by side (first ``max_images``)."""
    x = np.asarray(images, np.float32)[:max_images]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C); got shape {x.shape}")
    return _strip(list(np.round(_rgb01(x, value_range) * 255).astype(np.uint8)))


def _heat(values: np.ndarray) -> np.ndarray:
    """(N, H, W, C) attribution -> (N, H, W) signed map (summed over channels)."""
    return values.sum(axis=-1)


def attribution_strip(
    values: Any, inputs: Any = None, input_range: Any = (0.0, 1.0), max_images: int = 8
) -> np.ndarray:
    """Attribution maps ``(N, H, W, C)`` over their inputs (red positive, blue negative), or
    the maps alone without inputs; extra leading axes (interior gradients' alphas) take the
    last entry."""
    v = np.asarray(values, np.float32)
    while v.ndim > 4:
        v = v[-1]
    if v.ndim != 4:
        raise ValueError(f"values must be (N, H, W, C); got shape {v.shape}")
    heat = _heat(v[:max_images])
    if inputs is None:
        tiles = [colorize(normalize(h, "symmetric"), "rwb") for h in heat]
    else:
        x = np.asarray(inputs, np.float32)[:max_images]
        tiles = [
            overlay(img, h, alpha=0.6, image_range=input_range)
            for img, h in zip(x, heat, strict=True)
        ]
    return _strip(tiles)


def matrix(values: Any, signed: bool = False, cell: int = 6) -> np.ndarray:
    """A 2-D array as a heat table, ``cell`` pixels per entry, scaled per table: viridis, or
    red/white/blue around zero when ``signed``."""
    m = np.asarray(values, np.float32)
    if m.ndim != 2:
        raise ValueError(f"values must be 2-D; got shape {m.shape}")
    if signed:
        return upscale(colorize(normalize(m, "symmetric"), "rwb"), cell)
    return upscale(colorize(normalize(m, "layer"), "viridis"), cell)


def time_strip(frames: Any, max_frames: int = 6) -> np.ndarray:
    """``(T, H, W, C)`` activations of one image over time: each frame's channels tiled
    (scaled together across frames), frames side by side at evenly spaced times."""
    a = np.asarray(frames, np.float32)
    if a.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, C); got shape {a.shape}")
    pick = np.unique(np.linspace(0, len(a) - 1, min(max_frames, len(a))).round().astype(int))
    x01 = normalize(a[pick], "layer")
    tiles = [grid(f, spacing=1, normalize="none") for f in x01]
    return _strip(tiles)
