"""``LayerExplorer``: a layer's activations for one image at a time, plus the prediction.

It computes and sends only what is on screen, so an update costs the same for a ResNet-50
(123 layers, 2,048-channel grids) as for a model of five layers, bar the forward pass. The
selected layer is drawn at full resolution, one page of at most 64 channels (and 256k pixels:
20 maps of 112x112) at a time, in index order or sorted by each channel's mean or max; the
channel slider finds a channel by index and jumps to its page. Every layer is also a row of
:class:`LayerGrids` (one message carries them all): an open row shows a thumbnail of its
first 64 channels (maps larger than 28 px averaged down), a closed row is its title only and
renders when its title is clicked. A small model starts with every row open, a big one with
all closed. Moving the image slider runs the one jitted forward pass (same shape every time,
so it compiles once), keeps the activations of the layers on screen only, and redraws the
page, the open rows, the enlarged channel (full resolution) and the class-probability bars.
A click on any tile enlarges that channel.

A ViT's token layer is drawn as images too: one ``(h, w)`` patch map per channel (``heads * d``
of them for ``(T, heads, d)`` q/k/v outputs), with the class token's value of each channel in
the tile's hover label and under the enlarged channel. Attention weights ``(heads, T, T)`` are
drawn as one ``(T, T)`` map per head. A probe without layers (a plain function without
``jv.tap``) shows the input and prediction with a message in place of the grids.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import bqplot as bq
import ipywidgets as W
import jax
import numpy as np

from jaxvis import render
from jaxvis._checks import check_choice, check_layer
from jaxvis._protocols import ProbeLike
from jaxvis.layout import LayerLayout, prefix_view, spatial_view
from jaxvis.probe import Layer
from jaxvis.widgets._common import (
    check_images,
    check_labels,
    check_probe,
    empty_message,
    fmt,
    image_png,
    layer_title,
)
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML
from jaxvis.widgets.channel_grid import (
    ChannelGrid,
    GridSpec,
    LayerGrids,
    RenderedGrid,
    render_spec,
)

__all__ = ["LayerExplorer", "channel_order", "class_token", "layer_tiles"]

#: Tiles per page of the selected layer and per open row, and pixels per page: a page of big
#: maps holds fewer (20 maps of 112x112), so its PNG encodes in ~25 ms, not ~100 ms.
PAGE = 64
PAGE_PX = 1 << 18
#: Longest side of a thumbnail tile: larger maps are averaged down by an integer factor.
THUMB_PX = 28
#: Rows start open when all of the model's thumbnails together have at most this many pixels.
OPEN_ALL_PX = 1 << 20
#: Channel orders: by index, or by each channel's mean or max activation, largest first.
SORTS = ("index", "mean", "max")

#: Dense layers with at most this many units are drawn as one row.
STRIP_MAX = 16
#: PNG size of one unit tile of a dense layer; on screen a unit is 8..28 px, the grid <= 320 px.
UNIT_PX = 8
UNIT_SCREEN_PX = (8.0, 28.0)
DENSE_GRID_PX = 320.0
#: Shown in place of the grids for a probe without layers.
NO_LAYERS = empty_message(
    "This probe has no layers to show.",
    "A plain function shows its layers where it marks them, e.g. h = jv.tap('block1', h); "
    "a Flax model's layers are found by themselves.",
)
#: Classes beyond this many show as the likeliest ones only.
TOP_BARS = 10
#: Display size (CSS px) of the enlarged channel and the input image.
ENLARGED_PX = 224
INPUT_PX = 168


def layer_tiles(act: np.ndarray, layout: LayerLayout | None = None) -> tuple[np.ndarray, bool]:
    """One example's activation as a tile stack: ``((N, h, w), is_dense)``.

    ``(H, W, C)`` -> C spatial tiles; tokens (with their ``layout``) -> C tiles of the patch
    grid, class token left out; attention ``(heads, T, T)`` -> one tile per head; ``(H, W)``
    -> one tile; ``(F,)`` and anything else -> F tiles of 1x1 (a dense layer).

    Example::

        layer_tiles(np.zeros((17, 32)), probe.layout("Transformer.encoderblock_0"))[0].shape
        # (32, 4, 4)
    """
    act = np.asarray(act)
    if layout is not None and layout.kind == "tokens":
        return np.moveaxis(spatial_view(act[None], layout)[0], -1, 0), False
    if layout is not None and layout.kind == "attention":
        return act, False
    if act.ndim == 3:
        return np.moveaxis(act, -1, 0), False
    if act.ndim == 2:
        return act[None], False
    flat = act.reshape(-1)
    return flat[:, None, None], True


def channel_order(tiles: np.ndarray, sort: str) -> np.ndarray:
    """Channel indices of a tile stack ``(N, h, w)`` in display order: ``"index"``, or by
    ``"mean"``/``"max"`` activation, largest first (ties by index).

    Example::

        channel_order(np.stack([np.zeros((2, 2)), np.ones((2, 2))]), "max")   # array([1, 0])
    """
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {SORTS}, got {sort!r}")
    if sort == "index":
        return np.arange(len(tiles))
    flat = tiles.reshape(len(tiles), -1)
    score = flat.mean(axis=1) if sort == "mean" else flat.max(axis=1)
    return np.argsort(-score, kind="stable")


def class_token(act: np.ndarray, layout: LayerLayout) -> np.ndarray | None:
    """The first prefix (class) token of one example's token activation, ``(C,)``; else None."""
    if layout.kind != "tokens" or layout.grid is None or layout.grid.prefix == 0:
        return None
    return np.asarray(prefix_view(np.asarray(act)[None], layout))[0, 0]


