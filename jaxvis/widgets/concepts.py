"""``ConceptExplorer``: fit concepts on a layer, then browse them as the Toolbox shows units.

Fit (NMF, Semi-NMF, PCA or a sparse autoencoder, :func:`jaxvis.concepts.fit`) runs in a
background thread with a progress bar and Stop; then every concept is a row: its feature
visualisation (all concepts in one vectorised run), its top-9 dataset patches, its heatmap on
the current input, and an importance bar for the chosen class (gradient x code). Sort rows by
importance, click a concept to see its heatmap over several inputs, save/load the fitted
concepts as ``.npz`` (no pickle). The widget holds no maths: it calls :mod:`jaxvis.concepts`.

Example::

    zoo = jv.zoo.load("shapes_cnn")
    ce = jv.widgets.ConceptExplorer(zoo.probe, zoo.x_test, "act5", n_concepts=8)
    ce.fit(wait=True)          # or press Fit
    ce.select(3)               # concept 3's heatmap over several inputs
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as W
import numpy as np

from jaxvis import concepts as jc
from jaxvis import render
from jaxvis._checks import (
    check_choice,
    check_images,
    check_int,
    check_layer,
    check_positive_int,
)
from jaxvis._protocols import ProbeLike
from jaxvis.widgets._common import check_probe, fmt, input_slider
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML
from jaxvis.widgets.feature_vis import preview_image

__all__ = ["ConceptExplorer"]

ROW_PX = 96
DETAIL_INPUTS = 6
#: rows drawn at most (in display order: sort by importance to see the ones that matter)
MAX_ROWS = 32
#: the largest K the widget offers (its K box is bounded; a larger ``n_concepts`` is refused)
MAX_CONCEPTS = 4096


class ConceptExplorer(StaticHTML, W.VBox):
    """Fit concepts of ``layer`` on ``dataset`` and browse them.

    Args:
        probe: a :class:`jaxvis.Probe`.
        dataset: ``(N, H, W, C)`` images in the probe's input range (fit, top-k and inputs).
        layer: a spatial (or ViT token) layer.
        method: a :data:`jaxvis.concepts.METHODS` entry; ``n_concepts``: K.
        fit_images: images used for the fit; ``max_samples``: rows kept (reservoir).
        fv_steps: feature-visualisation steps (0: off); ``k``: top images per concept.
        importance_images: images over which importance is averaged.
        concepts: already-fitted :class:`~jaxvis.concepts.Concepts` to browse.
        fit_options: extra options of :func:`jaxvis.concepts.fit` (e.g. SAE ``steps``).
    """

    def __init__(
        self,
        probe: ProbeLike,
        dataset: Any,
        layer: str,
        *,
        method: str = "seminmf",
        n_concepts: int = 8,
        fit_images: int = 500,
        max_samples: int = 20_000,
        fv_steps: int = 64,
        k: int = 9,
        importance_images: int = 64,
        concepts: jc.Concepts | None = None,
        fit_options: dict[str, Any] | None = None,
    ) -> None:
        self._check_settings(probe, dataset, layer, method, n_concepts)
        self.fit_images = check_positive_int(fit_images, "fit_images")
        self.max_samples = check_positive_int(max_samples, "max_samples")
        self.fv_steps = check_int(fv_steps, "fv_steps", minimum=0)
        self.k = check_positive_int(k, "k")
        self.importance_images = check_positive_int(importance_images, "importance_images")
        self.fit_options = dict(fit_options or {})
        self.concepts: jc.Concepts | None = None
        self.selected = 0
        self.timings: dict[str, float] = {}
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._fv: np.ndarray | None = None
        self._top: Any = None
        self._importance: dict[int, np.ndarray] = {}
        self._row_pngs: dict[int, list[tuple[bytes, str]]] = {}  # per concept: fv, patches
        self.error = ErrorBox()

        self._make_controls(method, n_concepts, layer)
        self.fit_button.on_click(self.error.guard(lambda _: self.fit()))
        self.stop_button.on_click(self.error.guard(lambda _: self.stop()))
        self.save_button.on_click(self.error.guard(lambda _: self.save(self.path.value)))
        self.load_button.on_click(self.error.guard(lambda _: self.load(self.path.value)))
        self.class_select.observe(self.error.guard(lambda _: self.draw()), "value")
        self.image_slider.observe(self.error.guard(lambda _: self.draw()), "value")

        controls = W.VBox(
            [
                W.HBox(
                    [
                        self.method_select,
                        self.k_input,
                        self.fit_button,
                        self.stop_button,
                        self.progress,
                    ]
                ),
                W.HBox([self.class_select, self.image_slider]),
                W.HBox([self.path, self.save_button, self.load_button]),
                self.status,
            ]
        )
        detail = W.VBox([self.detail_caption, self.detail])
        super().__init__(
            [
                controls,
                W.HBox([self.rows, detail], layout=W.Layout(align_items="flex-start")),
                self.error,
            ]
        )
        self.add_class("jv-concept-explorer")
        if concepts is not None:
            self.error.guard(self.set_concepts)(concepts)

    def _check_settings(
        self, probe: Any, dataset: Any, layer: Any, method: Any, n_concepts: Any
    ) -> None:
        """Check the probe, images, layer, method and K (nothing is computed yet)."""
        self.probe = check_probe(probe)
        self.dataset = np.asarray(check_images(self.probe, dataset, "dataset"))
        self.layer = check_layer(self.probe, layer)
        lay = self.probe.layout(layer)
        if lay.spatial_shape is None:
            raise ValueError(f"layer {layer!r} ({lay.kind}) has no spatial view: no heatmaps")
        check_choice(method, "method", jc.METHODS)
        # the K box holds at most MAX_CONCEPTS: a larger K is refused, not clamped by the box
        check_int(n_concepts, "n_concepts", minimum=1, maximum=MAX_CONCEPTS)

    def _make_controls(self, method: str, n_concepts: int, layer: str) -> None:
        """The method / K / fit row, sort and input pickers, save/load, rows and detail."""
        self.method_select = W.Dropdown(
            options=list(jc.METHODS),
            value=method,
            description="method",
            layout=W.Layout(width="220px"),
        )
        self.method_select.add_class("jv-ce-method")
        self.k_input = W.BoundedIntText(
            value=n_concepts,
            min=1,
            max=MAX_CONCEPTS,
            description="K",
            layout=W.Layout(width="150px"),
        )
        self.k_input.add_class("jv-ce-k")
        self.fit_button = W.Button(description="Fit", button_style="primary", icon="play")
        self.fit_button.add_class("jv-ce-fit")
        self.stop_button = W.Button(
            description="Stop", button_style="warning", icon="stop", disabled=True
        )
        self.stop_button.add_class("jv-ce-stop")
        self.progress = W.IntProgress(0, min=0, max=100, description="not fitted")
        self.progress.add_class("jv-ce-progress")
        names = self.probe.class_names or [
            str(i) for i in range(int(self.probe(self.dataset[:1]).shape[-1]))
        ]
        self.class_select = W.Dropdown(
            options=[("concept order", -1)]
            + [(f"importance for {n}", i) for i, n in enumerate(names)],
            value=-1,
            description="sort",
            layout=W.Layout(width="300px"),
        )
        self.class_select.add_class("jv-ce-sort")
        self.image_slider = input_slider(len(self.dataset), "jv-ce-image", "300px")
        self.path = W.Text(
            value=f"concepts_{layer}.npz", description="file", layout=W.Layout(width="300px")
        )
        self.save_button = W.Button(description="Save", icon="save")
        self.save_button.add_class("jv-ce-save")
        self.load_button = W.Button(description="Load", icon="folder-open")
        self.load_button.add_class("jv-ce-load")
        self.status = W.HTML()
        self.status.add_class("jv-ce-status")
        self.rows = W.VBox()
        self.rows.add_class("jv-ce-rows")
        self.detail = W.Image(format="png")
        self.detail.add_class("jv-ce-detail")
        self.detail_caption = W.HTML()
        self.detail_caption.add_class("jv-ce-detail-caption")

    # ------------------------------------------------------------------ fit

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def fit(self, wait: bool = False) -> None:
        """Fit concepts with the chosen method and K in a background thread."""
        if self.running:
            raise RuntimeError("a fit is in progress: press Stop first")
        method, n = self.method_select.value, int(self.k_input.value)
        lay = self.probe.layout(self.layer)
        if method not in ("topk", "batchtopk", "jumprelu") and n > lay.channels:
            raise ValueError(
                f"K must be at most {lay.channels} (the layer's channels) for "
                f"{method}; an SAE may be overcomplete"
            )
        self._stop.clear()
        self.fit_button.disabled, self.stop_button.disabled = True, False
        self.progress.value, self.progress.description = 0, "activations"
        self.thread = threading.Thread(target=self._work, args=(method, n), daemon=True)
        self.thread.start()
        if wait:
            self.thread.join()

    def stop(self) -> None:
        """Stop an SAE fit after its current chunk (the SAE so far is kept)."""
        self._stop.set()
        self.status.value = "stopping…"

    def _work(self, method: str, n: int) -> None:
        try:
            t0 = time.perf_counter()
            ds = jc.activations(
                self.probe,
                self.dataset[: self.fit_images],
                self.layer,
                max_samples=self.max_samples,
                progress=False,
            )
            self.progress.value = 10
            self.progress.description = f"fit {method}"
            opts = dict(self.fit_options)
            x = ds.samples
            if method == "nmf" and x.min() < 0:
                raise ValueError(
                    f"layer {self.layer!r} has negative activations: NMF needs "
                    "non-negative data; choose seminmf or an SAE"
                )
            if method in ("topk", "batchtopk", "jumprelu"):

                def callback(p: dict[str, Any]) -> bool:
                    self.progress.value = 10 + int(80 * p["step"] / p["steps"])
                    self.progress.description = f"step {p['step']}"
                    return not self._stop.is_set()

                opts.setdefault("progress", False)
                opts["callback"] = callback
                if method != "jumprelu":
                    opts.setdefault("k", min(8, n))
            c = jc.fit(ds, n, method=method, **opts)
            self.timings["fit"] = time.perf_counter() - t0
            self.set_concepts(c)
        except Exception as exc:  # noqa: BLE001 - shown in place
            self.error.show(exc, "fit")
            self.progress.description = "failed"
        finally:
            self.fit_button.disabled, self.stop_button.disabled = False, True

    def set_concepts(self, concepts: jc.Concepts) -> None:
        """Browse ``concepts`` (fitted here, loaded, or passed in)."""
        if not isinstance(concepts, jc.Concepts):
            raise TypeError(f"concepts must be a jaxvis.concepts.Concepts, got {type(concepts)}")
        channels = self.probe.layout(self.layer).channels
        if concepts.n_channels != channels:
            raise ValueError(
                f"concepts have {concepts.n_channels} channels; layer {self.layer!r} has {channels}"
            )
        self.concepts = concepts
        self._importance = {}
        self._row_pngs = {}
        self.selected = 0
        t0 = time.perf_counter()
        self.progress.description = "views"
        if self.fv_steps > 0:
            res = jc.feature_vis(self.probe, concepts, layer=self.layer, steps=self.fv_steps)
            self._fv = res.images
        self.timings["feature_vis"] = time.perf_counter() - t0
        self._top = jc.top_k(
            self.probe, self.dataset, concepts, self.k, layer=self.layer, progress=False
        )
        self.timings["views"] = time.perf_counter() - t0
        self.progress.value, self.progress.description = 100, f"{concepts.n_concepts} concepts"
        self.draw()

    # ------------------------------------------------------------------ files

    def save(self, path: str) -> None:
        if self.concepts is None:
            raise ValueError("nothing to save: fit concepts first")
        self.concepts.save(path)
        self.status.value = f"saved {self.concepts!r} to {path}"

    def load(self, path: str) -> None:
        self.set_concepts(jc.Concepts.load(path))
        self.status.value = f"loaded {self.concepts!r} from {path}"

    # ------------------------------------------------------------------ display

    def importance(self, target: int) -> np.ndarray:
        """``(K,)`` gradient x code for class ``target`` over the first images (cached)."""
        if target not in self._importance:
            self._importance[target] = jc.importance(
                self.probe,
                self.concepts,
                self.dataset[: self.importance_images],
                target,
                layer=self.layer,
            )
        return self._importance[target]

    def order(self) -> list[int]:
        """Concepts in display order (by importance for the chosen class, or as fitted)."""
        n = self.concepts.n_concepts
        target = int(self.class_select.value)
        if target < 0:
            return list(range(n))
        return [int(i) for i in np.argsort(-self.importance(target), kind="stable")]

    def select(self, concept: int) -> None:
        """Show ``concept``'s heatmap over several inputs."""
        if self.concepts is None:
            raise ValueError("no concepts yet: fit first")
        if not 0 <= int(concept) < self.concepts.n_concepts:
            raise ValueError(
                f"concept must be in [0, {self.concepts.n_concepts - 1}], got {concept}"
            )
        self.selected = int(concept)
        self._draw_detail()

    def draw(self) -> None:
        if self.concepts is None:
            return
        c = self.concepts
        i = int(self.image_slider.value)
        x = self.dataset[i]
        heat = jc.heatmap(self.probe, c, x[None], layer=self.layer)[0]  # (h, w, K)
        target = int(self.class_select.value)
        imp = self.importance(target) if target >= 0 else None
        order = self.order()
        lo, hi = self.probe.input_range
        rows = []
        big = float(np.abs(imp).max()) if imp is not None else 1.0
        for j in order[:MAX_ROWS]:
            label = W.Button(description=f"concept {j}", layout=W.Layout(width="110px"))
            label.add_class("jv-ce-select")
            label.add_class(f"jv-ce-select-{j}")
            label.on_click(self.error.guard(lambda _, j=j: self.select(j)))
            pics = []
            if self._fv is not None:
                pics.append(_img(preview_image(self._fv[j : j + 1], ROW_PX), "jv-ce-fv"))
            crops = jc.patches(self.probe, self.dataset, self._top, j, fill=lo)
            tiles = [_rgb(p, lo, hi) for p in np.asarray(crops)]
            pics.append(_img(render.grid(tiles, normalize="none", ncols=3), "jv-ce-patches"))
            ov = render.overlay(
                x,
                _fit_map(heat[..., j], x.shape[:2]),
                alpha=0.6,
                cmap="viridis",
                normalize="layer",
                image_range=(lo, hi),
            )
            pics.append(_img(render.upscale(ov, max(1, ROW_PX // ov.shape[0])), "jv-ce-heat"))
            bar = W.HTML(_bar(None if imp is None else imp[j], big))
            bar.add_class("jv-ce-importance")
            rows.append(W.HBox([label, *pics, bar], layout=W.Layout(align_items="center")))
        self.rows.children = rows
        self.status.value = f"<b>{c!r}</b> · input #{i}" + (
            "" if imp is None else f" · sorted by importance for class {target}"
        )
        self._draw_detail()

    def _static_pngs(self, j: int) -> list[tuple[bytes, str]]:
        """Concept ``j``'s feature visualisation and top patches as PNGs (cached: they do not
        change with the input or the sorting)."""
        if j not in self._row_pngs:
            lo, hi = self.probe.input_range
            out = []
            if self._fv is not None:
                out.append(
                    (render.png_bytes(preview_image(self._fv[j : j + 1], ROW_PX)), "jv-ce-fv")
                )
            crops = jc.patches(self.probe, self.dataset, self._top, j, fill=lo)
            tiles = [_rgb(p, lo, hi) for p in np.asarray(crops)]
            grid = render.grid(tiles, normalize="none", ncols=3)
            out.append((render.png_bytes(grid), "jv-ce-patches"))
            self._row_pngs[j] = out
        return self._row_pngs[j]

    def _draw_detail(self) -> None:
        c, j = self.concepts, self.selected
        lo, hi = self.probe.input_range
        start = int(self.image_slider.value)
        idx = [(start + t) % len(self.dataset) for t in range(DETAIL_INPUTS)]
        xs = self.dataset[idx]
        heat = jc.heatmap(self.probe, c, xs, layer=self.layer)[..., j]
        tiles = [
            render.overlay(
                x,
                _fit_map(h, x.shape[:2]),
                alpha=0.6,
                cmap="viridis",
                normalize="layer",
                image_range=(lo, hi),
            )
            for x, h in zip(xs, heat, strict=True)
        ]
        tiles = [render.upscale(t, max(1, ROW_PX // t.shape[0])) for t in tiles]
        self.detail.value = render.png_bytes(render.grid(tiles, normalize="none", ncols=3))
        self.detail_caption.value = (
            f"<b>concept {j}</b> on inputs #{idx[0]}–#{idx[-1]} · max code {fmt(float(heat.max()))}"
        )


def _fit_map(h: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A heat map resized (nearest) to divide ``size``."""
    hh, ww = h.shape
    if size[0] % hh == 0 and size[1] % ww == 0:
        return h
    rows = np.arange(size[0]) * hh // size[0]
    cols = np.arange(size[1]) * ww // size[1]
    return h[rows][:, cols]


def _img(rgb: np.ndarray, cls: str) -> W.Image:
    im = W.Image(
        value=render.png_bytes(rgb),
        format="png",
        layout=W.Layout(width=f"{ROW_PX}px", margin="2px"),
    )
    im.add_class(cls)
    return im


def _rgb(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x01 = np.clip((np.asarray(x, np.float32) - lo) / (hi - lo), 0.0, 1.0)
    if x01.shape[-1] != 3:
        x01 = np.repeat(x01[..., :1], 3, axis=-1)
    return render.to_uint8(x01)


def _bar(value: float | None, big: float) -> str:
    if value is None:
        return "<span style='color:#888;font-size:11px'>choose a class to rank</span>"
    w = int(80 * abs(value) / max(big, 1e-12))
    colour = "#2a7" if value >= 0 else "#c44"
    return (
        f"<div style='display:flex;align-items:center;font-size:11px'>"
        f"<div style='width:{w}px;height:10px;background:{colour}'></div>"
        f"&nbsp;{fmt(value)}</div>"
    )
