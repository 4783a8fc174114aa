"""The perturbation family: occlusion, RISE, feature ablation and KernelSHAP.

Each method scores many perturbed copies of the input -- one batched model call per chunk of
perturbations, a ``lax.scan`` over the chunks inside one jitted program per shape (see
:mod:`jaxvis.attribution._scores`). The perturbations' numbers (window positions and size,
masks, segment labels, coalitions, baseline, target) are traced arguments: changing them for
the same shapes compiles nothing new.

Example::

    occ = occlusion(probe, x, target=3, window=8, stride=4)     # Captum's Occlusion
    ris = rise(probe, x, target=3, masks=2000, cells=7)         # Petsiuk et al. 2018
    abl = feature_ablation(probe, x, target=3, segments="slic", n_segments=50)
    shap = kernel_shap(probe, x, target=3, segments="grid", n_segments=16, samples=512)
    shap.extra["shapley"]                                       # (N, K): one value per segment
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._checks import check_optional_positive_int
from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import cached_jit, count_trace
from jaxvis.attribution._scores import Perturbed, perturbed_sums
from jaxvis.attribution.baselines import describe, make_baselines
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution
from jaxvis.attribution.segments import segment

__all__ = ["feature_ablation", "kernel_shap", "occlusion", "rise", "rise_masks", "shapley_kernel"]


# --------------------------------------------------------------------------- occlusion


@register("perturbation", "occlusion")
def occlusion(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    window: int | tuple[int, int] = 8,
    stride: int | tuple[int, int] = 4,
    baseline: Any = 0.0,
    batch_size: int | None = None,
    params: Any = None,
) -> Attribution:
    """Occlusion (Zeiler & Fergus 2014) with Captum's ``Occlusion`` semantics.

    A ``window`` (over all channels) slides over the image by ``stride``; at each position
    the window is set to ``baseline`` and ``f(x) - f(x occluded)`` is added to every pixel
    under it; each pixel's sum is divided by the number of windows covering it. Positions
    are ``0, s, 2s, ...`` up to ``ceil((H - h) / s)`` steps, the last window cropped at the
    border, as Captum does.

    Example::

        res = occlusion(probe, x, target=3, window=(6, 6), stride=2, baseline="black")
    """
    x = _checks.check_images(probe, x)
    n, h, w, c = x.shape
    win = _pair(window, "window")
    step = _pair(stride, "stride")
    if win[0] > h or win[1] > w:
        raise ValueError(f"window {win} is larger than the image ({h}, {w})")
    for size, s, dim in zip(win, step, (h, w), strict=True):
        if s > size and size < dim:
            raise ValueError(
                f"stride {step} is larger than the window {win}: some pixels would never be "
                "occluded"
            )
    tgt = _checks.resolve_target(probe, x, target)
    base = _one_baseline(probe, x, baseline)
    ys = np.arange(math.ceil((h - win[0]) / step[0]) + 1, dtype=np.int32) * step[0]
    xs = np.arange(math.ceil((w - win[1]) / step[1]) + 1, dtype=np.int32) * step[1]
    chunk = _chunk(probe, batch_size, ys.size * xs.size * n)

    def build() -> Any:
        score = _checks.score_fn(probe, tgt)

        def kernel(params: Any, x: jax.Array, index: jax.Array, base: jax.Array,
                   ys: jax.Array, xs: jax.Array, win: jax.Array) -> tuple:  # fmt: skip
            count_trace("occlusion")
            n, h, w, c = x.shape
            fx = score(params, x, index)
            rows, cols = jnp.arange(h), jnp.arange(w)

            def point(m: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array]:
                y0 = ys[m // xs.shape[0], None, None]
                x0 = xs[m % xs.shape[0], None, None]
                inside_y = (rows[:, None] >= y0) & (rows[:, None] < y0 + win[0])
                inside_x = (cols[None, :] >= x0) & (cols[None, :] < x0 + win[1])
                mask = (inside_y & inside_x).astype(jnp.float32)
                return _blend(x[e], base[e], mask), mask

            pts = Perturbed(ys.shape[0] * xs.shape[0], point, lambda s, f: f - s, (h, w))
            sums, _ = perturbed_sums(score, params, index, fx, pts, n, chunk)
            count_y = ((rows[None] >= ys[:, None]) & (rows[None] < ys[:, None] + win[0])).sum(0)
            count_x = ((cols[None] >= xs[:, None]) & (cols[None] < xs[:, None] + win[1])).sum(0)
            values = sums / (count_y[:, None] * count_x[None, :]).astype(jnp.float32)
            return _channels(values, c), fx

        return kernel

    run = cached_jit(probe, ("occlusion", tgt.static_key, chunk), build, convolutions=False)
    params = probe.params if params is None else params
    values, fx = run(params, x, tgt.index, base, ys, xs, np.asarray(win, np.int32))
    settings = {"window": win, "stride": step, "baseline": describe(baseline), "batch_size": chunk}
    return _result(values, "occlusion", tgt, fx, settings, {"positions": (ys, xs)})


# --------------------------------------------------------------------------- RISE


@register("perturbation", "RISE")
def rise(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    masks: int | Any = 2000,
    cells: int | tuple[int, int] = 7,
    probability: float = 0.5,
    seed: int = 0,
    batch_size: int | None = None,
    params: Any = None,
) -> Attribution:
    """RISE (Petsiuk et al. 2018): ``saliency = sum_m f(x * M_m) M_m / (masks * probability)``.

    Each mask keeps each of ``cells x cells`` cells with ``probability``, is upsampled
    bilinearly to ``(cells + 1) * cell_size`` and cropped at a random shift below one cell
    (:func:`rise_masks` gives the same masks). ``masks`` is their number, or an array of masks
    ``(M, H, W)`` in [0, 1] (then ``probability`` should be their keep probability). The
    seed's draw is made on the host and traced: a new seed compiles nothing.

    Example::

        res = rise(probe, x, target=3, masks=4000, cells=(4, 4), probability=0.3)
    """
    x = _checks.check_images(probe, x)
    n, h, w, c = x.shape
    if isinstance(probability, bool) or not isinstance(probability, int | float | np.number):
        raise TypeError(f"probability must be a number in (0, 1], got {probability!r}")
    if not 0.0 < float(probability) <= 1.0:
        raise ValueError(f"probability must be in (0, 1], got {probability}")
    given = not (isinstance(masks, int | np.integer) and not isinstance(masks, bool))
    if given:
        full = _check_masks(masks, (h, w))
        n_masks, args = full.shape[0], (full,)
    else:
        grid, dy, dx, up = _draw_grids((h, w), masks, cells, float(probability), seed)
        n_masks, args = grid.shape[0], (grid, dy, dx)
    tgt = _checks.resolve_target(probe, x, target)
    chunk = _chunk(probe, batch_size, n_masks * n)

    def build() -> Any:
        score = _checks.score_fn(probe, tgt)

        def kernel(params: Any, x: jax.Array, index: jax.Array, scale: jax.Array,
                   *mask_args: jax.Array) -> tuple:  # fmt: skip
            count_trace("rise")
            n, h, w, c = x.shape
            fx = score(params, x, index)

            def point(m: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array]:
                if given:
                    mask = mask_args[0][m]
                else:
                    grid, dy, dx = mask_args
                    mask = _upsample(grid[m], dy[m], dx[m], up, (h, w))
                return x[e] * mask[..., None], mask

            pts = Perturbed(mask_args[0].shape[0], point, lambda s, f: s, (h, w))
            sums, _ = perturbed_sums(score, params, index, fx, pts, n, chunk)
            return _channels(sums * scale, c), fx

        return kernel

    key = ("rise", tgt.static_key, chunk, given, None if given else up)
    run = cached_jit(probe, key, build, convolutions=False)
    params = probe.params if params is None else params
    scale = np.float32(1.0 / (n_masks * float(probability)))
    values, fx = run(params, x, tgt.index, scale, *args)
    settings = {
        "masks": n_masks if not given else f"array{tuple(np.shape(masks))}",
        "cells": None if given else _pair(cells, "cells"),
        "probability": float(probability),
        "seed": seed,
        "batch_size": chunk,
    }
    return _result(values, "rise", tgt, fx, settings, {})


def rise_masks(
    shape: tuple[int, int],
    masks: int = 2000,
    cells: int | tuple[int, int] = 7,
    probability: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """The ``(masks, H, W)`` masks :func:`rise` draws for images of ``shape`` ``(H, W)``.

    Example::

        m = rise_masks((28, 28), masks=100, cells=4, seed=1)   # float32 in [0, 1]
    """
    grid, dy, dx, up = _draw_grids(tuple(shape), masks, cells, probability, seed)
    return np.asarray(_upsample_jit(grid, dy, dx, up, tuple(shape)))


def _draw_grids(
    shape: tuple[int, int], masks: Any, cells: Any, probability: float, seed: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Host draw: the cell grids ``(M, s, s)``, the shifts and the upsampled size."""
    masks = _checks.check_positive_int(masks, "masks")
    grid_shape = _pair(cells, "cells")
    if grid_shape[0] > shape[0] or grid_shape[1] > shape[1]:
        raise ValueError(f"cells {grid_shape} is more cells than the image has pixels {shape}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {seed!r}")
    cell = (math.ceil(shape[0] / grid_shape[0]), math.ceil(shape[1] / grid_shape[1]))
    rng = np.random.default_rng(int(seed))
    grid = (rng.random((masks, *grid_shape)) < probability).astype(np.float32)
    dy = rng.integers(0, cell[0], masks).astype(np.int32)
    dx = rng.integers(0, cell[1], masks).astype(np.int32)
    up = ((grid_shape[0] + 1) * cell[0], (grid_shape[1] + 1) * cell[1])
    return grid, dy, dx, up


