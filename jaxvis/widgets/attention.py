"""``AttentionExplorer``: where a vision transformer looks, per block, head and query patch.

Pick an image, a method (the attention of one query token in one block, attention rollout, or
gradient-weighted rollout for a class), a block and a head (or their mean); click a patch of
the picture to make it the query (the "class token" button goes back to the class token). The
picture is a :class:`~jaxvis.widgets.ChannelGrid` whose tiles are the patches, so hover names
the patch and its value. All maths comes from :mod:`jaxvis.attribution`; moving the block,
head, query, fusion, discard ratio or class reuses the compiled function.

Example::

    jv.widgets.AttentionExplorer(probe, images)
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import numpy as np

from jaxvis import attribution as A
from jaxvis import render
from jaxvis._protocols import ProbeLike
from jaxvis.widgets._common import check_images, check_probe, class_name, fmt, set_class_options
from jaxvis.widgets._errors import ErrorBox
from jaxvis.widgets._export import StaticHTML
from jaxvis.widgets.channel_grid import ChannelGrid

__all__ = ["AttentionExplorer"]

#: Method label -> name in :mod:`jaxvis.attribution`.
METHOD_LABELS = {
    "attention of a query": "attention_map",
    "attention rollout": "attention_rollout",
    "gradient rollout": "gradient_rollout",
}
VIEW_PX = 256


class AttentionExplorer(StaticHTML, W.VBox):
    """Attention maps, rollout and gradient rollout of a ViT over a set of images.

    Args:
        probe: a :class:`jaxvis.Probe` with attention layers (see :mod:`jaxvis.attribution`).
        images: ``(N, H, W, C)`` float images in ``probe.input_range``.
        method: initial method, a value of ``METHOD_LABELS``.

    Attributes worth reading in tests: ``picture`` (the clickable :class:`ChannelGrid`; a click
    sets ``picture.selected`` to the patch index), ``query``, ``result`` (the last
    :class:`jaxvis.attribution.Attribution`), ``overlay_png``, ``errors``. CSS: ``jv-attention``.

    Example::

        w = jv.widgets.AttentionExplorer(probe, x)
        w.picture.selected = 5          # as a click on patch 5 would
        w.head.value = 2; w.method.value = "attention_rollout"
    """

    def __init__(self, probe: ProbeLike, images: Any, *, method: str = "attention_map") -> None:
        self.probe = check_probe(probe)
        self.images = check_images(images, self.probe)
        if method not in METHOD_LABELS.values():
            raise ValueError(
                f"method must be one of {', '.join(METHOD_LABELS.values())}, got {method!r}"
            )
        self.layers = A.attention_layers(self.probe)
        if not self.layers:
            raise ValueError(
                "probe has no attention layers: AttentionExplorer needs Flax attention modules "
                "or weights marked with jv.tap(name, w, kind='attention')"
            )
        self.grid = self.probe.layout(self.layers[0]).grid
        if self.grid is None:
            raise ValueError(
                f"the attention layers' tokens do not form a patch grid for images of shape "
                f"{self.probe.input_shape}: pass jv.Probe(..., token_grid=(rows, cols))"
            )
        self.errors = ErrorBox()
        self.result: A.Attribution | None = None
        self.overlay_png = b""
        self._busy = False

        style = {"description_width": "80px"}
        lay = W.Layout(width="300px")
        self.index = W.IntSlider(
            0,
            0,
            len(self.images) - 1,
            description="image",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.method = W.Dropdown(
            options=list(METHOD_LABELS.items()),
            value=method,
            description="method",
            style=style,
            layout=lay,
        )
        self.block = W.Dropdown(
            options=[(f"block {i}", i) for i in range(len(self.layers))],
            value=len(self.layers) - 1,
            description="block",
            style=style,
            layout=lay,
        )
        heads = self.probe.layer(self.layers[0]).shape[0]
        self.head = W.Dropdown(
            options=[("mean", -1)] + [(f"head {h}", h) for h in range(heads)],
            value=-1,
            description="head",
            style=style,
            layout=lay,
        )
        self.fusion = W.ToggleButtons(
            options=list(A.HEAD_FUSIONS),
            value="mean",
            description="fuse heads",
            style={"description_width": "80px", "button_width": "60px"},
        )
        self.discard = W.FloatSlider(
            0.0,
            min=0.0,
            max=0.95,
            step=0.05,
            description="discard",
            style=style,
            layout=lay,
            continuous_update=False,
        )
        self.target = W.Dropdown(description="class", style=style, layout=lay)
        self.cls = W.Button(description="class token", tooltip="query the class token")
        self.opacity = W.FloatSlider(
            0.6, min=0.0, max=1.0, step=0.05, description="opacity", style=style, layout=lay
        )
        for w, name in [
            (self.index, "index"),
            (self.method, "method"),
            (self.block, "block"),
            (self.head, "head"),
            (self.fusion, "fusion"),
            (self.discard, "discard"),
            (self.target, "class"),
            (self.cls, "cls"),
            (self.opacity, "opacity"),
        ]:
            w.add_class(f"jv-attention-{name}")
        self.picture = ChannelGrid()
        self.picture.add_class("jv-attention-image")
        self.caption = W.HTML()
        self.caption.add_class("jv-attention-caption")
        if not self.grid.prefix:  # no class token: start from the centre patch
            self.cls.layout.display = "none"
            self.picture.selected = (self.grid.rows // 2) * self.grid.cols + self.grid.cols // 2

        controls = W.VBox(
            [
                self.index,
                self.method,
                self.block,
                self.head,
                self.fusion,
                self.discard,
                self.target,
                self.cls,
                self.opacity,
            ]
        )
        body = W.HBox([controls, self.picture], layout=W.Layout(align_items="flex-start"))
        super().__init__([self.caption, body, self.errors])
        self.add_class("jv-attention")

        self.index.observe(self.errors.guard(self._on_image), "value")
        for w in (self.method, self.block, self.head, self.fusion, self.discard, self.target):
            w.observe(self.errors.guard(self._on_compute), "value")
        self.picture.observe(self.errors.guard(self._on_compute), "selected")
        self.opacity.observe(self.errors.guard(self._on_draw), "value")
        self.cls.on_click(self.errors.guard(self._on_cls))
        self.errors.guard(self._on_image)(None)

    # ------------------------------------------------------------------ state

    @property
    def x(self) -> np.ndarray:
        """The current image as a batch of one."""
        return self.images[self.index.value : self.index.value + 1]

    @property
    def query(self) -> str | tuple[int, int]:
        """``"cls"`` or the clicked patch ``(row, col)``."""
        selected = self.picture.selected
        return "cls" if selected < 0 else divmod(int(selected), self.grid.cols)

    def compute(self) -> A.Attribution:
        """Run the chosen method on the current image with the current settings."""
        method, x = self.method.value, self.x
        if method == "attention_map":
            head = None if self.head.value < 0 else int(self.head.value)
            return A.attention_map(
                self.probe, x, layer=int(self.block.value), head=head, query=self.query
            )
        if method == "attention_rollout":
            return A.attention_rollout(
                self.probe, x, head_fusion=self.fusion.value, discard_ratio=self.discard.value
            )
        return A.gradient_rollout(self.probe, x, int(self.target.value))

    # ------------------------------------------------------------------ callbacks

    def _on_image(self, _change: Any) -> None:
        self._busy = True
        try:
            set_class_options(self.target, self.probe, self.x)
        finally:
            self._busy = False
        self._on_compute(None)

    def _on_cls(self, _button: Any) -> None:
        self.picture.selected = -1  # recomputes through the observer

    def _on_compute(self, _change: Any) -> None:
        if self._busy or self.target.value is None:
            return
        method = self.method.value
        query_map = method == "attention_map"
        self.block.disabled = self.head.disabled = not query_map
        self.cls.disabled = not query_map
        self.fusion.disabled = self.discard.disabled = method != "attention_rollout"
        self.target.disabled = method != "gradient_rollout"
        self.result = self.compute()
        self._on_draw(None)

    def _on_draw(self, _change: Any) -> None:
        if self.result is None:
            return
        heat = np.asarray(self.result.values)[0, ..., 0]
        img = self.x[0]
        if img.shape[-1] not in (1, 3):
            img = img[..., :1]  # show the first channel of a multi-channel input
        over = render.overlay(
            img,
            heat,
            alpha=float(self.opacity.value),
            cmap="viridis",
            normalize="layer",
            image_range=self.probe.input_range,
        )
        rows, cols = self.grid.rows, self.grid.cols
        factor = max(1, VIEW_PX // max(img.shape[:2]))
        tile_h, tile_w = -(-img.shape[0] * factor // rows), -(-img.shape[1] * factor // cols)
        ys = np.arange(rows * tile_h) * img.shape[0] // (rows * tile_h)
        xs = np.arange(cols * tile_w) * img.shape[1] // (cols * tile_w)
        picture = np.ascontiguousarray(over[ys][:, xs])  # whole tiles: one per patch
        patch = np.asarray(self.result.extra["layer_map"])[0]
        labels = [f"patch ({r}, {c}): {fmt(patch[r, c])}" for r in range(rows) for c in range(cols)]
        self.picture.set_image(
            picture,
            rows=rows,
            cols=cols,
            tile_h=tile_h,
            tile_w=tile_w,
            spacing=0,
            margin=0,
            labels=labels,
            zoom=1.0,
        )
        self.overlay_png = self.picture.png
        self.caption.value = self._describe()

    def _describe(self) -> str:
        method = self.method.value
        if method == "attention_map":
            query = self.query
            who = "the class token" if query == "cls" else f"patch {query}"
            head = "mean of the heads" if self.head.value < 0 else f"head {self.head.value}"
            what = f"block {self.block.value}, {head}: attention of {who} (click a patch)"
        elif method == "attention_rollout":
            what = (
                f"attention rollout over {len(self.layers)} blocks (heads fused by "
                f"{self.fusion.value}, lowest {100 * self.discard.value:.0f}% dropped)"
            )
        else:
            what = f"gradient rollout for class {class_name(self.probe, int(self.target.value))}"
        return f"image {self.index.value} · {what}"
