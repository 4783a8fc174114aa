"""XRAI (Kapishnikov et al. 2019): image regions ranked by the integrated-gradients mass they
gain per pixel, after PAIR's ``saliency`` library (its "full" algorithm and defaults).

1. Integrated gradients from each baseline (default: black and white), PAIR's nodes
   ``alpha = linspace(0, 1, steps)`` with weight ``1 / steps`` each, averaged over the
   baselines; the map is the maximum over the colour channels.
2. Segments (on the host, scikit-image): the image rescaled to ``[-1, 1]`` and resized to
   ``resize x resize`` (bicubic, anti-aliased), Felzenszwalb's graph segmentation at each of
   ``scales`` (``sigma=0.8``, ``min_size=150``), each label resized back (nearest) to a mask
   and dilated by a disk of ``dilation`` pixels.
3. Greedy, jitted: starting from nothing, add the segment whose new pixels (those not yet
   covered) have the highest mean IG, dropping segments that would add fewer than
   ``min_pixel_diff`` pixels, until the covered area exceeds ``area_threshold`` or no
   segment is left; each pixel's value is the gain of the segment that first covered it, the
   uncovered rest the mean IG over it.

Example::

    res = xrai(probe, x, target=3, steps=50)
    res.values                  # (N, H, W, 1): per-pixel region gain
    res.extra["ranks"]          # (N, H, W): 1 = the first region added
    res.extra["ig"]             # the integrated gradients it ranked, like x
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import _plan
from jaxvis._checks import check_optional_positive_int
from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import cached_jit, compiled_sums, count_trace
from jaxvis.attribution.baselines import describe, make_baselines
from jaxvis.attribution.integrated import _ig_parts
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution

__all__ = ["felzenszwalb_masks", "xrai"]

SCALES = (50, 100, 150, 250, 500, 1200)  # PAIR's Felzenszwalb scales


def felzenszwalb_masks(
    image: np.ndarray,
    scales: Sequence[float] = SCALES,
    sigma: float = 0.8,
    min_size: int = 150,
    resize: int | None = 224,
    dilation: int = 5,
) -> np.ndarray:
    """Boolean masks ``(K, H, W)`` of one image ``(H, W, C)``: every Felzenszwalb segment at
    every scale, dilated (PAIR's segmentation for XRAI; see the module docstring).

    Example::

        masks = felzenszwalb_masks(x[0])        # (K, H, W) bool
    """
    from skimage.morphology import dilation as dilate
    from skimage.morphology import disk
    from skimage.segmentation import felzenszwalb
    from skimage.transform import resize as resize_image

    im = np.asarray(image)  # rescaled in its own dtype, as PAIR does (segments depend on it)
    lo, hi = im.min(), im.max()
    im = (im - lo) / (hi - lo) * 2.0 - 1.0 if hi > lo else np.zeros_like(im)
    shape = im.shape[:2]
    if resize is not None:
        im = resize_image(
            im, (resize, resize), order=3, mode="constant", preserve_range=True,
            anti_aliasing=True,
        )  # fmt: skip
    masks = []
    for scale in scales:
        seg = felzenszwalb(im, scale=scale, sigma=sigma, min_size=min_size)
        if resize is not None:
            seg = resize_image(
                seg, shape, order=0, preserve_range=True, mode="constant", anti_aliasing=False
            ).astype(int)
        masks.extend(seg == label for label in range(seg.min(), seg.max() + 1))
    if dilation:
        foot = disk(dilation)
        masks = [dilate(m, footprint=foot) for m in masks]
    return np.stack(masks).astype(bool)


def _greedy(
    attr: jax.Array, masks: jax.Array, area_threshold: jax.Array, min_pixels: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """One image: ``(values (H, W), ranks (H, W))`` of the greedy region ranking."""
    k = masks.shape[0]
    flat = masks.reshape(k, -1)
    a = attr.reshape(-1)

    def body(state: tuple) -> tuple:
        covered, alive, out, added_at, count, _ = state
        new = flat & ~covered
        n_new = new.sum(-1)
        alive = alive & (n_new >= min_pixels)
        gains = jnp.where(alive, (new * a).sum(-1) / jnp.maximum(n_new, 1), -jnp.inf)
        best = jnp.argmax(gains)
        go = alive.any()
        add = new[best] & go
        out = jnp.where(add, gains[best], out)
        added_at = jnp.where(add, count, added_at)
        covered = covered | add
        alive = alive.at[best].set(False)
        keep_on = go & (covered.mean() <= area_threshold)
        return covered, alive, out, added_at, count + go, keep_on

    n = a.shape[0]
    init = (
        jnp.zeros(n, bool), flat.any(-1), jnp.zeros(n, jnp.float32), jnp.full(n, -1),
        jnp.int32(0), jnp.bool_(True),
    )  # fmt: skip
    covered, _, out, added_at, count, _ = jax.lax.while_loop(lambda s: s[-1], body, init)
    rest = ~covered
    fill = jnp.where(rest.any(), (a * rest).sum() / jnp.maximum(rest.sum(), 1), 0.0)
    out = jnp.where(covered, out, fill)
    # ranks as PAIR's: regions by falling gain, 1 first; the uncovered rest last
    gain_of = jnp.full(k + 1, -jnp.inf).at[jnp.where(covered, added_at, k)].max(out)
    order = jnp.argsort(jnp.argsort(-gain_of[:k]))  # rank of each added region
    ranks = jnp.where(covered, order[jnp.clip(added_at, 0)] + 1, count + 1)
    return out.reshape(attr.shape), ranks.reshape(attr.shape)


@register("path", "XRAI", layer_map=True)
def xrai(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    steps: int = 100,
    baseline: Any = ("black", "white"),
    segments: Any = None,
    area_threshold: float = 1.0,
    min_pixel_diff: int = 50,
    scales: Sequence[float] = SCALES,
    resize: int | None = 224,
    dilation: int = 5,
    batch_size: int | None = None,
    params: Any = None,
) -> Attribution:
    """XRAI regions of ``target``, ranked by their gain in integrated-gradients density.

    Defaults are PAIR's (``XRAIParameters``: ``steps=100``, ``area_threshold=1.0``,
    ``min_pixel_diff=50``; its Felzenszwalb settings), except the baselines: PAIR takes each
    image's own minimum and maximum value, jaxvis the probe's input range (``"black"``,
    ``"white"``; any list of :mod:`~jaxvis.attribution.baselines` specs). ``segments``: your
    own masks, a bool array ``(K, H, W)`` (all images) or ``(N, K, H, W)``, instead of the
    Felzenszwalb ones. ``area_threshold`` and ``min_pixel_diff`` are traced; the number of
    masks is padded to a power of two, so most images share one program.

    Returns ``values (N, H, W, 1)`` (registered as a map: ``extra["layer_map"]`` is the same
    ``(N, H, W)``, at the input's resolution), ``extra["ranks"] (N, H, W)`` (1 = first),
    ``extra["ig"]`` (the IG attribution) and ``extra["ig_delta"]`` (its completeness gap).

    Example::

        res = xrai(probe, x, target=3, segments=my_masks)
    """
    x = np.asarray(_checks.check_images(probe, x))
    steps = _checks.check_positive_int(steps, "steps")
    batch_size = check_optional_positive_int(batch_size, "batch_size")
    min_pixel_diff = _checks.check_positive_int(min_pixel_diff, "min_pixel_diff")
    if isinstance(area_threshold, bool) or not isinstance(area_threshold, int | float):
        raise TypeError(f"area_threshold must be a number in (0, 1], got {area_threshold!r}")
    if not 0 < area_threshold <= 1:
        raise ValueError(f"area_threshold must be in (0, 1], got {area_threshold}")
    n, size = x.shape[0], tuple(x.shape[1:3])
    masks = _check_segments(segments, n, size)
    if masks is None:
        _check_segmentation(scales, resize, dilation)
    tgt = _checks.resolve_target(probe, x, target)
    specs = list(baseline) if isinstance(baseline, tuple | list) else [baseline]
    base = make_baselines(probe, x, specs)
    # dispatched first: JAX computes IG asynchronously while the host segments the images
    ig, ig_delta = _pair_ig(probe, x, tgt, base, steps, batch_size, params)
    if masks is None:
        found = [felzenszwalb_masks(im, scales, resize=resize, dilation=dilation) for im in x]
        masks = _stack(found)

    def build() -> Any:
        def kernel(ig: jax.Array, masks: jax.Array, area: jax.Array, pixels: jax.Array):
            count_trace("xrai")
            attr = ig.max(axis=-1)
            return jax.vmap(_greedy, in_axes=(0, 0, None, None))(attr, masks, area, pixels)

        return kernel

    run = cached_jit(probe, ("xrai",), build, convolutions=False)
    values, ranks = run(ig, masks, jnp.float32(area_threshold), jnp.int32(min_pixel_diff))
    return Attribution(
        values=values[..., None],
        delta=None,
        method="xrai",
        target=None if tgt.kind == "callable" else tgt.index,
        settings={
            "steps": steps,
            "baseline": describe(specs),
            "area_threshold": float(area_threshold),
            "min_pixel_diff": min_pixel_diff,
            "segments": "given" if segments is not None else f"felzenszwalb{tuple(scales)}",
        },
        extra={"layer_map": values, "ranks": ranks, "ig": ig, "ig_delta": ig_delta},
    )


def _pair_ig(probe, x, tgt, base, steps, batch_size, params) -> tuple:  # noqa: ANN001
    """IG with PAIR's nodes (``linspace(0, 1, steps)``, weights ``1 / steps``), averaged over
    the baselines, through the shared gradient engine."""
    _plan.estimate(probe, x.shape[1:])
    n_base = base.shape[0]
    total = n_base * steps * x.shape[0]
    plan = _plan.plan(probe, "integrated_gradients", x.shape[1:], total, batch_size)
    run = compiled_sums(
        probe,
        ("ig", tgt.static_key, n_base),
        "integrated_gradients",
        lambda: _ig_parts(probe, tgt, n_base, plan.mode == "python"),
        plan,
    )
    params = probe.params if params is None else params
    alphas = jnp.asarray(np.linspace(0.0, 1.0, steps), jnp.float32)
    weights = jnp.full((steps,), 1.0 / steps, jnp.float32)
    values, delta, _, _ = run(params, x, base, tgt.index, alphas, weights, total=total)
    return values, delta


def _stack(per_image: list[np.ndarray]) -> np.ndarray:
    """Masks of each image padded (with empty masks) to one power-of-two count."""
    k = max(m.shape[0] for m in per_image)
    k = 1 << int(np.ceil(np.log2(max(k, 1))))
    out = np.zeros((len(per_image), k, *per_image[0].shape[1:]), bool)
    for i, m in enumerate(per_image):
        out[i, : m.shape[0]] = m
    return out


def _check_segmentation(scales: Any, resize: Any, dilation: Any) -> None:
    values = np.asarray(scales, dtype=object).ravel() if np.ndim(scales) else [scales]
    if not len(values) or not all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) and v > 0
        for v in values
    ):
        raise ValueError(f"scales must be a non-empty sequence of numbers > 0, got {scales!r}")
    if resize is not None:
        _checks.check_positive_int(resize, "resize")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
        raise ValueError(
            f"dilation must be an int >= 0 (a disk radius in pixels), got {dilation!r}"
        )


def _check_segments(segments: Any, n: int, size: tuple[int, int]) -> np.ndarray | None:
    if segments is None:
        return None
    arr = np.asarray(segments)
    if arr.dtype != bool:
        raise TypeError(f"segments must be a bool array of masks, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = np.broadcast_to(arr, (n, *arr.shape))
    if arr.ndim != 4 or arr.shape[0] != n or tuple(arr.shape[2:]) != size:
        raise ValueError(
            f"segments must have shape (K, {size[0]}, {size[1]}) or (N={n}, K, {size[0]}, "
            f"{size[1]}), got {np.shape(segments)}"
        )
    return _stack(list(arr))
