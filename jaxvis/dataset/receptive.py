"""Receptive fields: which input pixels each unit of a layer sees, and the patches under units.

The receptive field of a unit is the support of its input gradient: the pixels with a
differentiable path to it. :func:`receptive_field` finds it for any graph (residual branches,
functional ``nn.max_pool``/``nn.avg_pool``, dilations, strides, attention) in one of two ways:

* ``method="settings"`` (the fast path): trace the model up to the layer and compose the
  kernel, stride, dilation and padding of every convolution and pool in the traced program
  with ``size += (k - 1) * jump; start -= pad_low * jump; jump *= stride``. It applies to a
  chain (convolutions, pools, pointwise layers, normalisations) and refuses, naming the
  operation, anything else: a residual join of two paths that see different windows, a
  reshape to tokens, a gather.
* ``method="gradient"`` (exact for any graph): the structural support of the input gradient
  of a few units, border and middle (see :mod:`jaxvis.dataset._structure`; one jitted,
  vmapped program per layer; :func:`input_support` returns these masks), from which
  ``size``, ``stride`` and ``start`` are read and then checked: every probed unit's support
  must be one footprint, translated and cut by the image border, or the result says it is
  not (``equivariant=False``). Where every window reaches past the border (ResNet-18's last
  stage at 224x224: 435 pixels), they are read on a larger image and checked on this one.

``method="auto"`` (the default) takes the fast path where it applies and the gradient
otherwise; both agree wherever both apply (tested). Results are cached per (probe, layer).

Token layers (a ViT) are read on their patch grid (:mod:`jaxvis.layout`): unit ``(row, col)``
is the token of patch ``(row, col)``. A token after global attention sees the whole image:
``is_global`` is then True and ``size`` is the image; the prefix tokens' (class token's)
boxes are in ``prefix_boxes``.

Example::

    zoo = jv.zoo.load("mnist_cnn")
    rf = receptive_field(zoo.probe, "conv3")
    rf.size, rf.stride, rf.start        # (10, 10), (2, 2), (-4, -4)
    rf.box(0, 0)                        # (0, 0, 6, 6): the window clipped to the image
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import jax
import numpy as np

from jaxvis._per_probe import PerProbe
from jaxvis._protocols import ProbeLike
from jaxvis._xla import jit
from jaxvis.dataset._structure import UnsupportedError, compose_settings, support_fn
from jaxvis.dataset.topk import TopK, _check_channel
from jaxvis.layout import LayerLayout, TokenGrid
from jaxvis.probe import Probe

__all__ = [
    "METHODS",
    "ReceptiveField",
    "input_support",
    "patch_boxes",
    "patches",
    "receptive_field",
]

#: the ways :func:`receptive_field` can compute a field
METHODS = ("auto", "settings", "gradient")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ReceptiveField:
    """The input window of every unit of a spatial layer (or of a token layer's patch grid).

    Unit ``(i, j)`` sees input rows ``start[0] + i * stride[0]`` up to (excluding)
    ``start[0] + i * stride[0] + size[0]``, and likewise columns; ``start`` is negative where
    padding reaches over the image border. ``stride`` is 0 along an axis where every unit sees
    the same rows (or columns), e.g. after global attention.

    Attributes:
        layer: the layer's name; ``size``, ``stride``, ``start``: ``(rows, cols)`` pairs;
        input_shape: the image shape ``(H, W, C)``; layer_shape: the layer's output shape.
        is_global: every unit sees the whole image.
        method: ``"settings"`` or ``"gradient"``, the way the field was found.
        equivariant: False when the units' supports are not translates of one another (then
            ``note`` says how, and :meth:`window`/:meth:`box` raise instead of guessing).
        note: what the image could not tell (e.g. a field reaching past the border for every
            unit, where ``size`` is the smallest consistent one), or why not equivariant.
        grid: the patch grid of a token layer, else None.
        prefix_boxes: for a token layer, the box each prefix token (class token) sees, None
            for one that sees no pixel.
    """

    layer: str
    size: tuple[int, int]
    stride: tuple[int, int]
    start: tuple[int, int]
    input_shape: tuple[int, ...]
    layer_shape: tuple[int, ...]
    is_global: bool = False
    method: str = "settings"
    equivariant: bool = True
    note: str = ""
    grid: TokenGrid | None = None
    prefix_boxes: tuple[Box | None, ...] = ()

    @property
    def units(self) -> tuple[int, int]:
        """``(rows, cols)`` of units: the layer's spatial size, or the patch grid."""
        if self.grid is not None:
            return self.grid.rows, self.grid.cols
        return self.layer_shape[0], self.layer_shape[1]

    def window(self, row: int, col: int) -> Box:
        """``(top, left, bottom, right)`` of unit ``(row, col)``'s window, not clipped."""
        if not self.equivariant:
            raise ValueError(f"layer {self.layer!r} has no single window shape: {self.note}")
        rows, cols = self.units
        if not (0 <= int(row) < rows and 0 <= int(col) < cols):
            raise ValueError(
                f"unit (row, col) must lie in the {rows}x{cols} grid of layer {self.layer!r}, "
                f"got ({row}, {col})"
            )
        top = self.start[0] + int(row) * self.stride[0]
        left = self.start[1] + int(col) * self.stride[1]
        return top, left, top + self.size[0], left + self.size[1]

    def box(self, row: int, col: int) -> Box:
        """The window clipped to the image: ``image[top:bottom, left:right]`` is the patch."""
        top, left, bottom, right = self.window(row, col)
        h, w = self.input_shape[:2]
        return max(top, 0), max(left, 0), min(bottom, h), min(right, w)


