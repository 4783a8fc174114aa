"""Scores of attribution maps: similarity (Spearman, SSIM; numpy), and per-map statistics
(localisation against a mask, sparseness, complexity; one jitted program per batch).

Example::

    spearman(map_a, map_b)          # in [-1, 1], ties get their average rank
    ssim(map_a, map_b)              # structural similarity (Wang et al. 2004), maps in [0, 1]
    to_map(res.values, absolute=True)   # (N, H, W): channels summed, for comparing maps
    mask_mass(res.values, masks), pointing_game(res.values, masks), sparseness(res.values)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis.attribution._core import count_trace

__all__ = [
    "complexity",
    "mask_mass",
    "normalise_map",
    "pointing_game",
    "rank",
    "relevance_rank",
    "sparseness",
    "spearman",
    "ssim",
    "to_map",
]


def to_map(values: np.ndarray, absolute: bool = False) -> np.ndarray:
    """``(N, H, W, C)`` attributions to ``(N, H, W)`` maps: channel sum of ``|v|`` or of ``v``."""
    v = np.asarray(values, np.float64)
    return np.abs(v).sum(-1) if absolute else v.sum(-1)


def normalise_map(m: np.ndarray) -> np.ndarray:
    """Scale each ``(H, W)`` map of a batch by its largest absolute value (zero stays zero)."""
    m = np.asarray(m, np.float64)
    peak = np.abs(m).reshape(m.shape[0], -1).max(-1).reshape(-1, 1, 1)
    return m / np.where(peak > 0, peak, 1.0)


def rank(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a flat array; tied values share their average rank (as scipy's rankdata)."""
    a = np.asarray(a, np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.r_[True, sorted_a[1:] != sorted_a[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], a.size] - 1
    avg = (first + last) / 2.0 + 1.0
    out = np.empty(a.size)
    out[order] = avg[group]
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (flattened); 0 when either is constant.

    Example::

        spearman(np.arange(5), np.arange(5) ** 2)    # 1.0
    """
    ra, rb = rank(a), rank(b)
    if ra.size != rb.size:
        raise ValueError(f"maps differ in size: {np.size(a)} and {np.size(b)}")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def _gaussian_filter(img: np.ndarray, sigma: float, truncate: float) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (d / sigma) ** 2)
    k /= k.sum()
    out = img
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        out = np.apply_along_axis(lambda r: np.convolve(r, k, mode="valid"), axis, padded)
    return out


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    data_range: float = 1.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean structural similarity of two 2-D maps with an 11x11 Gaussian window (sigma 1.5).

    The same recipe as ``skimage.metrics.structural_similarity(a, b, data_range=...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: reflected edges, and the
    mean taken away from a border half a window wide.

    Example::

        ssim(m, m)     # 1.0
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim needs two 2-D maps of one shape, got {a.shape} and {b.shape}")
    truncate = 3.5
    f = lambda m: _gaussian_filter(m, sigma, truncate)  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    var_a = f(a * a) - mu_a**2
    var_b = f(b * b) - mu_b**2
    cov = f(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    pad = (2 * int(truncate * sigma + 0.5) + 1 - 1) // 2
    inner = s[pad : s.shape[0] - pad, pad : s.shape[1] - pad]
    return float(inner.mean() if inner.size else s.mean())


# ---------------------------------------------------------------------------- per-map scores


def _maps(values: Any, masks: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(N, H, W)`` float32 signed maps and, when given, ``(N, H, W)`` bool masks checked."""
    v = np.asarray(getattr(values, "values", values))
    if v.ndim != 4:
        raise ValueError(f"values must have shape (N, H, W, C), got {tuple(v.shape)}")
    m = v.astype(np.float64).sum(-1).astype(np.float32)
    if masks is None:
        return m, None
    masks = np.asarray(masks)
    if masks.shape != m.shape or masks.dtype != bool:
        raise ValueError(
            f"masks must be bool with shape {m.shape} (N, H, W), got {masks.dtype} {masks.shape}"
        )
    return m, masks


@jax.jit
def _localise(m: jax.Array, masks: jax.Array, dilated: jax.Array) -> tuple[jax.Array, ...]:
    count_trace("map_metrics")
    n = m.shape[0]
    flat, inside = m.reshape(n, -1), masks.reshape(n, -1)
    pos = jnp.maximum(flat, 0.0)
    total = pos.sum(-1)
    mass = jnp.where(total > 0, (pos * inside).sum(-1) / jnp.where(total > 0, total, 1.0), 0.0)
    peak = jnp.argmax(flat, -1)
    pointing = jnp.take_along_axis(dilated.reshape(n, -1), peak[:, None], -1)[:, 0]
    k = inside.sum(-1)
    order = jnp.argsort(-flat, axis=-1, stable=True)
    top = jnp.arange(flat.shape[1])[None] < k[:, None]
    hits = (jnp.take_along_axis(inside, order, -1) & top).sum(-1)
    rank_acc = jnp.where(k > 0, hits / jnp.maximum(k, 1), 0.0)
    return mass, pointing, rank_acc


def _dilate(masks: np.ndarray, tolerance: int) -> np.ndarray:
    if tolerance == 0:
        return masks
    from scipy.ndimage import binary_dilation

    r = np.arange(-tolerance, tolerance + 1)
    disk = (r[:, None] ** 2 + r[None] ** 2) <= tolerance**2
    return np.stack([binary_dilation(mk, disk) for mk in masks])


def _localisation(values: Any, masks: Any, tolerance: int = 0) -> tuple[np.ndarray, ...]:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | np.integer) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int (pixels), got {tolerance!r}")
    m, masks = _maps(values, masks)
    out = _localise(m, masks, _dilate(masks, int(tolerance)))
    return tuple(np.asarray(o, np.float64) for o in out)


