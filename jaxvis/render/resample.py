"""Nearest-neighbour upscaling by integer factors, so a 7x7 map becomes visible."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxvis.render._checks import as_numeric, check_int


def upscale(img: Any, factor: int | tuple[int, int]) -> np.ndarray:
    """Repeat each pixel ``factor`` times along height and width (axes 0 and 1).

    ``img`` is (H, W) or (H, W, C); ``factor`` is a positive int or ``(fy, fx)``.
    The dtype is kept.

    >>> upscale(np.array([[1, 2]]), 2).tolist()
    [[1, 1, 2, 2], [1, 1, 2, 2]]
    """
    arr = as_numeric(img, "img")
    if arr.ndim not in (2, 3):
        raise ValueError(f"img must be (H, W) or (H, W, C); got shape {arr.shape}")
    if isinstance(factor, tuple):
        if len(factor) != 2:
            raise ValueError(f"factor must be an int or a pair (fy, fx); got {factor!r}")
        fy = check_int(factor[0], "factor[0]", minimum=1)
        fx = check_int(factor[1], "factor[1]", minimum=1)
    else:
        fy = fx = check_int(factor, "factor", minimum=1)
    return repeat2d(arr, fy, fx)


def repeat2d(arr: np.ndarray, fy: int, fx: int, axis: int = 0) -> np.ndarray:
    """Unchecked core: repeat along ``axis`` (rows) and ``axis + 1`` (columns)."""
    if fy == fx == 1:
        return arr.copy()
    h, w = arr.shape[axis], arr.shape[axis + 1]
    lead, rest = arr.shape[:axis], arr.shape[axis + 2 :]
    # Broadcast (…, H, 1, W, 1, …) to (…, H, fy, W, fx, …): one copy, no Python loops.
    view = arr.reshape(lead + (h, 1, w, 1) + rest)
    out = np.broadcast_to(view, lead + (h, fy, w, fx) + rest)
    return out.reshape(lead + (h * fy, w * fx) + rest)


def downsample(img: Any, factor: int, axis: int = 0) -> np.ndarray:
    """Block means of ``factor x factor`` pixels over axes ``axis`` and ``axis + 1`` (float32);
    rows and columns past the last whole block are dropped. A thumbnail of a big map.

    >>> downsample(np.arange(16.0).reshape(4, 4), 2).tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    arr = as_numeric(img, "img").astype(np.float32, copy=False)
    factor = check_int(factor, "factor", minimum=1)
    if arr.ndim < axis + 2:
        raise ValueError(f"img needs axes {axis} and {axis + 1}; got shape {arr.shape}")
    if factor == 1:
        return arr
    h, w = arr.shape[axis] // factor, arr.shape[axis + 1] // factor
    if h == 0 or w == 0:
        raise ValueError(f"factor {factor} is larger than the map {arr.shape[axis : axis + 2]}")
    lead, rest = arr.shape[:axis], arr.shape[axis + 2 :]
    index = (slice(None),) * axis + (slice(0, h * factor), slice(0, w * factor))
    blocks = arr[index].reshape(lead + (h, factor, w, factor) + rest)
    return blocks.mean(axis=(axis + 1, axis + 3))