_CACHE: PerProbe = PerProbe()


def receptive_field(probe: ProbeLike, layer: str, *, method: str = "auto") -> ReceptiveField:
    """The receptive field of the units of ``layer``: a spatial ``(H, W, C)`` layer, or a token
    layer over a patch grid.

    Args:
        probe: the model's probe.
        layer: the layer's name.
        method: ``"auto"`` (settings where they apply, else the gradient), ``"settings"``
            (raises ``ValueError`` naming what it cannot describe) or ``"gradient"``.

    Raises ``ValueError`` for a layer without spatial axes or patch grid (a vector: each unit
    sees the whole input; attention weights).

    Example::

        rf = receptive_field(jv.zoo.load("mnist_cnn").probe, "pool1")
        rf.size, rf.stride          # (6, 6), (2, 2)
    """
    if not isinstance(probe, Probe):
        raise TypeError(f"probe must be a jaxvis.Probe, got {type(probe).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    target = probe.layer(layer)  # unknown names raise with suggestions
    lay = probe.layout(layer)
    if lay.kind == "vector":
        raise ValueError(
            f"layer {layer!r} has outputs of shape {target.shape}, without spatial axes: "
            "each of its units sees the whole input"
        )
    if lay.spatial_shape is None:
        raise ValueError(
            f"layer {layer!r} has outputs of shape {target.shape} ({lay.kind}): receptive "
            "fields need a spatial (H, W, C) layer or tokens over a patch grid"
        )
    cache = _CACHE.entries(probe)
    key = (target.name, method)
    if key not in cache:
        cache[key] = _compute(probe, target.name, lay, method)
        cache.setdefault((target.name, cache[key].method), cache[key])
    return cache[key]


def _compute(probe: ProbeLike, name: str, lay: LayerLayout, method: str) -> ReceptiveField:
    base = ReceptiveField(
        layer=name,
        size=(0, 0),
        stride=(0, 0),
        start=(0, 0),
        input_shape=tuple(probe.input_shape),
        layer_shape=tuple(lay.shape),
        grid=lay.grid if lay.kind == "tokens" else None,
    )
    if method != "gradient":
        why = "it is a token layer" if lay.kind == "tokens" else ""
        if not why:
            closed = _trace(probe, name)
            found = compose_settings(closed, len(closed.jaxpr.invars) - 1)
            if not isinstance(found, str):
                rf = replace(base, size=found[0], stride=found[1], start=found[2])
                rows, cols = rf.units
                full = (0, 0, *rf.input_shape[:2])
                return replace(rf, is_global=rf.box(0, 0) == rf.box(rows - 1, cols - 1) == full)
            why = found
        if method == "settings":
            raise ValueError(
                f"the settings of the layers up to {name!r} cannot give its receptive field: "
                f"{why}; use method='gradient' (exact for any graph)"
            )
    return _from_gradient(probe, lay, base)


def _trace(probe: ProbeLike, name: str, image: tuple[int, ...] | None = None) -> Any:
    """The model traced from its input (one image of shape ``image``, the probe's by default)
    to layer ``name``: parameters first, then the input."""
    spec = jax.ShapeDtypeStruct((1, *(image or probe.input_shape)), np.float32)

    def forward(params: Any, x: jax.Array) -> jax.Array:
        return probe.apply(params, x, [name])[1][name]

    return jax.make_jaxpr(forward)(probe.params, spec)


# ---------------------------------------------------------------- from the gradient's support


def input_support(probe: ProbeLike, layer: str, units: Any) -> np.ndarray:
    """``(U, H, W)`` bool: the pixels with a differentiable path to each unit of ``layer``.

    ``units`` are ``(row, col)`` pairs on the layer's spatial axes (a token layer's patch grid),
    or ints for a token layer's tokens (a class token is token 0). The support of the unit's
    input gradient summed over channels, for any input and any weights (see
    :mod:`jaxvis.dataset._structure`).

    Example::

        mask = input_support(probe, "ResNetBlock_1", [(2, 3)])[0]   # (H, W)
    """
    lay = probe.layout(probe.layer(layer).name)
    if lay.spatial_shape is None:
        raise ValueError(
            f"layer {layer!r} has outputs of shape {lay.shape} ({lay.kind}): units are "
            "(row, col) on a spatial layer or tokens of a token layer"
        )
    rows, cols = lay.spatial_shape[:2]
    seeds = np.zeros((len(units), *lay.shape), np.float32)
    for u, unit in enumerate(units):
        if isinstance(unit, (int, np.integer)):
            if lay.kind != "tokens" or not 0 <= unit < lay.shape[0]:
                raise ValueError(
                    f"units[{u}] = {unit}: a single index is a token of a token layer, "
                    f"in [0, {lay.shape[0] - 1}]"
                )
            seeds[u, unit] = 1
            continue
        try:
            i, j = (int(v) for v in unit)
        except (TypeError, ValueError):
            raise TypeError(
                f"units[{u}] must be a pair (row, col) or a token index, got {unit!r}"
            ) from None
        if not (0 <= i < rows and 0 <= j < cols):
            raise ValueError(f"units[{u}] = {unit} is outside the {rows}x{cols} grid of {layer!r}")
        if lay.kind == "tokens":
            seeds[u, lay.grid.token(i, j)] = 1
        else:
            seeds[u, i, j] = 1
    return _support_runner(probe, probe.layer(layer).name, tuple(probe.input_shape))[0](seeds)


_RUNNERS: PerProbe = PerProbe()


def _support_runner(probe: ProbeLike, name: str, image: tuple[int, ...]) -> tuple[Any, tuple]:
    """``(seeds (U, *layer shape) -> (U, H, W) supports, layer shape)`` for images of shape
    ``image``: one jitted program per (probe, layer, image shape)."""
    runners = _RUNNERS.entries(probe)
    if (name, image) not in runners:
        closed = _trace(probe, name, image)
        dtype = _seed_dtype(closed)
        run = jit(support_fn(closed, len(closed.jaxpr.invars) - 1))
        lo, hi = probe.input_range
        x = np.random.default_rng(0).uniform(lo, hi, (1, *image)).astype(np.float32)

        def supports(seeds: np.ndarray) -> np.ndarray:
            try:
                got = run(jax.tree_util.tree_leaves(probe.params), x, seeds.astype(dtype)[:, None])
            except UnsupportedError as error:
                raise ValueError(f"cannot follow the input gradient of {name!r}: {error}") from None
            return np.asarray(got).any(axis=(1, 4))  # (U, 1, H, W, C) -> (U, H, W)

        runners[(name, image)] = supports, tuple(closed.jaxpr.outvars[0].aval.shape[1:])
    return runners[(name, image)]


def _diagonal(rows: int, cols: int) -> list[tuple[int, int]]:
    """The units probed, pairing the indices :func:`_probe_indices` gives along each axis."""
    r_idx, c_idx = _probe_indices(rows), _probe_indices(cols)
    n = max(len(r_idx), len(c_idx))
    return [(r_idx[m % len(r_idx)], c_idx[m % len(c_idx)]) for m in range(n)]


def _from_gradient(probe: ProbeLike, lay: LayerLayout, base: ReceptiveField) -> ReceptiveField:
    height, width = probe.input_shape[:2]
    prefix = lay.grid.prefix if base.grid is not None else 0
    units = _diagonal(*base.units)
    masks = input_support(probe, base.layer, [*units, *range(prefix)])
    prefix_boxes = tuple(_bbox(m) for m in masks[len(units) :])
    found = dict(zip(units, masks, strict=False))
    base = replace(base, method="gradient", prefix_boxes=prefix_boxes)
    if all(_bbox(m) is None for m in found.values()):
        raise ValueError(f"layer {base.layer!r} does not depend on the input: no pixel reaches it")
    fit = _fit_footprint(found, probe.input_shape[:2])
    if fit is not None:  # two units with their whole footprint inside the image
        (size, stride, start), footprint = fit
        return _verified(replace(base, size=size, stride=stride, start=start), found, footprint)
    fits = [
        _fit_axis(found, axis, n_in, n_units)
        for axis, n_in, n_units in ((0, height, base.units[0]), (1, width, base.units[1]))
    ]
    if any(f is None for f in fits) and lay.kind == "spatial":
        larger = _from_larger_image(probe, base, found)
        if larger is not None:
            return larger
    if any(f is None or isinstance(f, str) for f in fits):
        why = next((f for f in fits if isinstance(f, str)), None) or (
            "the image is too small to tell the stride: too few units' windows end inside it"
        )
        return replace(base, equivariant=False, note=why)
    (s0, j0, t0, n0), (s1, j1, t1, n1) = fits
    note = "; ".join(text for text in (n0, n1) if text)
    rf = replace(base, size=(s0, s1), stride=(j0, j1), start=(t0, t1), note=note)
    mismatch = _check_translates(rf, found)
    if mismatch:
        return replace(rf, equivariant=False, note=mismatch)
    full = ((height, width), (0, 0), (0, 0))
    return replace(rf, is_global=(rf.size, rf.stride, rf.start) == full)


def _from_larger_image(
    probe: ProbeLike, base: ReceptiveField, found: dict[tuple[int, int], np.ndarray]
) -> ReceptiveField | None:
    """The field read on an image enlarged on every side by about half its size (then by its
    size), a multiple of the layer's stride so that every SAME padding stays the same, where
    some units' windows lie inside; kept only if it predicts every probed unit's support on the
    real image exactly. None where the model does not run at that size or that fails."""
    for factor in (1, 2):
        rf = _read_larger(probe, base, found, factor)
        if rf is not None:
            return rf
    return None


def _read_larger(
    probe: ProbeLike, base: ReceptiveField, found: dict[tuple[int, int], np.ndarray], factor: int
) -> ReceptiveField | None:
    height, width, channels = probe.input_shape
    steps = [max(1, round(n / u)) for n, u in zip((height, width), base.units, strict=True)]
    pads = [s * -(-n * factor // (2 * s)) for s, n in zip(steps, (height, width), strict=True)]
    image = (height + 2 * pads[0], width + 2 * pads[1], channels)
    try:
        supports, shape = _support_runner(probe, base.layer, image)
    except Exception:  # noqa: BLE001 - a model fixed to its input size: nothing to learn
        return None
    if len(shape) != 3:
        return None
    units = _diagonal(shape[0], shape[1])
    seeds = np.zeros((len(units), *shape), np.float32)
    for u, (i, j) in enumerate(units):
        seeds[u, i, j] = 1
    fit = _fit_footprint(dict(zip(units, supports(seeds), strict=True)), image[:2])
    if fit is None:
        return None
    (size, stride, start), footprint = fit
    if any(s == 0 or p % s for s, p in zip(stride, pads, strict=True)):
        return None
    rf = _verified(replace(base, size=size, stride=stride, start=start), found, footprint)
    if not rf.equivariant:
        return None
    return replace(rf, note=f"read on a {image[0]}x{image[1]} image, checked on this one")


def _fit_footprint(
    found: dict[tuple[int, int], np.ndarray], image: tuple[int, int]
) -> tuple[tuple[tuple[int, int], ...], np.ndarray] | None:
    """``((size, stride, start), footprint)`` from two units whose supports lie wholly inside
    the image, or None. Such a unit has the most pixels of all (a clipped one loses some) and
    a bounding box off the border; holes in the footprint (dilations) do not mislead it."""
    counts = {u: int(m.sum()) for u, m in found.items()}
    most = max(counts.values())
    whole = []
    for unit, mask in found.items():
        box = _bbox(mask)
        inside = box is not None and box[0] > 0 and box[1] > 0
        if counts[unit] == most and inside and box[2] < image[0] and box[3] < image[1]:
            whole.append((unit, box))
    pairs = [(a, b) for a in whole for b in whole if a[0][0] < b[0][0] and a[0][1] < b[0][1]]
    if not pairs:
        return None
    ((i0, j0), box0), ((i1, j1), box1) = pairs[0]
    if (box1[0] - box0[0]) % (i1 - i0) or (box1[1] - box0[1]) % (j1 - j0):
        return None
    stride = ((box1[0] - box0[0]) // (i1 - i0), (box1[1] - box0[1]) // (j1 - j0))
    size = (box0[2] - box0[0], box0[3] - box0[1])
    start = (box0[0] - i0 * stride[0], box0[1] - j0 * stride[1])
    footprint = found[(i0, j0)][box0[0] : box0[2], box0[1] : box0[3]]
    return (size, stride, start), footprint


def _verified(
    rf: ReceptiveField, found: dict[tuple[int, int], np.ndarray], footprint: np.ndarray
) -> ReceptiveField:
    """``rf`` if every probed unit's support is ``footprint`` at its window, cut by the image."""
    height, width = rf.input_shape[:2]
    for (i, j), mask in found.items():
        top, left, bottom, right = rf.window(i, j)
        placed = np.zeros((height - min(top, 0) + max(bottom - height, 0),
                           width - min(left, 0) + max(right - width, 0)), bool)  # fmt: skip
        dy, dx = -min(top, 0), -min(left, 0)
        placed[top + dy : bottom + dy, left + dx : right + dx] = footprint
        if not np.array_equal(placed[dy : dy + height, dx : dx + width], mask):
            note = f"unit ({i}, {j}) does not see the same pixels, translated, as other units"
            return replace(rf, equivariant=False, note=note)
    return rf


def _seed_dtype(closed: Any) -> Any:
    dtype = closed.jaxpr.outvars[0].aval.dtype
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"a layer of dtype {dtype} has no input gradient")
    return dtype


def _probe_indices(n: int) -> list[int]:
    """Units probed along an axis of ``n``: two at each border and three in the middle."""
    return sorted({i for i in (0, 1, n // 2 - 1, n // 2, n // 2 + 1, n - 2, n - 1) if 0 <= i < n})


def _bbox(mask: np.ndarray) -> Box | None:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _fit_axis(
    found: dict[tuple[int, int], np.ndarray], axis: int, n_in: int, n_units: int
) -> tuple[int, int, int, str] | str | None:
    """``(size, stride, start, note)`` along ``axis`` from the probed units' supports; a reason
    when they are not translates; None when these units cannot tell."""
    spans: dict[int, tuple[int, int]] = {}
    for unit, mask in found.items():
        box = _bbox(mask)
        if box is not None:
            spans[unit[axis]] = (box[axis], box[axis + 2])
    if not spans:
        return None
    if len(set(spans.values())) == 1 and (len(spans) > 1 or n_units == 1):
        lo, hi = next(iter(spans.values()))  # every unit sees the same rows (columns)
        return hi - lo, 0, lo, ""
    tops = sorted((i, lo) for i, (lo, hi) in spans.items() if lo > 0)
    bottoms = sorted((i, hi) for i, (lo, hi) in spans.items() if hi < n_in)
    stride = None
    for points in (tops, bottoms):
        if len(points) >= 2:
            (i0, v0), (i1, v1) = points[:2]
            if (v1 - v0) % (i1 - i0):
                return f"units {i0} and {i1} along axis {axis} are not a whole stride apart"
            stride = (v1 - v0) // (i1 - i0)
            break
    if stride is None:
        return None
    what = "rows" if axis == 0 else "columns"
    notes = []
    if tops:
        start = tops[0][1] - tops[0][0] * stride
    else:
        start = min(0, -(n_units - 1) * stride)
        notes.append(f"every unit's window starts above the image's first {what[:-1]}")
    if bottoms:
        size = bottoms[0][1] - start - bottoms[0][0] * stride
    else:
        size = n_in - start
        notes.append(f"every unit's window ends past the image's last {what[:-1]}")
    for i, (lo, hi) in spans.items():
        if (max(0, start + i * stride), min(n_in, start + i * stride + size)) != (lo, hi):
            return (
                f"unit {i} along axis {axis} sees {what} {lo}..{hi - 1}, not the translate "
                f"{max(0, start + i * stride)}..{min(n_in, start + i * stride + size) - 1}"
            )
    if notes:
        notes.append("size is the smallest consistent with every unit")
    return size, stride, start, ", ".join(notes)


def _check_translates(rf: ReceptiveField, found: dict[tuple[int, int], np.ndarray]) -> str:
    """'' if the supports of the probed units fully inside the image are one shape, translated."""
    shape = None
    for (i, j), mask in found.items():
        window = rf.window(i, j)
        if window != rf.box(i, j):
            continue
        top, left, bottom, right = window
        crop = mask[top:bottom, left:right]
        if shape is None:
            shape = crop
        elif not np.array_equal(crop, shape):
            return f"unit ({i}, {j}) sees a differently shaped set of pixels than other units"
    return ""


# ---------------------------------------------------------------- patches


def patch_boxes(probe: ProbeLike, result: TopK, channel: int) -> np.ndarray:
    """``(k, 4)`` int boxes ``(top, left, bottom, right)`` of ``channel``'s top-k patches.

    Clipped at the image borders; for a layer without spatial axes, the whole image.

    Example::

        boxes = patch_boxes(probe, res, 3)     # image res.indices[3, j], rows top:bottom ...
    """
    if not isinstance(result, TopK):
        raise TypeError(f"result must be a jv.dataset.TopK, got {type(result).__name__}")
    c = _check_channel(channel, result.n_channels)
    h, w = probe.input_shape[:2]
    if result.positions is None:
        return np.tile(np.array([0, 0, h, w], np.int64), (result.k, 1))
    rf = receptive_field(probe, result.layer)
    return np.array([rf.box(r, q) for r, q in result.positions[c]], np.int64).reshape(-1, 4)


def patches(
    probe: ProbeLike,
    images: Any,
    result: TopK,
    channel: int,
    *,
    fill: float | np.ndarray | None = None,
) -> list[np.ndarray] | np.ndarray:
    """The input patches under ``channel``'s top-k units: what each unit actually saw.

    Args:
        probe: the probe ``result`` was computed with.
        images: the dataset ``result.indices`` point into (indexable, e.g. an array).
        result: what :func:`jaxvis.dataset.top_k` returned.
        channel: the channel.
        fill: None returns a list of the ``k`` crops, clipped at the image borders (so border
            patches are smaller); a number (or one per channel, e.g. ``probe.input_low``)
            returns one ``(k, size_h, size_w, C)`` array with the receptive field's part
            outside the image set to ``fill``.

    Example::

        crops = patches(probe, x, res, channel=3)                 # list of (h, w, C)
        tiles = patches(probe, x, res, channel=3, fill=0.0)       # (9, 10, 10, 1)
    """
    boxes = patch_boxes(probe, result, channel)
    c = _check_channel(channel, result.n_channels)
    if not hasattr(images, "__getitem__") or not hasattr(images, "__len__"):
        raise TypeError(f"images must be an indexable dataset (an array), got {type(images)}")
    if len(images) < result.n_images:
        raise ValueError(
            f"images has {len(images)} images but result was computed over {result.n_images}: "
            "pass the same dataset"
        )
    crops = []
    for idx, (top, left, bottom, right) in zip(result.indices[c], boxes, strict=True):
        crops.append(np.asarray(images[int(idx)])[top:bottom, left:right])
    if fill is None:
        return crops
    if result.positions is None:
        return np.stack(crops)
    rf = receptive_field(probe, result.layer)
    out = np.full((len(crops), *rf.size, crops[0].shape[-1]), fill, np.float32)
    for j, (crop, (r, q)) in enumerate(zip(crops, result.positions[c], strict=True)):
        top, left, _, _ = rf.window(r, q)
        dy, dx = max(0, -top), max(0, -left)
        out[j, dy : dy + crop.shape[0], dx : dx + crop.shape[1]] = crop
    return out
