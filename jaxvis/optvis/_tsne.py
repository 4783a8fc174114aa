"""Exact t-SNE (van der Maaten & Hinton 2008) as one jitted program, for a few thousand points.

The atlas's default 2-D layout. Exact O(N^2) t-SNE fits in memory up to a few thousand points
and runs as one compiled ``lax.fori_loop`` (about a second for 1,000 points on a CPU, where
scikit-learn's Barnes-Hut t-SNE takes tens of seconds and UMAP's first call compiles numba for
about as long). The recipe is the paper's and scikit-learn's: perplexity-calibrated Gaussian
affinities (bisection on each row's precision), symmetrised; early exaggeration 12 for the
first 250 iterations; momentum 0.5 then 0.8; per-coordinate gains; initial points the first
two principal components scaled to a standard deviation of 1e-4.

Example::

    xy = tsne(np.random.default_rng(0).standard_normal((500, 16)))   # (500, 2)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._xla import jit

__all__ = ["tsne"]

EXAGGERATION = 12.0
EXAGGERATION_ITERS = 250


def tsne(x: Any, *, perplexity: float = 30.0, iters: int = 500) -> np.ndarray:
    """2-D t-SNE embedding ``(N, 2)`` of the rows of ``x`` ``(N, D)`` (deterministic)."""
    x = np.asarray(x, np.float32)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    perplexity = float(min(perplexity, (n - 1) / 3.0))
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    y0 = centred @ vt[:2].T
    y0 = (y0 / (y0[:, 0].std() + 1e-12) * 1e-4).astype(np.float32)
    lr = max(n / EXAGGERATION / 4.0, 50.0)
    out = _run(jnp.asarray(x), jnp.asarray(y0), jnp.float32(perplexity), jnp.float32(lr), iters)
    return np.asarray(out, np.float64)


def _affinities(x: jax.Array, perplexity: jax.Array) -> jax.Array:
    d = jnp.sum((x[:, None] - x[None]) ** 2, axis=-1)
    n = x.shape[0]
    off = ~jnp.eye(n, dtype=bool)
    target = jnp.log(perplexity)

    def row_p(beta: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = jnp.where(off, -d * beta[:, None], -jnp.inf)
        p = jax.nn.softmax(logits, axis=1)
        entropy = -jnp.sum(jnp.where(off, p * jnp.log(p + 1e-12), 0.0), axis=1)
        return p, entropy

    def bisect(_: int, state: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[Any, ...]:
        lo, hi, beta = state
        _, h = row_p(beta)
        too_flat = h > target  # entropy too high: sharpen (raise beta)
        lo = jnp.where(too_flat, beta, lo)
        hi = jnp.where(too_flat, hi, beta)
        beta = jnp.where(jnp.isinf(hi), beta * 2.0, (lo + hi) / 2.0)
        return lo, hi, beta

    scale = 1.0 / (jnp.median(d) + 1e-12)
    init = (jnp.zeros(n), jnp.full(n, jnp.inf), jnp.full(n, scale))
    _, _, beta = jax.lax.fori_loop(0, 64, bisect, init)
    p, _ = row_p(beta)
    p = (p + p.T) / (2.0 * n)
    return jnp.maximum(p, 1e-12)


def _run(x: jax.Array, y0: jax.Array, perplexity: jax.Array, lr: jax.Array, iters: int) -> Any:
    return _compiled(iters)(x, y0, perplexity, lr)


def _build(iters: int) -> Any:
    def run(x: jax.Array, y0: jax.Array, perplexity: jax.Array, lr: jax.Array) -> jax.Array:
        p = _affinities(x, perplexity)
        off = 1.0 - jnp.eye(x.shape[0])

        def step(i: jax.Array, state: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
            y, vel, gains = state
            exaggerate = jnp.where(i < EXAGGERATION_ITERS, EXAGGERATION, 1.0)
            diff = y[:, None] - y[None]
            w = off / (1.0 + jnp.sum(diff**2, axis=-1))
            q = w / jnp.sum(w)
            grad = 4.0 * jnp.sum(((exaggerate * p - q) * w)[..., None] * diff, axis=1)
            momentum = jnp.where(i < EXAGGERATION_ITERS, 0.5, 0.8)
            same = jnp.sign(grad) == jnp.sign(vel)
            gains = jnp.maximum(jnp.where(same, gains * 0.8, gains + 0.2), 0.01)
            vel = momentum * vel - lr * gains * grad
            return y + vel, vel, gains

        state = (y0, jnp.zeros_like(y0), jnp.ones_like(y0))
        y, _, _ = jax.lax.fori_loop(0, iters, step, state)
        return y

    return jit(run)


_PROGRAMS: dict[int, Any] = {}


def _compiled(iters: int) -> Any:
    if iters not in _PROGRAMS:
        _PROGRAMS[iters] = _build(iters)
    return _PROGRAMS[iters]