def mask_mass(values: Any, masks: Any) -> np.ndarray:
    """Relevance mass accuracy (Arras et al. 2022): per map, the share of its positive
    attribution (channel-summed) that falls inside the object's mask. Higher is better; a map
    spread evenly scores the mask's area.

    Example::

        mask_mass(res.values, masks).mean()
    """
    return _localisation(values, masks)[0]


def pointing_game(values: Any, masks: Any, tolerance: int = 0) -> np.ndarray:
    """Pointing game (Zhang et al. 2018): 1 where the map's maximum lies in the mask, or within
    ``tolerance`` pixels of it (Zhang et al. use 15 px at 224); else 0. Higher is better.

    Example::

        pointing_game(res.values, masks, tolerance=1).mean()
    """
    return _localisation(values, masks, tolerance)[1]


def relevance_rank(values: Any, masks: Any) -> np.ndarray:
    """Relevance rank accuracy (Arras et al. 2022): of the ``K`` highest pixels (``K`` = mask
    area), the share inside the mask. Higher is better.

    Example::

        relevance_rank(res.values, masks)
    """
    return _localisation(values, masks)[2]


@jax.jit
def _spread(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    count_trace("map_metrics")
    n = a.shape[0]
    flat = jnp.sort(a.reshape(n, -1), axis=-1)
    size = flat.shape[1]
    total = flat.sum(-1)
    safe = jnp.where(total > 0, total, 1.0)
    i = jnp.arange(1, size + 1)
    gini = ((2 * i - size - 1) * flat).sum(-1) / (size * safe)
    p = flat / safe[:, None]
    entropy = -jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0).sum(-1)
    return jnp.where(total > 0, gini, 0.0), entropy


def sparseness(values: Any) -> np.ndarray:
    """Sparseness (Chalasani et al. 2020): the Gini index of each absolute channel-summed map,
    ``sum_i (2i - n - 1) a_(i) / (n sum a)`` over the sorted values. 0 for a flat map, near 1
    when one pixel holds everything. Higher means sparser (easier to read).

    Example::

        sparseness(res.values)
    """
    m, _ = _maps(values)
    return np.asarray(_spread(np.abs(m))[0], np.float64)


def complexity(values: Any) -> np.ndarray:
    """Complexity (Bhatt et al. 2020): the entropy ``-sum p log p`` of each map's share of
    absolute attribution per pixel. At most ``log(H W)`` (flat map); lower is simpler.

    Example::

        complexity(res.values)
    """
    m, _ = _maps(values)
    return np.asarray(_spread(np.abs(m))[1], np.float64)
