"""Blend a coloured heatmap (attribution, activation) over an image."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvis.render._checks import as_float, as_numeric, check_choice, check_probability
from jaxvis.render.colormaps import CMAPS, colorize
from jaxvis.render.norm import MODES, from_range, scale01
from jaxvis.render.resample import repeat2d


def _image_rgb01(image: Any, image_range: Any) -> np.ndarray:
    arr = as_numeric(image, "image")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3))):
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3); got shape {arr.shape}")
    if arr.dtype == np.uint8:
        x01 = arr.astype(np.float32) / 255.0
    else:
        x01 = from_range(arr.astype(np.float32), image_range, "image_range")
    if x01.ndim == 3 and x01.shape[-1] == 1:
        x01 = x01[..., 0]
    return np.repeat(x01[..., None], 3, axis=-1) if x01.ndim == 2 else x01


def overlay(
    image: Any,
    heat: Any,
    *,
    alpha: float = 0.5,
    cmap: str = "rwb",
    normalize: str = "symmetric",
    image_range: Any = (0.0, 1.0),
) -> np.ndarray:
    """``(1 - alpha) * image + alpha * colorize(normalize(heat))`` as uint8 (H, W, 3).

    ``image``: (H, W), (H, W, 1) or (H, W, 3); uint8 is taken as 0..255, floats as
    ``image_range`` (the model's input range, ``probe.input_range``: ``(lo, hi)`` or one pair
    per channel, see :func:`from_range`; default [0, 1]). ``heat``: (H, W) or
    (H, W, 1); a smaller map whose size divides the image's (e.g. 7x7 on 28x28) is
    upscaled by nearest neighbour. ``normalize`` is a mode of :func:`normalize`.

    >>> overlay(np.zeros((2, 2)), np.array([[-1.0, 0.0], [0.0, 1.0]]), alpha=1.0)[0, 0].tolist()
    [0, 0, 255]
    """
    normalize = check_choice(normalize, "normalize", MODES)
    cmap = check_choice(cmap, "cmap", CMAPS)
    alpha = check_probability(alpha, "alpha")
    img = _image_rgb01(image, image_range)
    h = as_float(heat, "heat")
    if h.ndim == 3 and h.shape[-1] == 1:
        h = h[..., 0]
    if h.ndim != 2:
        raise ValueError(
            f"heat must be (H, W) or (H, W, 1); got shape {h.shape} "
            "(reduce channels first, e.g. heat.sum(-1))"
        )
    (ih, iw), (hh, hw) = img.shape[:2], h.shape
    if ih % hh or iw % hw:
        raise ValueError(
            f"heat shape {h.shape} must equal the image's (H, W) = {(ih, iw)} or divide it"
        )
    heat_rgb = colorize(scale01(h, normalize, None), cmap)
    heat_rgb = repeat2d(heat_rgb, ih // hh, iw // hw)
    out = (1.0 - alpha) * (img * 255.0) + alpha * heat_rgb.astype(np.float32)
    return np.rint(out).astype(np.uint8)
