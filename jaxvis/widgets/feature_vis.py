"""``FeatureVis``: watch the image a unit responds to most take shape, live.

Pick a layer and a channel (or a neuron, or a class), a parameterisation (Fourier, pixel or
MaCo) and a preset (``auto``, the default, is chosen from the model as in
:func:`jaxvis.optvis.render`; Lucid's and Yosinski's by name), move the regularizer sliders
and press Run: :func:`jaxvis.optvis.render` runs in a background
thread, and between chunks of steps the widget updates the preview, the progress bar and the
objective curve. Stop ends the run and keeps the last image. "Whole layer" shows the layer's
channels as one grid, optimised as one vectorised batch: all of them up to
:data:`GRID_MAX` (fewer for big inputs; a 2,048-channel layer shows the block of channels
around the channel slider), previews averaged down to 112 px a tile. Save writes the result
as PNG and the run as an animated GIF. Every value is a traced input of the compiled step, so
moving a slider and running again does not compile again. A ViT's token layers are offered too: a
channel there is the mean over the patch tokens, a neuron one patch of the grid.

Given a data set (``dataset=``), a "compare with the data set" strip shows the unit's
visualisation next to its top-9 images (:func:`jaxvis.dataset.top_k`, computed once per layer
and kept), and a second tab holds an :class:`~jaxvis.widgets.ActivationAtlas` of the data set.

Example::

    import jaxvis as jv
    zoo = jv.zoo.load("mnist_cnn")
    fv = jv.widgets.FeatureVis(zoo.probe, layer="conv5", channel=3)
    fv                       # press Run; or fv.run(wait=True) from code
    fv = jv.widgets.FeatureVis(zoo.probe, dataset=zoo.x_test[:500], labels=zoo.y_test[:500])
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np

from jaxvis import dataset as _dataset
from jaxvis import optvis, render
from jaxvis._checks import check_int
from jaxvis.layout import default_spatial_layer, unit_layers
from jaxvis.optvis import objectives as O
from jaxvis.widgets._common import check_images, check_probe, empty_message
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML
from jaxvis.widgets.atlas import ActivationAtlas

__all__ = ["FeatureVis", "preview_image"]

#: Image parameterisations the "image" menu offers (MaCo with its 1/f magnitude prior).
PARAMS: dict[str, Callable[[], optvis.ImageParam]] = {
    "fourier": optvis.fourier,
    "pixel": optvis.pixel,
    "maco": optvis.maco,
}

#: The steps slider's minimum (and the smallest ``steps`` the widget accepts).
MIN_STEPS = 8

#: The longer side (px) a single preview image is upscaled to at least.
PREVIEW_PX = 224
#: Data set images shown next to a unit's visualisation in the compare strip.
COMPARE_K = 9
#: Whole-layer mode optimises at most this many channels at once, and at most
#: :data:`GRID_PIXELS` input pixels in all (16 images of 224x224); preview tiles at most
#: :data:`GRID_TILE_PX` px.
GRID_MAX = 64
GRID_PIXELS = 16 * 224 * 224
GRID_TILE_PX = 112
#: Frames kept for the GIF: when full, every other one goes and later previews are kept at
#: half the rate (a 2,048-step run at 224 px holds 64 frames, 9.6 MB, not 512).
MAX_FRAMES = 64
_REG_SLIDERS = {  # name: (description, min, max, step)
    "l1": ("L1", 0.0, 1.0, 0.01),
    "l2": ("L2", 0.0, 1.0, 0.01),
    "tv": ("TV", 0.0, 1.0, 0.01),
    "decay": ("decay", 0.0, 0.5, 0.0001),
    "blur_sigma": ("blur σ", 0.0, 1.5, 0.05),
    "norm_pct": ("norm pct", 0.0, 99.0, 1.0),
    "contrib_pct": ("contrib pct", 0.0, 99.0, 1.0),
}


def preview_image(images: np.ndarray, size: int = PREVIEW_PX) -> np.ndarray:
    """uint8 RGB preview of ``(N, H, W, C)`` images in ``[0, 1]``: one big image or a grid.

    Example::

        preview_image(res.images).shape     # (224, 224, 3) for one 28x28 image
    """
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.shape[-1] not in (1, 3):
        images = images[..., :1]
    if images.shape[0] == 1:
        h, w = images.shape[1:3]
        return render.grid(images, normalize="none", scale=max(1, -(-size // max(h, w))))
    factor = -(-max(images.shape[1:3]) // GRID_TILE_PX)
    if factor > 1:
        images = render.downsample(images, factor, axis=1)
    return render.grid(images, normalize="none", spacing=2)


class FeatureVis(StaticHTML, W.VBox):
    """Activation maximisation behind sliders: Run, Stop, live preview, grid mode, curve, save.

    Args:
        probe: a :class:`jaxvis.Probe`.
        layer: the layer to start on (default: :func:`jaxvis.layout.default_spatial_layer`,
            a ViT's last block, a CNN's last feature map); feature maps, vectors and token
            layers are offered.
        channel: the channel (or class) to start on.
        steps: optimisation steps of a run.
        preview_every: steps between preview updates (a chunk of the run).
        out_dir: where Save writes ``<name>.png`` and ``<name>.gif``.
        dataset: ``(N, H, W, C)`` images in the model's input range: adds the "compare with
            the data set" strip and the atlas tab (:attr:`atlas`).
        labels: ``(N,)`` classes of ``dataset`` for the atlas (default: the predictions).

    Example::

        fv = FeatureVis(zoo.probe, layer="conv5", channel=3, steps=128)
        fv.run(wait=True); fv.result.images.shape      # (1, 28, 28, 1)
    """

    def __init__(
        self,
        probe: Any,
        *,
        layer: str | None = None,
        channel: int = 0,
        steps: int = 256,
        preview_every: int = 16,
        out_dir: str | os.PathLike[str] = ".",
        dataset: Any = None,
        labels: Any = None,
    ) -> None:
        self.probe = check_probe(probe)
        if probe.input_shape is None:
            raise ValueError("probe.input_shape is unknown: create the probe with input_shape")
        steps = check_int(steps, "steps", minimum=MIN_STEPS)
        self.out_dir = Path(out_dir)
        self.result: optvis.RenderResult | None = None
        self.frames: list[np.ndarray] = []
        self.previews = 0
        self._frame_every = 1
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error = ErrorBox()
        units = set(unit_layers(self.probe))
        self.layers = [lay for lay in self.probe.layers if lay.name in units]
        start = layer or default_spatial_layer(self.probe)
        if start is None and self.layers:
            start = self.layers[-1].name
        if layer is not None:
            self.probe.layer(layer)  # unknown names raise with suggestions
        if start is not None and start not in {lay.name for lay in self.layers}:
            raise ValueError(
                f"layer {start!r} has outputs {self.probe.layer(start).shape}: FeatureVis needs "
                "(C,), (H, W, C) or (T, D) / (T, heads, d) tokens over a patch grid"
            )

        self.target = W.ToggleButtons(
            options=[("channel", "channel"), ("neuron", "neuron"), ("class", "class")],
            value="channel" if self.layers else "class",
            description="unit",
            disabled=not self.layers,  # a probe without layers: its classes only
        )
        self.target.add_class("jv-fv-target")
        self.layer_select = W.Dropdown(
            options=[lay.name for lay in self.layers], value=start, description="layer"
        )
        self.layer_select.add_class("jv-fv-layer")
        self.channel_slider = W.IntSlider(
            0, min=0, max=1, description="channel", continuous_update=False
        )
        self.channel_slider.add_class("jv-fv-channel")
        n_classes = len(self.probe.class_names or ()) or O._output_size(self.probe)
        names = self.probe.class_names or tuple(str(i) for i in range(n_classes))
        self.class_select = W.Dropdown(
            options=[(f"{i}: {n}", i) for i, n in enumerate(names)], value=0, description="class"
        )
        self.class_select.add_class("jv-fv-class")
        self.whole_layer = W.Checkbox(False, description="whole layer (grid)", indent=False)
        self.whole_layer.add_class("jv-fv-grid-mode")

        self.preset = W.Dropdown(
            options=["auto", *optvis.PRESETS], value="auto", description="preset"
        )
        self.preset.add_class("jv-fv-preset")
        self.param = W.Dropdown(options=list(PARAMS), value="fourier", description="image")
        self.param.add_class("jv-fv-param")
        self.transforms = W.Checkbox(True, description="jitter/scale/rotate", indent=False)
        self.reg = {
            name: W.FloatSlider(
                0.0,
                min=lo,
                max=hi,
                step=st,
                description=desc,
                continuous_update=False,
                readout_format=".4g",
            )
            for name, (desc, lo, hi, st) in _REG_SLIDERS.items()
        }
        self.blur_every = W.IntSlider(
            0, min=0, max=16, description="blur every", continuous_update=False
        )
        self.lr = W.FloatLogSlider(
            0.05, base=10, min=-3, max=0, description="lr", continuous_update=False
        )
        self.steps = W.IntSlider(
            steps,
            min=MIN_STEPS,
            max=max(1024, steps),
            step=8,
            description="steps",
            continuous_update=False,
        )
        self.steps.add_class("jv-fv-steps")
        self.seed = W.IntText(0, description="seed")
        self.preview_every = preview_every

        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.run_button.add_class("jv-fv-run")
        self.stop_button = W.Button(
            description="Stop", button_style="warning", icon="stop", disabled=True
        )
        self.stop_button.add_class("jv-fv-stop")
        self.save_button = W.Button(description="Save PNG + GIF", icon="save", disabled=True)
        self.save_button.add_class("jv-fv-save")
        self.name = W.Text("feature_vis", description="file name")
        self.progress = W.IntProgress(0, min=0, max=steps, description="0 steps")
        self.progress.add_class("jv-fv-progress")
        self.status = W.HTML(
            ""
            if self.layers
            else empty_message(
                "This probe has no layers to visualise: only its classes.",
                "A plain function shows its layers where it marks them, e.g. "
                "h = jv.tap('block1', h).",
            )
        )
        self.status.add_class("jv-fv-status")
        self.preview = W.Image(format="png", layout=W.Layout(max_width="420px"))
        self.preview.add_class("jv-fv-preview")

        self.x_scale, self.y_scale = bq.LinearScale(), bq.LinearScale()
        self.curve = bq.Lines(
            x=[], y=[], scales={"x": self.x_scale, "y": self.y_scale}, colors=["#1f77b4"]
        )
        self.figure = bq.Figure(
            marks=[self.curve],
            axes=[
                bq.Axis(scale=self.x_scale, label="step"),
                bq.Axis(scale=self.y_scale, side="left", label="objective"),
            ],
            title="objective",
            layout=W.Layout(width="380px", height="260px"),
            fig_margin={"top": 40, "bottom": 40, "left": 55, "right": 15},
        )
        self.figure.add_class("jv-fv-curve")

        unit_box = W.VBox(
            [
                self.target,
                self.layer_select,
                self.channel_slider,
                self.class_select,
                self.whole_layer,
            ]
        )
        opt_box = W.VBox(
            [
                self.preset,
                self.param,
                self.transforms,
                *self.reg.values(),
                self.blur_every,
                self.lr,
                self.steps,
                self.seed,
            ]
        )
        buttons = W.HBox([self.run_button, self.stop_button, self.save_button, self.name])
        view = W.HBox([self.preview, self.figure], layout=W.Layout(align_items="flex-start"))
        self.dataset = None if dataset is None else check_images(dataset, self.probe, "dataset")
        self._top: dict[str, Any] = {}
        self.compare_title = W.HTML("")
        self.compare = W.Image(format="png")
        self.compare.add_class("jv-fv-compare")
        parts = [W.HBox([unit_box, opt_box]), buttons, self.progress, self.status, view]
        self.atlas: ActivationAtlas | None = None
        if self.dataset is None:
            super().__init__([*parts, self.error])
        else:
            parts.append(W.VBox([self.compare_title, self.compare]))
            self.atlas = ActivationAtlas(
                self.probe, self.dataset, labels=labels, layer=self.layer_select.value
            )
            self.tabs = W.Tab([W.VBox(parts), self.atlas])
            self.tabs.set_title(0, "render")
            self.tabs.set_title(1, "atlas")
            self.tabs.add_class("jv-fv-tabs")
            super().__init__([self.tabs, self.error])
        self.add_class("jv-feature-vis")

        self.run_button.on_click(self.error.guard(lambda _: self.run()))
        self.stop_button.on_click(self.error.guard(lambda _: self.stop()))
        self.save_button.on_click(self.error.guard(lambda _: self.save()))
        self.layer_select.observe(self.error.guard(self._on_layer), "value")
        self.target.observe(self.error.guard(self._on_target), "value")
        self.preset.observe(self.error.guard(self._on_preset), "value")
        self._on_layer(None)
        self._on_target(None)
        self._on_preset(None)
        self.channel_slider.value = min(int(channel), self.channel_slider.max)

    # ------------------------------------------------------------ controls

    def _on_layer(self, change: Any) -> None:
        if self.layer_select.value is not None:
            self.channel_slider.max = self._channels(self.layer_select.value) - 1

    def _channels(self, layer: str) -> int:
        """Channels of ``layer``'s spatial view (a token layer's grid), or of a vector."""
        return int(self.probe.layout(layer).channels)

    def _on_target(self, change: Any) -> None:
        is_class = self.target.value == "class"
        self.layer_select.disabled = is_class or not self.layers
        self.channel_slider.disabled = is_class
        self.class_select.disabled = not is_class

    def _preset(self) -> optvis.Preset:
        """The selected preset; ``"auto"`` is chosen from the model (``optvis.defaults``)."""
        name = self.preset.value
        return optvis.defaults.auto(self.probe) if name == "auto" else optvis.PRESETS[name]

    def _on_preset(self, change: Any) -> None:
        pre = self._preset()
        self.param.value = pre.param.kind
        self.transforms.value = pre.transforms is not None
        for name, slider in self.reg.items():
            slider.value = float(getattr(pre.regularizers, name))
        self.blur_every.value = int(pre.regularizers.blur_every)
        self.lr.value = pre.lr

    # ------------------------------------------------------------ what to run

    def objective(self) -> O.Objective:
        """The objective the controls describe."""
        layer = self.layer_select.value
        grid = self.whole_layer.value
        if self.target.value == "class":
            n = len(self.class_select.options)
            return O.logit(range(n)) if grid else O.logit(self.class_select.value)
        if not grid:
            make = O.neuron if self.target.value == "neuron" else O.channel
            return make(layer, self.channel_slider.value)
        block = self.grid_channels()
        if self.target.value == "neuron":
            return O.neuron(layer, block)
        if len(block) == self._channels(layer):
            return O.channel(layer, "*")
        return O.channel(layer, block)

    def grid_channels(self) -> list[int]:
        """The channels whole-layer mode optimises: all, or the block of at most
        :data:`GRID_MAX` (and :data:`GRID_PIXELS` input pixels) holding the channel slider's.

        Example::

            FeatureVis(resnet50_probe, layer="layer4_2", channel=70).grid_channels()  # 64..79
        """
        n = self._channels(self.layer_select.value)
        h, w = self.probe.input_shape[:2]
        size = max(1, min(GRID_MAX, GRID_PIXELS // (h * w), n))
        start = (int(self.channel_slider.value) // size) * size
        return list(range(start, min(n, start + size)))

    def settings(self) -> dict[str, Any]:
        """Keyword arguments for :func:`jaxvis.optvis.render` from the controls."""
        kind = self.param.value
        pre = self._preset()
        param = pre.param if pre.param.kind == kind else PARAMS[kind]()
        regs = optvis.Regularizers(
            **{k: s.value for k, s in self.reg.items()}, blur_every=self.blur_every.value
        )
        return {
            "param": param,
            "transforms": (pre.transforms or "standard") if self.transforms.value else None,
            "regularizers": regs,
            "lr": float(self.lr.value),
            "steps": int(self.steps.value),
            "seed": int(self.seed.value),
        }

    # ------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def run(self, wait: bool = False) -> None:
        """Start a run in a background thread (``wait=True`` blocks until it ends).

        Arguments are checked here, so a bad setting shows its message before the thread
        starts.
        """
        if self.running:
            raise RuntimeError("a run is in progress: press Stop first")
        obj = self.objective().bind(self.probe)
        kwargs = self.settings()
        if kwargs["regularizers"].uses_pixels and kwargs["param"].kind != "pixel":
            raise ValueError(
                "decay, blur and the percentile clips act on pixels: choose image 'pixel' or "
                "set them to 0"
            )
        self._stop.clear()
        self.frames = []
        self._frame_every = 1
        self.curve.x, self.curve.y = [], []
        self.progress.max = kwargs["steps"]
        self.progress.value = 0
        self.progress.description = "0 steps"
        self.status.value = f"running: {obj.description}"
        self.run_button.disabled = True
        self.stop_button.disabled = False
        self.save_button.disabled = True
        self.thread = threading.Thread(target=self._work, args=(obj, kwargs), daemon=True)
        self.thread.start()
        if wait:
            self.thread.join()

    def stop(self) -> None:
        """Ask the running optimisation to stop after its current chunk (keeps the image)."""
        self._stop.set()
        self.status.value = "stopping…"

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run ends."""
        if self.thread is not None:
            self.thread.join(timeout)

    def _work(self, obj: O.Objective, kwargs: dict[str, Any]) -> None:
        try:
            self.result = optvis.render(
                self.probe, obj, chunk=self.preview_every, callback=self._on_progress, **kwargs
            )
            res = self.result
            self._show(res.images, res.history, res.steps, final=True)
            verb = "stopped" if res.stopped else "done"
            self.status.value = (
                f"{verb} after {res.steps} steps · {obj.description} · "
                f"objective {float(np.mean(res.values)):.3g}"
            )
            self.save_button.disabled = False
            if self.dataset is not None:
                self.show_compare()
        except Exception as exc:  # noqa: BLE001 - shown in place, the widget stays usable
            self.error.show(exc, "run")
            self.status.value = "failed"
        finally:
            self.run_button.disabled = False
            self.stop_button.disabled = True

    def _on_progress(self, progress: optvis.Progress) -> bool:
        self._show(progress.images, progress.history, progress.step)
        return not self._stop.is_set()

    def _show(
        self, images: np.ndarray, history: np.ndarray, step: int, final: bool = False
    ) -> None:
        frame = preview_image(images)
        keep = final or self.previews % self._frame_every == 0
        if keep and (not self.frames or self.frames[-1].shape == frame.shape):
            self.frames.append(frame)
            if len(self.frames) > MAX_FRAMES:
                del self.frames[1::2]
                self._frame_every *= 2
        self.preview.value = render.png_bytes(frame)
        self.previews += 1
        curve = np.asarray(history).mean(axis=1)
        self.curve.x = np.arange(1, len(curve) + 1)
        self.curve.y = curve
        self.progress.value = step
        self.progress.description = f"{step} steps"

    # ------------------------------------------------------------ compare with the data set

    def top_images(self, layer: str, channel: int) -> np.ndarray:
        """The data set's :data:`COMPARE_K` images that excite ``channel`` of ``layer`` most
        (:func:`jaxvis.dataset.top_k`, computed once per layer)."""
        if self.dataset is None:
            raise ValueError("no data set: create the FeatureVis with dataset=images")
        if layer not in self._top:
            self._top[layer] = _dataset.top_k(
                self.probe, self.dataset, layer, k=COMPARE_K, progress=False
            )
        return self._top[layer].images(self.dataset, channel)

    def show_compare(self) -> None:
        """Show the unit's visualisation next to its top-9 data set images (the strip)."""
        if self.target.value == "class" or self.result is None:
            self.compare_title.value = "compare with the data set: pick a channel or a neuron"
            self.compare.value = b""
            return
        layer, channel = self.layer_select.value, int(self.channel_slider.value)
        images = self.result.images
        if self.whole_layer.value:
            block = self.grid_channels()
            images = images[block.index(channel) : block.index(channel) + 1]
        lo, hi = np.asarray(self.probe.input_low), np.asarray(self.probe.input_high)
        top = np.clip((self.top_images(layer, channel) - lo) / (hi - lo), 0.0, 1.0)
        tiles = np.concatenate([images[:1], top])
        if tiles.shape[-1] not in (1, 3):
            tiles = tiles[..., :1]
        scale = max(1, -(-64 // max(tiles.shape[1:3])))
        strip = render.grid(tiles, ncols=len(tiles), normalize="none", spacing=4, scale=scale)
        self.compare.value = render.png_bytes(strip)
        self.compare_title.value = (
            f"<b>compare with the data set</b>: {layer} channel {channel}, its visualisation "
            f"(left) and the {len(top)} images that excite it most"
        )

    # ------------------------------------------------------------ saving

    def save(self, name: str | None = None) -> tuple[Path, Path]:
        """Write the result as ``<name>.png`` and the run as ``<name>.gif`` in ``out_dir``."""
        if self.result is None or not self.frames:
            raise ValueError("nothing to save yet: press Run first")
        stem = (name or self.name.value or "feature_vis").strip()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        png, gif = self.out_dir / f"{stem}.png", self.out_dir / f"{stem}.gif"
        tmp = png.with_suffix(".png.tmp")
        tmp.write_bytes(render.png_bytes(preview_image(self.result.images)))
        tmp.replace(png)
        render.write_gif(self.frames, gif, fps=8)
        self.status.value = f"saved {png} and {gif}"
        return png, gif
