"""Affine bilinear resampling with a gather-only gradient.

``warp(image, m, b, reach)`` samples ``image`` (H, W, C) at ``s = m @ o + b`` for every output
pixel ``o`` (bilinear, grey ``FILL`` outside the image). Its value is what
``jnp.take``-based bilinear sampling gives; its gradient is different in *how* it is computed.
The transpose of a gather is a scatter-add, which XLA:CPU runs as a slow serial loop (most of
the cost of Lucid's transforms in a feature-visualisation step). Here the backward pass is a
gather too: the output pixels that read source pixel ``s`` lie within ``reach`` pixels (per
axis) of ``m^-1 (s - b)``, so each source pixel sums a ``2 * ceil(reach)`` square window of
the output gradient, weighted by the same bilinear "tent" weights. The result equals the
scatter-add (``jax.grad`` of the plain sampler) up to float rounding; tests check it.

``reach`` is a static bound on ``|m^-1|``'s per-axis extent of a unit box: ``f (|cos a| +
|sin a|)`` for a zoom ``1/f`` and rotation ``a`` (see :func:`reach_bound`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["FILL", "reach_bound", "sample_plain", "warp"]

FILL = 0.5  #: value outside the image (grey, as Lucid's constant padding)


def reach_bound(max_factor: float, max_degrees: float) -> float:
    """Per-axis extent of ``m^-1`` applied to the box ``(-1, 1)^2`` for every zoom up to
    ``max_factor`` and rotation up to ``max_degrees`` (``|cos| + |sin|`` peaks at 45°)."""
    a = math.radians(min(abs(max_degrees), 45.0))
    return max_factor * (math.cos(a) + math.sin(a))


def _grid(h: int, w: int) -> tuple[jax.Array, jax.Array]:
    return jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )


def _coords(m: jax.Array, b: jax.Array, oy: jax.Array, ox: jax.Array) -> tuple[jax.Array, ...]:
    return m[0, 0] * oy + m[0, 1] * ox + b[0], m[1, 0] * oy + m[1, 1] * ox + b[1]


def _tent(d: jax.Array) -> jax.Array:
    return jnp.maximum(1.0 - jnp.abs(d), 0.0)


def sample_plain(image: jax.Array, m: jax.Array, b: jax.Array) -> jax.Array:
    """The forward sampler (its ``jax.grad`` is the reference scatter-add)."""
    h, w, c = image.shape
    sy, sx = _coords(m, b, *_grid(h, w))
    y0, x0 = jnp.floor(sy), jnp.floor(sx)
    flat = (image - FILL).reshape(h * w, c)
    out = jnp.zeros((h, w, c), image.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            y, x = y0 + dy, x0 + dx
            inside = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
            weight = jnp.where(inside, _tent(sy - y) * _tent(sx - x), 0.0)
            idx = (jnp.clip(y, 0, h - 1) * w + jnp.clip(x, 0, w - 1)).astype(jnp.int32)
            out = out + weight[..., None] * jnp.take(flat, idx.reshape(-1), axis=0).reshape(h, w, c)
    return out + FILL


def _transpose(g: jax.Array, m: jax.Array, b: jax.Array, reach: float) -> jax.Array:
    """``d sample_plain / d image`` applied to ``g`` (H, W, C), as a windowed gather."""
    h, w, c = g.shape
    ys, xs = _grid(h, w)
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    ry, rx = ys - b[0], xs - b[1]
    cy = (m[1, 1] * ry - m[0, 1] * rx) / det  # m^-1 (s - b)
    cx = (-m[1, 0] * ry + m[0, 0] * rx) / det
    fy, fx = jnp.floor(cy), jnp.floor(cx)
    r = math.ceil(reach + 1e-3)
    flat = g.reshape(h * w, c)
    grad = jnp.zeros((h, w, c), g.dtype)
    for dy in range(1 - r, r + 1):
        for dx in range(1 - r, r + 1):
            oy, ox = fy + dy, fx + dx
            sy, sx = _coords(m, b, oy, ox)
            inside = (oy >= 0) & (oy <= h - 1) & (ox >= 0) & (ox <= w - 1)
            weight = jnp.where(inside, _tent(sy - ys) * _tent(sx - xs), 0.0)
            idx = (jnp.clip(oy, 0, h - 1) * w + jnp.clip(ox, 0, w - 1)).astype(jnp.int32)
            grad = grad + weight[..., None] * jnp.take(flat, idx.reshape(-1), axis=0).reshape(
                h, w, c
            )
    return grad


def warp(image: jax.Array, m: jax.Array, b: jax.Array, reach: float) -> jax.Array:
    """Bilinear sample of ``image`` (H, W, C) at ``m @ o + b`` for each output pixel ``o``.

    Differentiable in ``image`` only (``m`` and ``b`` are random draws, not optimised).

    Example::

        m = jnp.eye(2) / 1.1                              # zoom in by 1.1
        out = warp(img, m, jnp.zeros(2), reach=1.1)
    """

    return _warp(reach)(image, m, b)


def _warp(reach: float) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """The custom-VJP sampler for one static ``reach`` (built once, then cached)."""
    if reach not in _WARPS:

        @jax.custom_vjp
        def run(x: jax.Array, m: jax.Array, b: jax.Array) -> jax.Array:
            return sample_plain(x, m, b)

        def fwd(x: jax.Array, m: jax.Array, b: jax.Array) -> tuple[jax.Array, tuple]:
            return sample_plain(x, m, b), (m, b)

        def bwd(res: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
            m, b = res  # the sampling positions are random draws: no gradient flows to them
            return _transpose(g, m, b, reach), jnp.zeros_like(m), jnp.zeros_like(b)

        run.defvjp(fwd, bwd)
        _WARPS[reach] = run
    return _WARPS[reach]


_WARPS: dict[float, Callable[[jax.Array, jax.Array, jax.Array], jax.Array]] = {}
