"""The one vectorised loop behind every gradient method: gradients at many points, summed.

Each method describes its points (:class:`Points`) as a function of ``(m, n)`` -- sample
``m`` (an alpha, a baseline, a noise draw) of example ``n`` -- and a weight per sample. The
``M * N`` points are cut into chunks; each chunk is one batched model call with its gradient,
and adds ``weight * contribution`` into one accumulator per group. How the chunks run is a
:class:`jaxvis._plan.Plan`, chosen from the model's cost per (model, shape): all points in one
call (``"batch"``), a Python loop over one jitted chunk (``"python"``, the accumulators donated
from call to call, the method's last step compiled on another thread meanwhile) or a
``lax.scan`` over the chunks (``"scan"``). Chunking only changes the order of float additions,
never which points are evaluated; ``"python"`` and ``"scan"`` add in the same order.

Every kernel is traced under :func:`jaxvis.fast_conv.fast_convolutions`: same values, but
max pooling's gradient avoids select-and-scatter, and inside a ``lax.scan`` the convolutions'
input gradients (NNX and Linen) stay on XLA:CPU's fast path (without it, IG of 16 images x 50
steps took 2.2 s on ``shapes_cnn`` instead of 0.32 s, and 0.16 s instead of 0.11 s on
``mnist_cnn``, on 2 cores; see docs/design.md, "XLA on the CPU"). Programs without a loop keep XLA's
own convolution gradients, which are as fast there and compile faster.

Every jitted function is cached per probe and per static setting; shapes are the only other
thing that compiles, so targets, alphas, baselines, noise level and seed are traced values.
``trace_counts()`` reports how often each was traced (i.e. compiled), for tests.
"""

from __future__ import annotations

import collections
import functools
import threading
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._per_probe import PerProbe
from jaxvis._plan import Plan
from jaxvis._protocols import ProbeLike
from jaxvis._rng import fast_draws
from jaxvis._xla import jit
from jaxvis.fast_conv import fast_convolutions

_CACHE: PerProbe[Any] = PerProbe()
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
    probe: ProbeLike,
    key: Hashable,
    build: Callable[[], Callable],
    draws: bool = False,
    convolutions: bool = True,
    **jit_kwargs: Any,
) -> Callable:
    """``jit(build())`` (:func:`jaxvis._xla.jit`), built once per probe and ``key``, traced under
    ``fast_convolutions()`` (the choice of convolution is made when the function is traced).
    With ``draws`` (a function drawing random numbers, as SmoothGrad's noise) it runs under
    :func:`jaxvis._rng.fast_draws`, which compiles them quickly but costs ~0.2 ms per call.
    ``convolutions=False`` keeps XLA's own convolution gradients (only pooling changes): the
    custom VJP matters inside loops only, and a program without it compiles faster."""

    def make() -> Callable:
        fn = build()

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with fast_convolutions(convolutions):
                return fn(*args, **kwargs)

        compiled = jit(traced, **jit_kwargs)
        return fast_draws(compiled) if draws else compiled

    return _CACHE.get(probe, key, make)


class Points(NamedTuple):
    """The points of a gradient method (built inside a trace, from traced arguments).

    ``point_fn(m, n)`` gives the points of samples ``m`` of examples ``n``; sample ``m`` has
    weight ``weight[m]`` and adds into group ``group[m]`` of ``n_groups``; ``index[n]`` is
    example ``n``'s target. ``contrib(point, grad)`` (default: the gradient) is what is
    summed; ``square`` also sums its square."""

    index: jax.Array
    point_fn: Callable[[jax.Array, jax.Array], jax.Array]
    weight: jax.Array
    group: jax.Array
    n_groups: int
    n_examples: int
    example_shape: tuple[int, ...]
    contrib: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    square: bool = False

    @property
    def total(self) -> int:
        return int(self.weight.shape[0]) * self.n_examples


Sums = tuple[jax.Array, jax.Array, jax.Array]  # sums, sums of squares (or a 0-d zero), scores


def _init(pts: Points) -> Sums:
    zeros = jnp.zeros((pts.n_groups, pts.n_examples, *pts.example_shape), jnp.float32)
    return (zeros, zeros if pts.square else jnp.zeros(()), jnp.zeros(zeros.shape[:2]))


