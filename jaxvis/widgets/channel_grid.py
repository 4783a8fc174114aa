"""``ChannelGrid``: a tiled picture of channels you can hover and click.

The picture is one PNG (made by :func:`jaxvis.render.grid`); the widget knows where each tile
sits, shows a tile's label (e.g. ``"ch 5: [-0.83, 0.97]"``) on hover, and sets ``selected`` to
the tile's index on click. The front-end is a small ES module shipped beside this file.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

import anywidget
import numpy as np
import traitlets as T

from jaxvis import render

__all__ = ["ChannelGrid", "tile_scale"]

#: Smallest size of a tile's shorter side in the PNG, and on screen, when scale/zoom are auto.
MIN_PNG_PX = 8
MIN_SCREEN_PX = 32


def tile_scale(tile_h: int, tile_w: int, min_px: int) -> int:
    """The integer upscaling that makes a ``tile_h x tile_w`` tile at least ``min_px`` wide."""
    return max(1, math.ceil(min_px / max(1, min(tile_h, tile_w))))


class ChannelGrid(anywidget.AnyWidget):
    """A grid of tiles (channels, units, kernels) in one PNG, with hover labels and clicks.

    Traits (all synced with the browser): ``png`` (PNG bytes), ``img_width``/``img_height``,
    the tile geometry in PNG pixels (``rows``, ``cols``, ``tile_w``, ``tile_h``, ``spacing``,
    ``margin``), ``n_tiles``, ``labels`` (one hover text per tile), ``selected`` (clicked tile,
    -1 for none) and ``zoom`` (display size / PNG size).

    Example::

        grid = ChannelGrid()
        grid.show_tiles(acts[0], labels=[f"ch {i}" for i in range(acts.shape[-1])])
        grid.observe(lambda ch: print(ch["new"]), "selected")
        grid
    """

    _esm = pathlib.Path(__file__).with_name("channel_grid.js")

    png = T.Bytes(b"").tag(sync=True)
    img_width = T.Int(0).tag(sync=True)
    img_height = T.Int(0).tag(sync=True)
    rows = T.Int(0).tag(sync=True)
    cols = T.Int(0).tag(sync=True)
    tile_w = T.Int(0).tag(sync=True)
    tile_h = T.Int(0).tag(sync=True)
    spacing = T.Int(0).tag(sync=True)
    margin = T.Int(0).tag(sync=True)
    n_tiles = T.Int(0).tag(sync=True)
    labels = T.List().tag(sync=True)  # of str; elements not validated (fast updates)
    selected = T.Int(-1).tag(sync=True)
    zoom = T.Float(1.0).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("jv-channel-grid")

    # ------------------------------------------------------------------ content

    def show_tiles(
        self,
        tiles: Any,
        *,
        ncols: int | None = None,
        scale: int | None = None,
        zoom: float | None = None,
        spacing: int = 1,
        normalize: str = "channel",
        cmap: str = "gray",
        background: int | tuple[int, int, int] = 255,
        labels: Sequence[str] | None = None,
    ) -> None:
        """Render a stack of tiles with :func:`jaxvis.render.grid` and show it.

        ``tiles`` is ``(N, H, W)`` (grey/colormapped tiles) or ``(N, H, W, 3)`` (RGB tiles);
        for the channels of one activation ``(H, W, C)`` pass ``np.moveaxis(a, -1, 0)``.
        The PNG holds each tile upscaled by the integer ``scale`` (auto: at least 8 px, small
        PNGs encode fast); the browser shows it ``zoom`` times larger, pixelated (auto: tiles at
        least 32 px on screen).
        """
        tiles = np.asarray(tiles)
        if tiles.ndim == 3:
            n, th, tw = tiles.shape
        elif tiles.ndim == 4 and tiles.shape[-1] == 3:
            n, th, tw = tiles.shape[:3]
        else:
            raise ValueError(f"tiles must be (N, H, W) or (N, H, W, 3), got shape {tiles.shape}")
        if scale is None:
            scale = tile_scale(th, tw, MIN_PNG_PX)
        if zoom is None:
            zoom = float(tile_scale(th * scale, tw * scale, MIN_SCREEN_PX))
        rows, cols = render.grid_shape(n, ncols)
        image = render.grid(
            tiles,
            ncols=cols,
            spacing=spacing,
            scale=scale,
            normalize=normalize,
            cmap=cmap,
            background=background,
            tile_axis=0,
        )
        self.set_image(
            image,
            rows=rows,
            cols=cols,
            tile_h=th * scale,
            tile_w=tw * scale,
            spacing=spacing,
            n_tiles=n,
            labels=labels,
            zoom=zoom,
        )

    def set_image(
        self,
        image: Any,
        *,
        rows: int,
        cols: int,
        tile_h: int,
        tile_w: int,
        spacing: int,
        n_tiles: int | None = None,
        margin: int | None = None,
        labels: Sequence[str] | None = None,
        zoom: float | None = None,
    ) -> None:
        """Show an already tiled ``image`` (uint8 ``(H, W, 3)`` array) with its geometry.

        ``margin`` (border around the grid) is inferred from the image size when None;
        ``zoom`` (display size / PNG size) is kept when None.
        All traits change in one message.
        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.dtype != np.uint8:
            raise TypeError(
                f"image must be a uint8 (H, W[, 3]) array, got {image.dtype} {image.shape}"
            )
        height, width = image.shape[:2]
        n = rows * cols if n_tiles is None else int(n_tiles)
        if margin is None:
            margin = max(0, (width - cols * tile_w - (cols - 1) * spacing) // 2)
        labels = [f"ch {i}" for i in range(n)] if labels is None else [str(s) for s in labels]
        if len(labels) != n:
            raise ValueError(f"labels must have one entry per tile ({n}), got {len(labels)}")
        png = render.png_bytes(image)
        with self.hold_sync():
            self.png = png
            self.img_width, self.img_height = int(width), int(height)
            self.rows, self.cols = int(rows), int(cols)
            self.tile_w, self.tile_h = int(tile_w), int(tile_h)
            self.spacing, self.margin = int(spacing), int(margin)
            self.n_tiles = n
            self.labels = labels
            if zoom is not None:
                self.zoom = float(zoom)
            if self.selected >= n:
                self.selected = -1

    # ------------------------------------------------------------------ geometry

    def tile_rect(self, index: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of tile ``index`` in PNG pixels."""
        if not 0 <= index < self.n_tiles:
            raise ValueError(f"index must be in [0, {self.n_tiles}), got {index}")
        r, c = divmod(index, self.cols)
        x = self.margin + c * (self.tile_w + self.spacing)
        y = self.margin + r * (self.tile_h + self.spacing)
        return x, y, self.tile_w, self.tile_h

    def tile_at(self, x: float, y: float) -> int:
        """Index of the tile under PNG pixel ``(x, y)``, or -1 (gap, margin, outside).

        The same rule as the browser's click handler.
        """
        px, py = x - self.margin, y - self.margin
        if px < 0 or py < 0 or self.tile_w <= 0 or self.tile_h <= 0:
            return -1
        c = int(px // (self.tile_w + self.spacing))
        r = int(py // (self.tile_h + self.spacing))
        if px - c * (self.tile_w + self.spacing) >= self.tile_w:
            return -1
        if py - r * (self.tile_h + self.spacing) >= self.tile_h:
            return -1
        if c >= self.cols or r >= self.rows:
            return -1
        idx = r * self.cols + c
        return idx if idx < self.n_tiles else -1
