"""``LayerExplorer``: every layer's activations for one image at a time, plus the prediction.

Moving the image slider runs one jitted ``probe.activations`` call for all layers (same shape
every time, so it compiles once), renders each layer as a titled channel grid (all layers in
one :class:`LayerGrids` widget, so one message carries them all), updates the
enlarged channel and the class-probability bars. A click on any tile enlarges that channel.

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
from jaxvis.layout import LayerLayout, prefix_view, spatial_view
from jaxvis.probe import Layer, Probe
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
from jaxvis.widgets.channel_grid import GridSpec, LayerGrids

__all__ = ["LayerExplorer", "class_token", "layer_tiles"]

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


def class_token(act: np.ndarray, layout: LayerLayout) -> np.ndarray | None:
    """The first prefix (class) token of one example's token activation, ``(C,)``; else None."""
    if layout.kind != "tokens" or layout.grid is None or layout.grid.prefix == 0:
        return None
    return np.asarray(prefix_view(np.asarray(act)[None], layout))[0, 0]


class LayerExplorer(W.VBox):
    """Slide through images and see every layer's channels, the prediction and one channel big.

    Args:
        probe: a :class:`jaxvis.Probe`.
        images: ``(N, H, W, C)`` float images in ``probe.input_range``.
        labels: optional true label per image (class index or name), shown in the caption.
        layers: names of the layers to show (default: all).
        normalize: ``"channel"`` (each tile its own range) or ``"layer"`` (one range per layer)
            for the conv grids; a toggle in the widget switches it.

    Example::

        m = jv.zoo.load("mnist_cnn")
        jv.widgets.LayerExplorer(m.probe, m.x_test[:100], labels=m.y_test[:100])
    """

    def __init__(
        self,
        probe: Probe,
        images: Any,
        labels: Sequence[Any] | None = None,
        *,
        layers: Sequence[str] | None = None,
        normalize: str = "channel",
    ) -> None:
        self.probe = check_probe(probe)
        self.images = check_images(images, self.probe)
        self.labels = check_labels(labels, len(self.images))
        if normalize not in ("channel", "layer"):
            raise ValueError(f"normalize must be 'channel' or 'layer', got {normalize!r}")
        if layers is None:
            self._layers: tuple[Layer, ...] = self.probe.layers
        else:
            if isinstance(layers, str) or not layers:
                raise ValueError(f"layers must be a non-empty list of layer names, got {layers!r}")
            self._layers = tuple(self.probe.layer(name) for name in layers)
        self._layer_by_name = {layer.name: layer for layer in self._layers}
        self._layouts = {layer.name: self.probe.layout(layer.name) for layer in self._layers}
        self.acts: dict[str, np.ndarray] = {}
        self.probs: np.ndarray | None = None
        self.timings: deque[dict[str, float]] = deque(maxlen=200)
        self._syncing = False

        self.error = ErrorBox()
        n = len(self.images)

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

        # --- layer/channel picker and enlarged view
        self.layer_select = W.Dropdown(
            options=[(layer_title(ly.name, ly.kind, ly.shape), ly.name) for ly in self._layers],
            value=self._layers[0].name if self._layers else None,
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
        self.enlarged = W.Image(
            format="png", layout=W.Layout(width=f"{ENLARGED_PX}px", height=f"{ENLARGED_PX}px")
        )
        self.enlarged.add_class("jv-enlarged")
        self.enlarged_info = W.HTML()
        self.enlarged_info.add_class("jv-enlarged-info")

        # --- one grid per layer, all in one widget (or why there is none)
        self.message = W.HTML(NO_LAYERS if not self._layers else "")
        self.message.add_class("jv-layer-message")
        self.grids = LayerGrids()
        self.grids.observe(self.error.guard(self._on_click), "selected")

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
        super().__init__(
            [W.HBox([self.slider, self.caption]), self.error, self.message, top, self.grids],
        )
        self.add_class("jv-layer-explorer")

        self.slider.observe(self.error.guard(self._on_image), "value")
        self.layer_select.observe(self.error.guard(self._on_layer), "value")
        self.channel_slider.observe(self.error.guard(self._on_channel), "value")
        self.normalize_toggle.observe(self.error.guard(self._on_normalize), "value")
        self.error.guard(self._on_image)(None)

    # ------------------------------------------------------------------ building

    def _class_names(self) -> list[str] | None:
        names = self.probe.class_names
        return list(names) if names is not None else None

    def _make_bars(self, names: list[str] | None) -> tuple[bq.Bars, bq.Figure]:
        x = names if names else ["0"]
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

    def _on_click(self, change: dict[str, Any]) -> None:
        name = self.grids.selected_name
        if self._syncing or name is None:
            return
        self._select(name, int(self.grids.selected[1]))

    # ------------------------------------------------------------------ callbacks

    @property
    def index(self) -> int:
        """The index of the image on screen."""
        return int(self.slider.value)

    @property
    def last_timing(self) -> dict[str, float]:
        """Milliseconds spent in the last image update: compute, render (incl. PNG), total."""
        return dict(self.timings[-1]) if self.timings else {}

    def _on_image(self, change: Any = None) -> None:
        t0 = time.perf_counter()
        i = self.index
        x = self.images[i : i + 1]
        logits, acts = self.probe.run(x, [ly.name for ly in self._layers])
        probs = np.asarray(jax.nn.softmax(logits[0])) if _is_vector(logits) else None
        acts_np = {name: np.asarray(a)[0] for name, a in acts.items()}
        t1 = time.perf_counter()
        self.acts = acts_np
        self.probs = probs
        self.input_image.value = image_png(self.images[i], self.probe.input_range, INPUT_PX)
        self._draw_grids()
        self._draw_prediction(i)
        self._draw_enlarged()
        t2 = time.perf_counter()
        self.timings.append(
            {"compute": 1e3 * (t1 - t0), "render": 1e3 * (t2 - t1), "total": 1e3 * (t2 - t0)}
        )

    def _on_layer(self, change: Any) -> None:
        if self._syncing:
            return
        self._set_channel_slider(self.layer_select.value, int(self.channel_slider.value))
        self._sync_selection()
        self._draw_enlarged()

    def _on_channel(self, change: Any) -> None:
        if self._syncing:
            return
        self._sync_selection()
        self._draw_enlarged()

    def _on_normalize(self, change: Any) -> None:
        self._draw_grids()

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

    def _select(self, layer: str, channel: int) -> None:
        """Show ``channel`` of ``layer`` enlarged (what a click on a tile does): one redraw."""
        if layer not in self._layer_by_name:
            raise ValueError(f"layer must be one of {list(self._layer_by_name)}, got {layer!r}")
        n = self._n_tiles(self._layer_by_name[layer])
        if not 0 <= channel < n:
            raise ValueError(f"channel must be in [0, {n}) for layer {layer!r}, got {channel}")
        self._syncing = True
        try:
            self.layer_select.value = layer
        finally:
            self._syncing = False
        self._set_channel_slider(layer, channel)
        self._sync_selection()
        self._draw_enlarged()

    def select(self, layer: str, channel: int) -> None:
        """Enlarge ``channel`` of ``layer``, as a click on its tile would."""
        self.error.guard(self._select)(layer, channel)

    # ------------------------------------------------------------------ drawing

    def _sync_selection(self) -> None:
        self._syncing = True
        try:
            if self.layer_select.value in self.grids.names:
                self.grids.select(self.layer_select.value, int(self.channel_slider.value))
        finally:
            self._syncing = False

    def _draw_grids(self) -> None:
        self.grids.show([self._grid_spec(ly) for ly in self._layers])
        self._sync_selection()

    def _grid_spec(self, layer: Layer) -> GridSpec:
        layout = self._layouts[layer.name]
        act = self.acts[layer.name]
        tiles, dense = layer_tiles(act, layout)
        title = f"{layer.kind} · {layer.shape}"
        if layout.kind == "tokens" and layout.grid is not None:
            grid = layout.grid
            extra = f" + {grid.prefix} class token" if grid.prefix else ""
            title += f" · {grid.rows}×{grid.cols} patches{extra}"
        elif layout.kind == "attention":
            title += " · one query×key map per head"
        if dense:
            values = tiles.reshape(-1)
            n = len(values)
            ncols = n if n <= STRIP_MAX else math.ceil(math.sqrt(n))
            lo_px, hi_px = UNIT_SCREEN_PX
            zoom = min(hi_px, max(lo_px, DENSE_GRID_PX / ncols)) / UNIT_PX
            labels = [f"unit {k}: {fmt(v)}" for k, v in enumerate(values.tolist())]
            options = {"ncols": ncols, "scale": UNIT_PX, "zoom": zoom, "normalize": "layer"}
            return GridSpec(layer.name, tiles, title, labels, options)
        lo = tiles.min(axis=(1, 2)).tolist()
        hi = tiles.max(axis=(1, 2)).tolist()
        what = "head" if layout.kind == "attention" else "ch"
        labels = [
            f"{what} {k}: [{fmt(a)}, {fmt(b)}]" for k, (a, b) in enumerate(zip(lo, hi, strict=True))
        ]
        cls = class_token(act, layout)
        if cls is not None:
            labels = [
                f"{label} · cls {fmt(v)}" for label, v in zip(labels, cls.tolist(), strict=True)
            ]
        return GridSpec(
            layer.name, tiles, title, labels, {"normalize": self.normalize_toggle.value}
        )

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
            is_top = (np.arange(len(probs)) == top).astype(float)
            with self.bars.hold_sync():
                if list(self.bars.x) != names:
                    self.bars.x = names
                self.bars.y = probs
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
        self.enlarged.value = render.png_bytes(render.upscale(rgb, factor))
        self.enlarged_info.value = info


def _is_vector(logits: Any) -> bool:
    return logits is not None and getattr(logits, "ndim", 0) == 2 and logits.shape[1] > 1