def _chunk(score: Score, params: Any, pts: Points, carry: Sums, chunk: jax.Array) -> Sums:
    """Add the points ``chunk`` (flat ids ``m * N + n``; ids past the end count nothing)."""
    acc, acc_sq, acc_score = carry
    n_examples, nd = pts.n_examples, len(pts.example_shape)
    valid = chunk < pts.total
    chunk = jnp.where(valid, chunk, 0)
    m, n = chunk // n_examples, chunk % n_examples
    points = pts.point_fn(m, n)

    def total_score(p: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = score(params, p, pts.index[n])
        return s.sum(), s

    grads, s = jax.grad(total_score, has_aux=True)(points)
    c = grads if pts.contrib is None else pts.contrib(points, grads)
    w = jnp.where(valid, pts.weight[m], 0.0)
    wb = w.reshape(-1, *([1] * nd))
    k = pts.group[m]
    acc = acc.at[k, n].add(wb * c)
    if pts.square:
        acc_sq = acc_sq.at[k, n].add(wb * c * c)
    acc_score = acc_score.at[k, n].add(w * s)
    return acc, acc_sq, acc_score


def gradient_sums(score: Score, params: Any, pts: Points, plan: Plan) -> Sums:
    """Inside a trace: ``(sums (G, N, ...), sums of squares or 0, weighted scores (G, N))`` in
    one batch (``plan.mode == "batch"``) or a ``lax.scan`` over chunks of ``plan.chunk``."""
    size = pts.total if plan.mode == "batch" else plan.chunk
    n_chunks = -(-pts.total // size)
    ids = jnp.arange(n_chunks * size, dtype=jnp.int32).reshape(n_chunks, size)
    init = _init(pts)
    if n_chunks == 1:
        return _chunk(score, params, pts, init, ids[0])

    def body(carry: Sums, chunk: jax.Array) -> tuple[Sums, None]:
        return _chunk(score, params, pts, carry, chunk), None

    return jax.lax.scan(body, init, ids)[0]


def compiled_sums(
    probe: ProbeLike,
    key: Hashable,
    name: str,
    build: Callable[[], tuple[Score, Callable[..., Points], Callable[..., Any]]],
    plan: Plan,
    draws: bool = False,
) -> Callable[..., Any]:
    """``run(params, *args, total=...)`` of a gradient method (``total`` points), compiled once
    per probe, ``key`` and plan.

    ``build()`` gives ``(score, make_points, finish)``: ``make_points(*args)`` the
    :class:`Points` (traced), ``finish(params, sums, sums_sq, scores, *args)`` the method's
    outputs from the sums (traced)."""
    if plan.mode != "python":

        def make() -> Callable:
            score, make_points, finish = build()

            def kernel(params: Any, *args: Any) -> Any:
                count_trace(name)
                pts = make_points(*args)
                return finish(params, *gradient_sums(score, params, pts, plan), *args)

            return kernel

        kernel = cached_jit(probe, (key, plan), make, draws, plan.mode == "scan")
        return lambda params, *args, total: kernel(params, *args)  # noqa: PLW0108 - drops total

    def make_chunk() -> Callable:
        score, make_points, _ = build()

        def chunk(params: Any, carry: Sums, ids: jax.Array, *args: Any) -> Sums:
            count_trace(name)
            return _chunk(score, params, make_points(*args), carry, ids)

        return chunk

    def make_finish() -> Callable:
        _, make_points, finish = build()
        return lambda params, carry, *args: finish(params, *carry, *args)

    def make_init() -> Callable:
        _, make_points, _ = build()

        def init(*args: Any) -> tuple[Sums, jax.Array]:
            pts = make_points(*args)
            return _init(pts), pts.weight

        return init

    step = cached_jit(probe, (key, plan, "chunk"), make_chunk, draws, False, donate_argnums=(1,))
    last = cached_jit(probe, (key, plan, "finish"), make_finish, False, False)
    # per probe and key (this function runs on every call): argument shapes seen
    shapes = _CACHE.get(probe, (key, plan, "shapes"), dict)

    def run(params: Any, *args: Any, total: int | None = None) -> Any:
        leaves, tree = jax.tree_util.tree_flatten(args)
        sig = (tree, tuple((np.shape(a), str(getattr(a, "dtype", type(a)))) for a in leaves))
        fresh = sig not in shapes
        if fresh:  # shapes only: the accumulators start as zeros, nothing compiles
            shapes[sig] = jax.eval_shape(make_init(), *args)
        zeros, weight = shapes[sig]
        carry = tuple(jax.device_put(np.zeros(z.shape, z.dtype)) for z in zeros)
        n_points = int(weight.shape[0]) * int(zeros[0].shape[1])
        compiling = _compile_in_background(last, params, carry, *args) if fresh else None
        for start in range(0, n_points, plan.chunk):
            ids = np.arange(start, start + plan.chunk, dtype=np.int32)
            carry = step(params, carry, ids, *args)
        if compiling is not None:
            compiling.join()
        return last(params, carry, *args)

    return run


def _compile_in_background(fn: Callable, *args: Any) -> threading.Thread:
    """Trace ``fn`` for ``args`` here and compile it on a daemon thread (XLA compiles without
    the GIL) while the loop compiles and runs; the later call with these arguments reuses it
    (through ``fn.prepare`` where :func:`jaxvis._xla.jit` has it)."""
    prepare = getattr(fn, "prepare", None)
    target = prepare(*args) if prepare is not None else fn.lower(*args).compile
    thread = threading.Thread(target=target, name="jaxvis-compile", daemon=True)
    thread.start()
    return thread
