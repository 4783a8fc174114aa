"""Tile many small maps (the channels of a layer, a batch of images) into one RGB image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxvis.render._checks import as_numeric, check_choice, check_int
from jaxvis.render.colormaps import CMAPS, colorize
from jaxvis.render.norm import MODES, scale01
from jaxvis.render.resample import repeat2d

#: automatic upscaling makes the longer side of each tile at least this many pixels
MIN_TILE_PX = 32


def grid_shape(n: int, ncols: int | None = None) -> tuple[int, int]:
    """``(rows, cols)`` for ``n`` tiles: ``cols = ncols or ceil(sqrt(n))``.

    >>> grid_shape(10)
    (3, 4)
    """
    n = check_int(n, "n", minimum=1)
    cols = math.isqrt(n - 1) + 1 if ncols is None else check_int(ncols, "ncols", minimum=1)
    return -(-n // cols), cols


def _background(value: Any) -> np.ndarray:
    vals = np.atleast_1d(np.asarray(value))
    ok = (
        vals.dtype.kind in "iu"
        and vals.shape in ((1,), (3,))
        and bool(((vals >= 0) & (vals <= 255)).all())
    )
    if not ok:
        raise ValueError(f"background must be an int 0..255 or an (r, g, b) of them; got {value!r}")
    return np.broadcast_to(vals.astype(np.uint8), (3,))


def _as_tiles(tiles: Any, tile_axis: int | None) -> np.ndarray:
    """-> (N, H, W) scalar tiles or (N, H, W, 3) RGB tiles."""
    if isinstance(tiles, Sequence) and not isinstance(tiles, str | bytes):
        if len(tiles) == 0:
            raise ValueError("tiles must not be empty")
        items = [as_numeric(t, f"tiles[{i}]") for i, t in enumerate(tiles)]
        shapes = {t.shape for t in items}
        if len(shapes) != 1:
            raise ValueError(f"tiles must all have one shape; got {sorted(shapes)}")
        if items[0].ndim not in (2, 3):
            raise ValueError(
                f"each tile must be (H, W), (H, W, 1) or (H, W, 3); got {items[0].shape}"
            )
        arr = np.stack(items)
        tile_axis = 0
    else:
        arr = as_numeric(tiles, "tiles")
    if tile_axis not in (None, 0, -1, arr.ndim - 1):
        raise ValueError(f"tile_axis must be None, 0 or -1; got {tile_axis!r}")
    if arr.ndim == 2:  # a single map
        arr = arr[None]
    elif arr.ndim == 3:
        if tile_axis is None or tile_axis != 0:  # (H, W, C): the channels are the tiles
            arr = np.moveaxis(arr, -1, 0)
    elif arr.ndim == 4:
        if tile_axis not in (None, 0):
            raise ValueError(f"tile_axis must be None or 0 for 4-d tiles; got {tile_axis!r}")
    else:
        raise ValueError(
            "tiles must be (H, W, C) channels, (N, H, W) with tile_axis=0, "
            f"(N, H, W, 1) or (N, H, W, 3); got shape {arr.shape}"
        )
    if arr.ndim == 4:
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        elif arr.shape[-1] != 3:
            raise ValueError(
                "4-d tiles must be (N, H, W, 1) or (N, H, W, 3) RGB; got shape "
                f"{arr.shape} (for the channels of one example pass acts[i], shape (H, W, C))"
            )
    return arr


def grid(
    tiles: Any,
    *,
    ncols: int | None = None,
    spacing: int = 1,
    scale: int | None = None,
    normalize: str = "channel",
    cmap: str = "gray",
    background: int | tuple[int, int, int] = 255,
    tile_axis: int | None = None,
    gray_2d: bool = False,
) -> np.ndarray:
    """Tile maps into one uint8 (H, W, 3) image, row by row.

    ``tiles`` may be:
      * (H, W, C): the channels of one example; each channel is a tile (JAX's NHWC layout);
      * (N, H, W) with ``tile_axis=0``, or a list of (H, W) arrays: N tiles;
      * (N, H, W, 1): N grey tiles; (N, H, W, 3) or a list of (H, W, 3): N RGB tiles.

    ``normalize``: ``"channel"`` scales each tile by itself, ``"layer"`` all tiles together,
    ``"symmetric"`` all together around zero (0 -> 0.5, pair with ``cmap="rwb"``), ``"none"``
    takes floats as [0, 1] and uint8 as 0..255. ``cmap`` colours scalar tiles (RGB tiles keep
    their colours). ``scale=None`` upscales by the smallest integer (nearest neighbour) that
    makes each tile's longer side >= 32 px. ``spacing`` pixels of ``background`` separate
    tiles (none around the border); empty cells of the last row are ``background`` too.
    ``gray_2d=True`` returns grey scalar tiles on a grey background as one (H, W) plane (a
    third of the bytes, no colormap pass: the fast path for big layers).

    >>> grid(np.zeros((7, 7, 10))).shape  # 10 channels -> 3 x 4 tiles of 35 px, 1 px apart
    (107, 143, 3)
    """
    normalize = check_choice(normalize, "normalize", MODES)
    cmap = check_choice(cmap, "cmap", CMAPS)
    spacing = check_int(spacing, "spacing", minimum=0)
    bg = _background(background)
    arr = _as_tiles(tiles, tile_axis)
    n, h, w = arr.shape[:3]
    rows, cols = grid_shape(n, ncols)
    s = (
        max(1, -(-MIN_TILE_PX // max(h, w)))
        if scale is None
        else check_int(scale, "scale", minimum=1)
    )

    if normalize == "none" and arr.dtype == np.uint8:
        x01 = arr.astype(np.float32) / 255.0
    else:
        x = arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)
        axes = tuple(range(1, x.ndim)) if normalize == "channel" else None
        x01 = scale01(x, normalize, axes)
    plane = gray_2d and x01.ndim == 3 and cmap == "gray" and bool(np.all(bg == bg[0]))
    if plane:
        rgb = np.rint(x01 * 255.0).astype(np.uint8)
        bg = bg[:1]
    elif x01.ndim == 3:
        rgb = colorize(x01, cmap)
    else:
        rgb = np.rint(x01 * 255.0).astype(np.uint8)
    if plane:
        rgb = rgb[..., None]
    rgb = repeat2d(rgb, s, s, axis=1)  # (N, h*s, w*s, channels)
    th, tw, ch = h * s, w * s, rgb.shape[-1]

    cells = np.empty((rows * cols, th, tw, ch), np.uint8)
    cells[:n] = rgb
    cells[n:] = bg
    canvas = np.empty((rows, th + spacing, cols, tw + spacing, ch), np.uint8)
    canvas[...] = bg
    canvas[:, :th, :, :tw] = cells.reshape(rows, cols, th, tw, ch).transpose(0, 2, 1, 3, 4)
    out = canvas.reshape(rows * (th + spacing), cols * (tw + spacing), ch)
    out = out[: rows * (th + spacing) - spacing, : cols * (tw + spacing) - spacing]
    return np.ascontiguousarray(out[..., 0] if plane else out)
