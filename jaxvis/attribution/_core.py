"""The one vectorised loop behind every gradient method: gradients at many points, summed.

Each method describes its points as a function of ``(m, n)`` -- sample ``m`` (an alpha, a
baseline, a noise draw) of example ``n`` -- and a weight per sample. The ``M * N`` points are
cut into chunks of ``batch_size``; ``lax.scan`` runs the chunks, each one batched model call
with its gradient, and adds ``weight * contribution`` into one accumulator per group. Chunking
only changes the order of float additions, never which points are evaluated.

Every kernel is traced under :func:`jaxvis.fast_conv.fast_convolutions`: same values, but the
NNX convolutions' input gradients stay on XLA:CPU's fast path inside the ``lax.scan`` (without
it, IG of 16 images x 50 steps took 2.2 s on ``shapes_cnn`` instead of 0.32 s, and 0.16 s
instead of 0.11 s on ``mnist_cnn``, on 2 cores; see DESIGN.md, "XLA on the CPU").

Every jitted function is cached per probe and per static setting; shapes are the only other
thing that compiles, so targets, alphas, baselines, noise level and seed are traced values.
``trace_counts()`` reports how often each was traced (i.e. compiled), for tests.
"""

from __future__ import annotations

import collections
import functools
import weakref
from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp

from jaxvis._rng import fast_draws
from jaxvis._xla import jit
from jaxvis.fast_conv import fast_convolutions

_CACHE: weakref.WeakKeyDictionary[Any, dict[Hashable, Callable]] = weakref.WeakKeyDictionary()
_TRACES: collections.Counter[str] = collections.Counter()

Score = Callable[[Any, jax.Array, jax.Array], jax.Array]


def trace_counts() -> dict[str, int]:
    """How many times each attribution kernel has been traced (each trace compiles once).

    Example::

        before = trace_counts().get("integrated_gradients", 0)
    """
    return dict(_TRACES)


def count_trace(name: str) -> None:
    """Call at the top of a jitted body: runs once per trace, never at run time."""
    _TRACES[name] += 1


def cached_jit(
    probe: Any, key: Hashable, build: Callable[[], Callable], draws: bool = False
) -> Callable:
    """``jit(build())`` (:func:`jaxvis._xla.jit`), built once per probe and ``key``, traced under
    ``fast_convolutions()`` (the choice of convolution is made when the function is traced).
    With ``draws`` (a function drawing random numbers, as SmoothGrad's noise) it runs under
    :func:`jaxvis._rng.fast_draws`, which compiles them quickly but costs ~0.2 ms per call."""
    table = _CACHE.setdefault(probe, {})
    if key not in table:
        fn = build()

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with fast_convolutions():
                return fn(*args, **kwargs)

        table[key] = fast_draws(jit(traced)) if draws else jit(traced)
    return table[key]


def gradient_sums(
    score: Score,
    params: Any,
    index: jax.Array,
    point_fn: Callable[[jax.Array, jax.Array], jax.Array],
    weight: jax.Array,
    group: jax.Array,
    n_groups: int,
    n_examples: int,
    example_shape: tuple[int, ...],
    batch_size: int,
    contrib: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    square: bool = False,
) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """Sum ``weight[m] * contrib(point, grad)`` over samples ``m`` into ``group[m]``.

    Returns ``(sums (G, N, ...), sums of squares or None, weighted scores (G, N))``.
    """
    n_samples = weight.shape[0]
    total = n_samples * n_examples
    n_chunks = -(-total // batch_size)
    ids = jnp.arange(n_chunks * batch_size, dtype=jnp.int32).reshape(n_chunks, batch_size)
    shape = (n_groups, n_examples, *example_shape)

    def body(carry: tuple, chunk: jax.Array) -> tuple[tuple, None]:
        acc, acc_sq, acc_score = carry
        valid = chunk < total
        chunk = jnp.where(valid, chunk, 0)
        m, n = chunk // n_examples, chunk % n_examples
        points = point_fn(m, n)

        def total_score(p: jax.Array) -> tuple[jax.Array, jax.Array]:
            s = score(params, p, index[n])
            return s.sum(), s

        grads, s = jax.grad(total_score, has_aux=True)(points)
        c = grads if contrib is None else contrib(points, grads)
        w = jnp.where(valid, weight[m], 0.0)
        wb = w.reshape(-1, *([1] * len(example_shape)))
        k = group[m]
        acc = acc.at[k, n].add(wb * c)
        if square:
            acc_sq = acc_sq.at[k, n].add(wb * c * c)
        acc_score = acc_score.at[k, n].add(w * s)
        return (acc, acc_sq, acc_score), None

    zeros = jnp.zeros(shape, jnp.float32)
    init = (zeros, zeros if square else jnp.zeros(()), jnp.zeros((n_groups, n_examples)))
    if n_chunks == 1:
        (acc, acc_sq, acc_score), _ = body(init, ids[0])
    else:
        (acc, acc_sq, acc_score), _ = jax.lax.scan(body, init, ids)
    return acc, (acc_sq if square else None), acc_score
