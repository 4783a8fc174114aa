"""The one vectorised loop behind every perturbation method: scores of many perturbed inputs.

A method describes its perturbations (:class:`Perturbed`) as a function of ``(m, e)`` --
perturbation ``m`` of example ``e`` -- giving the perturbed images and, optionally, a map
``(H, W)`` per perturbation (the occluded window, the RISE mask, the ablated segment). The
``M * N`` perturbations are cut into chunks of ``chunk``; each chunk is one batched model
call (a ``lax.scan`` over the chunks, inside the method's one jitted program), and adds
``value(score, f(x)) * map`` into one ``(N, H, W)`` accumulator. Chunking changes only the
order of float additions, never which perturbations are evaluated.

Example::

    sums, scores = perturbed_sums(score, params, index, fx, pts, n_examples=2, chunk=64)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Perturbed", "perturbed_sums"]

Score = Callable[[Any, jax.Array, jax.Array], jax.Array]


class Perturbed(NamedTuple):
    """The perturbations of a method (built inside a trace, from traced arguments).

    ``point(m, e)`` gives, for perturbations ``m`` (B,) of examples ``e`` (B,), the images
    ``(B, H, W, C)`` and their maps ``(B, H, W)`` (or None: only the scores are wanted);
    ``value(s, fx)`` is what each map is weighted by, from the perturbed score ``s`` and the
    example's unperturbed score ``fx``."""

    n_points: int
    point: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array | None]]
    value: Callable[[jax.Array, jax.Array], jax.Array]
    map_shape: tuple[int, ...]


def perturbed_sums(
    score: Score,
    params: Any,
    index: jax.Array,
    fx: jax.Array,
    pts: Perturbed,
    n_examples: int,
    chunk: int,
) -> tuple[jax.Array, jax.Array]:
    """Inside a trace: ``(sum of value * map per example (N, H, W), scores (M, N))``."""
    total = pts.n_points * n_examples
    chunk = max(1, min(chunk, total))
    n_chunks = -(-total // chunk)
    ids = jnp.arange(n_chunks * chunk, dtype=jnp.int32).reshape(n_chunks, chunk)

    def body(acc: jax.Array, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
        valid = ids < total
        ids = jnp.where(valid, ids, 0)
        m, e = ids // n_examples, ids % n_examples
        images, maps = pts.point(m, e)
        s = score(params, images, index[e])
        if maps is not None:
            v = jnp.where(valid, pts.value(s, fx[e]), 0.0)
            acc = acc.at[e].add(v.reshape(-1, *([1] * len(pts.map_shape))) * maps)
        return acc, s

    acc = jnp.zeros((n_examples, *pts.map_shape), jnp.float32)
    if n_chunks == 1:
        acc, s = body(acc, ids[0])
    else:
        acc, s = jax.lax.scan(body, acc, ids)
    return acc, s.reshape(-1)[:total].reshape(pts.n_points, n_examples)
