"""``AttributionExplorer``: which pixels a decision rests on, and whether the explanation holds up.

Pick an image and a class (predicted class first, with probabilities), a method, steps and a
baseline; slide alpha to walk the interior gradients; see the attribution over the image and
beside it, the completeness gap of integrated gradients (with a warning above 5% and a button
that raises the steps until it is below), and in a second tab the model-randomisation sanity
check plotted per layer, and in a third ("which can I trust?") :func:`jaxvis.attribution.report`
on the widget's images: bars per metric with confidence intervals, deletion/insertion curves
to hover, the maps side by side. Methods are read from the registry
(``jv.attribution.methods()``). All maths comes from :mod:`jaxvis.attribution`; moving the
class, alpha, baseline or noise slider, or the report's method, target or metric, reuses the
compiled functions.

Example::

    zoo = jv.zoo.load("mnist_cnn")
    jv.widgets.AttributionExplorer(zoo.probe, zoo.x_test[:20], labels=zoo.y_test[:20])
"""

from __future__ import annotations

import threading
from typing import Any

import bqplot as bq
import ipywidgets as W
import numpy as np

from jaxvis import attribution as A
from jaxvis import render
from jaxvis._checks import check_int
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

__all__ = ["AttributionExplorer"]

from jaxvis.attribution.report import DEFAULT_METHODS, METRICS, Report

BASELINES = ("black", "white", "blur", "uniform")
WARN_GAP = 0.05
MAX_STEPS = 1024
VIEW_PX = 224
TRUST_IMAGES = 8


def method_labels(probe: Probe) -> dict[str, str]:
    """Label -> name of the registered methods that apply to ``probe`` (the attention family
    only for a probe with attention layers), in registry order."""
    vit = bool(A.attention_layers(probe))
    return {m.label: name for name, m in A.methods().items() if m.family != "attention" or vit}


