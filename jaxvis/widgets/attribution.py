"""``Attribution``: which pixels a decision rests on, and whether the explanation holds up.

Pick an image and a class (predicted class first, with probabilities), a method, steps and a
baseline; slide alpha to walk the interior gradients; see the attribution over the image and
beside it, the completeness gap of integrated gradients (with a warning above 5% and a button
that raises the steps until it is below), and in a second tab the model-randomisation sanity
check plotted per layer. All maths comes from :mod:`jaxvis.attribution`; moving the class,
alpha, baseline or noise slider reuses the compiled function.

Example::

    zoo = jv.zoo.load("mnist_cnn")
    jv.widgets.Attribution(zoo.probe, zoo.x_test[:20], labels=zoo.y_test[:20])
"""

from __future__ import annotations

from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np

from jaxvis import attribution as A
from jaxvis import render
from jaxvis.probe import Probe
from jaxvis.widgets._common import (
    check_images,
    check_labels,
    check_probe,
    class_name,
    fmt,
    set_class_options,
)
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML

__all__ = ["Attribution"]

#: Method label -> name in :mod:`jaxvis.attribution`.
METHOD_LABELS = {
    "integrated gradients": "integrated_gradients",
    "interior gradients (alpha)": "interior_gradients",
    "gradient (saliency)": "saliency",
    "input x gradient": "input_x_gradient",
    "SmoothGrad": "smoothgrad",
    "Grad-CAM": "grad_cam",
    "guided backprop": "guided_backprop",
}
BASELINES = ("black", "white", "blur", "uniform")
WARN_GAP = 0.05
MAX_STEPS = 1024
VIEW_PX = 224


