"""Similarity of attribution maps: Spearman rank correlation and SSIM, numpy only.

Example::

    spearman(map_a, map_b)          # in [-1, 1], ties get their average rank
    ssim(map_a, map_b)              # structural similarity (Wang et al. 2004), maps in [0, 1]
    to_map(res.values, absolute=True)   # (N, H, W): channels summed, for comparing maps
"""

from __future__ import annotations

import numpy as np

__all__ = ["normalise_map", "rank", "spearman", "ssim", "to_map"]


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
