"""DeepLift with the Rescale rule (Shrikumar et al. 2017), as Captum's ``DeepLift``.

The model runs on the input ``x`` and on a baseline ``x0``; the backward pass is the gradient
except at each named activation ``y = f(u)`` (ReLU, ELU, tanh, sigmoid, ...), whose derivative
is replaced by the multiplier ``(f(u) - f(u0)) / (u - u0)`` (the derivative ``f'(u)`` where
``|u - u0| < 1e-10``). Linear layers, pooling, reshapes and residual additions keep their
gradient. Max pooling keeps its gradient too (``max_pool="gradient"``, what Captum's
``DeepLift`` computes on the zoo twins here), or with ``max_pool="split"`` takes the rule of
Captum's ``maxpool`` function: the output difference ``y - y0`` is split into
``max(y, y0) - y0``, sent to the input's winner, and ``y - max(y, y0)``, sent to the baseline's
winner, each divided by the input difference there, which restores completeness through max
pooling. The attribution is ``(x - x0) * multiplier``; it sums to ``f(x) - f(x0)``
(``delta`` is the gap).

Example::

    res = deeplift(probe, x, target=3, baseline="black")
    res.delta                   # ~0: completeness
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import cached_jit, count_trace
from jaxvis.attribution._relevance_graph import (
    Graph,
    bind,
    evaluate,
    relevance_graph,
    with_backward,
)
from jaxvis.attribution.baselines import describe, make_baselines
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution

__all__ = ["deeplift"]

#: below this input difference an activation's multiplier is its derivative (Captum's eps)
TINY = 1e-10
MAX_POOL = ("gradient", "split")


@register("relevance", "DeepLift (rescale)")
def deeplift(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    baseline: Any = "black",
    max_pool: str = "gradient",
    params: Any = None,
) -> Attribution:
    """DeepLift (Rescale rule): ``(x - x0) * multipliers``, summing to ``f(x) - f(x0)``.

    ``baseline`` is one baseline as :func:`jaxvis.attribution.make_baselines` takes it
    (``"black"``, ``"white"``, ``"zero"``, ``"blur"``, ``("blur", sigma)``, ``"uniform"``, a
    number or an array like ``x``). ``max_pool`` is ``"gradient"`` or ``"split"`` (see the
    module docstring; only ``"split"`` keeps ``delta`` at 0 through max pooling). The baseline
    is a traced value: changing it, or the target, compiles nothing new.

    Example::

        res = deeplift(probe, x, target=3, baseline=np.zeros_like(x))
    """
    x = _checks.check_images(probe, x)
    if max_pool not in MAX_POOL:
        raise ValueError(f"max_pool must be one of {', '.join(MAX_POOL)}, got {max_pool!r}")
    if isinstance(baseline, list):
        raise TypeError("deeplift takes one baseline, not a list")
    x0 = make_baselines(probe, x, baseline)[0]
    graph = relevance_graph(probe, tuple(x.shape), "deeplift")
    tgt = _checks.resolve_target(probe, x, target)
    key = ("deeplift", tuple(x.shape), tgt.static_key, max_pool)
    split = max_pool == "split"
    run = cached_jit(probe, key, lambda: _kernel(graph, tgt, split), convolutions=False)
    params = probe.params if params is None else params
    values, score, base_score = run(params, x, x0, tgt.index)
    total = values.reshape(values.shape[0], -1).sum(-1)
    return Attribution(
        values=values,
        delta=total - (score - base_score),
        method="deeplift",
        target=None if tgt.kind == "callable" else tgt.index,
        score=score,
        baseline_score=base_score,
        settings={"baseline": describe(baseline), "max_pool": max_pool},
    )


def _kernel(graph: Graph, tgt: _checks.Target, split: bool) -> Callable:
    def run(params: Any, x: jax.Array, x0: jax.Array, index: jax.Array) -> tuple:
        count_trace("deeplift")
        read0 = evaluate(graph, params, x0, stop=len(graph.eqns))

        def step(i: int, eqn: Any, args: list | None, read: Callable) -> list | None:
            role = graph.roles.get(i)
            if role == "activation":
                k = graph.live_index(eqn)
                return [_rescale(eqn, args, k, read0(eqn.invars[k]))]
            if role == "max" and split:
                return [_max_rule(graph, i, read, read0)]
            return None

        def score(xx: jax.Array) -> jax.Array:
            return _checks.pick(evaluate(graph, params, xx, step), tgt, index)

        s, pull = jax.vjp(score, x)
        (grad,) = pull(jnp.ones_like(s))
        base = _checks.pick(read0(graph.outvars[0]), tgt, index)
        return (x - x0) * grad, s, base

    return run


def _rescale(eqn: Any, args: list, k: int, u0: jax.Array) -> jax.Array:
    """The activation with the multiplier ``(f(u) - f(u0)) / (u - u0)`` as its derivative."""

    def f(u: jax.Array) -> jax.Array:
        return bind(eqn, [u if j == k else a for j, a in enumerate(args)])[0]

    def bwd(res: tuple, g: jax.Array) -> tuple:
        u, u0 = res
        y, slope = jax.jvp(f, (u,), (jnp.ones_like(u),))
        du = u - u0
        safe = jnp.where(jnp.abs(du) < TINY, 1.0, du)
        m = jnp.where(jnp.abs(du) < TINY, slope, (y - f(u0)) / safe)
        return g * m, None

    return with_backward(lambda u, u0: f(u), bwd, args[k], u0)


def _max_rule(graph: Graph, i: int, read: Callable, read0: Callable) -> jax.Array:
    """Max pooling (or a masked sum: a max written by hand) with Captum's DeepLift rule."""
    eqn = graph.eqns[i]
    sel = graph.eqns[graph.selects[i]] if i in graph.selects else None
    first = sel if sel is not None else eqn
    k = graph.live_index(first)  # a select's one live operand (the other is the zero)
    args, args0 = [read(v) for v in first.invars], [read0(v) for v in first.invars]
    n = len(args)

    def f(v: jax.Array, operands: list) -> jax.Array:
        out = bind(first, [v if j == k else a for j, a in enumerate(operands)])[0]
        return bind(eqn, [out])[0] if sel is not None else out

    def fwd(v: jax.Array, v0: jax.Array, *ops: Any) -> jax.Array:
        return f(v, list(ops[:n]))

    def bwd(res: tuple, g: jax.Array) -> tuple:
        v, v0, *ops = res
        ops_x, ops_0 = list(ops[:n]), list(ops[n:])
        y, pull = jax.vjp(lambda t: f(t, ops_x), v)
        y0, pull0 = jax.vjp(lambda t: f(t, ops_0), v0)
        top = jnp.maximum(y, y0)
        (num,) = pull(g * (top - y0))
        (num0,) = pull0(g * (y - top))
        (grad,) = pull(g)
        dv = v - v0
        small = jnp.abs(dv) < TINY
        m = jnp.where(small, grad, (num + num0) / jnp.where(small, 1.0, dv))
        return (m, None, *(None,) * (2 * n))

    return with_backward(fwd, bwd, args[k], args0[k], *args, *args0)