class LayerExplorer(StaticHTML, W.VBox):
    """Slide through images and see each layer's channels, the prediction and one channel big.

    Args:
        probe: a :class:`jaxvis.Probe`.
        images: ``(N, H, W, C)`` float images in ``probe.input_range``.
        labels: optional true label per image (class index or name), shown in the caption.
        layers: names of the layers to show (default: all).
        normalize: ``"channel"`` (each tile its own range) or ``"layer"`` (one range per layer)
            for the conv grids; a toggle in the widget switches it.
        sort: channel order, ``"index"``, ``"mean"`` or ``"max"`` (largest first); a toggle.

    Attributes worth reading in tests: ``grid`` (the selected layer's page, a
    :class:`ChannelGrid`), ``grids`` (one row per layer), ``acts`` (the activations on
    screen), ``order`` (the selected layer's channel order), ``last_timing``.

    Example::

        m = jv.zoo.load("mnist_cnn")
        jv.widgets.LayerExplorer(m.probe, m.x_test[:100], labels=m.y_test[:100])
    """

    def __init__(
        self,
        probe: ProbeLike,
        images: Any,
        labels: Sequence[Any] | None = None,
        *,
        layers: Sequence[str] | None = None,
        normalize: str = "channel",
        sort: str = "index",
    ) -> None:
        self._check_settings(probe, images, labels, layers, normalize, sort)
        self._names = [layer.name for layer in self._layers]
        self._layer_by_name = {layer.name: layer for layer in self._layers}
        self._layouts = {layer.name: self.probe.layout(layer.name) for layer in self._layers}
        self.acts: dict[str, np.ndarray] = {}
        self.probs: np.ndarray | None = None
        self.timings: deque[dict[str, float]] = deque(maxlen=200)
        self._syncing = False
        self._orders: dict[str, np.ndarray] = {}
        self._rows: dict[str, RenderedGrid] = {}  # rendered open rows, this image and settings
        self._row_channels: dict[str, np.ndarray] = {}
        self._sent = {"bytes": 0, "grids": 0}

        self.error = ErrorBox()
        n = len(self.images)

        self._make_controls(n, normalize, sort)

        # --- the selected layer's page, one row per layer (or why there is none)
        self.message = W.HTML(NO_LAYERS if not self._layers else "")
        self.message.add_class("jv-layer-message")
        self.grid = ChannelGrid()
        self.grid.add_class("jv-main-grid")
        self.grid.observe(self.error.guard(self._on_page_click), "selected")
        self.grids = LayerGrids()
        self.grids.expanded = (
            [True] * len(self._layers) if self._small() else [False] * len(self._layers)
        )
        self.grids.observe(self.error.guard(self._on_click), "selected")
        self.grids.observe(self.error.guard(self._on_open), "expanded")

        left = W.VBox([self.input_image, self.prediction], layout=W.Layout(align_items="center"))
        right = W.VBox(
            [
                self.layer_select,
                self.channel_slider,
                self.normalize_toggle,
                self.enlarged,
                self.enlarged_info,
            ]
        )
        top = W.HBox([left, right], layout=W.Layout(align_items="flex-start"))
        paging = W.HBox([self.sort_toggle, self.page_slider, self.page_info])
        super().__init__(
            [
                W.HBox([self.slider, self.caption]),
                self.error,
                self.message,
                top,
                paging,
                self.grid,
                self.grids,
            ],
        )
        self.add_class("jv-layer-explorer")

        self.slider.observe(self.error.guard(self._on_image), "value")
        self.layer_select.observe(self.error.guard(self._on_layer), "value")
        self.channel_slider.observe(self.error.guard(self._on_channel), "value")
        self.normalize_toggle.observe(self.error.guard(self._on_settings), "value")
        self.sort_toggle.observe(self.error.guard(self._on_settings), "value")
        self.page_slider.observe(self.error.guard(self._on_page), "value")
        self.error.guard(self._on_image)(None)

    # ------------------------------------------------------------------ building

    def _check_settings(
        self,
        probe: Any,
        images: Any,
        labels: Sequence[Any] | None,
        layers: Sequence[str] | None,
        normalize: str,
        sort: str,
    ) -> None:
        """Check the constructor's arguments (nothing is computed or drawn yet)."""
        self.probe = check_probe(probe)
        self.images = check_images(images, self.probe)
        self.labels = check_labels(labels, len(self.images))
        check_choice(normalize, "normalize", ("channel", "layer"))
        check_choice(sort, "sort", SORTS)
        if layers is None:
            self._layers: tuple[Layer, ...] = self.probe.layers
        elif isinstance(layers, str) or not layers:
            raise ValueError(f"layers must be a non-empty list of layer names, got {layers!r}")
        else:
            self._layers = tuple(
                self.probe.layer(check_layer(self.probe, n, "layers")) for n in layers
            )

    def _make_controls(self, n: int, normalize: str, sort: str) -> None:
        """The image slider, input and prediction, layer/channel pickers, paging and the
        enlarged view."""
        # --- image slider and caption
        self.slider = W.IntSlider(
            value=0,
            min=0,
            max=n - 1,
            description="image",
            continuous_update=True,
            disabled=n == 1,
            layout=W.Layout(width="420px"),
        )
        self.slider.add_class("jv-image-slider")
        self.caption = W.HTML()
        self.caption.add_class("jv-image-caption")

        # --- input image and prediction
        self.input_image = W.Image(format="png", layout=W.Layout(width=f"{INPUT_PX}px"))
        self.input_image.add_class("jv-input-image")
        self.class_names = self._class_names()
        self.bars, self.prediction = self._make_bars(self.class_names)

        # --- layer/channel picker, paging and enlarged view
        self.layer_select = W.Dropdown(
            options=[(layer_title(ly.name, ly.kind, ly.shape), ly.name) for ly in self._layers],
            value=self._names[0] if self._layers else None,
            description="layer",
            disabled=not self._layers,
            layout=W.Layout(width="320px"),
        )
        self.layer_select.add_class("jv-layer-select")
        self.channel_slider = W.IntSlider(
            value=0,
            min=0,
            max=max(0, self._n_tiles(self._layers[0]) - 1) if self._layers else 0,
            disabled=not self._layers,
            description="channel",
            continuous_update=True,
            layout=W.Layout(width="320px"),
        )
        self.channel_slider.add_class("jv-channel-slider")
        self.normalize_toggle = W.ToggleButtons(
            options=[("channel", "channel"), ("layer", "layer")],
            value=normalize,
            description="scale",
            style={"button_width": "80px"},
            tooltips=["each tile its own range", "one range per layer"],
        )
        self.normalize_toggle.add_class("jv-normalize")
        self.sort_toggle = W.ToggleButtons(
            options=list(SORTS),
            value=sort,
            description="sort",
            style={"button_width": "60px"},
            tooltips=["channel index", "largest mean first", "largest max first"],
        )
        self.sort_toggle.add_class("jv-sort")
        self.page_slider = W.IntSlider(
            value=0, min=0, max=0, description="page", layout=W.Layout(width="320px")
        )
        self.page_slider.add_class("jv-page-slider")
        self.page_info = W.HTML()
        self.page_info.add_class("jv-page-info")
        self.enlarged = W.Image(
            format="png", layout=W.Layout(width=f"{ENLARGED_PX}px", height=f"{ENLARGED_PX}px")
        )
        self.enlarged.add_class("jv-enlarged")
        self.enlarged_info = W.HTML()
        self.enlarged_info.add_class("jv-enlarged-info")

    def _class_names(self) -> list[str] | None:
        names = self.probe.class_names
        return list(names) if names is not None else None

    def _make_bars(self, names: list[str] | None) -> tuple[bq.Bars, bq.Figure]:
        x = names[:TOP_BARS] if names else ["0"]
        xs = bq.OrdinalScale()
        ys = bq.LinearScale(min=0.0, max=1.0, allow_padding=False)
        cs = bq.ColorScale(colors=["#4c78a8", "#f58518"], min=0.0, max=1.0)  # top class orange
        bars = bq.Bars(
            x=x,
            y=np.zeros(len(x)),
            color=np.zeros(len(x)),
            scales={"x": xs, "y": ys, "color": cs},
            padding=0.15,
        )
        ax_x = bq.Axis(scale=xs, label="class")
        ax_y = bq.Axis(scale=ys, side="left", tick_format=".0%", num_ticks=3)
        fig = bq.Figure(
            marks=[bars],
            axes=[ax_x, ax_y],
            title="prediction",
            fig_margin={"top": 30, "bottom": 40, "left": 50, "right": 10},
            layout=W.Layout(width="260px", height="200px"),
        )
        fig.add_class("jv-prediction")
        return bars, fig

    def _n_tiles(self, layer: Layer) -> int:
        layout, shape = self._layouts[layer.name], layer.shape
        if layout.kind == "tokens":
            return int(layout.channels)
        if layout.kind == "attention":
            return int(shape[0])
        if len(shape) == 3:
            return int(shape[-1])
        if len(shape) == 2:
            return 1
        return int(np.prod(shape)) if shape else 1

    def _tile_shape(self, layer: Layer) -> tuple[int, int]:
        layout, shape = self._layouts[layer.name], layer.shape
        if layout.kind == "tokens" and layout.spatial_shape is not None:
            return layout.spatial_shape[0], layout.spatial_shape[1]
        if layout.kind == "attention":
            return int(shape[1]), int(shape[2])
        if len(shape) in (2, 3):
            return int(shape[0]), int(shape[1])
        return 1, 1

    def _small(self) -> bool:
        """Whether every layer's thumbnail together fits :data:`OPEN_ALL_PX` (rows start open)."""
        total = 0
        for layer in self._layers:
            h, w = self._tile_shape(layer)
            f = max(1, math.ceil(max(h, w) / THUMB_PX))
            total += min(PAGE, self._n_tiles(layer)) * (h // f) * (w // f)
        return total <= OPEN_ALL_PX

    # ------------------------------------------------------------------ state

    @property
    def index(self) -> int:
        """The index of the image on screen."""
        return int(self.slider.value)

    @property
    def last_timing(self) -> dict[str, float]:
        """The last image update: milliseconds of compute, render (incl. PNG) and total, the
        PNG ``bytes`` it sent and the number of ``grids`` it rendered."""
        return dict(self.timings[-1]) if self.timings else {}

    @property
    def order(self) -> np.ndarray:
        """The selected layer's channels in display order (page ``p`` shows
        ``order[page_size * p : page_size * (p + 1)]``)."""
        return self._order(self.layer_select.value)

    @property
    def page_size(self) -> int:
        """Tiles per page of the selected layer: :data:`PAGE`, fewer for maps so big that
        64 of them exceed :data:`PAGE_PX` pixels."""
        h, w = self._tile_shape(self._layer_by_name[self.layer_select.value])
        return max(1, min(PAGE, PAGE_PX // (h * w)))

    def _shown(self) -> list[str]:
        """The layers on screen: the selected one and the open rows."""
        open_ = self.grids.expanded
        return [
            name
            for i, name in enumerate(self._names)
            if name == self.layer_select.value or (i < len(open_) and open_[i])
        ]

    def _compute(self) -> None:
        """One forward pass (one compiled program for all layers); keep what is on screen."""
        x = self.images[self.index : self.index + 1]
        logits, acts = self.probe.run(x, self._names)
        self.probs = np.asarray(jax.nn.softmax(logits[0])) if _is_vector(logits) else None
        self.acts = {name: np.asarray(acts[name])[0] for name in self._shown()}
        self._orders.clear()
        self._rows.clear()

    def _ensure(self) -> None:
        if any(name not in self.acts for name in self._shown()):
            self._compute()

    def _tiles(self, name: str) -> tuple[np.ndarray, bool]:
        return layer_tiles(self.acts[name], self._layouts[name])

    def _order(self, name: str) -> np.ndarray:
        if name not in self._orders:
            self._orders[name] = channel_order(self._tiles(name)[0], self.sort_toggle.value)
        return self._orders[name]

    def _png(self, data: bytes) -> bytes:
        self._sent["bytes"] += len(data)
        return data

    # ------------------------------------------------------------------ callbacks

    def _on_image(self, change: Any = None) -> None:
        t0 = time.perf_counter()
        self._sent = {"bytes": 0, "grids": 0}
        self._compute()
        t1 = time.perf_counter()
        i = self.index
        self.input_image.value = self._png(
            image_png(self.images[i], self.probe.input_range, INPUT_PX)
        )
        self._page_to_channel(keep_page=True)
        self._draw_page()
        self._draw_rows()
        self._draw_prediction(i)
        self._draw_enlarged()
        t2 = time.perf_counter()
        self.timings.append(
            {
                "compute": 1e3 * (t1 - t0),
                "render": 1e3 * (t2 - t1),
                "total": 1e3 * (t2 - t0),
                "bytes": float(self._sent["bytes"]),
                "grids": float(self._sent["grids"]),
            }
        )

    def _on_layer(self, change: Any) -> None:
        if self._syncing:
            return
        self._ensure()
        self._set_channel_slider(self.layer_select.value, int(self.channel_slider.value))
        self._page_to_channel()
        self._draw_page()
        self._sync_selection()
        self._draw_enlarged()

    def _on_channel(self, change: Any) -> None:
        if self._syncing:
            return
        if self._page_to_channel():
            self._draw_page()
        self._sync_selection()
        self._draw_enlarged()

    def _on_page(self, change: Any) -> None:
        if self._syncing:
            return
        self._draw_page()
        self._sync_selection()

    def _on_settings(self, change: Any) -> None:
        """A new sort starts at its first page (the top channels); a new scale keeps the page."""
        self._orders.clear()
        self._rows.clear()
        if change is not None and change.get("owner") is self.sort_toggle:
            self._syncing = True
            try:
                self.page_slider.value = 0
            finally:
                self._syncing = False
        self._page_to_channel(keep_page=True)
        self._draw_page()
        self._draw_rows()

    def _on_open(self, change: Any) -> None:
        self._ensure()
        self._draw_rows()

    def _on_click(self, change: dict[str, Any]) -> None:
        name = self.grids.selected_name
        if self._syncing or name is None:
            return
        self._select(name, int(self._row_channels[name][self.grids.selected[1]]))

    def _on_page_click(self, change: dict[str, Any]) -> None:
        if self._syncing or self.grid.selected < 0:
            return
        position = self.page_size * int(self.page_slider.value) + int(self.grid.selected)
        self._select(self.layer_select.value, int(self.order[position]))

    def _set_channel_slider(self, layer: str, channel: int) -> None:
        """Range the channel slider for ``layer`` and put it at ``channel`` (clipped), silently."""
        n = self._n_tiles(self._layer_by_name[layer])
        self._syncing = True
        try:
            with self.channel_slider.hold_trait_notifications():
                self.channel_slider.max = n - 1
                self.channel_slider.value = min(max(channel, 0), n - 1)
        finally:
            self._syncing = False

    def _page_to_channel(self, keep_page: bool = False) -> bool:
        """Range the page slider and put it on the page of the selected channel (or keep its
        page), silently; True if the page changed."""
        if self.layer_select.value not in self.acts:
            return False
        order = self.order
        size = self.page_size
        pages = max(1, math.ceil(len(order) / size))
        position = int(np.flatnonzero(order == int(self.channel_slider.value))[0])
        page = min(int(self.page_slider.value), pages - 1) if keep_page else position // size
        moved = page != self.page_slider.value
        self._syncing = True
        try:
            with self.page_slider.hold_trait_notifications():
                self.page_slider.max = pages - 1
                self.page_slider.value = page
                self.page_slider.disabled = pages == 1
        finally:
            self._syncing = False
        return moved

    def _select(self, layer: str, channel: int) -> None:
        """Show ``channel`` of ``layer`` enlarged (what a click on a tile does): one redraw."""
        if layer not in self._layer_by_name:
            raise ValueError(f"layer must be one of {list(self._layer_by_name)}, got {layer!r}")
        n = self._n_tiles(self._layer_by_name[layer])
        if not 0 <= channel < n:
            raise ValueError(f"channel must be in [0, {n}) for layer {layer!r}, got {channel}")
        new_layer = layer != self.layer_select.value
        self._syncing = True
        try:
            self.layer_select.value = layer
        finally:
            self._syncing = False
        self._ensure()
        self._set_channel_slider(layer, channel)
        if self._page_to_channel() or new_layer:
            self._draw_page()
        self._sync_selection()
        self._draw_enlarged()

    def select(self, layer: str, channel: int) -> None:
        """Enlarge ``channel`` of ``layer``, as a click on its tile would."""
        self.error.guard(self._select)(layer, channel)

    # ------------------------------------------------------------------ drawing

    def _sync_selection(self) -> None:
        name, channel = self.layer_select.value, int(self.channel_slider.value)
        self._syncing = True
        try:
            if name in self.acts:
                position = int(np.flatnonzero(self.order == channel)[0])
                size = self.page_size
                on_page = position // size == self.page_slider.value
                self.grid.selected = position % size if on_page else -1
            shown = self._row_channels.get(name)
            hit = np.flatnonzero(shown == channel) if shown is not None else []
            if name in self.grids.names and len(hit):
                self.grids.select(name, int(hit[0]))
            else:
                self.grids.selected = (-1, -1)
        finally:
            self._syncing = False

    def _spec(self, name: str, channels: np.ndarray, thumb: bool) -> GridSpec:
        """The grid of ``channels`` of layer ``name`` (thumbnails: big maps averaged down)."""
        layer, layout = self._layer_by_name[name], self._layouts[name]
        tiles, dense = self._tiles(name)
        title = f"{layer.kind} · {layer.shape}"
        if layout.kind == "tokens" and layout.grid is not None:
            grid = layout.grid
            extra = f" + {grid.prefix} class token" if grid.prefix else ""
            title += f" · {grid.rows}×{grid.cols} patches{extra}"
        elif layout.kind == "attention":
            title += " · one query×key map per head"
        if thumb and len(channels) < len(tiles):
            by = "" if self.sort_toggle.value == "index" else f" by {self.sort_toggle.value}"
            title += f" · first {len(channels)} of {len(tiles)}{by}"
        if dense:
            values = tiles.reshape(-1)
            lo, hi = float(values.min()), float(values.max())
            shown = (values[channels] - lo) / max(hi - lo, 1e-12)
            n = len(shown)
            ncols = n if n <= STRIP_MAX else math.ceil(math.sqrt(n))
            lo_px, hi_px = UNIT_SCREEN_PX
            zoom = min(hi_px, max(lo_px, DENSE_GRID_PX / ncols)) / UNIT_PX
            labels = [f"unit {k}: {fmt(values[k])}" for k in channels.tolist()]
            options = {"ncols": ncols, "scale": UNIT_PX, "zoom": zoom, "normalize": "none"}
            return GridSpec(name, shown[:, None, None], title, labels, options)
        picked = tiles[channels]
        lo_t = picked.min(axis=(1, 2)).tolist()
        hi_t = picked.max(axis=(1, 2)).tolist()
        what = "head" if layout.kind == "attention" else "ch"
        labels = [
            f"{what} {k}: [{fmt(a)}, {fmt(b)}]"
            for k, a, b in zip(channels.tolist(), lo_t, hi_t, strict=True)
        ]
        cls = class_token(self.acts[name], layout)
        if cls is not None:
            labels = [
                f"{label} · cls {fmt(cls[k])}" for label, k in zip(labels, channels, strict=True)
            ]
        normalize = self.normalize_toggle.value
        if normalize == "layer":  # one range over the whole layer, not just these tiles
            lo, hi = float(tiles.min()), float(tiles.max())
            picked = (picked - lo) / max(hi - lo, 1e-12)
            normalize = "none"
        factor = max(1, math.ceil(max(picked.shape[1:]) / THUMB_PX)) if thumb else 1
        if factor > 1:
            picked = render.downsample(picked, factor, axis=1)
            title += f" · maps ÷{factor}"
        return GridSpec(name, picked, title, labels, {"normalize": normalize})

    def _draw_page(self) -> None:
        """The selected layer's current page at full resolution."""
        name = self.layer_select.value
        if name not in self.acts:
            return
        order, page = self.order, int(self.page_slider.value)
        size = self.page_size
        channels = order[size * page : size * (page + 1)]
        done = render_spec(self._spec(name, channels, thumb=False))
        self._sent["grids"] += 1
        self._png(done.png)
        self.grid.show_rendered(done)
        sort = self.sort_toggle.value
        by = "channel index" if sort == "index" else f"{sort} activation, largest first"
        self.page_info.value = (
            f"<b>{name}</b>: {size * page + 1}–{size * page + len(channels)} of {len(order)}"
            f" by {by}"
        )
        self._sync_selection()

    def _draw_rows(self) -> None:
        """Every row: the open ones rendered (or taken from this image's cache), closed empty."""
        if not self._layers:
            self.grids.show([])
            return
        out: list[GridSpec | RenderedGrid] = []
        for is_open, name in zip(self.grids.expanded, self._names, strict=True):
            if not is_open:
                self._row_channels.pop(name, None)
                out.append(GridSpec(name, None, self._closed_title(name)))
                continue
            if name not in self._rows:
                channels = self._order(name)[:PAGE]
                self._row_channels[name] = channels
                self._rows[name] = render_spec(self._spec(name, channels, thumb=True))
                self._png(self._rows[name].png)
                self._sent["grids"] += 1
            out.append(self._rows[name])
        self.grids.show(out)
        self._sync_selection()

    def _closed_title(self, name: str) -> str:
        layer = self._layer_by_name[name]
        return f"{layer.kind} · {layer.shape}"

    def _draw_prediction(self, i: int) -> None:
        probs = self.probs
        if probs is None:
            self.prediction.layout.display = "none"
            pred_text = ""
        else:
            self.prediction.layout.display = None
            names = self.class_names or [str(k) for k in range(len(probs))]
            if len(names) != len(probs):
                names = [str(k) for k in range(len(probs))]
            top = int(np.argmax(probs))
            shown = np.arange(len(probs))
            if len(probs) > TOP_BARS:  # ImageNet: the 10 likeliest, not 1,000 bars
                shown = np.argsort(-probs, kind="stable")[:TOP_BARS]
            is_top = (shown == top).astype(float)
            bar_names = [names[k] for k in shown]
            with self.bars.hold_sync():
                if list(self.bars.x) != bar_names:
                    self.bars.x = bar_names
                self.bars.y = probs[shown]
                self.bars.color = is_top
            pred_text = f" · predicted <b>{names[top]}</b> ({probs[top]:.0%})"
        label_text = ""
        if self.labels is not None:
            label = self.labels[i]
            if isinstance(label, int) and self.class_names and 0 <= label < len(self.class_names):
                label = self.class_names[label]
            label_text = f" · label <b>{label}</b>"
        self.caption.value = f"image {i} / {len(self.images) - 1}{label_text}{pred_text}"

    def _draw_enlarged(self) -> None:
        name = self.layer_select.value
        if name not in self.acts:
            return
        channel = int(self.channel_slider.value)
        layout = self._layouts[name]
        tiles, dense = layer_tiles(self.acts[name], layout)
        tile = tiles[channel]
        lo, hi = float(tile.min()), float(tile.max())
        if dense:
            layer_lo, layer_hi = float(tiles.min()), float(tiles.max())
            x01 = render.normalize(
                tile, "layer", vmin=layer_lo, vmax=max(layer_hi, layer_lo + 1e-12)
            )
            rank = int(np.sum(tiles.reshape(-1) > tile.reshape(-1)[0])) + 1
            info = (
                f"<b>{name}</b> unit {channel} = <b>{fmt(lo)}</b><br>"
                f"layer range [{fmt(layer_lo)}, {fmt(layer_hi)}], rank {rank} of {len(tiles)}"
            )
        else:
            x01 = render.normalize(tile, "layer")
            what = "head" if layout.kind == "attention" else "channel"
            info = (
                f"<b>{name}</b> {what} {channel} · {tile.shape[0]}×{tile.shape[1]}<br>"
                f"range [{fmt(lo)}, {fmt(hi)}] · mean {fmt(float(tile.mean()))}"
            )
            cls = class_token(self.acts[name], layout)
            if cls is not None:
                info += f"<br>class token: <b>{fmt(float(cls[channel]))}</b>"
        rgb = render.colorize(x01, "viridis")
        factor = max(1, ENLARGED_PX // max(tile.shape[0], tile.shape[1]))
        self.enlarged.value = self._png(render.png_bytes(render.upscale(rgb, factor)))
        self.enlarged_info.value = info


def _is_vector(logits: Any) -> bool:
    return logits is not None and getattr(logits, "ndim", 0) == 2 and logits.shape[1] > 1
