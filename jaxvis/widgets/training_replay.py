"""``TrainingReplay``: scrub or play through a recorded training run.

Every frame (one per recorded step and layer) is rendered and PNG-encoded when the widget is
built (for long runs, on first view and cached), so moving the step slider, or pressing Play,
only swaps bytes: each layer's grid (rows:
the probe images, each led by the input image; columns: the first 32 channels;
nearest-neighbour upscaled, maps over 56 px averaged down),
the loss and accuracy curves' step marker, the weight histogram of the current step drawn
over the first step's, and the marker on a TensorBoard-style distribution-over-time view of
the chosen parameter array. Buttons write a GIF of one layer over the whole run and a PNG of
the current frame.

Example::

    model, rec = jv.zoo.train_with_recording("mnist_cnn", epochs=3)
    replay = jv.widgets.TrainingReplay(rec)
    replay                                   # press Play
    replay.export_gif("act3")                # ./training_act3.gif
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np

from jaxvis import render
from jaxvis._checks import check_choice, check_positive_int, check_range
from jaxvis.training import Recording
from jaxvis.widgets._common import fmt
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML

__all__ = ["TrainingReplay"]

#: Channels drawn per layer, and the largest map side drawn as it is (a ResNet's frames stay
#: small: 32 maps of at most 56 px per probe image).
MAX_CHANNELS = 32
MAX_MAP_PX = 56

FIRST, CURRENT = "#9aa5b1", "#f58518"
BAND = "#4c78a8"
#: Percentile pairs of the distribution bands (outer to inner), as in TensorBoard.
BANDS = ((0, 8), (1, 7), (2, 6), (3, 5))  # indices into recording.TB_PERCENTILES
SPACING = 1
#: Above this many frames (steps x layers) frames are rendered on first view, not up front.
PRERENDER_LIMIT = 3000
GAP = 170  # grey between tiles: white is zero in "rwb", so white gaps would vanish


def _check_recording(recording: Any) -> Recording:
    if isinstance(recording, str | os.PathLike):
        recording = Recording.load(recording)
    if not isinstance(recording, Recording):
        raise TypeError(
            "recording must be a jv.Recording (e.g. recorder.recording() or "
            f"jv.Recording.load(path)) or a path to one, got {type(recording).__name__}"
        )
    if len(recording) == 0:
        raise ValueError("recording has no steps: record at least one step first")
    return recording


class TrainingReplay(StaticHTML, W.VBox):
    """Replay a :class:`jaxvis.Recording`: step slider with Play, per-layer activation grids,
    metric curves, weight histograms and distributions, GIF/PNG export.

    Args:
        recording: a :class:`jaxvis.Recording` or the path of a saved one.
        layers: the layers to show (default: all recorded).
        weights: the parameter array shown first in the histogram views (default: the first
            kernel).
        value_range: ``(lo, hi)`` mapped to the colormap's ends for every layer; default: the
            recording's ``value_range`` (``(-1, 1)`` for tanh), else ``±max|activation|`` of
            each layer over the whole run, so colours mean the same at every step.
        cmap: a :data:`jaxvis.render.CMAPS` colormap (``"rwb"``: blue negative, red positive).
        tile_px: the side of one channel's tile (default: the largest layer's side, at least
            28): small maps are upscaled by an integer factor, without interpolation.
        interval: milliseconds between frames when playing.
        out_dir: where the export buttons write; ``prefix`` starts the file names.
        prerender: render and encode every frame now (scrubbing then only swaps bytes), or
            on first view (cached). Default: now, unless there are more than
            :data:`PRERENDER_LIMIT` frames (steps x layers, about 5 ms each).

    Example::

        replay = TrainingReplay(rec, layers=["act1", "act3", "act5"], interval=100)
        replay.slider.value = 10          # what Play and the slider do
        replay.export_png()               # ./training_step10.png
    """

    def __init__(
        self,
        recording: Any,
        *,
        layers: Sequence[str] | None = None,
        weights: str | None = None,
        value_range: tuple[float, float] | None = None,
        cmap: str = "rwb",
        tile_px: int | None = None,
        interval: int = 150,
        out_dir: str | os.PathLike[str] = ".",
        prefix: str = "training",
        prerender: bool | None = None,
    ) -> None:
        self.recording = _check_recording(recording)
        self._check_settings(layers, weights, value_range, cmap, tile_px)
        self.out_dir = Path(out_dir)
        self.prefix = str(prefix)
        self.error = ErrorBox()
        self._inputs: dict[int, np.ndarray] = {}
        #: ``{layer: [PNG bytes or None (not rendered yet)] per step}``
        self.pngs: dict[str, list[bytes | None]] = {
            n: [None] * len(self.recording) for n in self.layers
        }
        if prerender is None:
            prerender = len(self.recording) * len(self.layers) <= PRERENDER_LIMIT
        if prerender:
            for name in self.layers:
                for i in range(len(self.recording)):
                    self.png(i, name)
        controls = self._make_controls(int(interval))
        self.grids = self._make_frames()
        self.curves = self._make_curves()
        weights_row = self._make_weight_views(weights)
        exports = self._make_exports()
        super().__init__(
            [
                controls,
                self.error,
                self.grids,
                self.curves,
                self.weight_select,
                weights_row,
                exports,
                self.status,
            ]
        )
        self.add_class("jv-training-replay")
        self.slider.observe(self.error.guard(self._on_step), "value")
        self.weight_select.observe(self.error.guard(self._on_weights), "value")
        self.gif_button.on_click(self.error.guard(lambda _: self.export_gif()))
        self.png_button.on_click(self.error.guard(lambda _: self.export_png()))
        self._on_weights(None)
        self._on_step(None)

    # ------------------------------------------------------------------ setup helpers

    def _check_settings(
        self,
        layers: Sequence[str] | None,
        weights: str | None,
        value_range: tuple[float, float] | None,
        cmap: str,
        tile_px: int | None,
    ) -> None:
        """Check the constructor's settings against the recording (nothing is drawn yet)."""
        rec = self.recording
        self.layers = self._check_layers(layers)
        self.cmap = check_choice(cmap, "cmap", render.CMAPS)
        if weights is not None:
            check_choice(weights, "weights", list(rec.histograms))
        if value_range is None and rec.meta.get("value_range"):
            value_range = tuple(rec.meta["value_range"])
        if value_range is not None:
            value_range = check_range(value_range, "value_range")
        self.value_ranges = {name: value_range or self._symmetric(name) for name in self.layers}
        if tile_px is None:
            sides = [max(rec.activations[n].shape[2:4]) for n in self.layers]
            tile_px = min(MAX_MAP_PX, max([28, *sides]))
        self.tile_px = check_positive_int(tile_px, "tile_px")

    def _make_controls(self, interval: int) -> W.HBox:
        """Play, the step slider (linked in the browser) and the step readout."""
        n = len(self.recording)
        self.play = W.Play(value=0, min=0, max=n - 1, step=1, interval=interval)
        self.play.add_class("jv-tr-play")
        self.slider = W.IntSlider(
            0, min=0, max=n - 1, description="step", readout=False, continuous_update=True
        )
        self.slider.add_class("jv-tr-slider")
        self.link = W.jslink((self.play, "value"), (self.slider, "value"))
        self.readout = W.HTML()
        self.readout.add_class("jv-tr-readout")
        return W.HBox([self.play, self.slider, self.readout])

    def _make_frames(self) -> W.Box:
        """One titled image per shown layer, showing step 0."""
        rec = self.recording
        self.images: dict[str, W.Image] = {}
        boxes = []
        for name in self.layers:
            img = W.Image(value=self.png(0, name), format="png")
            img.add_class("jv-tr-frame")
            img.add_class(f"jv-tr-frame-{_css(name)}")
            self.images[name] = img
            shape = "×".join(map(str, rec.activations[name].shape[2:]))
            kind = rec.meta.get("layer_kinds", {}).get(name, "")
            title = W.HTML(f"<b>{name}</b> <span style='color:#666'>{kind} {shape}</span>")
            boxes.append(W.VBox([title, img], layout=W.Layout(margin="0 12px 8px 0")))
        grids = W.Box(
            boxes, layout=W.Layout(display="flex", flex_flow="row wrap", align_items="flex-start")
        )
        grids.add_class("jv-tr-grids")
        return grids

    def _make_weight_views(self, weights: str | None) -> W.HBox:
        """The weight picker, its histogram and its distribution over the run."""
        rec = self.recording
        self.weight_select = W.Dropdown(
            options=list(rec.histograms),
            value=weights or self._first_kernel(),
            description="weights",
            layout=W.Layout(width="320px", display="" if rec.histograms else "none"),
        )
        self.weight_select.add_class("jv-tr-weights")
        self.histogram, self.hist_bars = self._make_histogram()
        self.distribution, self.dist_marks = self._make_distribution()
        row = W.HBox([self.histogram, self.distribution], layout=W.Layout(align_items="flex-start"))
        if not rec.histograms:
            row.layout.display = "none"
        return row

    def _make_exports(self) -> W.HBox:
        """The GIF and PNG export buttons (and the status line they write to)."""
        self.gif_layer = W.Dropdown(options=list(self.layers), description="GIF of")
        self.gif_button = W.Button(
            description="Export GIF", icon="film", tooltip="an animated GIF of the chosen layer"
        )
        self.gif_button.add_class("jv-tr-export-gif")
        self.png_button = W.Button(
            description="Export PNG",
            icon="image",
            tooltip="a PNG of every shown layer at the current step",
        )
        self.png_button.add_class("jv-tr-export-png")
        self.status = W.HTML()
        self.status.add_class("jv-tr-status")
        return W.HBox([self.gif_layer, self.gif_button, self.png_button])

    def _check_layers(self, layers: Sequence[str] | None) -> list[str]:
        known = list(self.recording.layers)
        if layers is None:
            return known
        if isinstance(layers, str):
            layers = [layers]
        for name in layers:
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.4)
                hint = f"did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(f"layers: {name!r} was not recorded {hint} (recorded: {known})")
        return list(layers)

    def _symmetric(self, name: str) -> tuple[float, float]:
        m = float(np.abs(self.recording.activations[name]).max())
        m = m if np.isfinite(m) and m > 0 else 1.0
        return (-m, m)

    def _first_kernel(self) -> str | None:
        keys = list(self.recording.histograms)
        kernels = [k for k in keys if k.endswith("kernel")]
        return (kernels or keys or [None])[0]

    # ------------------------------------------------------------------ rendering

    def _input_column(self, row_px: int) -> np.ndarray:
        """The probe images in a column, each about ``row_px`` tall (upscaled by an integer,
        or averaged down when bigger)."""
        if row_px not in self._inputs:
            x = np.asarray(self.recording.images, np.float32)
            value_range = self.recording.meta.get("input_range") or (0.0, 1.0)
            x01 = render.from_range(x, value_range, "input_range")
            tiles = x01 if x01.shape[-1] in (1, 3) else x01[..., :1]
            shrink = -(-tiles.shape[1] // row_px)
            if shrink > 1:
                tiles = render.downsample(tiles, shrink, axis=1)
            self._inputs[row_px] = render.grid(
                tiles,
                ncols=1,
                scale=max(1, row_px // tiles.shape[1]),
                normalize="none",
                spacing=SPACING,
                background=GAP,
            )
        return self._inputs[row_px]

    def render_frame(self, index: int, layer: str) -> np.ndarray:
        """uint8 RGB frame of ``layer`` at recorded step number ``index`` (0-based position):
        one row per probe image, led by the input image, then one tile per channel (the first
        :data:`MAX_CHANNELS`; maps over :data:`MAX_MAP_PX` averaged down)."""
        acts = self.recording.activations[layer][index][..., :MAX_CHANNELS].astype(np.float32)
        factor = max(1, -(-max(acts.shape[1:3]) // MAX_MAP_PX))
        if factor > 1:
            acts = render.downsample(acts, factor, axis=1)
        n, h, w, c = acts.shape
        lo, hi = self.value_ranges[layer]
        x01 = (acts - lo) / (hi - lo)
        s = max(1, self.tile_px // max(h, w))
        tiles = x01.transpose(0, 3, 1, 2).reshape(n * c, h, w)
        grid = render.grid(
            tiles,
            tile_axis=0,
            ncols=c,
            scale=s,
            normalize="none",
            cmap=self.cmap,
            spacing=SPACING,
            background=GAP,
        )
        column = self._input_column(h * s)
        height = max(grid.shape[0], column.shape[0])
        out = np.full((height, column.shape[1] + 4 + grid.shape[1], 3), 255, np.uint8)
        out[: column.shape[0], : column.shape[1]] = column
        out[: grid.shape[0], column.shape[1] + 4 :] = grid
        return out

    def png(self, index: int, layer: str) -> bytes:
        """PNG bytes of :meth:`render_frame`, rendered once and cached."""
        cached = self.pngs[layer][index]
        if cached is None:
            cached = self.pngs[layer][index] = render.png_bytes(self.render_frame(index, layer))
        return cached

    def frame(self, index: int | None = None) -> np.ndarray:
        """All shown layers at one step (default: the current one), side by side."""
        index = self.slider.value if index is None else index
        frames = [self.render_frame(index, name) for name in self.layers]
        height = max(f.shape[0] for f in frames)
        width = sum(f.shape[1] for f in frames) + 12 * (len(frames) - 1)
        out = np.full((height, width, 3), 255, np.uint8)
        x = 0
        for f in frames:
            out[: f.shape[0], x : x + f.shape[1]] = f
            x += f.shape[1] + 12
        return out

    # ------------------------------------------------------------------ figures

    def _make_curves(self) -> W.HBox:
        rec = self.recording
        groups = {
            "loss": [k for k in rec.metrics if "loss" in k.lower()],
            "accuracy": [k for k in rec.metrics if "loss" not in k.lower()],
        }
        colors = ["#4c78a8", "#e45756", "#54a24b", "#b279a2", "#9d755d"]
        self.markers: list[bq.Lines] = []
        figures = []
        for title, names in groups.items():
            if not names:
                continue
            xs, ys = bq.LinearScale(), bq.LinearScale()
            marks = []
            values = []
            for k, name in enumerate(names):
                y = rec.metrics[name]
                ok = np.isfinite(y)
                values.append(y[ok])
                marks.append(
                    bq.Lines(
                        x=rec.steps[ok],
                        y=y[ok],
                        scales={"x": xs, "y": ys},
                        colors=[colors[k % len(colors)]],
                        labels=[name],
                        display_legend=True,
                        marker="circle" if ok.sum() < 0.2 * len(y) else None,
                    )
                )
            both = np.concatenate(values) if values else np.zeros(1)
            both = both if both.size else np.zeros(1)
            marker = bq.Lines(
                x=[0, 0],
                y=[float(both.min()), float(both.max())],
                scales={"x": xs, "y": ys},
                colors=["#222"],
                line_style="dashed",
            )
            self.markers.append(marker)
            fig = bq.Figure(
                marks=[*marks, marker],
                axes=[
                    bq.Axis(scale=xs, label="step", tick_format="d"),
                    bq.Axis(scale=ys, side="left", label=title),
                ],
                title=title,
                legend_location="top-right",
                fig_margin={"top": 40, "bottom": 40, "left": 55, "right": 15},
                layout=W.Layout(width="420px", height="260px"),
            )
            fig.add_class(f"jv-tr-{title}")
            figures.append(fig)
        box = W.HBox(figures)
        box.add_class("jv-tr-curves")
        return box

    def _make_histogram(self) -> tuple[bq.Figure, list[bq.Bars]]:
        xs, ys = bq.LinearScale(), bq.LinearScale(min=0.0)
        bars = [
            bq.Bars(
                x=[0.0],
                y=[0.0],
                scales={"x": xs, "y": ys},
                colors=[color],
                opacities=[opacity],
                padding=0.0,
                labels=[label],
                display_legend=True,
            )
            for color, opacity, label in (
                (FIRST, 0.6, "first step"),
                (CURRENT, 0.55, "current step"),
            )
        ]
        fig = bq.Figure(
            marks=bars,
            axes=[
                bq.Axis(scale=xs, label="weight value", tick_format=".2~g"),
                bq.Axis(scale=ys, side="left", label="count", tick_format=",~g"),
            ],
            title="weights: current step over the first",
            legend_location="top-right",
            fig_margin={"top": 40, "bottom": 45, "left": 60, "right": 15},
            layout=W.Layout(width="420px", height="280px"),
        )
        fig.add_class("jv-tr-histogram")
        return fig, bars

    def _make_distribution(self) -> tuple[bq.Figure, dict[str, Any]]:
        xs, ys = bq.LinearScale(), bq.LinearScale()
        bands = [
            bq.Lines(
                x=[0],
                y=[[0], [0]],
                scales={"x": xs, "y": ys},
                fill="between",
                colors=[BAND, BAND],
                fill_colors=[BAND],
                fill_opacities=[0.15 + 0.12 * k],
                opacities=[0.0, 0.0],
            )
            for k in range(len(BANDS))
        ]
        median = bq.Lines(x=[0], y=[0], scales={"x": xs, "y": ys}, colors=[BAND])
        marker = bq.Lines(
            x=[0, 0], y=[0, 1], scales={"x": xs, "y": ys}, colors=["#222"], line_style="dashed"
        )
        fig = bq.Figure(
            marks=[*bands, median, marker],
            axes=[
                bq.Axis(scale=xs, label="step", tick_format="d"),
                bq.Axis(scale=ys, side="left", label="weight value", tick_format=".2~g"),
            ],
            title="distribution over time",
            fig_margin={"top": 40, "bottom": 45, "left": 60, "right": 15},
            layout=W.Layout(width="480px", height="280px"),
        )
        fig.add_class("jv-tr-distribution")
        return fig, {"bands": bands, "median": median, "marker": marker}

    # ------------------------------------------------------------------ updates

    @property
    def index(self) -> int:
        """Position of the current step in ``recording.steps``."""
        return int(self.slider.value)

    @property
    def step(self) -> int:
        """The current training step number."""
        return int(self.recording.steps[self.index])

    def _on_weights(self, change: Any) -> None:
        key = self.weight_select.value
        if key is None:
            return
        rec = self.recording
        edges = rec.bin_edges[key].astype(np.float64)
        centers = 0.5 * (edges[:-1] + edges[1:])
        with self.hist_bars[0].hold_sync():
            self.hist_bars[0].x, self.hist_bars[0].y = centers, rec.histograms[key][0]
        self.hist_bars[1].x = centers
        q = rec.percentiles(key)
        steps = rec.steps
        for band, (a, b) in zip(self.dist_marks["bands"], BANDS, strict=True):
            with band.hold_sync():
                band.x, band.y = steps, np.stack([q[:, a], q[:, b]])
        with self.dist_marks["median"].hold_sync():
            self.dist_marks["median"].x, self.dist_marks["median"].y = steps, q[:, 4]
        self._span = (float(q[:, 0].min()), float(q[:, -1].max()))
        if change is not None:
            self._on_step(None)

    def _on_step(self, change: Any) -> None:
        i, rec = self.index, self.recording
        step = self.step
        for name, img in self.images.items():
            img.value = self.png(i, name)
        for marker in self.markers:
            marker.x = [step, step]
        key = self.weight_select.value
        if key is not None:
            self.hist_bars[1].y = rec.histograms[key][i]
            marker = self.dist_marks["marker"]
            with marker.hold_sync():
                marker.x, marker.y = [step, step], list(self._span)
        parts = [f"<b>step {step}</b> ({i + 1}/{len(rec)})"]
        for name, values in rec.metrics.items():
            if np.isfinite(values[i]):
                parts.append(f"{name} {fmt(values[i])}")
        self.readout.value = " · ".join(parts)

    # ------------------------------------------------------------------ export

    def export_gif(
        self, layer: str | None = None, path: str | os.PathLike[str] | None = None, fps: float = 8
    ) -> Path:
        """Write an animated GIF of ``layer`` (default: the one chosen) over every step."""
        layer = layer or self.gif_layer.value
        if layer not in self.layers:
            raise ValueError(f"layer must be one of {self.layers}, got {layer!r}")
        target = Path(path) if path is not None else self.out_dir / f"{self.prefix}_{layer}.gif"
        frames = [self.render_frame(i, layer) for i in range(len(self.recording))]
        render.write_gif(frames, target, fps=fps)
        self.status.value = f"wrote {target} ({len(frames)} frames)"
        return target

    def export_png(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write a PNG of every shown layer at the current step."""
        target = (
            Path(path) if path is not None else self.out_dir / f"{self.prefix}_step{self.step}.png"
        )
        data = render.png_bytes(self.frame(), compress_level=6)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            tmp.write_bytes(data)
            tmp.replace(target)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.status.value = f"wrote {target}"
        return target


def _css(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