class Attribution(StaticHTML, W.VBox):
    """Attribution explorer for one probe and a set of images.

    Args:
        probe: a :class:`jaxvis.Probe` (its output is taken as logits).
        images: ``(N, H, W, C)`` float images in ``probe.input_range``.
        labels: optional true class per image, shown in the caption.
        method: initial method (a name of :mod:`jaxvis.attribution`).
        steps: initial number of integration steps.

    Attributes worth reading in tests: ``result`` (the last :class:`jaxvis.attribution.
    Attribution`), ``overlay_png``, ``gap`` (relative completeness gap or None),
    ``sanity_result``, ``errors`` (the :class:`ErrorBox`).

    Example::

        w = jv.widgets.Attribution(probe, x, labels=y)
        w.target.value = 3; w.alpha.value = 0.2
    """

    def __init__(
        self,
        probe: Probe,
        images: Any,
        labels: Any = None,
        *,
        method: str = "integrated_gradients",
        steps: int = 50,
    ) -> None:
        self.probe = check_probe(probe)
        self.images = check_images(images, self.probe)
        self.labels = check_labels(labels, len(self.images))
        if method not in METHOD_LABELS.values():
            raise ValueError(
                f"method must be one of {', '.join(METHOD_LABELS.values())}, got {method!r}"
            )
        self.errors = ErrorBox()
        self.result: A.Attribution | None = None
        self.sanity_result: A.sanity.RandomisationResult | None = None
        self.gap: float | None = None
        self.overlay_png = b""
        self._values: np.ndarray | None = None
        self._busy = False

        n = len(self.images)
        style = {"description_width": "80px"}
        lay = W.Layout(width="300px")
        self.index = W.IntSlider(
            0,
            0,
            max(n - 1, 0),
            description="image",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.index.add_class("jv-attr-index")
        self.target = W.Dropdown(description="class", style=style, layout=lay)
        self.target.add_class("jv-attr-class")
        self.method = W.Dropdown(
            options=list(METHOD_LABELS.items()),
            value=method,
            description="method",
            style=style,
            layout=lay,
        )
        self.method.add_class("jv-attr-method")
        self.steps = W.BoundedIntText(
            steps, min=1, max=MAX_STEPS, description="steps", style=style, layout=lay
        )
        self.steps.add_class("jv-attr-steps")
        self.baseline = W.Dropdown(
            options=list(BASELINES), value="black", description="baseline", style=style, layout=lay
        )
        self.baseline.add_class("jv-attr-baseline")
        self.alpha = W.FloatSlider(
            1.0,
            min=0.02,
            max=1.0,
            step=0.02,
            description="alpha",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.alpha.add_class("jv-attr-alpha")
        self.noise = W.FloatSlider(
            0.15,
            min=0.0,
            max=0.5,
            step=0.01,
            description="noise",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.noise.add_class("jv-attr-noise")
        self.opacity = W.FloatSlider(
            0.6, min=0.0, max=1.0, step=0.05, description="opacity", style=style, layout=lay
        )
        self.opacity.add_class("jv-attr-opacity")
        self.cmap = W.ToggleButtons(
            options=[("signed", "rwb"), ("absolute", "viridis")],
            value="rwb",
            description="colours",
            style={"description_width": "80px", "button_width": "90px"},
        )
        self.cmap.add_class("jv-attr-cmap")

        self.caption = W.HTML()
        self.caption.add_class("jv-attr-caption")
        self.view = W.Image(
            format="png", layout=W.Layout(width=f"{VIEW_PX}px", height=f"{VIEW_PX}px")
        )
        self.view.add_class("jv-attr-image")
        self.heat = W.Image(
            format="png", layout=W.Layout(width=f"{VIEW_PX}px", height=f"{VIEW_PX}px")
        )
        self.heat.add_class("jv-attr-map")
        self.delta = W.HTML()
        self.delta.add_class("jv-attr-delta")
        self.fix = W.Button(
            description="raise steps",
            tooltip="double the steps until the gap is below 5%",
            layout=W.Layout(display="none"),
        )
        self.fix.add_class("jv-attr-fix")

        controls = W.VBox(
            [
                self.index,
                self.target,
                self.method,
                self.steps,
                self.baseline,
                self.alpha,
                self.noise,
                self.opacity,
                self.cmap,
            ]
        )
        pictures = W.HBox([self.view, self.heat], layout=W.Layout(align_items="flex-start"))
        explain = W.VBox(
            [
                self.caption,
                W.HBox(
                    [controls, W.VBox([pictures, W.HBox([self.delta, self.fix])])],
                    layout=W.Layout(align_items="flex-start"),
                ),
            ]
        )

        self._build_sanity()
        self.tabs = W.Tab(children=[explain, self.sanity_box])
        self.tabs.set_title(0, "explain")
        self.tabs.set_title(1, "sanity check")
        super().__init__([self.tabs, self.errors])
        self.add_class("jv-attribution")

        self.index.observe(self.errors.guard(self._on_image), "value")
        for w in (self.target, self.method, self.steps, self.baseline, self.alpha, self.noise):
            w.observe(self.errors.guard(self._on_compute), "value")
        for w in (self.opacity, self.cmap):
            w.observe(self.errors.guard(self._on_draw), "value")
        self.fix.on_click(self.errors.guard(self._on_fix))
        self.errors.guard(self._on_image)(None)

    # ------------------------------------------------------------------ state

    @property
    def x(self) -> np.ndarray:
        """The current image as a batch of one."""
        return self.images[self.index.value : self.index.value + 1]

    # ------------------------------------------------------------------ callbacks

    def _on_image(self, _change: Any) -> None:
        self._busy = True
        try:
            probs, order = set_class_options(self.target, self.probe, self.x)
        finally:
            self._busy = False
        label = self.labels[self.index.value] if self.labels is not None else None
        if label is None:
            truth = ""
        else:
            shown = (
                class_name(self.probe, int(label)) if isinstance(label, int | np.integer) else label
            )
            truth = f" · label <b>{shown}</b>"
        self.caption.value = (
            f"image {self.index.value} · predicted <b>{class_name(self.probe, int(order[0]))}</b> "
            f"(p={probs[order[0]]:.2f}){truth}"
        )
        self._on_compute(None)

    def _on_compute(self, _change: Any) -> None:
        if self._busy or self.target.value is None:
            return
        method = self.method.value
        self.alpha.disabled = method != "interior_gradients"
        self.noise.disabled = method != "smoothgrad"
        self.steps.disabled = method not in ("integrated_gradients", "smoothgrad")
        self.baseline.disabled = method not in ("integrated_gradients", "interior_gradients")
        self.result = self.compute()
        values = np.asarray(self.result.values)
        self._values = values[0, 0] if method == "interior_gradients" else values[0]
        self._show_gap()
        self._on_draw(None)

    def compute(self) -> A.Attribution:
        """Run the chosen method on the current image with the current settings."""
        method, x, t = self.method.value, self.x, int(self.target.value)
        if method == "integrated_gradients":
            return A.integrated_gradients(
                self.probe, x, t, baseline=self.baseline.value, steps=int(self.steps.value)
            )
        if method == "interior_gradients":
            return A.interior_gradients(
                self.probe, x, t, alphas=[float(self.alpha.value)], baseline=self.baseline.value
            )
        if method == "smoothgrad":
            return A.smoothgrad(
                self.probe, x, t, noise=float(self.noise.value), samples=int(self.steps.value)
            )
        if method == "saliency":
            return A.saliency(self.probe, x, t, abs=False)
        return getattr(A, method)(self.probe, x, t)

    def _show_gap(self) -> None:
        rel = None if self.result is None else self.result.relative_delta
        self.gap = None if rel is None else float(rel[0])
        if self.gap is None:
            self.delta.value = ""
            self.fix.layout.display = "none"
            return
        warn = self.gap > WARN_GAP
        colour = "#a60" if warn else "#286"
        text = (
            f"completeness gap: <b>{100 * self.gap:.2f}%</b> of f(x) − f(baseline) "
            f"(sum {fmt(float(np.sum(self._values)))}, f(x) − f(b) "
            f"{fmt(float(self.result.score[0] - self.result.baseline_score[0]))})"
        )
        if warn:
            text += " — above 5%: raise the steps"
        cls = "jv-attr-warning" if warn else "jv-attr-ok"
        self.delta.value = f'<span class="{cls}" style="color:{colour}">{text}</span>'
        self.fix.layout.display = "" if warn else "none"

    def _on_fix(self, _button: Any) -> None:
        steps = int(self.steps.value)
        while self.gap is not None and self.gap > WARN_GAP and steps < MAX_STEPS:
            steps = min(MAX_STEPS, steps * 2)
            self.steps.value = steps  # recomputes through the observer

    def _on_draw(self, _change: Any) -> None:
        if self._values is None:
            return
        heat = self._values.sum(-1)
        signed = self.cmap.value == "rwb"
        if not signed:
            heat = np.abs(heat)
        norm = "symmetric" if signed else "layer"
        img = render.from_range(self.x[0], self.probe.input_range, "input_range")
        if img.shape[-1] not in (1, 3):
            img = img[..., :1]  # show the first channel of a multi-channel input
        over = render.overlay(
            img,
            heat,
            alpha=float(self.opacity.value),
            cmap=self.cmap.value,
            normalize=norm,
        )
        alone = render.colorize(render.normalize(heat, norm), self.cmap.value)
        factor = max(1, VIEW_PX // max(img.shape[:2]))
        self.overlay_png = render.png_bytes(render.upscale(over, factor))
        self.view.value = self.overlay_png
        self.heat.value = render.png_bytes(render.upscale(alone, factor))

    # ------------------------------------------------------------------ sanity tab

    def _build_sanity(self) -> None:
        self.sanity_method = W.Dropdown(
            options=[(k, v) for k, v in METHOD_LABELS.items() if v not in ("interior_gradients",)],
            value="integrated_gradients",
            description="method",
        )
        self.sanity_method.add_class("jv-attr-sanity-method")
        self.sanity_mode = W.ToggleButtons(options=["cascading", "independent"], value="cascading")
        self.sanity_run = W.Button(description="run sanity check", button_style="primary")
        self.sanity_run.add_class("jv-attr-sanity-run")
        xs = bq.OrdinalScale()
        ys = bq.LinearScale(min=-1.0, max=1.0)
        colors = ["#1f77b4", "#d62728", "#2ca02c"]
        self.sanity_lines = bq.Lines(
            x=["original"],
            y=[[1.0], [1.0], [1.0]],
            scales={"x": xs, "y": ys},
            colors=colors,
            labels=["Spearman |map|", "Spearman signed", "SSIM"],
            display_legend=True,
            marker="circle",
        )
        self.sanity_figure = bq.Figure(
            marks=[self.sanity_lines],
            axes=[
                bq.Axis(scale=xs, label="randomised down to", tick_rotate=-30),
                bq.Axis(scale=ys, side="left", label="similarity to original"),
            ],
            title="model-parameter randomisation (Adebayo et al. 2018)",
            layout=W.Layout(width="620px", height="340px"),
            legend_location="bottom-left",
        )
        self.sanity_figure.add_class("jv-attr-sanity-plot")
        self.sanity_maps = W.Image(format="png")
        self.sanity_maps.add_class("jv-attr-sanity-maps")
        self.sanity_note = W.HTML(
            "Randomise the weights from the top layer down and compare each new map with the "
            "trained model's. Maps that explain the model decorrelate; maps that stay similar "
            "(guided backprop) show the image, not the model."
        )
        self.sanity_run.on_click(self.errors.guard(self._on_sanity))
        self.sanity_box = W.VBox(
            [
                self.sanity_note,
                W.HBox([self.sanity_method, self.sanity_mode, self.sanity_run]),
                self.sanity_figure,
                self.sanity_maps,
            ]
        )

    def _on_sanity(self, _button: Any) -> None:
        method = self.sanity_method.value
        kwargs = {"steps": int(self.steps.value)} if method == "integrated_gradients" else {}
        res = A.randomisation_test(
            self.probe, self.x, int(self.target.value), method, self.sanity_mode.value, **kwargs
        )
        self.sanity_result = res
        steps = list(res.layers)
        self.sanity_lines.x = steps
        self.sanity_lines.y = [res.spearman_abs[:, 0], res.spearman_signed[:, 0], res.ssim[:, 0]]
        maps = res.maps[:, 0]
        peak = np.abs(maps).reshape(len(maps), -1).max(-1).reshape(-1, 1, 1)
        tiles = 0.5 + 0.5 * maps / np.where(peak > 0, peak, 1.0)
        grid = render.grid(
            tiles,
            ncols=min(len(tiles), 6),
            normalize="none",
            cmap="rwb",
            scale=max(1, 64 // maps.shape[1]),
        )
        self.sanity_maps.value = render.png_bytes(grid)
