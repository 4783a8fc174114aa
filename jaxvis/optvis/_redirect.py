"""Lucid's redirected ReLU gradient, for feature visualisations that start dead.

At a random start a unit behind ReLUs can be switched off for the whole image: every path
to it passes a ReLU whose input is negative, its gradient is exactly zero and plain ascent
never moves. Lucid's fix changes the ReLU's gradient for the first steps of a run: per image,
when the ordinary gradient through a ReLU is zero everywhere, it lets through the components
that push negative inputs *up* (towards switching on), dropping those that would push them
further down.

:func:`redirected` re-evaluates a traced model with every ``jax.nn.relu`` (Flax's ``nn.relu``
is the same function) replaced by one with that gradient, switched on by a traced flag, so
the same compiled step serves the redirected and the ordinary steps. ReLUs inside ``scan`` or
``cond`` bodies keep their ordinary gradient.

Example::

    fwd = redirected(forward, (params, x))      # None when the model has no ReLU
    out = fwd(jnp.float32(1.0), params, x)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Literal

__all__ = ["redirected"]


@jax.custom_vjp
def _relu(x: jax.Array, on: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0.0)


def _relu_fwd(x: jax.Array, on: jax.Array) -> tuple[jax.Array, tuple]:
    return jnp.maximum(x, 0.0), (x, on)


def _relu_bwd(res: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, on = res
    plain = jnp.where(x > 0, g, 0.0)
    # g is the loss's cotangent (loss = -objective): g > 0 at x < 0 pushes x further down
    lifted = jnp.where((x <= 0) & (g > 0), 0.0, g)
    if x.ndim == 0:
        dead = jnp.all(plain == 0)
    else:
        dead = jnp.all(plain.reshape(x.shape[0], -1) == 0, axis=1)
        dead = dead.reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where((on > 0) & dead, lifted, plain), jnp.zeros_like(on)


_relu.defvjp(_relu_fwd, _relu_bwd)


def _is_relu(eqn: Any) -> bool:
    if eqn.primitive.name != "custom_jvp_call":
        return False
    inner = eqn.params["call_jaxpr"].jaxpr.eqns
    return len(inner) == 1 and inner[0].params.get("name") == "relu"


def _has_relu(jaxpr: Any) -> bool:
    for eqn in jaxpr.eqns:
        if _is_relu(eqn):
            return True
        sub = eqn.params.get("jaxpr") if eqn.primitive.name in ("pjit", "jit") else None
        if sub is not None and _has_relu(sub.jaxpr):
            return True
    return False


def _eval(jaxpr: Any, consts: list[Any], args: list[Any], on: jax.Array) -> list[Any]:
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = c
    for v, a in zip(jaxpr.invars, args, strict=True):
        env[v] = a
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if _is_relu(eqn):
            outs = [_relu(ins[-1], on)]
        elif eqn.primitive.name in ("pjit", "jit") and _has_relu(eqn.params["jaxpr"].jaxpr):
            sub = eqn.params["jaxpr"]
            outs = _eval(sub.jaxpr, sub.consts, ins, on)
        else:
            with eqn.ctx.manager:
                ans = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(eqn.params))
            outs = ans if eqn.primitive.multiple_results else [ans]
        for v, a in zip(eqn.outvars, outs, strict=True):
            env[v] = a
    return [read(v) for v in jaxpr.outvars]


def redirected(fn: Callable[..., Any], args: tuple[Any, ...]) -> Callable[..., Any] | None:
    """``g(on, *args)``: ``fn(*args)`` whose ReLUs use the redirected gradient where ``on > 0``,
    or None when ``fn`` has no ``jax.nn.relu`` (traced once here, for ``args``' shapes)."""
    closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    if not _has_relu(closed.jaxpr):
        return None
    tree = jax.tree_util.tree_structure(shape)

    def run(on: jax.Array, *a: Any) -> Any:
        flat = _eval(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(a), on)
        return jax.tree_util.tree_unflatten(tree, flat)

    return run
