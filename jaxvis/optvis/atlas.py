"""Activation atlas (Carter et al. 2019): what a layer sees across a whole data set, on one map.

1. *Collect*: the activations of many images at one layer, one vector per image (``samples=
   "pooled"``, the mean over positions) or per sampled position (``samples=k``: ``k`` random
   positions of each image's map).
2. *Lay out*: the vectors (scaled to unit length, so distances follow the cosine) in 2-D:
   exact t-SNE as one jitted program (``method="tsne"``, the default: a second or so for a few
   thousand points), UMAP from ``umap-learn`` (``method="umap"``, for larger sets; its first
   call in a process compiles numba for ~40 s), or coordinates of your own (``layout=``).
3. *Bin*: the layout's bounding box into a ``grid`` of cells; each occupied cell (at least
   ``min_count`` samples) gets the mean activation vector of its samples.
4. *Render*: every cell's mean vector as a :func:`~jaxvis.optvis.objectives.direction`
   objective, all cells in one vectorised :func:`jaxvis.optvis.render` run.

Class information comes from ``labels`` (``(images, labels)`` batches or a ``labels=`` array)
or, without labels, from the model's own predictions: ``classes=[c, ...]`` keeps only those
images (a class-filtered atlas), and every cell knows its samples' class shares.

Example::

    zoo, data = jv.zoo.load("shapes_cnn"), jv.zoo.load_data("shapes_cnn")
    at = jv.optvis.atlas(zoo.probe, (data.x_test, data.y_test), "act5", grid=(8, 8))
    at.counts                # (8, 8) samples per cell
    at.samples(3, 4)         # image indices of the samples in cell (3, 4)
    at.class_share(3, 4)     # their class fractions
    at                       # in a notebook: the atlas image
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxvis import render as _render
from jaxvis.optvis import objectives as _obj
from jaxvis.optvis._tsne import tsne
from jaxvis.optvis.engine import Progress, RenderResult, render

__all__ = ["METHODS", "Atlas", "AtlasProgress", "atlas"]

#: 2-D layout methods.
METHODS = ("tsne", "umap")
#: A tab10-like palette for class colours (cycled beyond ten classes).
PALETTE = np.asarray(
    [
        [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
        [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    ],
    np.uint8,
)  # fmt: skip


@dataclass
class AtlasProgress:
    """Passed to ``atlas``'s ``callback``: ``stage`` is ``"collect"`` (``done``/``total``
    images, total None when unknown), ``"layout"`` or ``"render"`` (steps)."""

    stage: str
    done: int
    total: int | None


@dataclass
class Atlas:
    """What :func:`atlas` returns.

    Attributes:
        layer: the layer; ``grid``: ``(rows, cols)``.
        coords: ``(S, 2)`` layout of each sample, scaled into ``[0, 1]``.
        sample_image: ``(S,)`` the image (index in the stream of batches) each sample is from.
        sample_cell: ``(S,)`` the flat cell ``row * cols + col`` of each sample.
        counts: ``(rows, cols)`` samples per cell.
        cells: ``(M, 2)`` ``(row, col)`` of the rendered (occupied) cells, row-major order.
        directions: ``(M, C)`` each rendered cell's mean activation vector.
        cell_images: ``(M, H, W, C)`` the rendered images in ``[0, 1]`` (None for ``steps=0``).
        labels: ``(N,)`` class of every image seen (the given labels, else the prediction);
            ``predictions``: ``(N,)`` the model's class for every image; ``class_names``.
        class_counts: ``(rows, cols, K)`` samples of each class per cell.
        render: the :class:`~jaxvis.optvis.RenderResult`; ``stopped``: stopped early.
    """

    layer: str
    grid: tuple[int, int]
    coords: np.ndarray
    sample_image: np.ndarray
    sample_cell: np.ndarray
    counts: np.ndarray
    cells: np.ndarray
    directions: np.ndarray
    cell_images: np.ndarray | None
    labels: np.ndarray
    predictions: np.ndarray
    class_names: tuple[str, ...]
    class_counts: np.ndarray
    render: RenderResult | None = None
    stopped: bool = False

    def _cell(self, row: int, col: int) -> int:
        rows, cols = self.grid
        for v, n, name in ((row, rows, "row"), (col, cols, "col")):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n:
                raise ValueError(f"{name} must be an integer in 0..{n - 1}, got {v!r}")
        return int(row) * cols + int(col)

    def samples(self, row: int, col: int) -> np.ndarray:
        """Image indices of the samples in cell ``(row, col)`` (each image once, sorted; none
        for a cell left empty by ``min_count``)."""
        flat = self._cell(row, col)
        if self.counts.reshape(-1)[flat] == 0:
            return np.zeros((0,), np.int64)
        return np.unique(self.sample_image[self.sample_cell == flat])

    def class_share(self, row: int, col: int) -> np.ndarray:
        """``(K,)`` fraction of the cell's samples in each class (zeros for an empty cell)."""
        counts = self.class_counts.reshape(-1, self.class_counts.shape[-1])[self._cell(row, col)]
        total = counts.sum()
        return counts / total if total else counts.astype(np.float64)

    def majority(self) -> np.ndarray:
        """``(rows, cols)`` the most frequent class of each cell, -1 where empty."""
        major = self.class_counts.argmax(-1)
        return np.where(self.counts > 0, major, -1)

    def image_of(self, row: int, col: int) -> np.ndarray | None:
        """The rendered ``(H, W, C)`` image of cell ``(row, col)``, or None if it has none."""
        self._cell(row, col)
        if self.cell_images is None:
            return None
        hit = np.flatnonzero((self.cells[:, 0] == row) & (self.cells[:, 1] == col))
        return self.cell_images[hit[0]] if hit.size else None

    def image(self, tile: int | None = None, frame: bool = False) -> np.ndarray:
        """The atlas as one uint8 RGB image: cell images on the grid, empty cells white.

        ``frame=True`` draws each cell in its majority class's colour (a 2-px border); an atlas
        built with ``steps=0`` shows each occupied cell filled with that colour instead.
        """
        rows, cols = self.grid
        major = self.majority().reshape(-1)
        if self.cell_images is None:
            h = w = 8
            tiles = np.ones((rows * cols, h, w, 3), np.float32)
            for flat in np.flatnonzero(major >= 0):
                tiles[flat] = PALETTE[major[flat] % len(PALETTE)] / 255.0
        else:
            h, w, c = self.cell_images.shape[1:]
            tiles = np.ones((rows * cols, h, w, 3), np.float32)
            imgs = self.cell_images if c == 3 else np.repeat(self.cell_images[..., :1], 3, -1)
            tiles[self.cells[:, 0] * cols + self.cells[:, 1]] = imgs
            if frame:
                for flat in np.flatnonzero(major >= 0):
                    colour = PALETTE[major[flat] % len(PALETTE)] / 255.0
                    t = tiles[flat]
                    t[:2], t[-2:], t[:, :2], t[:, -2:] = colour, colour, colour, colour
        scale = max(1, -(-(tile or 48) // max(h, w)))
        return _render.grid(tiles, ncols=cols, normalize="none", spacing=1, scale=scale)

    def _repr_png_(self) -> bytes:
        return _render.png_bytes(self.image())

    def neighbour_agreement(self, k: int = 4) -> float:
        """Mean over occupied cells of the fraction of their ``k`` nearest occupied cells
        (grid distance, ties broken by position) with the same majority class."""
        return _agreement(self.majority(), k)

    def __repr__(self) -> str:
        rows, cols = self.grid
        return (
            f"Atlas({self.layer!r}, {rows}x{cols} grid, {len(self.cells)} occupied cells, "
            f"{len(self.sample_cell)} samples)"
        )


def atlas(
    probe: Any,
    batches: Any,
    layer: str,
    grid: tuple[int, int] | int = (8, 8),
    *,
    labels: Any = None,
    classes: Sequence[int] | None = None,
    samples: str | int = "pooled",
    method: str = "tsne",
    layout: Any = None,
    min_count: int = 1,
    max_images: int | None = 2000,
    steps: int = 256,
    seed: int = 0,
    batch_size: int = 256,
    callback: Callable[[AtlasProgress], Any] | None = None,
    **render_options: Any,
) -> Atlas | None:
    """An activation atlas of ``layer`` over the images of ``batches``.

    Args:
        probe: a :class:`jaxvis.Probe`.
        batches: one array ``(N, H, W, C)``, an ``(images, labels)`` pair of arrays, or an
            iterable of batches (arrays, ``(images, labels)`` tuples or ``{"image": ...,
            "label": ...}`` dicts), in the model's input range.
        layer: a layer with outputs ``(H, W, C)``, ``(C,)`` or tokens over a patch grid.
        grid: ``(rows, cols)`` of the atlas (an int for a square one).
        labels: ``(N,)`` classes of the images (instead of labels in ``batches``).
        classes: keep only images of these classes (labels, else the model's predictions).
        samples: ``"pooled"`` (one vector per image, the mean over positions) or an int ``k``
            (``k`` random positions per image, seeded by ``seed``).
        method: ``"tsne"`` or ``"umap"``; ignored when ``layout`` is given.
        layout: ``(S, 2)`` coordinates of your own, one per sample (after filtering).
        min_count: cells with fewer samples are left empty.
        max_images: stop collecting after this many images (None: all).
        steps, seed, render_options: for :func:`jaxvis.optvis.render` (``param``,
            ``transforms``, ``lr`` ...); ``steps=0`` lays out and bins without rendering.
        batch_size: batch size used when ``batches`` is one array.
        callback: called with an :class:`AtlasProgress`; returning ``False`` stops: while
            collecting or laying out, ``atlas`` returns None; while rendering, the atlas keeps
            the images so far (``stopped=True``).

    Example::

        at = atlas(probe, (x, y), "act5", grid=6, steps=64)
        at.image().shape      # the combined uint8 image
    """
    rows, cols = _grid(grid)
    if samples != "pooled" and (
        isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1
    ):
        raise ValueError(f"samples must be 'pooled' or a positive integer, got {samples!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0 (0: no render), got {steps!r}")
    for value, name in ((min_count, "min_count"), (batch_size, "batch_size")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if max_images is not None and (not isinstance(max_images, (int, np.integer)) or max_images < 1):
        raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")
    info = probe.layer(layer)  # unknown names raise with suggestions
    if len(info.shape) not in (1, 2, 3):
        raise ValueError(
            f"layer {layer!r} has outputs {info.shape}: an atlas needs (H, W, C), (C,) or tokens"
        )
    wanted = None if classes is None else _classes(classes)
    say = callback or (lambda p: None)

    collected = _collect(probe, batches, layer, labels, samples, max_images, batch_size, seed, say)
    if collected is None:
        return None
    vectors, sample_image, image_labels, predictions = collected
    class_of = image_labels if image_labels is not None else predictions
    if classes is not None:
        keep = np.isin(class_of[sample_image], wanted)
        if not keep.any():
            raise ValueError(f"no image of classes {wanted.tolist()} among the images seen")
        vectors, sample_image = vectors[keep], sample_image[keep]

    if say(AtlasProgress("layout", 0, 1)) is False:
        return None
    coords = _layout(vectors, method, layout, seed)
    cell_rc = np.minimum((coords * [rows, cols]).astype(np.int64), [rows - 1, cols - 1])
    sample_cell = cell_rc[:, 0] * cols + cell_rc[:, 1]
    counts = np.bincount(sample_cell, minlength=rows * cols)
    class_names = tuple(getattr(probe, "class_names", None) or ())
    n_classes = max(len(class_names), int(class_of.max()) + 1)
    class_counts = np.zeros((rows * cols, n_classes), np.int64)
    np.add.at(class_counts, (sample_cell, class_of[sample_image]), 1)
    counts = np.where(counts >= min_count, counts, 0)
    class_counts[counts == 0] = 0
    occupied = np.flatnonzero(counts)
    sums = np.zeros((rows * cols, vectors.shape[1]), np.float64)
    np.add.at(sums, sample_cell, vectors)
    directions = (sums[occupied] / counts[occupied, None]).astype(np.float32)
    cells = np.stack([occupied // cols, occupied % cols], axis=1)
    if say(AtlasProgress("layout", 1, 1)) is False:
        return None

    res = _render_cells(probe, layer, directions, steps, seed, say, render_options)
    return Atlas(
        layer=layer,
        grid=(rows, cols),
        coords=coords,
        sample_image=sample_image,
        sample_cell=sample_cell,
        counts=counts.reshape(rows, cols),
        cells=cells,
        directions=directions,
        cell_images=None if res is None else res.images[: len(cells)],
        labels=class_of,
        predictions=predictions,
        class_names=class_names,
        class_counts=class_counts.reshape(rows, cols, n_classes),
        render=res,
        stopped=res is not None and res.stopped,
    )


# ---------------------------------------------------------------- pieces

#: The render batch is padded to a multiple of this (repeating the first cell), so atlases
#: with a few more or fewer occupied cells reuse one compiled program.
PAD_CELLS = 8


def _render_cells(
    probe: Any,
    layer: str,
    directions: np.ndarray,
    steps: int,
    seed: int,
    say: Callable[[AtlasProgress], Any],
    options: dict[str, Any],
) -> RenderResult | None:
    """One vectorised render of every cell's direction; None when ``steps == 0``."""
    if steps == 0:
        return None
    m = len(directions)
    padded = np.concatenate([directions, np.repeat(directions[:1], -m % PAD_CELLS, axis=0)])

    def on_chunk(p: Progress) -> Any:
        return say(AtlasProgress("render", p.step, p.steps))

    return render(
        probe, _obj.direction(layer, padded), steps=steps, seed=seed, callback=on_chunk, **options
    )


def _grid(grid: Any) -> tuple[int, int]:
    pair = (grid, grid) if isinstance(grid, (int, np.integer)) else grid
    try:
        rows, cols = (int(v) for v in pair)
        ok = all(not isinstance(v, bool) and int(v) == v and v >= 1 for v in pair)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"grid must be (rows, cols) of positive integers or one, got {grid!r}")
    return rows, cols


def _classes(classes: Any) -> np.ndarray:
    try:
        wanted = np.asarray(list(classes))
    except TypeError:
        wanted = np.asarray([])
    if wanted.ndim != 1 or wanted.size == 0 or wanted.dtype.kind not in "iu":
        raise ValueError(f"classes must be a non-empty list of class indices, got {classes!r}")
    return wanted.astype(np.int64)


def _batches(batches: Any, labels: Any, batch_size: int) -> Iterable[tuple[Any, Any]]:
    """``(images, labels or None)`` pairs from the forms :func:`atlas` accepts."""
    pair = isinstance(batches, tuple) and len(batches) == 2 and hasattr(batches[0], "ndim")
    if pair and batches[0].ndim == 4:  # one (images, labels) pair of arrays
        batches, labels = batches
    if hasattr(batches, "ndim"):
        if batches.ndim != 4:
            raise ValueError(
                f"batches must be (N, H, W, C) images or an iterable of batches, got an array "
                f"of shape {tuple(batches.shape)}"
            )
        y = None if labels is None else np.asarray(labels)
        if y is not None and y.shape != (batches.shape[0],):
            raise ValueError(f"labels must have shape ({batches.shape[0]},), got {y.shape}")
        for s in range(0, batches.shape[0], batch_size):
            yield batches[s : s + batch_size], None if y is None else y[s : s + batch_size]
        return
    if labels is not None:
        raise ValueError("labels= goes with one array of images; put labels in the batches")
    if isinstance(batches, (str, bytes)) or not isinstance(batches, Iterable):
        raise TypeError(
            f"batches must be an array or an iterable of batches, got {type(batches).__name__}"
        )
    for item in batches:
        if isinstance(item, (tuple, list)):
            yield item[0], (item[1] if len(item) > 1 else None)
        elif isinstance(item, dict):
            yield item.get("image", item.get("x")), item.get("label", item.get("y"))
        else:
            yield item, None


def _collect(
    probe: Any,
    batches: Any,
    layer: str,
    labels: Any,
    samples: str | int,
    max_images: int | None,
    batch_size: int,
    seed: int,
    say: Callable[[AtlasProgress], Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray] | None:
    rng = np.random.default_rng(seed)
    total = getattr(batches, "shape", (None,))[0]
    if isinstance(batches, tuple) and len(batches) == 2 and hasattr(batches[0], "shape"):
        total = batches[0].shape[0]
    if max_images is not None and total is not None:
        total = min(total, max_images)
    vecs, owners, ys, preds = [], [], [], []
    seen = 0
    have_labels: bool | None = None
    for x, y in _batches(batches, labels, batch_size):
        if max_images is not None and seen >= max_images:
            break
        x = np.asarray(x, np.float32)
        if max_images is not None:
            x = x[: max_images - seen]
            y = None if y is None else np.asarray(y)[: len(x)]
        if have_labels is None:
            have_labels = y is not None
        if have_labels != (y is not None):
            raise ValueError("either every batch has labels or none does")
        out, acts = probe.run(x, [layer])
        a = np.asarray(acts[layer], np.float32)
        preds.append(np.asarray(out).argmax(-1))
        if y is not None:
            ys.append(np.asarray(y, np.int64).reshape(-1))
        idx = seen + np.arange(len(x))
        flat = a.reshape(len(x), -1, a.shape[-1])  # (B, positions, C)
        if samples == "pooled":
            vecs.append(flat.mean(1))
            owners.append(idx)
        else:
            pos = rng.integers(0, flat.shape[1], size=(len(x), int(samples)))
            vecs.append(np.take_along_axis(flat, pos[..., None], axis=1).reshape(-1, a.shape[-1]))
            owners.append(np.repeat(idx, int(samples)))
        seen += len(x)
        if say(AtlasProgress("collect", seen, total)) is False:
            return None
    if seen == 0:
        raise ValueError("batches is empty: expected at least one image")
    vectors = np.concatenate(vecs)
    return (
        vectors,
        np.concatenate(owners),
        np.concatenate(ys) if ys else None,
        np.concatenate(preds).astype(np.int64),
    )


def _layout(vectors: np.ndarray, method: str, layout: Any, seed: int) -> np.ndarray:
    """``(S, 2)`` coordinates scaled into ``[0, 1]``."""
    if layout is not None:
        xy = np.asarray(layout, np.float64)
        if xy.shape != (len(vectors), 2):
            raise ValueError(
                f"layout must have shape ({len(vectors)}, 2), one point per sample, got {xy.shape}"
            )
    else:
        unit = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-8)
        if method == "umap":
            import umap  # optional dependency: umap-learn

            reducer = umap.UMAP(
                n_neighbors=15, min_dist=0.1, metric="cosine", random_state=seed, n_jobs=1
            )
            xy = np.asarray(reducer.fit_transform(unit), np.float64)
        else:
            xy = tsne(unit)
    lo, hi = xy.min(0), xy.max(0)
    return (xy - lo) / np.where(hi > lo, hi - lo, 1.0)


def _agreement(major: np.ndarray, k: int) -> float:
    rc = np.argwhere(major >= 0)
    if len(rc) < 2:
        return float("nan")
    cls = major[rc[:, 0], rc[:, 1]]
    d = np.abs(rc[:, None] - rc[None]).max(-1).astype(np.float64)  # Chebyshev grid distance
    np.fill_diagonal(d, np.inf)
    k = min(k, len(rc) - 1)
    near = np.argsort(d, axis=1, kind="stable")[:, :k]
    return float((cls[near] == cls[:, None]).mean())
