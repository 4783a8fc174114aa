"""Integrated gradients (Sundararajan et al. 2017) and interior gradients.

Example::

    res = integrated_gradients(probe, x, target=3, baseline="black", steps=50)
    res.values            # (N, H, W, C), sums to about f(x) - f(baseline) per example
    res.relative_delta    # completeness gap, |delta| / |f(x) - f(baseline)|

    inner = interior_gradients(probe, x, target=3, alphas=[0.02, 0.1, 0.5, 1.0])
    inner.values          # (4, N, H, W, C): gradients at the scaled inputs alpha * x
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
from jaxvis.attribution._core import Points, compiled_sums
from jaxvis.attribution.baselines import describe, make_baselines
from jaxvis.attribution.quadrature import check_method, nodes
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution

__all__ = ["integrated_gradients", "interior_gradients"]


@register("path", "integrated gradients")
def integrated_gradients(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    baseline: Any = "black",
    steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int | None = None,
    layer: str | None = None,
    seed: int = 0,
    params: Any = None,
) -> Attribution:
    """Integrated gradients of the target score with respect to the input pixels.

    ``values = (x - b) * integral_0^1 grad f(b + a (x - b)) da``, the integral taken with
    ``steps`` nodes of ``method`` (Captum's nodes; see :mod:`jaxvis.attribution.quadrature`
    for the trapezoid rule, which jaxvis gets right and Captum does not).

    Args:
        probe: a ``jv.Probe``.
        x: images ``(N, H, W, C)`` in the probe's input range.
        target: class index (int or one per example), None for the predicted class, or a
            callable from the output batch (or ``layer``'s activations) to one score each.
        baseline: see :mod:`jaxvis.attribution.baselines`; a list averages over baselines.
        steps: quadrature nodes (the shape of the computation: changing it compiles).
        method: ``riemann_left|right|middle|trapezoid`` or ``gausslegendre``.
        batch_size: interpolated images per model call (memory cap); None chooses from the
            model's activation sizes. Results do not depend on it.
        layer: explain a function of this layer's activation (an int target is a channel,
            whose mean is explained).
        seed: seed of random baselines ("uniform").
        params: model parameters to use instead of ``probe.params`` (same structure).

    Returns:
        :class:`Attribution` with ``values`` like ``x`` and ``delta`` per example.

    Example::

        res = integrated_gradients(probe, x, target=[3, 1], steps=64)
        assert float(np.median(res.relative_delta)) < 0.02
    """
    x = _checks.check_images(probe, x)
    method, steps = check_method(method, steps)
    batch_size = check_optional_positive_int(batch_size, "batch_size")
    _plan.estimate(probe, x.shape[1:])  # the model's cost; records its output shape
    tgt = _checks.resolve_target(probe, x, target, layer)
    base = make_baselines(probe, x, baseline, seed)
    alphas, weights = nodes(method, steps)
    n_base, n = base.shape[0], x.shape[0]
    total = n_base * steps * n
    plan = _plan.plan(probe, "integrated_gradients", x.shape[1:], total, batch_size)
    batch_size = plan.chunk
    run = compiled_sums(
        probe,
        ("ig", tgt.static_key, n_base),
        "integrated_gradients",
        lambda: _ig_parts(probe, tgt, n_base, plan.mode == "python"),
        plan,
    )
    params = probe.params if params is None else params
    values, delta, f_x, f_b = run(
        params,
        x,
        base,
        tgt.index,
        jnp.asarray(alphas, jnp.float32),
        jnp.asarray(weights, jnp.float32),
        total=total,
    )
    return Attribution(
        values=values,
        delta=delta,
        method="integrated_gradients",
        inputs=x,
        input_range=probe.input_range,
        target=tgt.label,
        score=f_x,
        baseline_score=f_b,
        settings={
            "steps": steps,
            "method": method,
            "baseline": describe(baseline),
            "batch_size": batch_size,
            "loop": plan.mode,
            "layer": layer,
        },
    )


def _ig_parts(
    probe: ProbeLike, tgt: _checks.Target, n_base: int, end_points: bool = False
) -> tuple:
    """``(score, make_points, finish)`` of IG. With ``end_points`` (the Python loop), the scores
    ``f(x)`` and ``f(baseline)`` come from extra points of the loop itself (groups ``n_base``
    and ``n_base + 1``), so that the last step is elementwise and compiles in no time; else
    the last step runs the model on ``x`` and the baselines."""
    score = _checks.score_fn(probe, tgt)

    def make_points(
        x: jax.Array, base: jax.Array, index: jax.Array, alphas: jax.Array, weights: jax.Array
    ) -> Points:
        n, steps = x.shape[0], alphas.shape[0]

        n_path = n_base * steps

        def point(m: jax.Array, e: jax.Array) -> jax.Array:
            k, s = m // steps, m % steps
            b = base[jnp.minimum(k, n_base - 1), e]
            a = alphas[s].reshape(-1, 1, 1, 1)
            on_path = b + a * (x[e] - b)
            if not end_points:
                return on_path
            rest = m - n_path  # 0: x itself, 1 + k: baseline k
            end = jnp.where((rest == 0).reshape(-1, 1, 1, 1), x[e], base[jnp.clip(rest - 1, 0), e])
            return jnp.where((m < n_path).reshape(-1, 1, 1, 1), on_path, end)

        sample_weight = jnp.tile(weights, n_base)
        group = jnp.repeat(jnp.arange(n_base), steps)
        n_groups = n_base
        if end_points:
            sample_weight = jnp.concatenate(
                [sample_weight, jnp.ones((1,)), jnp.full((n_base,), 1.0 / n_base)]
            )
            group = jnp.concatenate(
                [group, jnp.full((1,), n_base), jnp.full((n_base,), n_base + 1)]
            )
            n_groups = n_base + 2
        return Points(index, point, sample_weight, group, n_groups, n, tuple(x.shape[1:]))

    def finish(
        params: Any,
        sums: jax.Array,
        _sq: jax.Array,
        scores: jax.Array,
        x: jax.Array,
        base: jax.Array,
        index: jax.Array,
        alphas: jax.Array,
        weights: jax.Array,
    ) -> tuple:
        n = x.shape[0]
        values = jnp.mean((x[None] - base) * sums[:n_base], axis=0)
        if end_points:
            f_x, f_b = scores[n_base], scores[n_base + 1]
        else:
            f_x = score(params, x, index)
            f_b = (
                score(params, base.reshape(-1, *x.shape[1:]), jnp.concatenate([index] * n_base))
                .reshape(n_base, n)
                .mean(0)
            )
        delta = values.reshape(n, -1).sum(-1) - (f_x - f_b)
        return values, delta, f_x, f_b

    return score, make_points, finish


@register("path", "interior gradients (alpha)")
def interior_gradients(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    alphas: Sequence[float] | np.ndarray = (0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0),
    baseline: Any = "black",
    batch_size: int | None = None,
    layer: str | None = None,
    seed: int = 0,
    params: Any = None,
) -> Attribution:
    """Gradients at the scaled inputs ``b + alpha * (x - b)``, all alphas in one call.

    The seed of integrated gradients: near ``alpha = 1`` the network is saturated and the
    gradient is small and noisy; at small alphas it shows the features that moved the score.
    Moving an alpha slider changes values only; the same number of alphas never recompiles.

    Returns an :class:`Attribution` with ``values`` of shape ``(A, N, H, W, C)`` and
    ``extra["scores"]`` ``(A, N)``: the target score at each scaled input.

    Example::

        res = interior_gradients(probe, x, target=7, alphas=np.linspace(0.05, 1, 20))
        res.extra["scores"]   # the saturation curve of the paper's figure 2
    """
    x = _checks.check_images(probe, x)
    arr = np.asarray(alphas, np.float64)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(
            f"alphas must be a non-empty 1-D sequence of finite numbers, got {alphas!r}"
        )
    outside = arr[(arr < 0) | (arr > 1)]
    if outside.size:
        raise ValueError(
            f"alphas must lie in [0, 1] (the fraction of the path from baseline to input); "
            f"got {float(outside[0])} in {alphas!r}"
        )
    batch_size = check_optional_positive_int(batch_size, "batch_size")
    _plan.estimate(probe, x.shape[1:])
    tgt = _checks.resolve_target(probe, x, target, layer)
    if isinstance(baseline, list):
        raise ValueError("interior_gradients takes one baseline, not a list")
    base = make_baselines(probe, x, baseline, seed)[0]
    n_alpha, n = arr.size, x.shape[0]
    plan = _plan.plan(probe, "interior_gradients", x.shape[1:], n_alpha * n, batch_size)
    batch_size = plan.chunk
    run = compiled_sums(
        probe,
        ("interior", tgt.static_key),
        "interior_gradients",
        lambda: _interior_parts(probe, tgt),
        plan,
    )
    params = probe.params if params is None else params
    values, scores = run(
        params, x, base, tgt.index, jnp.asarray(arr, jnp.float32), total=n_alpha * n
    )
    return Attribution(
        values=values,
        delta=None,
        method="interior_gradients",
        inputs=x,
        input_range=probe.input_range,
        target=tgt.label,
        settings={
            "alphas": arr,
            "baseline": describe(baseline),
            "batch_size": batch_size,
            "loop": plan.mode,
            "layer": layer,
        },
        extra={"scores": scores, "alphas": arr},
    )


def _interior_parts(probe: ProbeLike, tgt: _checks.Target) -> tuple:
    score = _checks.score_fn(probe, tgt)

    def make_points(x: jax.Array, base: jax.Array, index: jax.Array, alphas: jax.Array) -> Points:
        n, n_alpha = x.shape[0], alphas.shape[0]

        def point(m: jax.Array, e: jax.Array) -> jax.Array:
            b = base[e]
            return b + alphas[m].reshape(-1, 1, 1, 1) * (x[e] - b)

        ones = jnp.ones((n_alpha,), jnp.float32)
        return Points(index, point, ones, jnp.arange(n_alpha), n_alpha, n, tuple(x.shape[1:]))

    def finish(params: Any, sums: jax.Array, _sq: jax.Array, scores: jax.Array, *_: Any) -> tuple:
        return sums, scores

    return score, make_points, finish
