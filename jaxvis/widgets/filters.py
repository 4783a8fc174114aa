"""``FilterGrid``: the learned kernels of a convolution, one tile per (output, input) channel."""

from __future__ import annotations

import html
import math
from typing import Any

import ipywidgets as W
import numpy as np

from jaxvis import render
from jaxvis._checks import check_positive_int
from jaxvis._protocols import ProbeLike
from jaxvis.widgets._common import check_probe, empty_message, fmt, probe_conv_layers
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML
from jaxvis.widgets.channel_grid import ChannelGrid, tile_scale

__all__ = ["FilterGrid"]

#: Largest displayed width (CSS px) of the tile grid and of the enlarged kernel.
MAX_WIDTH = 720
ENLARGED_PX = 160
#: Grey drawn between tiles (white would read as a zero weight in the red-white-blue map).
BACKGROUND = 110


class FilterGrid(StaticHTML, W.VBox):
    """The kernels of a conv layer: a row per output channel, a column per input channel.

    Weights are coloured red (positive) / white (zero) / blue (negative) on one scale for the
    whole layer. The first convolution of an RGB model is shown as one colour tile per output
    channel (each filter scaled to its own range), as in AlexNet's famous figure. Hover a tile
    for its range; click it to see the kernel enlarged with its numbers.

    Args:
        probe: a :class:`jaxvis.Probe`; its convolutions (4-axis kernels ``(kh, kw, in, out)``)
            are shown. Without any, the widget says so in place.
        layer: the conv layer to show first (default: the first one); a dropdown switches.
        max_tiles: at most this many tiles are drawn; wider layers show their first input
            channels only (said in the caption).

    Example::

        jv.widgets.FilterGrid(jv.zoo.load("shapes_cnn").probe, "conv1")
    """

    def __init__(
        self, probe: ProbeLike, layer: str | None = None, *, max_tiles: int = 4096
    ) -> None:
        self.probe = check_probe(probe)
        self.kernels = probe_conv_layers(self.probe)
        if layer is None:
            layer = next(iter(self.kernels), None)
        if layer is not None and layer not in self.kernels:
            raise ValueError(
                f"layer must be a convolution layer, one of {list(self.kernels)}, got {layer!r}"
            )
        self.max_tiles = check_positive_int(max_tiles, "max_tiles")
        self._first_conv = next(iter(self.kernels), None)
        self.rgb = False
        self.n_in_shown = 0

        self.error = ErrorBox()
        self.layer_select = W.Dropdown(
            options=[(self._option(name), name) for name in self.kernels],
            value=layer,
            description="layer",
            disabled=not self.kernels,
            layout=W.Layout(width="320px"),
        )
        self.layer_select.add_class("jv-filter-layer-select")
        self.caption = W.HTML()
        if not self.kernels:
            self.caption.value = empty_message(
                "This probe has no convolution layers to show.",
                "Filters are parameters with a 4-axis kernel (kh, kw, in, out); the probe's "
                f"layers are: {', '.join(self.probe.layer_names) or 'none'}.",
            )
        self.caption.add_class("jv-filter-caption")
        self.grid = ChannelGrid()
        self.grid.add_class("jv-filter-tiles")
        self.enlarged = W.Image(format="png", layout=W.Layout(width=f"{ENLARGED_PX}px"))
        self.enlarged.add_class("jv-filter-enlarged")
        self.info = W.HTML()
        self.info.add_class("jv-filter-info")
        detail = W.VBox([self.enlarged, self.info], layout=W.Layout(margin="0 0 0 16px"))
        super().__init__(
            [
                self.layer_select,
                self.caption,
                self.error,
                W.HBox([self.grid, detail], layout=W.Layout(align_items="flex-start")),
            ]
        )
        self.add_class("jv-filter-grid")
        self.layer_select.observe(self.error.guard(self._on_layer), "value")
        self.grid.observe(self.error.guard(self._on_select), "selected")
        if self.kernels:
            self.error.guard(self._on_layer)(None)

    # ------------------------------------------------------------------ helpers

    def _option(self, name: str) -> str:
        kh, kw, cin, cout = self.kernels[name].shape
        return f"{name} · {kh}×{kw} · {cin}→{cout}"

    @property
    def layer(self) -> str:
        """The layer on screen."""
        return str(self.layer_select.value)

    def _is_rgb(self, name: str) -> bool:
        cin = self.kernels[name].shape[2]
        shape = self.probe.input_shape
        return name == self._first_conv and cin == 3 and shape is not None and shape[-1] == 3

    def tile_of(self, out_channel: int, in_channel: int = 0) -> int:
        """The tile index of ``(out_channel, in_channel)`` in the current grid."""
        return out_channel if self.rgb else out_channel * self.n_in_shown + in_channel

    def select(self, out_channel: int, in_channel: int = 0) -> None:
        """Enlarge the kernel of ``out_channel`` (from ``in_channel``), as a click would."""
        cout = self.kernels[self.layer].shape[3]
        if not 0 <= out_channel < cout:
            raise ValueError(f"out_channel must be in [0, {cout}), got {out_channel}")
        if not self.rgb and not 0 <= in_channel < self.n_in_shown:
            raise ValueError(f"in_channel must be in [0, {self.n_in_shown}), got {in_channel}")
        self.grid.selected = self.tile_of(out_channel, in_channel)

    # ------------------------------------------------------------------ callbacks

    def _on_layer(self, change: Any) -> None:
        name = self.layer
        kernel = self.kernels[name]
        kh, kw, cin, cout = kernel.shape
        self.rgb = self._is_rgb(name)
        scale = tile_scale(kh, kw, 8)
        if self.rgb:
            x01 = render.normalize(kernel, "channel")  # each output filter to its own range
            tiles = np.moveaxis(x01, -1, 0)  # (cout, kh, kw, 3)
            ncols = math.ceil(math.sqrt(cout))
            labels = [
                f"filter {o}: [{fmt(kernel[..., o].min())}, {fmt(kernel[..., o].max())}]"
                for o in range(cout)
            ]
            self.n_in_shown = 3
            self.caption.value = (
                f"{cout} RGB filters of {kh}×{kw} on the input image, each scaled to its own "
                "range: the colour and edge pattern each one responds to"
            )
            normalize, cmap = "none", "gray"
        else:
            k = max(1, min(cin, self.max_tiles // cout))
            self.n_in_shown = k
            shown = np.transpose(kernel[:, :, :k, :], (3, 2, 0, 1))  # (cout, k, kh, kw)
            limit = float(np.abs(kernel).max())
            x01 = render.normalize(shown, "symmetric", vmin=-limit or -1.0, vmax=limit or 1.0)
            tiles = x01.reshape(cout * k, kh, kw)
            lo = shown.min(axis=(2, 3)).reshape(-1).tolist()
            hi = shown.max(axis=(2, 3)).reshape(-1).tolist()
            labels = [
                f"out {t // k} ← in {t % k}: [{fmt(a)}, {fmt(b)}]"
                for t, (a, b) in enumerate(zip(lo, hi, strict=True))
            ]
            ncols = k
            more = f" (first {k} of {cin} input channels)" if k < cin else ""
            self.caption.value = (
                f"{cout} output channels (rows) × {cin} input channels (columns){more}; "
                f"<span style='color:#d00'>red</span> positive, white 0, "
                f"<span style='color:#00d'>blue</span> negative, ±{fmt(limit)}"
            )
            normalize, cmap = "none", "rwb"
        rows, cols = render.grid_shape(len(tiles), ncols)
        png_w = cols * (kw * scale + 1) - 1
        zoom = min(float(tile_scale(kh * scale, kw * scale, 32)), max(1.0, MAX_WIDTH / png_w))
        self.grid.selected = -1
        self.grid.show_tiles(
            tiles,
            ncols=ncols,
            scale=scale,
            zoom=zoom,
            normalize=normalize,
            cmap=cmap,
            background=BACKGROUND,
            labels=labels,
        )
        self.grid.selected = 0  # show the first kernel enlarged

    def _on_select(self, change: Any) -> None:
        idx = self.grid.selected
        if idx < 0:  # nothing selected: hide (an empty PNG would be a broken <img>)
            self.enlarged.layout.display = "none"
            self.info.value = ""
            return
        self.enlarged.layout.display = None
        name = self.layer
        kernel = self.kernels[name]
        kh, kw = kernel.shape[:2]
        factor = max(1, ENLARGED_PX // max(kh, kw))
        if self.rgb:
            filt = kernel[..., idx]  # (kh, kw, 3)
            img = render.to_uint8(render.normalize(filt, "layer"))
            title = f"<b>{name}</b> filter {idx} (RGB)"
            values = filt
        else:
            o, i = divmod(idx, self.n_in_shown)
            values = kernel[:, :, i, o]
            limit = float(np.abs(kernel).max()) or 1.0
            img = render.colorize(
                render.normalize(values, "symmetric", vmin=-limit, vmax=limit), "rwb"
            )
            title = f"<b>{name}</b> out {o} ← in {i}"
        self.enlarged.value = render.png_bytes(render.upscale(img, factor))
        table = _value_table(values) if values.ndim == 2 and max(kh, kw) <= 7 else ""
        self.info.value = (
            f"{title}<br>range [{fmt(values.min())}, {fmt(values.max())}]"
            f" · mean {fmt(values.mean())}{table}"
        )


def _value_table(values: np.ndarray) -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td style='padding:1px 4px;text-align:right'>{html.escape(f'{v:+.2f}')}</td>"
            for v in row
        )
        + "</tr>"
        for row in values.tolist()
    )
    return f"<table class='jv-filter-values' style='font:11px monospace'>{rows}</table>"
