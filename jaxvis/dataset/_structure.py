"""Which input elements can reach which output elements: the structure of a traced program.

Two analyses of a ``ClosedJaxpr`` (a model traced from its input to one layer):

* :func:`support_fn` builds the *structural support of the input gradient*: for a cotangent
  seed on the layer, the input elements with a differentiable path to a seeded unit. It
  evaluates the program in an "influence" semantics that is linear and positive: every
  primitive becomes a linear map with non-negative coefficients whose nonzero pattern is the
  set of (output, input) pairs whose partial derivative is not identically zero (a
  convolution or matrix product with its other operand replaced by ones, an elementwise op by
  the sum of its inputs' influences, a max-reduction or max pool by a sum over the same
  window, a ``select`` by the sum of both branches, slicing/reshaping/gathers by themselves,
  calls, ``scan`` and ``cond`` followed inside). Integer-valued edges (comparisons, argmax,
  indices) and ``stop_gradient`` carry no derivative and are cut, as in ``jax.grad``.
* :func:`compose_settings` reads the kernel, stride, dilation and padding of every convolution
  and pool in the program and composes them (the classic receptive-field recurrence), or
  returns a reason string when the program has anything that recurrence cannot describe.

Why the support is exact: a composition of non-negative maps cannot cancel, so the composite's
nonzero pattern is exactly the set of paths through the graph, which is the union over all
inputs and weights of the input gradient's support. The support is read off the map's
transpose (``jax.vjp``) with every intermediate cotangent rounded to 0/1 (:func:`_mark`): the
true values are path counts (integers >= 1 or 0), so no value overflows and no rounding or
fast convolution algorithm can hide a path. It does not depend on weight values, dead ReLUs,
ties in max pooling or zero-initialised scales (the Flax ImageNet ResNet's last BatchNorm of
each block), all of which make a numeric gradient at one point under-report. It counts a
connection whose weight is structurally zero (a kernel multiplied by a fixed mask) as a
connection.

Example::

    closed = jax.make_jaxpr(forward)(params, x)           # forward(params, x) -> layer
    n = len(closed.jaxpr.invars) - 1
    masks = support_fn(closed, n)(jax.tree.leaves(params), x, seeds)   # (U, *x.shape) bool
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

# primitives whose outputs have a zero derivative: they carry no influence
_ZERO = {
    "stop_gradient", "sign", "floor", "ceil", "round", "is_finite", "random_bits",
    "random_seed", "random_wrap", "random_unwrap", "iota",
}  # fmt: skip
# elementwise primitives: each output element depends on the same element of every operand
_ELEMENTWISE = {
    "add", "add_any", "sub", "mul", "div", "rem", "pow", "max", "min", "atan2", "nextafter",
    "neg", "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "tan",
    "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "sqrt", "rsqrt", "cbrt",
    "integer_pow", "square", "abs", "erf", "erfc", "erf_inv", "lgamma", "digamma", "select_n",
    "clamp", "convert_element_type", "copy", "copy_p", "reduce_precision", "real", "imag",
    "conj", "optimization_barrier",
}  # fmt: skip
# linear primitives with 0/1 coefficients: applied to influences as they are
_STRUCTURAL = {
    "reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "slice", "rev",
    "reduce_sum", "pad", "concatenate", "dynamic_slice", "dynamic_update_slice", "gather",
    "scatter", "scatter-add", "scatter_add", "cumsum", "reduce_window_sum", "split",
}  # fmt: skip
_BILINEAR = {"conv_general_dilated", "dot_general"}
_REDUCE_AS_SUM = {"reduce_max", "reduce_min", "reduce_prod"}
_WINDOW_AS_SUM = {"reduce_window_max", "reduce_window_min", "reduce_window"}
_CUMULATIVE = {"cummax", "cummin", "cumprod", "cumlogsumexp"}
_CALLS = {
    "pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
    "remat": "jaxpr", "checkpoint": "jaxpr", "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
}  # fmt: skip

Influence = jax.Array | None


class UnsupportedError(ValueError):
    """The program contains a primitive the structural analysis cannot follow."""


def _is_float(aval: Any) -> bool:
    return hasattr(aval, "dtype") and jnp.issubdtype(aval.dtype, jnp.inexact)


@jax.custom_vjp
def _mark(x: jax.Array) -> jax.Array:
    """Identity whose backward pass rounds the cotangent to 0/1 (it counts paths, all >= 1)."""
    return x


def _mark_fwd(x: jax.Array) -> tuple[jax.Array, None]:
    return x, None


def _mark_bwd(_: None, ct: jax.Array) -> tuple[jax.Array]:
    return ((ct > 0.5).astype(ct.dtype),)


_mark.defvjp(_mark_fwd, _mark_bwd)


def _bind(eqn: Any, values: Sequence[Any]) -> list[Any]:
    out = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


def _sub_jaxpr(eqn: Any) -> tuple[Jaxpr, Sequence[Any]]:
    sub = eqn.params[_CALLS[eqn.primitive.name]]
    if isinstance(sub, ClosedJaxpr):
        return sub.jaxpr, sub.consts
    return sub, ()


def evaluate(
    jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any], infl: Sequence[Influence]
) -> tuple[list[Any], list[Influence]]:
    """``(outputs, their influences)`` of ``jaxpr`` for ``args`` and their influences."""
    primal: dict[Any, Any] = dict(zip(jaxpr.constvars, consts, strict=True))
    primal.update(zip(jaxpr.invars, args, strict=True))
    influence: dict[Any, Influence] = dict(zip(jaxpr.invars, infl, strict=True))

    def read(v: Any) -> tuple[Any, Influence]:
        if isinstance(v, Literal):
            return v.val, None
        return primal[v], influence.get(v)

    for eqn in jaxpr.eqns:
        values, infls = zip(*(read(v) for v in eqn.invars), strict=True) if eqn.invars else ((), ())
        if all(i is None for i in infls) or not any(_is_float(v.aval) for v in eqn.outvars):
            outs, out_infl = _bind(eqn, values), [None] * len(eqn.outvars)
        else:
            outs, out_infl = _rule(eqn, list(values), list(infls))
        for var, value, inf in zip(eqn.outvars, outs, out_infl, strict=True):
            primal[var] = value
            influence[var] = _mark(inf) if inf is not None and _is_float(var.aval) else None
    results = [read(v) for v in jaxpr.outvars]
    return [r[0] for r in results], [r[1] for r in results]


def _zeros_for(value: Any, inf: Influence) -> Any:
    """The influence to feed a linear rule: zeros for an untracked float, the value for ints."""
    if inf is not None:
        return inf
    return jnp.zeros_like(value) if _is_float(jax.typeof(value)) else value


def _rule(eqn: Any, values: list[Any], infls: list[Influence]) -> tuple[list[Any], list[Influence]]:
    name = eqn.primitive.name
    if name in _CALLS:
        jaxpr, consts = _sub_jaxpr(eqn)
        return evaluate(jaxpr, consts, values, infls)
    if name == "scan":
        return _scan(eqn, values, infls)
    if name == "cond":
        return _cond(eqn, values, infls)
    outs = _bind(eqn, values)
    if name in _ZERO:
        return outs, [None] * len(outs)
    if name in _ELEMENTWISE:
        shape, dtype = outs[0].shape, outs[0].dtype
        parts = [jnp.broadcast_to(i, shape).astype(dtype) for i in infls if i is not None]
        return outs, [sum(parts[1:], parts[0])]
    if name in _STRUCTURAL:
        return outs, _bind(eqn, [_zeros_for(v, i) for v, i in zip(values, infls, strict=True)])
    if name in _BILINEAR:
        (a, b), (ia, ib) = values, infls
        parts = []
        if ia is not None:
            parts += _bind(eqn, [ia, jnp.ones_like(b)])
        if ib is not None:
            parts += _bind(eqn, [jnp.ones_like(a), ib])
        return outs, [sum(parts[1:], parts[0])]
    inf = infls[0]  # the reductions below read one array (and untracked initial values)
    if inf is not None and len(outs) == 1:
        if name in _REDUCE_AS_SUM:
            return outs, [jnp.sum(inf, axis=eqn.params["axes"])]
        if name in _WINDOW_AS_SUM:
            keys = ("window_dimensions", "window_strides", "padding", "base_dilation")
            window = {k: eqn.params[k] for k in (*keys, "window_dilation")}
            return outs, [lax.reduce_window_sum_p.bind(inf, **window)]
        if name in _CUMULATIVE:
            return outs, [lax.cumsum(inf, eqn.params["axis"], eqn.params["reverse"])]
    raise UnsupportedError(f"primitive {name!r} is not supported by the structural analysis")


def _tracked_outputs(jaxpr: Jaxpr, tracked: Sequence[bool]) -> list[bool]:
    """Which outputs may carry influence when the inputs marked ``tracked`` do (an upper bound)."""
    seen = {v for v, t in zip(jaxpr.invars, tracked, strict=True) if t}
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in _ZERO:
            continue
        if any(not isinstance(v, Literal) and v in seen for v in eqn.invars):
            seen.update(v for v in eqn.outvars if _is_float(v.aval))
    return [not isinstance(v, Literal) and v in seen for v in jaxpr.outvars]


def _scan(eqn: Any, values: list[Any], infls: list[Influence]) -> tuple[list[Any], list[Influence]]:
    p = eqn.params
    body, n_consts, n_carry = p["jaxpr"], p["num_consts"], p["num_carry"]
    tracked = [i is not None for i in infls]
    while True:  # a carry is tracked if it starts tracked or the body makes it so
        outs = _tracked_outputs(body.jaxpr, tracked)
        carry = [
            a or b
            for a, b in zip(tracked[n_consts : n_consts + n_carry], outs[:n_carry], strict=True)
        ]
        new = tracked[:n_consts] + carry + tracked[n_consts + n_carry :]
        if new == tracked:
            break
        tracked = new
    infls = [
        i if i is not None or not t else jnp.zeros_like(v)
        for v, i, t in zip(values, infls, tracked, strict=True)
    ]
    consts, consts_i = values[:n_consts], infls[:n_consts]
    carry_t = tracked[n_consts : n_consts + n_carry]

    def step(carry: Any, xs: Any) -> tuple[Any, Any]:
        (cp, ci), (xp, xi) = carry, xs
        outs, out_i = evaluate(body.jaxpr, body.consts, [*consts, *cp, *xp], [*consts_i, *ci, *xi])
        ci = [
            (o if o is not None else jnp.zeros_like(v)) if t else None
            for v, o, t in zip(outs[:n_carry], out_i[:n_carry], carry_t, strict=True)
        ]
        return (outs[:n_carry], ci), (outs[n_carry:], out_i[n_carry:])

    init = (values[n_consts : n_consts + n_carry], infls[n_consts : n_consts + n_carry])
    xs = (values[n_consts + n_carry :], infls[n_consts + n_carry :])
    (cp, ci), (ys, ys_i) = lax.scan(
        step, init, xs, length=p["length"], reverse=p["reverse"], unroll=p["unroll"]
    )
    return [*cp, *ys], [*ci, *ys_i]


def _cond(eqn: Any, values: list[Any], infls: list[Influence]) -> tuple[list[Any], list[Influence]]:
    """Any branch may run: the influence is the union (sum) over all branches."""
    outs = _bind(eqn, values)
    total: list[Influence] = [None] * len(outs)
    for branch in eqn.params["branches"]:
        _, branch_i = evaluate(branch.jaxpr, branch.consts, values[1:], infls[1:])
        total = [
            t if b is None else (b if t is None else t + b)
            for t, b in zip(total, branch_i, strict=True)
        ]
    return outs, total


def support_fn(closed: ClosedJaxpr, n_leading: int) -> Callable[..., jax.Array]:
    """``f(leading, x, seeds) -> (U, *x.shape) bool``: the structural input-gradient support of
    each seed (a 0/1 cotangent on the program's only output) on ``x``, the last input.

    ``leading`` are the program's first ``n_leading`` inputs (the parameters); they are only
    read for integer-valued operations (e.g. gather indices), never for influence.
    """

    def run(leading: Sequence[Any], x: jax.Array, seeds: jax.Array) -> jax.Array:
        def forward(s: jax.Array) -> jax.Array:
            _, (inf,) = evaluate(
                closed.jaxpr, closed.consts, [*leading, x], [None] * n_leading + [s]
            )
            if inf is None:
                return jnp.zeros(seeds.shape[1:], seeds.dtype)
            return inf.astype(seeds.dtype)

        _, pull = jax.vjp(forward, jnp.zeros_like(x))
        return jax.vmap(lambda ct: pull(ct)[0])(seeds) > 0.5

    return run


# ---------------------------------------------------------------- settings composition


@dataclass(frozen=True)
class _Geo:
    """Where a value's elements look in the input.

    ``axes[k]`` is None for a non-spatial axis, else components ``(dim, jump, count)``: index
    ``i`` of axis ``k`` (in mixed radix over its components) moves the window along input
    dimension ``dim`` (0 rows, 1 columns) by ``i_component * jump``. ``start``/``size`` are the
    window's first row/column and extent at index 0, per input dimension.
    """

    axes: tuple[tuple[tuple[int, int, int], ...] | None, ...]
    start: tuple[int, int]
    size: tuple[int, int]


class _Unknown(Exception):
    """Something the settings composition cannot describe; the message says what."""


def compose_settings(
    closed: ClosedJaxpr, x_index: int, spatial_axes: tuple[int, int] = (1, 2)
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | str:
    """``(size, stride, start)`` of the program's output's units along ``spatial_axes``, by
    composing its convolutions' and pools' settings; a reason string when that cannot be exact.
    """
    x = closed.jaxpr.invars[x_index]
    ndim = len(x.aval.shape)
    axes: list[Any] = [None] * ndim
    for dim, axis in enumerate(spatial_axes):
        axes[axis] = ((dim, 1, x.aval.shape[axis]),)
    geos: dict[Any, _Geo] = {x: _Geo(tuple(axes), (0, 0), (1, 1))}
    try:
        (out,) = _compose(closed.jaxpr, geos)
    except _Unknown as why:
        return str(why)
    if out is None:
        return "the layer does not depend on the input"
    want = [None] * len(out.axes)
    shape = closed.jaxpr.outvars[0].aval.shape
    for dim, axis in enumerate(spatial_axes):
        if out.axes[axis] is None or len(out.axes[axis]) != 1 or out.axes[axis][0][0] != dim:
            return "the layer's spatial axes do not map to the input's rows and columns"
        want[axis] = out.axes[axis]
    if list(out.axes) != want:
        return "a non-spatial axis of the layer moves the window"
    stride = tuple(out.axes[a][0][1] if shape[a] > 1 else 0 for a in spatial_axes)
    return out.size, stride, out.start  # type: ignore[return-value]


def _compose(jaxpr: Jaxpr, geos: dict[Any, _Geo]) -> list[_Geo | None]:
    def geo(v: Any) -> _Geo | None:
        return None if isinstance(v, Literal) else geos.get(v)

    for eqn in jaxpr.eqns:
        ins = [geo(v) for v in eqn.invars]
        if all(g is None for g in ins) or not any(_is_float(v.aval) for v in eqn.outvars):
            continue
        name = eqn.primitive.name
        if name in _ZERO:
            continue
        if name in _CALLS:
            sub, _ = _sub_jaxpr(eqn)
            inner = {v: g for v, g in zip(sub.invars, ins, strict=True) if g is not None}
            outs = _compose(sub, inner)
        else:
            outs = [_compose_one(eqn, ins)]
        for var, g in zip(eqn.outvars, outs, strict=True):
            if g is not None:
                geos[var] = g
    return [geo(v) for v in jaxpr.outvars]


def _compose_one(eqn: Any, ins: list[_Geo | None]) -> _Geo:
    name, p = eqn.primitive.name, eqn.params
    tracked = [(v, g) for v, g in zip(eqn.invars, ins, strict=True) if g is not None]
    out_shape = eqn.outvars[0].aval.shape
    if name in _ELEMENTWISE:
        first = tracked[0][1]
        for v, g in tracked:
            if g != first or v.aval.shape != out_shape:
                raise _Unknown(f"{name!r} joins values that see different windows")
        return first
    (var, g), *rest = tracked
    if rest:
        raise _Unknown(f"{name!r} combines several values that depend on the input")
    shape = var.aval.shape
    if name == "conv_general_dilated":
        if var is not eqn.invars[0] or any(d != 1 for d in p["lhs_dilation"]):
            raise _Unknown("a transposed or input-dependent-kernel convolution")
        dn = p["dimension_numbers"]
        kernel = [eqn.invars[1].aval.shape[d] for d in dn.rhs_spec[2:]]
        window = dict.fromkeys(range(len(shape)), (1, 1, 1, (0, 0)))
        for k, axis in enumerate(dn.lhs_spec[2:]):
            window[axis] = (
                kernel[k],
                p["window_strides"][k],
                p["rhs_dilation"][k],
                p["padding"][k],
            )
        moved = _window(g, shape, window)
        axes: list[Any] = [None] * len(out_shape)
        for axis_in, axis_out in zip(dn.lhs_spec[2:], dn.out_spec[2:], strict=True):
            axes[axis_out] = moved.axes[axis_in]
        if g.axes[dn.lhs_spec[1]] is not None or g.axes[dn.lhs_spec[0]] is not None:
            raise _Unknown("a convolution over a spatial feature or batch axis")
        return _Geo(tuple(axes), moved.start, moved.size)
    if name in ("reduce_window_sum", "reduce_window_max", "reduce_window_min"):
        if any(d != 1 for d in p["base_dilation"]):
            raise _Unknown("a pool with base dilation")
        window = {
            a: (p["window_dimensions"][a], p["window_strides"][a], p["window_dilation"][a],
                p["padding"][a])
            for a in range(len(shape))
        }  # fmt: skip
        return _window(g, shape, window)
    if name in ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
        size = list(g.size)
        for a in p["axes"]:
            for dim, jump, count in g.axes[a] or ():
                size[dim] += (count - 1) * jump
        axes = tuple(ax for a, ax in enumerate(g.axes) if a not in p["axes"])
        return _Geo(axes, g.start, (size[0], size[1]))
    if name == "transpose":
        return _Geo(tuple(g.axes[a] for a in p["permutation"]), g.start, g.size)
    if name == "broadcast_in_dim":
        axes = [None] * len(out_shape)
        for a, b in enumerate(p["broadcast_dimensions"]):
            if shape[a] == out_shape[b]:
                axes[b] = g.axes[a]
            elif g.axes[a] is not None and shape[a] != 1:
                raise _Unknown("a broadcast of a spatial axis")
        return _Geo(tuple(axes), g.start, g.size)
    if name == "squeeze":
        axes = tuple(ax for a, ax in enumerate(g.axes) if a not in p["dimensions"])
        return _Geo(axes, g.start, g.size)
    if name == "reshape":
        return _Geo(_reshape(g.axes, shape, out_shape), g.start, g.size)
    if name == "slice":
        strides = p["strides"] or (1,) * len(shape)
        start, axes = list(g.start), list(g.axes)
        for a, ax in enumerate(g.axes):
            if ax is None:
                continue
            if len(ax) != 1:
                raise _Unknown("a slice of a merged spatial axis")
            dim, jump, _ = ax[0]
            start[dim] += p["start_indices"][a] * jump
            axes[a] = ((dim, jump * strides[a], out_shape[a]),)
        return _Geo(tuple(axes), (start[0], start[1]), g.size)
    if name == "pad" and var is eqn.invars[0]:
        start, axes = list(g.start), list(g.axes)
        for a, (lo, _, interior) in enumerate(p["padding_config"]):
            if g.axes[a] is None:
                continue
            if interior or len(g.axes[a]) != 1:
                raise _Unknown("an interior or merged-axis padding")
            dim, jump, _ = g.axes[a][0]
            start[dim] -= lo * jump
            axes[a] = ((dim, jump, out_shape[a]),)
        return _Geo(tuple(axes), (start[0], start[1]), g.size)
    if name == "dot_general":
        (contract, batch) = p["dimension_numbers"]
        mine = 0 if var is eqn.invars[0] else 1
        if batch[mine] or any(g.axes[a] is not None for a in contract[mine]):
            raise _Unknown("a matrix product over spatial or batch axes")
        free = [ax for a, ax in enumerate(g.axes) if a not in contract[mine]]
        other = len(eqn.invars[1 - mine].aval.shape) - len(contract[1 - mine])
        axes = free + [None] * other if mine == 0 else [None] * other + free
        return _Geo(tuple(axes), g.start, g.size)
    raise _Unknown(f"the operation {name!r}")


def _window(g: _Geo, shape: Sequence[int], window: dict[int, tuple[Any, ...]]) -> _Geo:
    """Compose a convolution's or pool's ``(kernel, stride, dilation, (lo, hi))`` per axis."""
    start, size, axes = list(g.start), list(g.size), list(g.axes)
    for a, (kernel, stride, dilation, (lo, hi)) in window.items():
        if g.axes[a] is None:
            if (kernel, stride, lo, hi) != (1, 1, 0, 0) and shape[a] != 1:
                raise _Unknown("a window over a non-spatial axis")
            continue
        if len(g.axes[a]) != 1:
            raise _Unknown("a window over a merged spatial axis")
        dim, jump, _ = g.axes[a][0]
        k_eff = (kernel - 1) * dilation + 1
        size[dim] += (k_eff - 1) * jump
        start[dim] -= lo * jump
        count = (shape[a] + lo + hi - k_eff) // stride + 1
        axes[a] = ((dim, jump * stride, count),)
    return _Geo(tuple(axes), (start[0], start[1]), (size[0], size[1]))


def _reshape(axes: Sequence[Any], shape: Sequence[int], out: Sequence[int]) -> tuple[Any, ...]:
    """Axes after a reshape that splits one spatial axis or merges spatial axes (mixed radix)."""
    result: list[Any] = []
    i = j = 0
    while i < len(shape) or j < len(out):
        gi, gj = [i], [j]  # grow both groups until their products match
        pi, pj = shape[i] if i < len(shape) else 1, out[j] if j < len(out) else 1
        while pi != pj:
            if pi < pj:
                i += 1
                gi.append(i)
                pi *= shape[i]
            else:
                j += 1
                gj.append(j)
                pj *= out[j]
        i, j = i + 1, j + 1
        gi = [a for a in gi if a < len(shape)]
        gj = [b for b in gj if b < len(out)]
        comps = [c for a in gi if axes[a] is not None and shape[a] > 1 for c in axes[a]]
        if not comps:
            result += [None] * len(gj)
        elif any(axes[a] is None and shape[a] > 1 for a in gi):
            raise _Unknown("a reshape that mixes spatial and non-spatial axes")
        elif len([b for b in gj if out[b] > 1]) <= 1:  # merge (or keep) into one axis
            result += [tuple(comps) if out[b] > 1 else None for b in gj]
        elif len(comps) == 1:  # split one spatial axis: major parts jump further
            dim, jump, _ = comps[0]
            for n, b in enumerate(gj):
                inner = math.prod(out[c] for c in gj[n + 1 :])
                result.append(((dim, jump * inner, out[b]),) if out[b] > 1 else None)
        else:
            raise _Unknown("a reshape that regroups merged spatial axes")
    return tuple(result)
