"""``UnitExplorer``: one unit at a time, as in the Deep Visualization Toolbox.

For the chosen layer and channel, side by side: the unit's feature visualisation
(:func:`jaxvis.optvis.render`, a short run, cached per unit), the nine dataset images that
excite it most with the unit's receptive field marked, the nine input patches under those
units (:mod:`jaxvis.dataset`), and its activation on the current input. Top-k runs once per
layer over the whole dataset and is cached, so moving through channels only redraws. A ViT's
token layers are units too: a unit is a channel over the patch grid (the class token left out).

Example::

    import jaxvis as jv
    zoo = jv.zoo.load("mnist_cnn")
    jv.widgets.UnitExplorer(zoo.probe, zoo.x_train, layer="act3")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W
import numpy as np

from jaxvis import dataset as ds
from jaxvis import optvis, render
from jaxvis._checks import check_choice, check_int, check_positive_int
from jaxvis._protocols import ProbeLike
from jaxvis.layout import default_spatial_layer, prefix_view, spatial_view, unit_layers
from jaxvis.optvis import objectives
from jaxvis.widgets._common import check_probe, fmt, image_png, input_slider, layer_title
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML
from jaxvis.widgets.feature_vis import preview_image

__all__ = ["UnitExplorer"]

#: Display sizes (CSS px) of a panel and the smallest side (px) of one grid tile in its PNG.
PANEL_PX = 196
TILE_PX = 56
MAX_TILE_PX = 112
BOX_RGB = (230, 40, 40)


class UnitExplorer(StaticHTML, W.VBox):
    """A layer dropdown and a channel slider over a unit's synthetic image, top-9 images and
    patches, and its activation on the current input.

    Args:
        probe: a :class:`jaxvis.Probe`.
        dataset: ``(N, H, W, C)`` float images in ``probe.input_range`` (top-k runs over all).
        layer: the layer to start on (default: :func:`jaxvis.layout.default_spatial_layer`,
            a ViT's last block, a CNN's last feature map); token layers are read on their
            patch grid.
        channel: the channel to start on.
        k: images per unit (9 in the Toolbox).
        fv_steps: feature-visualisation steps per unit (0 switches it off).
        batch_size: batch size of the top-k pass.

    Example::

        ue = UnitExplorer(zoo.probe, zoo.x_test, layer="conv5", channel=3, fv_steps=64)
        ue.channel_slider.value = 4        # redraws from the cached top-k of conv5
        ue.top_k("conv5").indices[4]       # the 9 images, best first
    """

    def __init__(
        self,
        probe: ProbeLike,
        dataset: Any,
        *,
        layer: str | None = None,
        channel: int = 0,
        k: int = 9,
        fv_steps: int = 64,
        batch_size: int = 256,
    ) -> None:
        self.probe = check_probe(probe)
        self.dataset = _check_dataset(dataset, self.probe)
        self.k = check_positive_int(k, "k")
        self.fv_steps = check_int(fv_steps, "fv_steps", minimum=0)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        units = set(unit_layers(self.probe))
        self.layers = [ly for ly in self.probe.layers if ly.name in units]
        if not self.layers:
            raise ValueError(
                "the probe has no layer with (H, W, C), (C,) or (T, D) token outputs; its "
                f"layers: {', '.join(self.probe.layer_names) or 'none (mark them with jv.tap)'}"
            )
        start = layer or default_spatial_layer(self.probe) or self.layers[-1].name
        info = self.probe.layer(start)  # unknown names raise with suggestions
        n_channels = self._channels(start)
        if n_channels is None:
            raise ValueError(
                f"layer {start!r} has outputs {info.shape}: need (H, W, C), (C,) or (T, D) tokens"
            )
        check_int(channel, "channel", minimum=0, maximum=n_channels - 1)
        self._topk: dict[str, ds.TopK] = {}
        self._fv: dict[tuple[str, int], np.ndarray] = {}
        self.timings: dict[str, float] = {}
        self._syncing = False
        self.error = ErrorBox()

        self.layer_select = W.Dropdown(
            options=[(layer_title(ly.name, ly.kind, ly.shape), ly.name) for ly in self.layers],
            value=start,
            description="layer",
            layout=W.Layout(width="340px"),
        )
        self.layer_select.add_class("jv-ue-layer")
        self.channel_slider = W.IntSlider(
            value=channel,
            min=0,
            max=n_channels - 1,
            description="channel",
            continuous_update=False,
            layout=W.Layout(width="340px"),
        )
        self.channel_slider.add_class("jv-ue-channel")
        self.image_slider = input_slider(len(self.dataset), "jv-ue-image", "340px")
        self.status = W.HTML()
        self.status.add_class("jv-ue-status")

        self.fv_image, fv_box, self.fv_caption = _panel("jv-ue-fv", "feature visualisation")
        self.top_image, top_box, self.top_caption = _panel("jv-ue-top", f"top-{k} images")
        self.patch_image, patch_box, self.patch_caption = _panel("jv-ue-patches", "patches")
        self.input_image, input_box, self.input_caption = _panel("jv-ue-input", "current input")
        self.act_image, act_box, self.act_caption = _panel("jv-ue-activation", "activation")

        self.layer_select.observe(self._safe(self._on_layer), "value")
        self.channel_slider.observe(self._safe(self._on_channel), "value")
        self.image_slider.observe(self._safe(self._on_image), "value")

        controls = W.HBox(
            [W.VBox([self.layer_select, self.channel_slider, self.image_slider]), self.status],
            layout=W.Layout(align_items="flex-start"),
        )
        panels = W.HBox(
            [fv_box, top_box, patch_box, input_box, act_box],
            layout=W.Layout(align_items="flex-start", flex_flow="row wrap"),
        )
        super().__init__([controls, panels, self.error])
        self.add_class("jv-unit-explorer")
        self._safe(self.show)()

    # ------------------------------------------------------------------ compute (cached)

    @property
    def layer(self) -> str:
        return self.layer_select.value

    def _channels(self, layer: str) -> int | None:
        """Units per position of ``layer`` (channels of its spatial view, or of a vector)."""
        return self.probe.layout(layer).channels

    @property
    def channel(self) -> int:
        return int(self.channel_slider.value)

    def top_k(self, layer: str) -> ds.TopK:
        """The top-k of ``layer`` over the dataset, computed on first use and cached."""
        if layer not in self._topk:
            t0 = time.perf_counter()
            self._topk[layer] = ds.top_k(
                self.probe,
                self.dataset,
                layer,
                self.k,
                batch_size=self.batch_size,
                progress=False,
            )
            self.timings[f"top_k {layer}"] = time.perf_counter() - t0
        return self._topk[layer]

    def feature_vis(self, layer: str, channel: int) -> np.ndarray:
        """The unit's feature visualisation ``(H, W, C)`` in [0, 1], cached per unit."""
        key = (layer, channel)
        if key not in self._fv:
            res = optvis.render(self.probe, objectives.channel(layer, channel), steps=self.fv_steps)
            self._fv[key] = res.images[0]
        return self._fv[key]

    # ------------------------------------------------------------------ display

    def show(self, layer: str | None = None, channel: int | None = None) -> None:
        """Show ``layer``/``channel`` (default: the current ones); errors appear in place.

        An unknown layer or a channel out of range raises (as in the constructor): the
        channel slider would otherwise clamp it silently."""
        if layer is not None:
            check_choice(layer, "layer", [ly.name for ly in self.layers])
        if channel is not None:
            n = self._channels(layer if layer is not None else self.layer_select.value)
            check_int(channel, "channel", minimum=0, maximum=n - 1)
        if layer is not None or channel is not None:
            self._syncing = True
            try:
                if layer is not None:
                    self.layer_select.value = layer
                    self.channel_slider.max = self._channels(layer) - 1
                if channel is not None:
                    self.channel_slider.value = channel
            finally:
                self._syncing = False
        failures: list[tuple[str, BaseException]] = []
        for name, draw in (
            ("top-k", self._draw_top),
            ("feature visualisation", self._draw_fv),
            ("activation", self._draw_activation),
        ):
            _attempt(name, draw, failures)
        if failures:
            name, exc = failures[0]
            self.error.show(exc, name)
        else:
            self.error.clear()

    def _draw_top(self) -> None:
        res = self.top_k(self.layer)
        c = self.channel
        value_range = self.probe.input_range
        idx = res.indices[c]
        try:
            boxes = ds.patch_boxes(self.probe, res, c)
        except Exception:  # noqa: BLE001 - no receptive field (explained under the patches)
            boxes = [None] * len(idx)
        tiles = [
            _with_box(_to_rgb(self.dataset[i], value_range), b)
            for i, b in zip(idx, boxes, strict=True)
        ]
        self.top_image.value = render.png_bytes(render.grid(tiles, normalize="none", scale=1))
        self.top_caption.value = _caption(
            f"top-{res.k} of {res.n_images:,} images",
            "#" + ", #".join(map(str, idx[:9])),
            "scores " + " ".join(fmt(v) for v in res.values[c][:9]),
        )
        try:
            crops = ds.patches(self.probe, self.dataset, res, c, fill=self.probe.input_low)
            if res.positions is None:
                what = "whole images (a dense layer sees everything)"
            else:
                rf = ds.receptive_field(self.probe, self.layer)
                what = f"receptive field {rf.size[0]}×{rf.size[1]}, stride {rf.stride[0]}"
        except Exception as exc:  # noqa: BLE001 - shown in place: top images still shown
            self.patch_image.value = b""
            self.patch_caption.value = _caption(
                "patches unavailable", f"{type(exc).__name__}: {exc}"
            )
            return
        patch_tiles = [_upscaled(_to_rgb(p, value_range)) for p in np.asarray(crops)]
        self.patch_image.value = render.png_bytes(
            render.grid(patch_tiles, normalize="none", scale=1)
        )
        self.patch_caption.value = _caption(f"top-{res.k} patches", what)

    def _draw_fv(self) -> None:
        if self.fv_steps == 0:
            self.fv_caption.value = _caption("feature visualisation off (fv_steps=0)")
            return
        cached = (self.layer, self.channel) in self._fv
        t0 = time.perf_counter()
        img = self.feature_vis(self.layer, self.channel)
        self.fv_image.value = render.png_bytes(preview_image(img[None], PANEL_PX))
        took = "cached" if cached else f"{1000 * (time.perf_counter() - t0):.0f} ms"
        self.fv_caption.value = _caption(
            "feature visualisation", f"{self.fv_steps} optimisation steps ({took})"
        )

    def _draw_activation(self) -> None:
        i = int(self.image_slider.value)
        x = self.dataset[i]
        raw = self.probe.activations(x[None], self.layer)[self.layer]
        layout = self.probe.layout(self.layer)
        act = np.asarray(spatial_view(raw, layout) if layout.kind == "tokens" else raw)[0]
        cls = ""
        if layout.grid is not None and layout.grid.prefix:
            cls = f"class token {fmt(float(prefix_view(raw, layout)[0, 0, self.channel]))}"
        self.input_image.value = image_png(x, self.probe.input_range, PANEL_PX)
        self.input_caption.value = _caption(f"input #{i}")
        res = self._topk.get(self.layer)
        rank = ""
        if res is not None and i in res.indices[self.channel]:
            rank = f"#{list(res.indices[self.channel]).index(i) + 1} of the top-{res.k}"
        if act.ndim == 3:
            amap = act[..., self.channel]
            rgb = render.colorize(render.normalize(amap, "layer"), "viridis")
            factor = max(1, PANEL_PX // max(amap.shape))
            self.act_image.value = render.png_bytes(render.upscale(rgb, factor))
            r, q = np.unravel_index(int(np.argmax(amap)), amap.shape)
            self.act_caption.value = _caption(
                f"channel {self.channel}: max {fmt(amap.max())} at ({r}, {q})",
                f"mean {fmt(amap.mean())}",
                cls,
                rank,
            )
        else:
            value = float(act[self.channel])
            self.act_image.value = b""
            self.act_caption.value = _caption(f"unit {self.channel}: {fmt(value)}", rank)
        self.status.value = (
            f"<b>{self.layer}</b> channel {self.channel} · input #{i}"
            f"<br><span style='color:#666'>top-k cached for: {', '.join(self._topk)}</span>"
        )

    # ------------------------------------------------------------------ callbacks

    def _on_layer(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        n = self._channels(change["new"])
        self._syncing = True
        try:
            self.channel_slider.value = min(self.channel_slider.value, n - 1)
            self.channel_slider.max = n - 1
        finally:
            self._syncing = False
        self.show()

    def _on_channel(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self.show()

    def _on_image(self, change: dict[str, Any]) -> None:
        failures: list[tuple[str, BaseException]] = []
        _attempt("activation", self._draw_activation, failures)
        if failures:
            self.error.show(failures[0][1], failures[0][0])

    def _safe(self, fn: Callable[..., None]) -> Callable[..., None]:
        """``fn`` with any exception shown in the error box (show() clears it on success)."""

        def wrapper(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - shown to the user, widget stays alive
                self.error.show(exc, getattr(fn, "__name__", "").lstrip("_").replace("_", " "))

        return wrapper


def _check_dataset(dataset: Any, probe: ProbeLike) -> np.ndarray:
    """``dataset`` as float32 ``(N, H, W, C)``, checked on the host (it may be large)."""
    if getattr(dataset, "ndim", 4) == 4 and len(dataset):
        probe.check_input(dataset[:1], "dataset")  # type, dtype, image shape: one image
    else:
        probe.check_input(dataset, "dataset")  # raises: wrong rank or empty
    x = np.asarray(dataset, np.float32)
    for start in range(0, len(x), 4096):
        if not np.isfinite(x[start : start + 4096]).all():
            raise ValueError("dataset contains NaN or inf values: expected finite pixel values")
    return x


def _attempt(name: str, draw: Callable[[], None], failures: list) -> None:
    try:
        draw()
    except Exception as exc:  # noqa: BLE001 - shown in place; the other panels still draw
        failures.append((name, exc))


def _panel(cls: str, title: str) -> tuple[W.Image, W.VBox, W.HTML]:
    image = W.Image(format="png", layout=W.Layout(width=f"{PANEL_PX}px"))
    image.add_class(cls)
    caption = W.HTML(_caption(title))
    caption.add_class(f"{cls}-caption")
    box = W.VBox(
        [image, caption],
        layout=W.Layout(width=f"{PANEL_PX + 12}px", align_items="center", margin="0 4px"),
    )
    return image, box, caption


def _caption(*lines: str) -> str:
    body = "<br>".join(line for line in lines if line)
    return f"<div style='font-size:11px;line-height:1.3;color:#333'>{body}</div>"


def _to_rgb(x: np.ndarray, value_range: Any) -> np.ndarray:
    """uint8 RGB of an image ``(h, w, C)`` in the probe's ``input_range``; other channel counts
    show ch. 0."""
    x01 = render.from_range(np.asarray(x, np.float32), value_range, "input_range")
    if x01.shape[-1] != 3:
        x01 = np.repeat(x01[..., :1], 3, axis=-1)
    return render.to_uint8(x01)


def _shrink(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """``rgb`` averaged down by the factor that brings it to :data:`MAX_TILE_PX` (a 224 px
    dataset's top-9 grid is 336 px, not 672), and that factor."""
    factor = -(-max(rgb.shape[:2]) // MAX_TILE_PX)
    if factor <= 1:
        return rgb, 1
    return np.rint(render.downsample(rgb, factor)).astype(np.uint8), factor


def _upscaled(rgb: np.ndarray) -> np.ndarray:
    rgb = _shrink(rgb)[0]
    return render.upscale(rgb, max(1, -(-TILE_PX // max(rgb.shape[:2]))))


def _with_box(rgb: np.ndarray, box: Any | None) -> np.ndarray:
    """The image scaled to a tile, with the clipped window ``box`` outlined."""
    rgb, shrink = _shrink(rgb)
    factor = max(1, -(-TILE_PX // max(rgb.shape[:2])))
    out = render.upscale(rgb, factor).copy()
    if box is None:
        return out
    top, left, bottom, right = (int(v) * factor // shrink for v in box)
    h, w = out.shape[:2]
    if (bottom - top, right - left) == (h, w):
        return out  # the whole image: nothing to mark
    bottom, right = min(bottom, h) - 1, min(right, w) - 1
    out[top, left : right + 1] = out[bottom, left : right + 1] = BOX_RGB
    out[top : bottom + 1, left] = out[top : bottom + 1, right] = BOX_RGB
    return out
