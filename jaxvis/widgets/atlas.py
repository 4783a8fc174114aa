"""``ActivationAtlas``: an activation atlas (``jv.optvis.atlas``) you can zoom and click.

Pick a layer, a grid size, a class (or all) and the render steps, press Build: the atlas is
collected, laid out and rendered in a background thread with a progress bar (Stop ends it:
while collecting or laying out nothing is kept, while rendering the images so far are). The
atlas is a :class:`~jaxvis.widgets.ChannelGrid` (the repo's anywidget): hover a cell for its
sample count and majority class, click it to see the data set images in it and its class
attribution (the share of each class among its samples); the zoom slider scales the atlas.

Example::

    zoo, data = jv.zoo.load("shapes_cnn"), jv.zoo.load_data("shapes_cnn")
    aa = jv.widgets.ActivationAtlas(zoo.probe, data.x_test[:600], labels=data.y_test[:600])
    aa                        # press Build; or aa.build(wait=True); aa.select(2, 3)
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as W
import numpy as np

from jaxvis import optvis, render
from jaxvis.layout import default_spatial_layer, unit_layers
from jaxvis.optvis.atlas import PALETTE, Atlas, AtlasProgress
from jaxvis.widgets._common import check_images, check_probe
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML
from jaxvis.widgets.channel_grid import ChannelGrid

__all__ = ["ActivationAtlas"]

#: At most this many of a cell's images are shown when it is clicked.
MAX_SHOWN = 16


class ActivationAtlas(StaticHTML, W.VBox):
    """Build, show and explore an activation atlas of a data set.

    Args:
        probe: a :class:`jaxvis.Probe`.
        images: ``(N, H, W, C)`` data set images in the model's input range.
        labels: ``(N,)`` their classes (default: the model's predictions).
        layer: the layer (default :func:`jaxvis.layout.default_spatial_layer`).
        grid: cells per side; ``steps``: render steps per build.
        atlas_options: more keyword arguments for :func:`jaxvis.optvis.atlas`.

    Example::

        aa = ActivationAtlas(probe, x, labels=y, grid=6, steps=64)
        aa.build(wait=True); aa.select(*aa.atlas.cells[0]); aa.cell_images.shape
    """

    def __init__(
        self,
        probe: Any,
        images: Any,
        *,
        labels: Any = None,
        layer: str | None = None,
        grid: int = 8,
        steps: int = 128,
        **atlas_options: Any,
    ) -> None:
        self.probe = check_probe(probe)
        self.images = check_images(images, self.probe)
        if labels is not None:
            labels = np.asarray(labels, np.int64).reshape(-1)
            if labels.shape != (len(self.images),):
                raise ValueError(
                    f"labels must have one entry per image ({len(self.images)}), got {labels.shape}"
                )
        self.labels = labels
        self.atlas_options = atlas_options
        self.atlas: Atlas | None = None
        self.cell_images = np.zeros((0, *self.images.shape[1:]), np.float32)
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error = ErrorBox()

        names = list(unit_layers(self.probe))
        start = layer or default_spatial_layer(self.probe) or (names[-1] if names else None)
        if layer is not None:
            self.probe.layer(layer)  # unknown names raise with suggestions
        self.layer_select = W.Dropdown(options=names, value=start, description="layer")
        self.layer_select.add_class("jv-atlas-layer")
        self.grid_slider = W.IntSlider(
            grid, min=2, max=max(24, grid), description="grid", continuous_update=False
        )
        self.grid_slider.add_class("jv-atlas-grid-size")
        class_names = self.probe.class_names or ()
        n_classes = max(len(class_names), 0 if labels is None else int(labels.max()) + 1)
        options = [("all classes", -1)] + [
            (f"{k}: {class_names[k] if k < len(class_names) else k}", k) for k in range(n_classes)
        ]
        self.class_select = W.Dropdown(options=options, value=-1, description="classes")
        self.class_select.add_class("jv-atlas-class")
        self.steps = W.IntSlider(
            steps, min=0, max=max(1024, steps), step=8, description="steps", continuous_update=False
        )
        self.steps.add_class("jv-atlas-steps")
        self.build_button = W.Button(description="Build", button_style="primary", icon="play")
        self.build_button.add_class("jv-atlas-build")
        self.stop_button = W.Button(
            description="Stop", button_style="warning", icon="stop", disabled=True
        )
        self.stop_button.add_class("jv-atlas-stop")
        self.progress = W.IntProgress(0, min=0, max=1, description="")
        self.progress.add_class("jv-atlas-progress")
        self.status = W.HTML("")
        self.status.add_class("jv-atlas-status")
        self.grid = ChannelGrid()
        self.grid.add_class("jv-atlas-map")
        self.zoom = W.FloatSlider(
            2.0, min=0.5, max=8.0, step=0.25, description="zoom", continuous_update=True
        )
        self.zoom.add_class("jv-atlas-zoom")
        W.jslink((self.zoom, "value"), (self.grid, "zoom"))
        self.cell_title = W.HTML("")
        self.cell_title.add_class("jv-atlas-cell-title")
        self.cell_view = W.Image(format="png")
        self.cell_view.add_class("jv-atlas-cell-images")
        self.attribution = W.HTML("")
        self.attribution.add_class("jv-atlas-attribution")

        controls = W.HBox(
            [W.VBox([self.layer_select, self.grid_slider]), W.VBox([self.class_select, self.steps])]
        )
        buttons = W.HBox([self.build_button, self.stop_button, self.progress])
        detail = W.VBox([self.cell_title, self.cell_view, self.attribution])
        view = W.HBox(
            [W.VBox([self.zoom, self.grid]), detail], layout=W.Layout(align_items="flex-start")
        )
        super().__init__([controls, buttons, self.status, view, self.error])
        self.add_class("jv-activation-atlas")

        self.build_button.on_click(self.error.guard(lambda _: self.build()))
        self.stop_button.on_click(self.error.guard(lambda _: self.stop()))
        self.grid.observe(self.error.guard(self._on_click), "selected")

    # ------------------------------------------------------------ building

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`jaxvis.optvis.atlas` from the controls."""
        cls = self.class_select.value
        return {
            "grid": int(self.grid_slider.value),
            "labels": self.labels,
            "classes": None if cls < 0 else [int(cls)],
            "steps": int(self.steps.value),
            **self.atlas_options,
        }

    def build(self, wait: bool = False) -> None:
        """Build the atlas in a background thread (``wait=True`` blocks until it ends)."""
        if self.running:
            raise RuntimeError("a build is in progress: press Stop first")
        if self.layer_select.value is None:
            raise ValueError("this probe has no layer to build an atlas of")
        options = self.options()
        self._stop.clear()
        self.progress.value, self.progress.max = 0, len(self.images)
        self.status.value = "collecting activations…"
        self.build_button.disabled, self.stop_button.disabled = True, False
        self.thread = threading.Thread(target=self._work, args=(options,), daemon=True)
        self.thread.start()
        if wait:
            self.thread.join()

    def stop(self) -> None:
        """Ask the build to stop at its next progress report."""
        self._stop.set()
        self.status.value = "stopping…"

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current build ends."""
        if self.thread is not None:
            self.thread.join(timeout)

    def _on_progress(self, p: AtlasProgress) -> bool:
        if p.stage == "collect":
            self.progress.max, self.progress.value = p.total or p.done, p.done
            self.status.value = f"collecting activations: {p.done} images"
        elif p.stage == "layout":
            self.status.value = "laying out in 2-D (t-SNE)…" if p.done == 0 else "rendering…"
        else:
            self.progress.max, self.progress.value = p.total or p.done, p.done
            self.status.value = f"rendering the cells: {p.done} / {p.total} steps"
        return not self._stop.is_set()

    def _work(self, options: dict[str, Any]) -> None:
        try:
            result = optvis.atlas(
                self.probe,
                self.images,
                self.layer_select.value,
                callback=self._on_progress,
                **options,
            )
            if result is None:
                self.status.value = "stopped before rendering: nothing kept"
                return
            self.atlas = result
            self._show_atlas()
            verb = "stopped" if result.stopped else "done"
            self.status.value = (
                f"{verb}: {len(result.cells)} cells of {result.grid[0]}x{result.grid[1]}, "
                f"{len(result.sample_cell)} samples · click a cell"
            )
        except Exception as exc:  # noqa: BLE001 - shown in place, the widget stays usable
            self.error.show(exc, "build")
            self.status.value = "failed"
        finally:
            self.build_button.disabled, self.stop_button.disabled = False, True

    def _show_atlas(self) -> None:
        at = self.atlas
        rows, cols = at.grid
        major = at.majority().reshape(-1)
        names = at.class_names
        labels = []
        for flat, n in enumerate(at.counts.reshape(-1)):
            if n == 0:
                labels.append(f"({flat // cols}, {flat % cols}): empty")
            else:
                k = int(major[flat])
                name = names[k] if k < len(names) else str(k)
                labels.append(f"({flat // cols}, {flat % cols}): {n} samples, mostly {name}")
        image = at.image(frame=True)
        self.grid.selected = -1
        self.grid.set_image(
            image,
            rows=rows,
            cols=cols,
            tile_h=(image.shape[0] - (rows - 1)) // rows,  # at.image: 1 px between cells
            tile_w=(image.shape[1] - (cols - 1)) // cols,
            spacing=1,
            labels=labels,
            zoom=float(self.zoom.value),
        )

    # ------------------------------------------------------------ cells

    def select(self, row: int, col: int) -> None:
        """Show cell ``(row, col)``'s images and class attribution, as a click does."""
        if self.atlas is None:
            raise ValueError("no atlas yet: press Build first")
        self.atlas._cell(int(row), int(col))  # range check with a clear message
        self.grid.selected = int(row) * self.atlas.grid[1] + int(col)

    def _on_click(self, change: Any) -> None:
        at, flat = self.atlas, int(self.grid.selected)
        if at is None or flat < 0:
            return
        row, col = divmod(flat, at.grid[1])
        members = at.samples(row, col)
        self.cell_images = self.images[members[:MAX_SHOWN]]
        self.cell_title.value = f"<b>cell ({row}, {col})</b>: {len(members)} image(s)" + (
            f", the first {MAX_SHOWN} shown" if len(members) > MAX_SHOWN else ""
        )
        if len(members):
            lo, hi = np.asarray(self.probe.input_low), np.asarray(self.probe.input_high)
            tiles = np.clip((self.cell_images - lo) / (hi - lo), 0, 1)
            if tiles.shape[-1] not in (1, 3):
                tiles = tiles[..., :1]
            scale = max(1, -(-48 // tiles.shape[1]))
            grid = render.grid(tiles, ncols=8, normalize="none", spacing=2, scale=scale)
            self.cell_view.value = render.png_bytes(grid)
        else:
            self.cell_view.value = b""
        self.attribution.value = self._attribution_html(row, col)

    def _attribution_html(self, row: int, col: int) -> str:
        at = self.atlas
        share = at.class_share(row, col)
        names = at.class_names
        rows = []
        for k in np.argsort(-share)[:5]:
            if share[k] <= 0:
                break
            name = html.escape(names[k] if k < len(names) else str(k))
            r, g, b = PALETTE[k % len(PALETTE)]
            rows.append(
                f'<div class="jv-atlas-class-row" data-class="{k}">'
                f'<span style="display:inline-block;width:{int(120 * share[k])}px;height:10px;'
                f'background:rgb({r},{g},{b})"></span> {name} {100 * share[k]:.0f}%</div>'
            )
        return "<b>class attribution</b>" + "".join(rows) if rows else ""