class AttributionExplorer(StaticHTML, W.VBox):
    """Attribution explorer for one probe and a set of images.

    Args:
        probe: a :class:`jaxvis.Probe` (its output is taken as logits).
        images: ``(N, H, W, C)`` float images in ``probe.input_range``.
        labels: optional true class per image, shown in the caption.
        method: initial method (a registered name, ``jv.attribution.methods()``).
        steps: initial number of integration steps.
        masks: optional ``(N, H, W)`` bool object masks: the report then scores localisation.

    Attributes worth reading in tests: ``result`` (the last :class:`jaxvis.attribution.
    Attribution`), ``overlay_png``, ``gap`` (relative completeness gap or None),
    ``sanity_result``, ``report_result`` (the last :class:`jaxvis.attribution.report.Report`),
    ``trust_thread`` (the report's thread: ``join()`` it), ``errors`` (the :class:`ErrorBox`).

    Example::

        w = jv.widgets.AttributionExplorer(probe, x, labels=y)
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
        masks: Any = None,
    ) -> None:
        self.probe = check_probe(probe)
        self.images = check_images(images, self.probe)
        self.labels = check_labels(labels, len(self.images))
        steps = check_int(steps, "steps", minimum=1, maximum=MAX_STEPS)
        self.method_labels = method_labels(self.probe)
        if method not in self.method_labels.values():
            raise ValueError(
                f"method must be one of {', '.join(self.method_labels.values())}, got {method!r}"
            )
        if masks is not None:
            masks = np.asarray(masks)
            if masks.dtype != bool or masks.shape != self.images.shape[:3]:
                raise ValueError(
                    f"masks must be bool with shape {self.images.shape[:3]} (N, H, W), got "
                    f"{masks.dtype} {masks.shape}"
                )
        self.masks = masks
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
            options=list(self.method_labels.items()),
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
        self._build_trust()
        self.tabs = W.Tab(children=[explain, self.sanity_box, self.trust_box])
        self.tabs.set_title(0, "explain")
        self.tabs.set_title(1, "sanity check")
        self.tabs.set_title(2, "which can I trust?")
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
        return A.attribute(self.probe, x, t, method=method)

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
            options=[(k, v) for k, v in self.method_labels.items() if v != "interior_gradients"],
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
            self.probe,
            self.x,
            int(self.target.value),
            method=method,
            mode=self.sanity_mode.value,
            **kwargs,
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

    # ------------------------------------------------------------------ trust tab

    def _build_trust(self) -> None:
        self.report_result: Report | None = None
        self.trust_thread: threading.Thread | None = None
        self._stop = threading.Event()
        choices = [(k, v) for k, v in self.method_labels.items() if v != "interior_gradients"]
        names = [v for _, v in choices]
        self.trust_methods = W.SelectMultiple(
            options=choices,
            value=[m for m in DEFAULT_METHODS if m in names][:4] or names[:1],
            description="methods",
            rows=6,
        )
        self.trust_methods.add_class("jv-trust-methods")
        metrics = [
            (spec.label, name)
            for name, spec in METRICS.items()
            if self.masks is not None or not spec.needs_masks
        ]
        self.trust_metrics = W.SelectMultiple(
            options=metrics,
            value=[v for _, v in metrics if v != "sensitivity_max"],
            description="metrics",
            rows=6,
        )
        self.trust_metrics.add_class("jv-trust-metrics")
        n = len(self.images)
        self.trust_count = W.BoundedIntText(
            min(TRUST_IMAGES, n), min=1, max=n, description="images"
        )
        self.trust_run = W.Button(description="run report", button_style="primary")
        self.trust_run.add_class("jv-trust-run")
        self.trust_stop = W.Button(description="stop", button_style="warning", disabled=True)
        self.trust_stop.add_class("jv-trust-stop")
        self.trust_progress = W.IntProgress(0, min=0, max=1, description="")
        self.trust_progress.add_class("jv-trust-progress")
        self.trust_status = W.HTML()
        self.trust_status.add_class("jv-trust-status")
        self.trust_metric = W.Dropdown(options=metrics, value=metrics[0][1], description="show")
        self.trust_metric.add_class("jv-trust-metric")
        self.trust_curve = W.ToggleButtons(options=["deletion", "insertion"], value="deletion")
        self.trust_curve.add_class("jv-trust-curve")

        xs, ys = bq.OrdinalScale(), bq.LinearScale()
        self.trust_bars = bq.Bars(
            x=[],
            y=[],
            scales={"x": xs, "y": ys},
            colors=["#4c78a8"],
            tooltip=bq.Tooltip(fields=["x", "y"], formats=["", ".3g"]),
        )
        self.trust_ci = bq.Lines(
            x=[], y=[], scales={"x": xs, "y": ys}, colors=["#222"], stroke_width=2
        )
        self.trust_figure = bq.Figure(
            marks=[self.trust_bars, self.trust_ci],
            axes=[bq.Axis(scale=xs, tick_rotate=-20), bq.Axis(scale=ys, side="left")],
            title="mean over images, 95% interval",
            layout=W.Layout(width="480px", height="320px"),
        )
        self.trust_figure.add_class("jv-trust-bars")
        cx, cy = bq.LinearScale(min=0.0, max=1.0), bq.LinearScale()
        self.trust_lines = bq.Lines(
            x=[0.0, 1.0],
            y=[[0.0, 0.0]],
            scales={"x": cx, "y": cy},
            display_legend=True,
            labels=[""],
            tooltip=bq.Tooltip(fields=["name", "x", "y"], formats=["", ".2f", ".3f"]),
        )
        self.trust_curves = bq.Figure(
            marks=[self.trust_lines],
            axes=[
                bq.Axis(scale=cx, label="share of pixels removed / inserted"),
                bq.Axis(scale=cy, side="left", label="probability of the class"),
            ],
            title="deletion curve (mean over images)",
            layout=W.Layout(width="480px", height="320px"),
            legend_location="top-right",
        )
        self.trust_curves.add_class("jv-trust-curves")
        self.trust_maps = W.HBox()
        self.trust_maps.add_class("jv-trust-maps")
        self.trust_table = W.HTML()
        self.trust_table.add_class("jv-trust-table")
        self.trust_failures = W.HTML()
        self.trust_failures.add_class("jv-trust-failures")

        self.trust_run.on_click(self.errors.guard(self._on_trust_run))
        self.trust_stop.on_click(lambda _b: self._stop.set())
        for w in (self.trust_metric, self.trust_curve):
            w.observe(self.errors.guard(self._draw_trust), "value")
        self.trust_box = W.VBox(
            [
                W.HTML(
                    "Score each method on the first images: is the map faithful to the model "
                    "(deletion, insertion, MuFidelity, ROAD, infidelity), stable, on the object "
                    "(with masks), and does it fail when the weights are randomised?"
                ),
                W.HBox([self.trust_methods, self.trust_metrics]),
                W.HBox([self.trust_count, self.trust_run, self.trust_stop, self.trust_progress]),
                self.trust_status,
                self.trust_failures,
                W.HBox([self.trust_metric, self.trust_curve]),
                W.HBox([self.trust_figure, self.trust_curves]),
                self.trust_maps,
                self.trust_table,
            ]
        )

    def _trust_targets(self, count: int) -> np.ndarray:
        """The predicted class per image, the current image's from the class menu."""
        targets = np.asarray(np.argmax(np.asarray(self.probe(self.images[:count])), -1))
        if self.index.value < count and self.target.value is not None:
            targets[self.index.value] = int(self.target.value)
        return targets.astype(np.int32)

    def _on_trust_run(self, _button: Any) -> None:
        if self.trust_thread is not None and self.trust_thread.is_alive():
            raise RuntimeError("a report is already running: stop it first")
        if not self.trust_methods.value:
            raise ValueError("choose at least one method for the report")
        if not self.trust_metrics.value:
            raise ValueError("choose at least one metric for the report")
        count = int(self.trust_count.value)
        args = {
            "probe": self.probe,
            "x": self.images[:count],
            "targets": self._trust_targets(count),
            "methods": list(self.trust_methods.value),
            "metrics": list(self.trust_metrics.value),
            "masks": None if self.masks is None else self.masks[:count],
        }
        self._stop.clear()
        self.trust_run.disabled = True
        self.trust_stop.disabled = False
        self.trust_status.value = "running…"
        self.trust_thread = threading.Thread(
            target=self.errors.guard(self._run_report), args=(args,), daemon=True
        )
        self.trust_thread.start()

    def _progress(self, done: int, total: int, label: str) -> bool:
        self.trust_progress.max = total
        self.trust_progress.value = done
        self.trust_status.value = f"{done}/{total} · {label}"
        return not self._stop.is_set()

    def _run_report(self, args: dict[str, Any]) -> None:
        try:
            rep = A.report(**args, progress=self._progress)
        finally:
            self.trust_run.disabled = False
            self.trust_stop.disabled = True
        self.report_result = rep
        self.trust_status.value = "stopped (partial table)" if rep.stopped else "done"
        failures = "".join(
            f"<div>{method}{' / ' + metric if metric else ''}: {msg}</div>"
            for (method, metric), msg in rep.errors.items()
        )
        self.trust_failures.value = (
            f'<div class="jv-error" style="color:#a00">{failures}</div>' if failures else ""
        )
        self.trust_table.value = rep._repr_html_()
        self._draw_trust(None)

    def _draw_trust(self, _change: Any) -> None:
        rep = self.report_result
        if rep is None:
            return
        metric = self.trust_metric.value
        rows = [r for r in rep.table if r["metric"] == metric and np.isfinite(r["mean"])]
        if metric not in rep.metrics:
            self.trust_figure.title = f"{METRICS[metric].label}: not in this report"
        else:
            better = "higher" if METRICS[metric].better == "higher" else "lower"
            self.trust_figure.title = f"{METRICS[metric].label} ({better} is better), 95% interval"
        labels = [r["method"] for r in rows]
        self.trust_bars.x = labels
        self.trust_bars.y = [r["mean"] for r in rows]
        self.trust_ci.x = [[m, m] for m in labels]
        self.trust_ci.y = [[r["low"], r["high"]] for r in rows]
        kind = self.trust_curve.value
        curves = [(m, rep.curves[m][kind]) for m in rep.methods if kind in rep.curves.get(m, {})]
        if curves:
            self.trust_lines.x = curves[0][1].fractions
            self.trust_lines.y = [c.scores.mean(1) for _, c in curves]
            self.trust_lines.labels = [m for m, _ in curves]
            self.trust_curves.title = f"{kind} curve (mean over images)"
        self._draw_trust_maps(rep)

    def _draw_trust_maps(self, rep: Any) -> None:
        i = self.index.value if self.index.value < len(next(iter(rep.maps.values()), [])) else 0
        tiles = []
        for method, maps in rep.maps.items():
            heat = render.colorize(render.normalize(maps[i], "symmetric"), "rwb")
            factor = max(1, 96 // max(heat.shape[:2]))
            img = W.Image(value=render.png_bytes(render.upscale(heat, factor)), format="png")
            tiles.append(W.VBox([W.HTML(f"<small>{method}</small>"), img]))
        self.trust_maps.children = tiles
