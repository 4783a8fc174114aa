"""Faithfulness metrics: does the model's output move the way an attribution map says it should?

Every metric perturbs the images (removes pixels in the map's order, draws random subsets, adds
noise), evaluates the model on all perturbed images of the batch in ONE jitted program (the
points are vmapped over images and perturbation steps, cut into chunks by a ``lax.scan``) and
compares the scores with the map. The attribution values, targets, baselines, masks and noise
are traced arguments: changing them for the same shapes compiles nothing new.

* :func:`deletion` / :func:`insertion` (Petsiuk et al. 2018): the score as pixels are removed
  (set to a baseline) or inserted (into a blurred image) most-attributed first; area under the
  curve (deletion: lower is better; insertion: higher is better).
* :func:`pixel_flipping` (Bach et al. 2015): deletion on the raw output, a few pixels per step.
* :func:`road` (Rong et al. 2022): removal with noisy linear imputation (MoRF and LeRF orders).
* :func:`mufidelity` (Bhatt et al. 2020): correlation between the attribution summed over random
  subsets and the output drop when the subset is removed (higher is better).
* :func:`infidelity` (Yeh et al. 2019), as ``captum.metrics.infidelity`` (lower is better).
* :func:`sensitivity_max` (Yeh et al. 2019), as ``captum.metrics.sensitivity_max`` (lower).

Example::

    res = jv.attribution.integrated_gradients(probe, x, y)
    d = deletion(probe, x, res, y)         # Curve: d.fractions, d.scores (M, N), d.auc (N,)
    infidelity(probe, x, res, y)           # (N,)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._checks import check_optional_positive_int
from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import cached_jit, count_trace
from jaxvis.attribution.baselines import make_baselines
from jaxvis.attribution.metrics import to_map
from jaxvis.attribution.result import Attribution

__all__ = [
    "OUTPUTS",
    "Curve",
    "RoadResult",
    "deletion",
    "infidelity",
    "insertion",
    "mufidelity",
    "noisy_linear_impute",
    "perturbed_scores",
    "pixel_flipping",
    "pixel_order",
    "road",
    "sensitivity_max",
]

#: What is scored: the target's softmax probability or the raw output (logit).
OUTPUTS = ("probability", "logit")


@dataclass(frozen=True)
class Curve:
    """A perturbation curve per image.

    Attributes:
        fractions: ``(M,)`` share of the pixels removed (or inserted) at each step, 0..1.
        scores: ``(M, N)`` the target's score at each step, per image.
        auc: ``(N,)`` area under each image's curve (trapezoid over ``fractions``).
        kind: ``"deletion"``, ``"insertion"`` or ``"pixel_flipping"``.
    """

    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray
    kind: str


# ---------------------------------------------------------------------------- inputs


def _values(attributions: Any) -> np.ndarray:
    return np.asarray(
        attributions.values if isinstance(attributions, Attribution) else attributions
    )


def _map(x: Any, attributions: Any, name: str = "attributions") -> np.ndarray:
    """The ``(N, H, W)`` signed map (channel sum) of attributions shaped like ``x``'s pixels."""
    v = _values(attributions)
    n, h, w = x.shape[:3]
    if v.ndim != 4 or v.shape[:3] != (n, h, w):
        raise ValueError(
            f"{name} must have shape ({n}, {h}, {w}, C) like the images' pixels, got "
            f"{tuple(v.shape)}; interior gradients: pick one alpha, values[i]"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return to_map(v)


def _full(x: Any, attributions: Any) -> np.ndarray:
    """Attributions broadcast to ``x``'s shape (a one-channel map is repeated per channel)."""
    _map(x, attributions)
    return np.broadcast_to(_values(attributions), x.shape).astype(np.float32)


def _output(output: Any) -> bool:
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    return output == "probability"


def _target(probe: ProbeLike, x: Any, target: Any, softmax: bool) -> _checks.Target:
    tgt = _checks.resolve_target(probe, x, target)
    if softmax and tgt.kind != "class":
        raise ValueError(
            "output='probability' needs class targets (int per image); use output='logit' "
            "for a callable target"
        )
    return tgt


def _fill(probe: ProbeLike, x: Any, spec: Any, name: str) -> np.ndarray:
    """A baseline spec (as :func:`~jaxvis.attribution.make_baselines`: "black", "blur", a
    number, an array) as one ``(N, H, W, C)`` float32 array."""
    if isinstance(spec, list):
        raise TypeError(f"{name} must be one baseline, not a list, got {spec!r}")
    try:
        return np.asarray(make_baselines(probe, x, spec)[0], np.float32)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{name}: {err}") from err


def pixel_order(m: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` maps to each pixel's rank, 0 for the largest value (ties: the pixel that
    comes first in row-major order ranks first), as ``(N, H, W)`` int32.

    Example::

        pixel_order(np.array([[[0.1, 0.9], [0.5, 0.5]]]))   # [[[3, 0], [1, 2]]]
    """
    flat = np.asarray(m, np.float64).reshape(len(m), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None], axis=1)
    return ranks.reshape(m.shape).astype(np.int32)


# ---------------------------------------------------------------------------- the kernel


def _point_order(n: jax.Array, m: jax.Array, a: jax.Array, b: jax.Array, rank: jax.Array, ks):
    """``a[n]`` with the pixels of rank below ``ks[m]`` taken from ``b[n]``."""
    return jnp.where((rank[n] < ks[m])[..., None], b[n], a[n])


def _point_mask(n, m, a, b, masks):
    """``a[n]`` with the pixels of ``masks[m]`` taken from ``b[n]``."""
    return jnp.where(masks[m][..., None], b[n], a[n])


def _point_images(n, m, a, images):
    """``images[m, n]`` (precomputed perturbed images; ``a`` is the unperturbed batch)."""
    return images[m, n]


def _point_minus(n, m, a, noise):
    """``a[n] - noise[n, m]`` (Captum's infidelity perturbation)."""
    return a[n] - noise[n, m]


_POINTS: dict[str, Callable[..., jax.Array]] = {
    "order": _point_order,
    "mask": _point_mask,
    "images": _point_images,
    "minus": _point_minus,
}
_SAMPLES_AXIS = {"order": (3, 0), "mask": (2, 0), "images": (1, 0), "minus": (1, 1)}


def _n_samples(kind: str, arrays: Sequence[Any]) -> int:
    arg, axis = _SAMPLES_AXIS[kind]
    return int(np.shape(arrays[arg])[axis])


def _build(probe: ProbeLike, tgt: _checks.Target, kind: str, softmax: bool, chunk: int) -> Callable:
    point = _POINTS[kind]

    def score(params: Any, z: jax.Array, index: jax.Array) -> jax.Array:
        out = probe.apply(params, z, (), False)[0]
        if softmax:
            out = jax.nn.softmax(out.reshape(out.shape[0], -1), axis=-1)
        return _checks.pick(out, tgt, index)

    def kernel(params: Any, index: jax.Array, *arrays: jax.Array) -> tuple[jax.Array, jax.Array]:
        count_trace("faithfulness")
        n_images, n_samples = arrays[0].shape[0], _n_samples(kind, arrays)
        total = n_images * n_samples
        n_chunks = -(-total // chunk)
        ids = jnp.arange(n_chunks * chunk, dtype=jnp.int32).reshape(n_chunks, chunk)

        def one(chunk_ids: jax.Array) -> jax.Array:
            flat = jnp.minimum(chunk_ids, total - 1)  # padding re-evaluates the last point
            m, n = flat // n_images, flat % n_images
            z = jax.vmap(lambda n_, m_: point(n_, m_, *arrays))(n, m)
            return score(params, z, index[n])

        scores = jax.lax.map(one, ids).reshape(-1)[:total].reshape(n_samples, n_images)
        return scores, score(params, arrays[0], index)

    return kernel


def perturbed_scores(
    probe: ProbeLike,
    tgt: _checks.Target,
    kind: str,
    arrays: Sequence[Any],
    softmax: bool = False,
    batch_size: int | None = None,
    params: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(M, N)`` of the perturbed images and ``(N,)`` of ``arrays[0]``, in one program.

    ``kind`` names how point ``(m, n)`` is made from ``arrays`` (see ``_POINTS``); compiled
    once per probe, target kind, ``kind``, output and chunk size, then for new shapes only."""
    batch_size = check_optional_positive_int(batch_size, "batch_size")
    total = int(np.shape(arrays[0])[0]) * _n_samples(kind, arrays)
    chunk = batch_size or _checks.auto_batch_size(probe, total)
    chunk = min(chunk, total)
    fn = cached_jit(
        probe,
        ("faithfulness", kind, tgt.static_key, softmax, chunk),
        lambda: _build(probe, tgt, kind, softmax, chunk),
        convolutions=False,
    )
    scores, base = fn(probe.params if params is None else params, tgt.index, *arrays)
    return np.asarray(scores, np.float64), np.asarray(base, np.float64)


# ---------------------------------------------------------------------------- curves


def _auc(fractions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    widths = np.diff(fractions)[:, None]
    return (0.5 * (scores[1:] + scores[:-1]) * widths).sum(0)


def _curve(
    probe: ProbeLike,
    x: Any,
    attributions: Any,
    target: Any,
    ks: np.ndarray,
    start: Any,
    end: Any,
    output: str,
    batch_size: int | None,
    kind: str,
) -> Curve:
    softmax = _output(output)
    x = _checks.check_images(probe, x)
    ranks = pixel_order(_map(x, attributions))
    tgt = _target(probe, x, target, softmax)
    scores, _ = perturbed_scores(
        probe, tgt, "order", (start, end, ranks, ks.astype(np.int32)), softmax, batch_size
    )
    fractions = ks / float(ranks[0].size)
    return Curve(fractions, scores, _auc(fractions, scores), kind)


def _steps(steps: Any, n_pixels: int) -> np.ndarray:
    steps = _checks.check_positive_int(steps, "steps")
    if steps > n_pixels:
        raise ValueError(f"steps must be at most the number of pixels ({n_pixels}), got {steps}")
    return np.round(np.linspace(0, n_pixels, steps + 1)).astype(np.int32)


def deletion(
    probe: ProbeLike,
    x: Any,
    attributions: Any,
    target: Any = None,
    *,
    steps: int = 32,
    baseline: Any = "black",
    output: str = "probability",
    batch_size: int | None = None,
) -> Curve:
    """Deletion curve (Petsiuk et al. 2018): the score as the most-attributed pixels are set to
    ``baseline``, all channels of a pixel together.

    Pixels are ranked by the channel-summed signed map, largest first (ties in row-major
    order); after step ``s`` the first ``round(s * H * W / steps)`` are removed. A faithful map
    makes the score fall fast: a low AUC is better.

    Example::

        d = deletion(probe, x, res, y, steps=32)
        d.auc.mean()
    """
    x = _checks.check_images(probe, x)
    ks = _steps(steps, x.shape[1] * x.shape[2])
    fill = _fill(probe, x, baseline, "baseline")
    return _curve(probe, x, attributions, target, ks, x, fill, output, batch_size, "deletion")


def insertion(
    probe: ProbeLike,
    x: Any,
    attributions: Any,
    target: Any = None,
    *,
    steps: int = 32,
    start: Any = "blur",
    output: str = "probability",
    batch_size: int | None = None,
) -> Curve:
    """Insertion curve (Petsiuk et al. 2018): from ``start`` (default a blurred copy of the
    image), the most-attributed pixels of the image are put back first. A high AUC is better.

    Example::

        ins = insertion(probe, x, res, y, start="blur")
    """
    x = _checks.check_images(probe, x)
    ks = _steps(steps, x.shape[1] * x.shape[2])
    begin = _fill(probe, x, start, "start")
    return _curve(probe, x, attributions, target, ks, begin, x, output, batch_size, "insertion")


def pixel_flipping(
    probe: ProbeLike,
    x: Any,
    attributions: Any,
    target: Any = None,
    *,
    pixels_per_step: int = 16,
    baseline: Any = "black",
    output: str = "logit",
    batch_size: int | None = None,
) -> Curve:
    """Pixel flipping (Bach et al. 2015): the raw output as pixels are flipped to ``baseline``
    ``pixels_per_step`` at a time, most-attributed first. A steep fall (low AUC) is better.

    Example::

        pf = pixel_flipping(probe, x, res, y, pixels_per_step=8)
    """
    x = _checks.check_images(probe, x)
    n_pixels = x.shape[1] * x.shape[2]
    per = _checks.check_positive_int(pixels_per_step, "pixels_per_step")
    if per > n_pixels:
        raise ValueError(f"pixels_per_step must be at most {n_pixels} (H*W), got {per}")
    ks = np.unique(np.r_[np.arange(0, n_pixels, per), n_pixels]).astype(np.int32)
    fill = _fill(probe, x, baseline, "baseline")
    return _curve(probe, x, attributions, target, ks, x, fill, output, batch_size, "pixel_flipping")


# ---------------------------------------------------------------------------- ROAD

#: Neighbour weights of the noisy linear imputation (Rong et al. 2022): sides 1/6, corners 1/12.
_NEIGHBOURS = (
    (-1, -1, 1 / 12),
    (-1, 0, 1 / 6),
    (-1, 1, 1 / 12),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (1, 1, 1 / 12),
)


def noisy_linear_impute(image: np.ndarray, removed: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Fill the ``removed`` pixels of one ``(H, W, C)`` image so that each equals the weighted
    mean of its in-image neighbours (sides 1/6, corners 1/12) -- one sparse linear system for
    all removed pixels, solved with scipy -- then add ``noise`` (shaped like the image) there.

    Example::

        filled = noisy_linear_impute(img, mask, 0.01 * rng.standard_normal(img.shape))
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    h, w, c = image.shape
    out = np.array(image, np.float64)
    idx = np.flatnonzero(removed.ravel())
    if idx.size == 0:
        return out.astype(np.float32)
    unknown = -np.ones(h * w, np.int64)
    unknown[idx] = np.arange(idx.size)
    rows_i, cols_j = np.divmod(idx, w)
    flat = out.reshape(h * w, c)
    rows, cols, vals = [np.arange(idx.size)], [np.arange(idx.size)], []
    diag = np.zeros(idx.size)
    rhs = np.zeros((idx.size, c))
    for di, dj, wt in _NEIGHBOURS:
        ii, jj = rows_i + di, cols_j + dj
        inside = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
        diag[inside] += wt
        k = np.where(inside, ii * w + jj, 0)
        u = np.where(inside, unknown[k], -1)
        is_unknown = inside & (u >= 0)
        rows.append(np.flatnonzero(is_unknown))
        cols.append(u[is_unknown])
        vals.append(np.full(int(is_unknown.sum()), -wt))
        known = inside & (u < 0)
        rhs[known] += wt * flat[k[known]]
    matrix = coo_matrix(
        (np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate(cols))),
        shape=(idx.size, idx.size),
    ).tocsc()
    solved = spsolve(matrix, rhs).reshape(idx.size, c)
    flat[idx] = solved + np.asarray(noise, np.float64).reshape(h * w, c)[idx]
    return out.astype(np.float32)


@dataclass(frozen=True)
class RoadResult:
    """ROAD curves: the score after removing a share of pixels with noisy linear imputation.

    Attributes:
        fractions: ``(F,)`` shares removed.
        morf: ``(F, N)`` scores removing the most relevant pixels first (lower is better).
        lerf: ``(F, N)`` scores removing the least relevant first (higher is better).
        gap: ``(N,)`` mean over fractions of ``lerf - morf`` (higher is better).
    """

    fractions: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        return (self.lerf - self.morf).mean(0)


def road(
    probe: ProbeLike,
    x: Any,
    attributions: Any,
    target: Any = None,
    *,
    fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    noise: float = 0.01,
    seed: int = 0,
    output: str = "probability",
    batch_size: int | None = None,
) -> RoadResult:
    """ROAD (Rong et al. 2022): remove ``fractions`` of the pixels, most relevant first (MoRF)
    and least relevant first (LeRF), impute them by :func:`noisy_linear_impute` on the host,
    and score all ``2 F N`` images in one jitted program.

    For fraction ``p`` MoRF removes the pixels of rank below ``round(p * H * W)`` (ranks as
    :func:`pixel_order`), LeRF those of rank at least ``H * W - round(p * H * W)``; the noise
    is ``noise * default_rng(seed).standard_normal((F, N, H, W, C))``, the same for both.

    Example::

        r = road(probe, x, res, y)
        r.morf.mean(1), r.lerf.mean(1), r.gap.mean()
    """
    softmax = _output(output)
    x = _checks.check_images(probe, x)
    ranks = pixel_order(_map(x, attributions))
    fr = np.asarray(fractions, np.float64)
    if fr.ndim != 1 or fr.size == 0 or np.any((fr <= 0) | (fr >= 1)):
        raise ValueError(f"fractions must be a non-empty list of shares in (0, 1), got {fractions}")
    if not (isinstance(noise, int | float) and noise >= 0):
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    tgt = _target(probe, x, target, softmax)
    n, h, w, c = x.shape
    host = np.asarray(x, np.float32)
    eps = noise * np.random.default_rng(seed).standard_normal((len(fr), n, h, w, c))
    counts = np.round(fr * h * w).astype(int)
    images = np.empty((2 * len(fr), n, h, w, c), np.float32)
    for f, k in enumerate(counts):
        for i in range(n):
            images[f, i] = noisy_linear_impute(host[i], ranks[i] < k, eps[f, i])
            images[len(fr) + f, i] = noisy_linear_impute(host[i], ranks[i] >= h * w - k, eps[f, i])
    scores, _ = perturbed_scores(probe, tgt, "images", (host, images), softmax, batch_size)
    return RoadResult(fr, scores[: len(fr)], scores[len(fr) :])


# ---------------------------------------------------------------------------- MuFidelity


def _subsets(h: int, w: int, samples: int, subset: float, grid: int, seed: int) -> np.ndarray:
    """``(samples, H, W)`` bool: ``round(subset * grid**2)`` random cells of a grid each."""
    rng = np.random.default_rng(seed)
    cells = grid * grid
    k = max(1, int(round(subset * cells)))
    chosen = np.zeros((samples, cells), bool)
    for s in range(samples):
        chosen[s, rng.permutation(cells)[:k]] = True
    ci = (np.arange(h) * grid) // h
    cj = (np.arange(w) * grid) // w
    return chosen.reshape(samples, grid, grid)[:, ci][:, :, cj]


def mufidelity(
    probe: ProbeLike,
    x: Any,
    attributions: Any,
    target: Any = None,
    *,
    samples: int = 128,
    subset: float = 0.2,
    grid: int = 8,
    baseline: Any = "black",
    seed: int = 0,
    masks: Any = None,
    output: str = "logit",
    batch_size: int | None = None,
) -> np.ndarray:
    """MuFidelity (Bhatt et al. 2020): per image, the Pearson correlation over random subsets
    ``S`` between ``sum_{i in S} a_i`` and ``f(x) - f(x with S set to baseline)``.

    Subsets are ``round(subset * grid**2)`` cells of a ``grid x grid`` partition, the same for
    every image (or ``masks``, ``(samples, H, W)`` bool, True = removed). Higher is better; 0
    when either side is constant.

    Example::

        mufidelity(probe, x, res, y, samples=128, grid=8)   # (N,)
    """
    softmax = _output(output)
    x = _checks.check_images(probe, x)
    amap = _map(x, attributions)
    n, h, w, _ = x.shape
    if masks is None:
        samples = _checks.check_positive_int(samples, "samples")
        grid = _checks.check_positive_int(grid, "grid")
        if not 0 < subset < 1:
            raise ValueError(f"subset must be a share in (0, 1), got {subset!r}")
        if grid > min(h, w):
            raise ValueError(f"grid must be at most the image side {min(h, w)}, got {grid}")
        masks = _subsets(h, w, samples, subset, grid, seed)
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim != 3 or masks.shape[1:] != (h, w):
        raise ValueError(f"masks must be bool (samples, {h}, {w}), got {masks.dtype} {masks.shape}")
    tgt = _target(probe, x, target, softmax)
    fill = _fill(probe, x, baseline, "baseline")
    scores, base = perturbed_scores(probe, tgt, "mask", (x, fill, masks), softmax, batch_size)
    drop = base[None] - scores  # (S, N)
    attr = np.einsum("shw,nhw->sn", masks.astype(np.float64), amap)
    return _pearson(attr, drop)


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Column-wise Pearson correlation of ``(S, N)`` arrays; 0 where either is constant."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    denom = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.where(denom > 0, (a * b).sum(0) / np.where(denom > 0, denom, 1.0), 0.0)


# ---------------------------------------------------------------------------- Captum's two


def _noise(x: Any, noise: Any, samples: Any, draw: Callable[[tuple], np.ndarray]) -> np.ndarray:
    if noise is None:
        samples = _checks.check_positive_int(samples, "samples")
        return draw((x.shape[0], samples, *x.shape[1:])).astype(np.float32)
    noise = np.asarray(noise, np.float32)
    if noise.ndim != 5 or noise.shape[0] != x.shape[0] or noise.shape[2:] != x.shape[1:]:
        raise ValueError(
            f"noise must have shape ({x.shape[0]}, samples, {', '.join(map(str, x.shape[1:]))})"
            f" (per image, per sample), got {noise.shape}"
        )
    return noise


def infidelity(
    probe: ProbeLike,
    x: Any,
    attributions: Any,
    target: Any = None,
    *,
    noise: Any = None,
    samples: int = 10,
    std: float = 0.003,
    seed: int = 0,
    normalize: bool = False,
    output: str = "logit",
    batch_size: int | None = None,
) -> np.ndarray:
    """Infidelity (Yeh et al. 2019), as ``captum.metrics.infidelity``: per image,
    ``mean_s (I_s . a - (f(x) - f(x - I_s)))**2`` over perturbations ``I_s``.

    ``noise``: the perturbations ``(N, samples, H, W, C)`` (Captum's ``perturb_func`` returning
    ``(I, x - I)`` with the same array gives the same numbers); default Gaussian with ``std``.
    ``normalize``: scale ``I . a`` by the least-squares ``beta`` first (Captum's option).
    A one-channel map (CAMs) counts for every channel of its pixel. Lower is better.

    Example::

        infidelity(probe, x, res, y, samples=16)          # (N,)
    """
    softmax = _output(output)
    x = _checks.check_images(probe, x)
    a = _full(x, attributions).astype(np.float64)
    rng = np.random.default_rng(seed)
    perturb = _noise(x, noise, samples, lambda shape: std * rng.standard_normal(shape))
    tgt = _target(probe, x, target, softmax)
    scores, base = perturbed_scores(probe, tgt, "minus", (x, perturb), softmax, batch_size)
    diff = base[:, None] - scores.T  # (N, S)
    dot = np.einsum("nshwc,nhwc->ns", perturb.astype(np.float64), a)
    if normalize:
        beta = (dot * diff).sum(1) / np.where((dot * dot).sum(1) != 0, (dot * dot).sum(1), 1.0)
        dot = beta[:, None] * dot
    return ((dot - diff) ** 2).mean(1)


def sensitivity_max(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    method: str | Callable[..., Any] = "saliency",
    options: dict[str, Any] | None = None,
    noise: Any = None,
    samples: int = 10,
    radius: float = 0.02,
    seed: int = 0,
    values: Any = None,
) -> np.ndarray:
    """Max-sensitivity (Yeh et al. 2019), as ``captum.metrics.sensitivity_max``: per image,
    ``max_s ||e(x + d_s) - e(x)|| / ||e(x)||`` (Frobenius norms; ``||e(x)|| = 0`` counts as 1).

    ``method``: a registered method name or ``fn(probe, x, target, **options)``; all
    ``N * samples`` perturbed images are explained in one call of it. ``noise``: the
    perturbations ``(N, samples, H, W, C)``; default uniform in ``[-radius, radius]`` (Captum's
    default). ``values``: the explanation at ``x`` when already computed. Lower is better.

    Example::

        sensitivity_max(probe, x, y, method="integrated_gradients", options={"steps": 16})
    """
    from jaxvis.attribution.registry import get_method

    fn = get_method(method).fn if isinstance(method, str) else method
    if not callable(fn):
        raise TypeError(f"method must be a registered name or a callable, got {method!r}")
    if not (isinstance(radius, int | float) and radius > 0):
        raise ValueError(f"radius must be a positive number, got {radius!r}")
    options = dict(options or {})
    x = _checks.check_images(probe, x)
    rng = np.random.default_rng(seed)
    d = _noise(x, noise, samples, lambda shape: rng.uniform(-radius, radius, shape))
    n, s = d.shape[:2]
    tgt = _checks.resolve_target(probe, x, target)
    if tgt.kind == "callable":
        target_rep: Any = target
    else:
        target_rep = np.repeat(tgt.index, s)
    if values is None:
        values = fn(probe, x, tgt.index if tgt.kind != "callable" else target, **options)
    e0 = _values(values).reshape(n, -1).astype(np.float64)
    moved = (np.asarray(x)[:, None] + d).reshape(n * s, *x.shape[1:])
    e1 = _values(fn(probe, moved, target_rep, **options)).reshape(n, s, -1).astype(np.float64)
    norm0 = np.linalg.norm(e0, axis=1)
    norm0 = np.where(norm0 == 0, 1.0, norm0)
    return (np.linalg.norm(e1 - e0[:, None], axis=2) / norm0[:, None]).max(1)
