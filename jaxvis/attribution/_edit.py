"""Run a probed model with some layers' outputs edited (for layer gradients and guided backprop).

``probe.apply`` reads layer outputs but cannot change them. Here the forward pass is traced
once to a jaxpr and evaluated again equation by equation; when the equation that produced a
chosen layer's output runs, its value goes through ``edit(value)`` before later equations see
it. Works for every model a probe accepts (NNX, Linen, Equinox, tapped functions), stays pure,
and can be jitted and differentiated.

A layer whose value has no path to the model output (a ``jv.tap`` on a copy that the model
does not go on with) is refused: editing it could not change anything, and every gradient at
it would be zero. A layer reported through a transpose of the value that goes on (Equinox's
channels-first maps, shown channels-last) is edited where the model uses it.

Example::

    out = edited_apply(probe, params, x, {"conv3": lambda a: a + delta})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from jaxvis._protocols import ProbeLike

__all__ = ["edited_apply"]


def edited_apply(
    probe: ProbeLike,
    params: Any,
    x: jax.Array,
    edits: Mapping[str, Callable[[jax.Array], jax.Array]],
    require_output_path: bool = True,
) -> tuple[Any, dict[str, jax.Array]]:
    """``(output, {layer: edited activation})`` with each layer's output replaced by ``edit(out)``.

    Later layers compute from the edited value. Safe inside ``jax.jit`` and ``jax.grad``. A
    layer with no path to the output raises a ``ValueError`` unless ``require_output_path`` is
    false (guided backprop edits every activation layer; one off the path changes nothing).
    """
    names = list(edits)

    def forward(p: Any, xx: jax.Array) -> tuple[Any, list[jax.Array]]:
        out, acts = probe.apply(p, xx, layers=names, truncate=False)
        return out, [acts[n] for n in names]

    closed, shapes = jax.make_jaxpr(forward, return_shape=True)(params, x)
    jaxpr = closed.jaxpr
    out_tree = jax.tree_util.tree_structure(shapes)
    n_out = len(jax.tree_util.tree_leaves(shapes[0]))
    layer_vars = jaxpr.outvars[n_out:]
    live = _reaching(jaxpr, jaxpr.outvars[:n_out])
    producers = {v: eqn for eqn in jaxpr.eqns for v in eqn.outvars}
    by_var: dict[Any, Callable[[jax.Array], jax.Array]] = {}
    for name, var in zip(names, layer_vars, strict=True):
        if isinstance(var, Literal):
            raise ValueError(f"layer {name!r} outputs a constant: it cannot be edited")
        edit = edits[name]
        while n_out and var not in live:
            eqn = producers.get(var)
            if eqn is None or eqn.primitive.name != "transpose":
                if not require_output_path:
                    break
                raise ValueError(
                    f"layer {name!r}: the tapped value does not reach the model output, so "
                    "its gradient is zero everywhere (a jv.tap on a copy the model does not "
                    f"use?). Tap the value the model goes on with: h = jv.tap({name!r}, h)"
                )
            edit = _through_transpose(edit, eqn.params["permutation"])
            var = eqn.invars[0]
        if var in by_var:
            previous = by_var[var]
            by_var[var] = lambda v, f=edit, g=previous: f(g(v))
        else:
            by_var[var] = edit

    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    def write(v: Any, value: Any) -> None:
        env[v] = by_var[v](value) if v in by_var else value

    for v, c in zip(jaxpr.constvars, closed.consts, strict=True):
        write(v, c)
    for v, a in zip(jaxpr.invars, jax.tree_util.tree_leaves((params, x)), strict=True):
        write(v, a)
    for eqn in jaxpr.eqns:
        bind_params = eqn.primitive.get_bind_params(eqn.params)
        with eqn.ctx.manager:
            ans = eqn.primitive.bind(*map(read, eqn.invars), **bind_params)
        if eqn.primitive.multiple_results:
            for v, a in zip(eqn.outvars, ans, strict=True):
                write(v, a)
        else:
            write(eqn.outvars[0], ans)
    out, acts = jax.tree_util.tree_unflatten(out_tree, [read(v) for v in jaxpr.outvars])
    return out, dict(zip(names, acts, strict=True))


def _reaching(jaxpr: Any, outputs: list[Any]) -> set[Any]:
    """Variables with a path to ``outputs``; an equation (nested jaxprs included) counts as
    using all its inputs for all its outputs, so the answer errs on the side of reaching."""
    live = {v for v in outputs if not isinstance(v, Literal)}
    for eqn in reversed(jaxpr.eqns):
        if any(v in live for v in eqn.outvars):
            live.update(v for v in eqn.invars if not isinstance(v, Literal))
    return live


def _through_transpose(
    edit: Callable[[jax.Array], jax.Array], permutation: tuple[int, ...]
) -> Callable[[jax.Array], jax.Array]:
    """``edit`` of ``transpose(v, permutation)``, applied to ``v`` itself."""
    inverse = tuple(int(i) for i in np.argsort(permutation))
    return lambda v: jnp.transpose(edit(jnp.transpose(v, permutation)), inverse)