def _upsample(
    grid: jax.Array, dy: jax.Array, dx: jax.Array, up: tuple[int, int], out: tuple[int, int]
) -> jax.Array:
    """Bilinear upsampling of grids ``(B, s, s)`` to ``up``, cropped to ``out`` at shifts."""
    big = jax.image.resize(grid, (grid.shape[0], *up), "bilinear")
    return jax.vmap(lambda b, i, j: jax.lax.dynamic_slice(b, (i, j), out))(big, dy, dx)


_upsample_jit = jax.jit(_upsample, static_argnums=(3, 4))


def _check_masks(masks: Any, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[1:] != shape:
        raise ValueError(
            f"masks must be a number of masks or an array (M, {shape[0]}, {shape[1]}), got "
            f"shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError("masks is an empty array: give at least one mask")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("masks contain NaN or inf values")
    return arr


# --------------------------------------------------------------------------- feature ablation


@register("perturbation", "feature ablation")
def feature_ablation(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    segments: Any = "slic",
    n_segments: int = 50,
    compactness: float = 10.0,
    baseline: Any = 0.0,
    batch_size: int | None = None,
    params: Any = None,
) -> Attribution:
    """Feature ablation over segments, Captum's ``FeatureAblation`` with a feature mask.

    Each segment in turn is set to ``baseline``; every pixel of it gets ``f(x) - f(x
    ablated)``. ``segments``: ``"slic"`` (scikit-image SLIC on the host, ``n_segments``,
    ``compactness``), ``"grid"`` or an int label array ``(H, W)`` / ``(N, H, W)`` (see
    :func:`jaxvis.attribution.segments.segment`). ``extra["segments"]`` holds the labels.

    Example::

        res = feature_ablation(probe, x, target=3, segments="grid", n_segments=16)
    """
    x = _checks.check_images(probe, x)
    n, h, w, c = x.shape
    labels = segment(probe, x, segments, n_segments, compactness)
    n_features = int(labels.max()) + 1
    tgt = _checks.resolve_target(probe, x, target)
    base = _one_baseline(probe, x, baseline)
    chunk = _chunk(probe, batch_size, n_features * n)
    feature_ids = np.arange(n_features, dtype=np.int32)

    def build() -> Any:
        score = _checks.score_fn(probe, tgt)

        def kernel(params: Any, x: jax.Array, index: jax.Array, base: jax.Array,
                   labels: jax.Array, ids: jax.Array) -> tuple:  # fmt: skip
            count_trace("feature_ablation")
            n, h, w, c = x.shape
            fx = score(params, x, index)

            def point(m: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array]:
                mask = (labels[e] == ids[m][:, None, None]).astype(jnp.float32)
                return _blend(x[e], base[e], mask), mask

            pts = Perturbed(ids.shape[0], point, lambda s, f: f - s, (h, w))
            sums, _ = perturbed_sums(score, params, index, fx, pts, n, chunk)
            return _channels(sums, c), fx

        return kernel

    run = cached_jit(probe, ("feature_ablation", tgt.static_key, chunk), build, convolutions=False)
    params = probe.params if params is None else params
    values, fx = run(params, x, tgt.index, base, labels, feature_ids)
    settings = {
        "segments": segments if isinstance(segments, str) else "array",
        "n_segments": n_features,
        "baseline": describe(baseline),
        "batch_size": chunk,
    }
    return _result(values, "feature_ablation", tgt, fx, settings, {"segments": labels})


# --------------------------------------------------------------------------- KernelSHAP


@register("perturbation", "KernelSHAP")
def kernel_shap(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    segments: Any = "slic",
    n_segments: int = 50,
    compactness: float = 10.0,
    samples: int | Any = 512,
    seed: int = 0,
    baseline: Any = 0.0,
    batch_size: int | None = None,
    params: Any = None,
) -> Attribution:
    """KernelSHAP (Lundberg & Lee 2017) over segments: Shapley values by weighted regression.

    A coalition ``z`` (``K`` segments, 1 = kept, 0 = set to ``baseline``) is scored as
    ``f(z)``; ``phi`` minimises ``sum_z pi(z) (f(z) - f(0) - z . phi)^2`` subject to
    ``sum(phi) = f(x) - f(baseline)`` with the Shapley kernel ``pi(z) = (K - 1) / (C(K, |z|)
    |z| (K - |z|))`` (:func:`shapley_kernel`); solved in JAX by eliminating the constraint
    and a least-squares solve. ``samples`` is a number of coalitions drawn from ``pi`` (then
    weighted equally) with ``seed``, or an array ``(M, K)`` of 0/1 coalitions weighted by
    ``pi`` (give all ``2^K - 2`` for the exact Shapley values); the empty and full
    coalitions are dropped (the constraint holds them). Pixels get their segment's value;
    ``extra["shapley"]`` is ``(N, K)``, ``extra["segments"]`` the labels.

    Example::

        res = kernel_shap(probe, x, target=3, segments="grid", n_segments=16, samples=1000)
    """
    x = _checks.check_images(probe, x)
    n, h, w, c = x.shape
    labels = segment(probe, x, segments, n_segments, compactness)
    k = int(labels.max()) + 1
    coalitions, weights = _coalitions(samples, k, seed)
    tgt = _checks.resolve_target(probe, x, target)
    base = _one_baseline(probe, x, baseline)
    chunk = _chunk(probe, batch_size, coalitions.shape[0] * n)

    def build() -> Any:
        score = _checks.score_fn(probe, tgt)

        def kernel(params: Any, x: jax.Array, index: jax.Array, base: jax.Array,
                   labels: jax.Array, z: jax.Array, weights: jax.Array) -> tuple:  # fmt: skip
            count_trace("kernel_shap")
            n, h, w, c = x.shape
            fx = score(params, x, index)
            f0 = score(params, base, index)

            def point(m: jax.Array, e: jax.Array) -> tuple[jax.Array, None]:
                flat = labels[e].reshape(m.shape[0], -1)
                keep = jnp.take_along_axis(z[m], flat, axis=1).reshape(-1, h, w)
                return _blend(x[e], base[e], 1.0 - keep), None

            pts = Perturbed(z.shape[0], point, lambda s, f: s, (h, w))
            _, scores = perturbed_sums(score, params, index, fx, pts, n, chunk)
            phi = _solve(scores - f0[None], fx - f0, z, weights)  # (N, K)
            per_pixel = jnp.take_along_axis(phi, labels.reshape(n, -1), axis=1)
            return _channels(per_pixel.reshape(n, h, w), c), fx, f0, phi

        return kernel

    run = cached_jit(probe, ("kernel_shap", tgt.static_key, chunk), build, convolutions=False)
    params = probe.params if params is None else params
    values, fx, f0, phi = run(params, x, tgt.index, base, labels, coalitions, weights)
    settings = {
        "segments": segments if isinstance(segments, str) else "array",
        "n_segments": k,
        "samples": int(coalitions.shape[0]),
        "seed": seed,
        "baseline": describe(baseline),
        "batch_size": chunk,
    }
    extra = {"shapley": phi, "segments": labels, "coalitions": coalitions}
    return _result(values, "kernel_shap", tgt, fx, settings, extra, f0)


def shapley_kernel(k: int, size: Any) -> np.ndarray:
    """The Shapley kernel ``(K - 1) / (C(K, s) s (K - s))`` of coalitions of ``size`` s
    (``0 < s < K``).

    Example::

        shapley_kernel(4, [1, 2, 3])     # [0.25, 0.125, 0.25]
    """
    s = np.asarray(size, np.float64)
    comb = np.vectorize(math.comb)(k, s.astype(np.int64)).astype(np.float64)
    return (k - 1) / (comb * s * (k - s))


def _coalitions(samples: Any, k: int, seed: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(coalitions (M, K) float32, weights (M,) float32)``, drawn or checked."""
    if k < 2:
        raise ValueError(f"kernel_shap needs at least 2 segments, the segmentation has {k}")
    if isinstance(samples, int | np.integer) and not isinstance(samples, bool):
        m = _checks.check_positive_int(samples, "samples")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise TypeError(f"seed must be an int, got {seed!r}")
        rng = np.random.default_rng(int(seed))
        sizes = np.arange(1, k)
        p = shapley_kernel(k, sizes) * np.vectorize(math.comb)(k, sizes)
        size = rng.choice(sizes, m, p=p / p.sum())
        ranks = np.argsort(rng.random((m, k)), axis=1)
        z = (ranks < size[:, None]).astype(np.float32)
        return z, np.full((m,), 1.0 / m, np.float32)
    z = np.asarray(samples)
    if z.ndim != 2 or z.shape[1] != k or not np.all((z == 0) | (z == 1)):
        raise ValueError(
            f"samples must be a number of coalitions or a 0/1 array (M, {k}) (one column per "
            f"segment), got {getattr(samples, 'shape', samples)!r}"
        )
    size = z.sum(1)
    z = z[(size > 0) & (size < k)]
    if z.shape[0] == 0:
        raise ValueError("samples has no coalition other than the empty and the full one")
    weights = shapley_kernel(k, z.sum(1))
    return z.astype(np.float32), (weights / weights.sum()).astype(np.float32)


def _solve(y: jax.Array, total: jax.Array, z: jax.Array, weights: jax.Array) -> jax.Array:
    """Constrained weighted least squares: ``phi`` (N, K) with ``sum(phi) = total``.

    ``phi_K = total - sum(phi_<K)`` turns ``y ~ z . phi`` into ``y - z_K total ~ (z_<K -
    z_K) . phi_<K``, solved for every example at once (the design is shared)."""
    a = z[:, :-1] - z[:, -1:]
    b = y - z[:, -1:] * total[None]
    root = jnp.sqrt(weights)[:, None]
    rest = jnp.linalg.lstsq(root * a, root * b)[0]  # (K - 1, N)
    last = total - rest.sum(0)
    return jnp.concatenate([rest, last[None]], axis=0).T


# --------------------------------------------------------------------------- helpers


def _pair(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if not isinstance(value, tuple | list) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair (h, w) of ints, got {value!r}")
    return tuple(_checks.check_positive_int(v, name) for v in pair)  # type: ignore[return-value]


def _one_baseline(probe: ProbeLike, x: Any, baseline: Any) -> np.ndarray:
    if isinstance(baseline, list):
        raise ValueError("perturbation methods take one baseline, not a list")
    return make_baselines(probe, x, baseline)[0]


def _chunk(probe: ProbeLike, batch_size: Any, total: int) -> int:
    batch_size = check_optional_positive_int(batch_size, "batch_size")
    return min(batch_size, total) if batch_size else _checks.auto_batch_size(probe, total)


def _blend(x: jax.Array, base: jax.Array, mask: jax.Array) -> jax.Array:
    """``x`` where ``mask`` (B, H, W) is 0, ``base`` where it is 1 (all channels)."""
    m = mask[..., None]
    return x * (1.0 - m) + base * m


def _channels(values: jax.Array, c: int) -> jax.Array:
    return jnp.broadcast_to(values[..., None], (*values.shape, c))


def _result(
    values: jax.Array,
    method: str,
    tgt: _checks.Target,
    fx: jax.Array,
    settings: dict,
    extra: dict,
    baseline_score: jax.Array | None = None,
) -> Attribution:
    return Attribution(
        values=values,
        delta=None,
        method=method,
        target=tgt.label,
        score=fx,
        baseline_score=baseline_score,
        settings=settings,
        extra=extra,
    )
