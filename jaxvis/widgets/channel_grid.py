"""Tiled pictures of channels you can hover and click: ``ChannelGrid`` and ``LayerGrids``.

A grid is one PNG (made by :func:`jaxvis.render.grid`) plus its tile geometry, so the browser
knows where each tile sits: it shows a tile's label (e.g. ``"ch 5: [-0.83, 0.97]"``) on hover
and reports the tile's index on click. ``ChannelGrid`` holds one grid; ``LayerGrids`` holds a
titled grid per layer and updates them all in one message (one round trip per slider move).
The front-end is a small ES module shipped beside this file (``channel_grid.js``).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anywidget
import numpy as np
import traitlets as T

from jaxvis import render
from jaxvis.widgets._export import StaticHTML

__all__ = [
    "ChannelGrid",
    "GridSpec",
    "LayerGrids",
    "RenderedGrid",
    "render_spec",
    "tile_grid",
    "tile_scale",
]

_ESM = pathlib.Path(__file__).with_name("channel_grid.js")

#: Smallest size of a tile's shorter side in the PNG, and on screen, when scale/zoom are auto.
MIN_PNG_PX = 8
MIN_SCREEN_PX = 32


def tile_scale(tile_h: int, tile_w: int, min_px: int) -> int:
    """The integer upscaling that makes a ``tile_h x tile_w`` tile at least ``min_px`` wide."""
    return max(1, math.ceil(min_px / max(1, min(tile_h, tile_w))))


def tile_grid(
    tiles: Any,
    *,
    ncols: int | None = None,
    scale: int | None = None,
    zoom: float | None = None,
    spacing: int = 1,
    normalize: str = "channel",
    cmap: str = "gray",
    background: int | tuple[int, int, int] = 255,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Tile a stack with :func:`jaxvis.render.grid`: ``(uint8 image, geometry)``.

    ``tiles`` is ``(N, H, W)`` (grey or colormapped tiles) or ``(N, H, W, 3)`` (RGB tiles); for
    the channels of one activation ``(H, W, C)`` pass ``np.moveaxis(a, -1, 0)``. The PNG holds
    each tile upscaled by the integer ``scale`` (auto: at least 8 px; small PNGs encode fast);
    the browser shows it ``zoom`` times larger, pixelated (auto: tiles >= 32 px on screen).
    Grey images come back 2-D (a grey PNG is a third of the bytes). ``geometry`` has ``rows,
    cols, tile_w, tile_h, spacing, margin, n_tiles, img_width, img_height, zoom`` (PNG pixels).

    Example::

        image, geom = tile_grid(np.random.rand(6, 7, 7))   # 6 tiles of 7x7
        geom["rows"], geom["cols"], geom["tile_w"]          # (3, 3, 14)
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
        gray_2d=True,
    )
    return image, grid_geometry(image, rows, cols, th * scale, tw * scale, spacing, n, zoom)


def grid_geometry(
    image: np.ndarray,
    rows: int,
    cols: int,
    tile_h: int,
    tile_w: int,
    spacing: int,
    n_tiles: int,
    zoom: float,
    margin: int | None = None,
) -> dict[str, Any]:
    """The geometry the browser side reads off a tiled PNG ``image`` (see :func:`tile_grid`);
    ``margin`` (the border around the grid) is inferred from the image width when None."""
    height, width = image.shape[:2]
    if margin is None:
        margin = max(0, (width - cols * tile_w - (cols - 1) * spacing) // 2)
    return {
        "rows": int(rows),
        "cols": int(cols),
        "tile_w": int(tile_w),
        "tile_h": int(tile_h),
        "spacing": int(spacing),
        "margin": int(margin),
        "n_tiles": int(n_tiles),
        "img_width": int(width),
        "img_height": int(height),
        "zoom": float(zoom),
    }


def _check_labels(labels: Sequence[str] | None, n: int) -> list[str]:
    if labels is None:
        return [f"ch {i}" for i in range(n)]
    out = [str(s) for s in labels]
    if len(out) != n:
        raise ValueError(f"labels must have one entry per tile ({n}), got {len(out)}")
    return out


def _tile_rect(g: dict[str, Any], index: int) -> tuple[int, int, int, int]:
    if not 0 <= index < g["n_tiles"]:
        raise ValueError(f"index must be in [0, {g['n_tiles']}), got {index}")
    r, c = divmod(index, g["cols"])
    x = g["margin"] + c * (g["tile_w"] + g["spacing"])
    y = g["margin"] + r * (g["tile_h"] + g["spacing"])
    return x, y, g["tile_w"], g["tile_h"]


def _tile_at(g: dict[str, Any], x: float, y: float) -> int:
    tw, th, sp = g["tile_w"], g["tile_h"], g["spacing"]
    px, py = x - g["margin"], y - g["margin"]
    if px < 0 or py < 0 or tw <= 0 or th <= 0:
        return -1
    c, r = int(px // (tw + sp)), int(py // (th + sp))
    if px - c * (tw + sp) >= tw or py - r * (th + sp) >= th:
        return -1  # in a gap
    if c >= g["cols"] or r >= g["rows"]:
        return -1
    idx = r * g["cols"] + c
    return idx if idx < g["n_tiles"] else -1


class ChannelGrid(StaticHTML, anywidget.AnyWidget):
    """A grid of tiles (channels, units, kernels) in one PNG, with hover labels and clicks.

    Traits (all synced with the browser): ``png`` (PNG bytes), ``img_width``/``img_height``,
    the tile geometry in PNG pixels (``rows``, ``cols``, ``tile_w``, ``tile_h``, ``spacing``,
    ``margin``), ``n_tiles``, ``labels`` (one hover text per tile), ``selected`` (clicked tile,
    -1 for none) and ``zoom`` (display size / PNG size). CSS: ``jv-channel-grid`` on the widget,
    ``jv-grid-img`` on its ``<img>``, ``jv-grid-tooltip`` on the hover text.

    Example::

        grid = ChannelGrid()
        grid.show_tiles(np.moveaxis(acts[0], -1, 0), labels=[f"ch {i}" for i in range(8)])
        grid.observe(lambda change: print(change["new"]), "selected")
        grid
    """

    _esm = _ESM

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

    def show_tiles(
        self, tiles: Any, *, labels: Sequence[str] | None = None, **options: Any
    ) -> None:
        """Render a stack of tiles and show it; ``options`` are those of :func:`tile_grid`
        (``ncols, scale, zoom, spacing, normalize, cmap, background``)."""
        image, geometry = tile_grid(tiles, **options)
        labels = _check_labels(labels, geometry["n_tiles"])
        self._show(render.png_bytes(image), geometry, labels)

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
        """Show an already tiled ``image`` (uint8 ``(H, W[, 3])``) with its geometry.

        ``margin`` (border around the grid) is inferred from the image size when None;
        ``zoom`` (display size / PNG size) is kept when None.
        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.dtype != np.uint8:
            raise TypeError(
                f"image must be a uint8 (H, W[, 3]) array, got {image.dtype} {image.shape}"
            )
        n = rows * cols if n_tiles is None else int(n_tiles)
        zoom = self.zoom if zoom is None else zoom
        geometry = grid_geometry(image, rows, cols, tile_h, tile_w, spacing, n, zoom, margin)
        self._show(render.png_bytes(image), geometry, _check_labels(labels, n))

    def show_rendered(self, grid: RenderedGrid) -> None:
        """Show a grid rendered by :func:`render_spec` (its name and title are not shown)."""
        self._show(grid.png, grid.geometry, grid.labels)

    def _show(self, png: bytes, geometry: dict[str, Any], labels: list[str]) -> None:
        with self.hold_sync():  # all traits change in one message
            self.png = png
            for key, value in geometry.items():
                setattr(self, key, value)
            self.labels = labels
            if self.selected >= geometry["n_tiles"]:
                self.selected = -1

    @property
    def geometry(self) -> dict[str, Any]:
        """The tile geometry (PNG pixels) as a dict."""
        keys = ("rows", "cols", "tile_w", "tile_h", "spacing", "margin", "n_tiles")
        return {k: getattr(self, k) for k in keys} | {
            "img_width": self.img_width,
            "img_height": self.img_height,
            "zoom": self.zoom,
        }

    def tile_rect(self, index: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of tile ``index`` in PNG pixels."""
        return _tile_rect(self.geometry, index)

    def tile_at(self, x: float, y: float) -> int:
        """Index of the tile under PNG pixel ``(x, y)``, or -1 (gap, margin, outside): the same
        rule as the browser's click handler."""
        return _tile_at(self.geometry, x, y)


#: The geometry of a closed row: no tiles, no picture.
_CLOSED = {
    "rows": 0, "cols": 0, "tile_w": 0, "tile_h": 0, "spacing": 0, "margin": 0, "n_tiles": 0,
    "img_width": 0, "img_height": 0, "zoom": 1.0,
}  # fmt: skip


@dataclass(frozen=True)
class GridSpec:
    """One titled grid of a :class:`LayerGrids`: what :func:`tile_grid` gets, plus labels."""

    name: str
    tiles: Any  # None: a closed row (title only, nothing rendered)
    title: str = ""
    labels: Sequence[str] | None = None
    options: dict[str, Any] | None = None  # ncols, scale, zoom, normalize, cmap, ...


@dataclass(frozen=True)
class RenderedGrid:
    """A :class:`GridSpec` rendered: what :class:`LayerGrids` sends (keep it to resend)."""

    name: str
    title: str
    png: bytes
    geometry: dict[str, Any]
    labels: list[str]


def render_spec(spec: GridSpec) -> RenderedGrid:
    """Render one :class:`GridSpec` (a closed row, ``tiles=None``, renders to nothing)."""
    if spec.tiles is None:
        return RenderedGrid(spec.name, spec.title, b"", dict(_CLOSED), [])
    image, geom = tile_grid(spec.tiles, **(spec.options or {}))
    labels = _check_labels(spec.labels, geom["n_tiles"])
    return RenderedGrid(spec.name, spec.title, render.png_bytes(image), geom, labels)


class LayerGrids(StaticHTML, anywidget.AnyWidget):
    """Many titled channel grids (one per layer) in one widget, updated in one message.

    Each grid renders as ``<div class="jv-channel-grid jv-layer-grid" data-layer=name>`` with a
    ``jv-layer-title`` and an ``<img class="jv-grid-img">``; hover and click work as in
    :class:`ChannelGrid`. ``selected`` is ``(grid index, tile index)``, ``(-1, -1)`` for none.
    A spec without tiles is a closed row (class ``jv-closed``, title only); ``expanded`` (one bool
    per row) is toggled by a click on a row's title, for the owner to render what was opened.

    Example::

        grids = LayerGrids()
        grids.show([GridSpec("conv1", np.moveaxis(a1, -1, 0)), GridSpec("conv2", ...)])
        grids.select("conv2", 3)
    """

    _esm = _ESM

    names = T.List().tag(sync=True)
    titles = T.List().tag(sync=True)
    pngs = T.List().tag(sync=True)  # of PNG bytes, sent as binary buffers
    geometry = T.List().tag(sync=True)  # of geometry dicts, see tile_grid
    labels = T.List().tag(sync=True)  # of lists of str
    selected = T.Tuple(T.Int(), T.Int(), default_value=(-1, -1)).tag(sync=True)
    expanded = T.List().tag(sync=True)  # of bool, one per row; empty: no open/close toggles

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("jv-layer-grids")

    def show(self, grids: Sequence[GridSpec | RenderedGrid]) -> None:
        """Render every grid (closed rows: nothing; a :class:`RenderedGrid` is sent as it is)
        and send them all in one message."""
        done = [g if isinstance(g, RenderedGrid) else render_spec(g) for g in grids]
        names = [g.name for g in done]
        titles = [g.title for g in done]
        pngs = [g.png for g in done]
        geometry = [g.geometry for g in done]
        labels = [g.labels for g in done]
        with self.hold_sync():
            if names != self.names:
                self.names = names
            if titles != self.titles:
                self.titles = titles
            self.geometry = geometry
            self.labels = labels
            self.pngs = pngs
            panel, tile = self.selected
            if panel >= len(names) or (panel >= 0 and tile >= geometry[panel]["n_tiles"]):
                self.selected = (-1, -1)

    def index(self, name: str) -> int:
        """The position of grid ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"name must be one of {self.names}, got {name!r}") from None

    def png(self, name: str) -> bytes:
        """The PNG of grid ``name``."""
        return self.pngs[self.index(name)]

    def labels_of(self, name: str) -> list[str]:
        """The hover labels of grid ``name``."""
        return self.labels[self.index(name)]

    def geometry_of(self, name: str) -> dict[str, Any]:
        """The tile geometry of grid ``name``."""
        return self.geometry[self.index(name)]

    def select(self, name: str, tile: int) -> None:
        """Select tile ``tile`` of grid ``name`` (-1: none), as a click would."""
        i = self.index(name)
        n = self.geometry[i]["n_tiles"]
        if not -1 <= tile < n:
            raise ValueError(f"tile must be in [0, {n}) for grid {name!r}, got {tile}")
        self.selected = (i, tile) if tile >= 0 else (-1, -1)

    @property
    def selected_name(self) -> str | None:
        """The name of the grid holding the selected tile, or None."""
        panel = self.selected[0]
        return self.names[panel] if 0 <= panel < len(self.names) else None
