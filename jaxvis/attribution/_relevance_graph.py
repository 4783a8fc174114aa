"""The forward pass of a probed model as a flat list of equations, sorted into the roles that a
relevance method (LRP, DeepLift) treats differently on the way back.

The model's forward pass is traced to a jaxpr (shapes only: nothing compiles), calls of
``jax.jit``-ed helpers are inlined, and every equation that touches the input (a "live" float
value) gets a role:

* ``layer``: an affine layer, one linear equation -- a convolution or matrix product with a
  constant (parameter) operand, a window sum (sum/mean pooling) or a mean -- followed by the
  chain of elementwise affine equations on its output alone (bias, BatchNorm in eval mode, the
  division of a mean): ``z = a * lin(u, W) + c``. Folding the chain into ``a`` and ``c`` is
  BatchNorm canonisation (zennit's ``SequentialMergeBatchNorm``) for any layer a chain follows.
* ``activation``: a named elementwise non-linearity (``jax.nn.relu``, ``elu``, ``tanh``, ...).
* ``residual``: the sum (or difference) of two live values of one shape (a skip connection).
* ``max``: max pooling, ``reduce_window_max``/``reduce_max``, or a sum over a selection by
  a mask computed from the input (the zoo's ``MaxPool``), whose gradient LRP uses as it is;
* ``plain``: a structural or piecewise-linear equation (reshape, transpose, max pooling,
  padding, indexing, adding a constant) whose own gradient is used.

Anything else that touches the input (two activations multiplied, a normalisation by live
statistics, a loop) raises a ``ValueError`` naming the probe layer it belongs to.

Example::

    graph = relevance_graph(probe, (4, 28, 28, 1), "lrp")
    [g.name for g in graph.layers.values()]        # ['conv1', 'conv2', ..., 'dense3']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from jaxvis._per_probe import PerProbe
from jaxvis._protocols import ProbeLike

__all__ = ["Graph", "LayerGroup", "evaluate", "relevance_graph"]

#: names of ``jax.nn`` activations (jitted or ``custom_jvp`` functions) treated as one step
ACTIVATION_NAMES = frozenset(
    [
        "relu",
        "relu6",
        "elu",
        "selu",
        "celu",
        "gelu",
        "silu",
        "swish",
        "sigmoid",
        "softplus",
        "leaky_relu",
        "hard_tanh",
        "soft_sign",
        "mish",
        "log_sigmoid",
        "hard_sigmoid",
        "hard_silu",
        "hard_swish",
        "tanh",
    ]
)
#: elementwise non-linear primitives that are activations on their own
ACTIVATION_PRIMITIVES = frozenset({"tanh", "logistic"})
#: equations whose own gradient carries relevance (linear or piecewise-linear in the input)
PLAIN_PRIMITIVES = frozenset(
    [
        "reshape",
        "transpose",
        "broadcast_in_dim",
        "squeeze",
        "expand_dims",
        "slice",
        "dynamic_slice",
        "concatenate",
        "pad",
        "gather",
        "select_n",
        "reduce_window_max",
        "reduce_max",
        "reduce_min",
        "max",
        "min",
        "convert_element_type",
        "copy",
        "copy_p",
        "rev",
        "reduce_precision",
        "neg",
        "add",
        "sub",
        "mul",
        "div",
        "reduce_sum",
        "dynamic_update_slice",
        "optimization_barrier",
        "sharding_constraint",
    ]
)
INLINED = frozenset({"jit", "pjit", "closed_call", "core_call", "remat", "checkpoint"})
AFFINE = frozenset({"add", "sub", "mul", "div", "neg", "convert_element_type"})


@dataclass(frozen=True)
class LayerGroup:
    """An affine layer ``z = a * lin(u, W) + c`` (see the module docstring).

    ``kind`` is ``"conv"``, ``"dense"`` or ``"pool"`` (no weight); ``linear`` the index of the
    linear equation, ``chain`` those of the affine equations after it (the last one, or the
    linear equation itself, is where the layer is evaluated); ``x_pos`` the position of the
    live operand of the linear equation; ``name`` the probe layer it belongs to."""

    kind: str
    linear: int
    chain: tuple[int, ...]
    x_pos: int
    name: str
    layer_kind: str

    @property
    def last(self) -> int:
        return self.chain[-1] if self.chain else self.linear


@dataclass
class Graph:
    """The flat equations of one forward pass and their roles (see the module docstring)."""

    eqns: list[Any]
    consts: list[Any]
    constvars: list[Any]
    invars: list[Any]
    outvars: list[Any]
    layers: dict[int, LayerGroup]  # keyed by the equation where the layer is evaluated
    roles: dict[int, str]  # "layer", "activation", "residual", "max", "plain"
    #: a max pooling written as a masked sum: the sum's index -> the select's index
    selects: dict[int, int]
    live: set[Any]  # the float values that depend on the input

    def live_index(self, eqn: Any) -> int:
        """The position of ``eqn``'s first live operand."""
        return next(k for k, v in enumerate(eqn.invars) if _is_var(v) and v in self.live)

    @property
    def weighted(self) -> list[LayerGroup]:
        """The convolutions and dense layers, in call order."""
        return [g for g in sorted(self.layers.values(), key=lambda g: g.linear) if g.kind != "pool"]


_GRAPHS: PerProbe[Graph] = PerProbe()


def relevance_graph(probe: ProbeLike, shape: tuple[int, ...], method: str) -> Graph:
    """The :class:`Graph` of ``probe``'s forward pass on a float32 batch of ``shape`` (cached);
    a ``ValueError`` naming the layer when an equation has no relevance rule (``method`` is
    the caller's name, for the message)."""
    key = tuple(int(d) for d in shape)
    return _GRAPHS.get(probe, key, lambda: _build(probe, key, method))


def _build(probe: ProbeLike, shape: tuple[int, ...], method: str) -> Graph:
    names = list(probe.layer_names)

    def forward(p: Any, x: jax.Array) -> tuple[Any, list[jax.Array]]:
        out, acts = probe.apply(p, x, layers=names, truncate=False)
        return out, [acts[n] for n in names]

    spec = jax.ShapeDtypeStruct(shape, jnp.float32)
    closed = jax.make_jaxpr(forward)(probe.params, spec)
    jaxpr = closed.jaxpr
    n_out = len(jaxpr.outvars) - len(names)
    if n_out != 1:
        raise ValueError(f"{method} needs a model with one output array, got {n_out}")
    alias: dict[Any, Any] = {}
    eqns = _flatten(jaxpr.eqns, alias)

    def resolve(v: Any) -> Any:
        while not isinstance(v, Literal) and v in alias:
            v = alias[v]
        return v

    outvars = [resolve(v) for v in jaxpr.outvars]
    model_out, layer_vars = outvars[0], outvars[1:]
    x_var = jaxpr.invars[-1]
    live = {x_var}
    tainted = {x_var}  # depends on the input at all (masks and indices too)
    for eqn in eqns:
        if any(_is_var(v) and v in tainted for v in eqn.invars):
            tainted.update(eqn.outvars)
        if eqn.primitive.name == "stop_gradient":
            continue
        if any(_is_var(v) and v in live for v in eqn.invars):
            live.update(v for v in eqn.outvars if _floating(v))
    uses: dict[Any, int] = {}
    for eqn in eqns:
        for v in eqn.invars:
            if _is_var(v):
                uses[v] = uses.get(v, 0) + 1
    if _is_var(model_out):
        uses[model_out] = uses.get(model_out, 0) + 1
    user = {v: i for i, eqn in enumerate(eqns) for v in eqn.invars if _is_var(v)}
    # the probe layer each equation belongs to: the first layer output at or after it
    produced = {v: i for i, eqn in enumerate(eqns) for v in eqn.outvars}
    layer_at = sorted(
        (produced[v], name) for v, name in zip(layer_vars, names, strict=True) if v in produced
    )
    kinds = {layer.name: layer.kind for layer in probe.layers}

    def layer_of(i: int) -> tuple[str, str]:
        for index, name in layer_at:
            if index >= i:
                return name, kinds.get(name, "?")
        return "(model output)", "output"

    is_live = lambda v: _is_var(v) and v in live  # noqa: E731
    layers: dict[int, LayerGroup] = {}
    roles: dict[int, str] = {}
    selects: dict[int, int] = {}
    for i, eqn in enumerate(eqns):
        if i in roles or not any(is_live(v) for v in eqn.invars):
            continue
        name = eqn.primitive.name
        if name == "stop_gradient" or not any(_floating(v) for v in eqn.outvars):
            roles[i] = "plain"  # no gradient flows: comparisons, argmax, stop_gradient
            continue
        live_in = [k for k, v in enumerate(eqn.invars) if is_live(v)]
        group = _linear_kind(eqn, live_in)
        if group is not None:
            kind, x_pos = group
            chain = _chain(eqns, eqn.outvars[0], uses, user, is_live, model_out)
            if kind == "sum":  # a sum counts as mean pooling only when divided (a mean)
                if not chain:
                    j = produced.get(eqn.invars[0])
                    sel = eqns[j] if j is not None else None
                    masked = (
                        sel is not None
                        and sel.primitive.name == "select_n"
                        and _is_var(sel.invars[0])
                        and sel.invars[0] in tainted
                        and sum(is_live(v) for v in sel.invars[1:]) == 1
                        and uses.get(eqn.invars[0]) == 1
                    )
                    roles[i] = "max" if masked else "plain"
                    if masked:
                        selects[i] = j
                    continue
                kind = "pool"
            outs = [eqn.outvars[0], *(eqns[j].outvars[0] for j in chain)]
            label = next((n for v in outs for n in _names_of(v, layer_vars, names)), None)
            lname, lkind = (label, kinds.get(label, "?")) if label else layer_of(i)
            g = LayerGroup(kind, i, tuple(chain), x_pos, lname, lkind)
            layers[g.last] = g
            roles[i] = "layer"
            for j in chain:
                roles[j] = "layer"
        elif name in ("reduce_window_max", "reduce_max") and len(live_in) == 1:
            roles[i] = "max"
        elif _is_activation(eqn, live_in):
            roles[i] = "activation"
        elif name in ("add", "sub") and len(live_in) == 2:
            a, b = (eqn.invars[k].aval.shape for k in live_in)
            if a != b:
                lname, lkind = layer_of(i)
                raise ValueError(
                    f"{method} cannot handle layer {lname!r} (kind {lkind}): it adds two "
                    f"activations of different shapes {a} and {b}"
                )
            roles[i] = "residual"
        elif name in PLAIN_PRIMITIVES and not (name in ("mul", "div") and len(live_in) > 1):
            if name == "div" and live_in != [0]:
                _refuse(method, layer_of(i), "divides by an activation")
            roles[i] = "plain"
        elif name in {"custom_jvp_call", "custom_vjp_call"}:
            roles[i] = "plain"
        else:
            what = {
                "mul": "multiplies two activations (gating, attention)",
                "div": "divides by an activation (normalisation by live statistics)",
                "dot_general": "multiplies two activations (attention)",
                "conv_general_dilated": "convolves with a kernel computed from the input",
            }.get(name, f"applies {name!r}, which has no relevance rule")
            _refuse(method, layer_of(i), what)
    return Graph(
        eqns,
        list(closed.consts),
        list(jaxpr.constvars),
        list(jaxpr.invars),
        outvars[:1],
        layers,
        roles,
        selects,
        live,
    )


def _refuse(method: str, where: tuple[str, str], what: str) -> None:
    name, kind = where
    raise ValueError(
        f"{method} cannot handle layer {name!r} (kind {kind}): it {what}. Supported: "
        "convolutions, dense layers, BatchNorm in eval mode, named activations (relu, elu, "
        "tanh, ...), sum/mean/max pooling, residual additions and reshapes"
    )


def _names_of(v: Any, layer_vars: list[Any], names: list[str]) -> list[str]:
    return [n for lv, n in zip(layer_vars, names, strict=True) if lv is v]


def _is_var(v: Any) -> bool:
    return not isinstance(v, Literal)


def _floating(v: Any) -> bool:
    aval = getattr(v, "aval", None)
    return aval is not None and jnp.issubdtype(getattr(aval, "dtype", np.int32), jnp.floating)


def _linear_kind(eqn: Any, live_in: list[int]) -> tuple[str, int] | None:
    name = eqn.primitive.name
    if name == "conv_general_dilated" and live_in == [0]:
        return "conv", 0
    if name == "dot_general" and len(live_in) == 1:
        return "dense", live_in[0]
    if name == "reduce_window_sum":
        return "pool", 0
    if name == "reduce_sum":
        return "sum", 0
    return None


def _chain(
    eqns: list[Any], v: Any, uses: dict, user: dict, is_live: Callable, model_out: Any
) -> list[int]:
    """Indices of the elementwise affine equations applied to ``v`` alone, in order."""
    chain = []
    while uses.get(v, 0) == 1 and v in user and v is not model_out:
        j = user[v]
        eqn = eqns[j]
        name = eqn.primitive.name
        others = [w for w in eqn.invars if w is not v]
        if name not in AFFINE or any(is_live(w) for w in others) or len(others) == len(eqn.invars):
            break
        if name == "div" and eqn.invars[0] is not v:
            break
        if name == "convert_element_type" and not _floating(eqn.outvars[0]):
            break
        if tuple(eqn.outvars[0].aval.shape) != tuple(v.aval.shape):
            break
        chain.append(j)
        v = eqn.outvars[0]
    return chain


def _is_activation(eqn: Any, live_in: list[int]) -> bool:
    name = eqn.primitive.name
    if len(live_in) != 1 or len(eqn.outvars) != 1:
        return False
    same = tuple(eqn.outvars[0].aval.shape) == tuple(eqn.invars[live_in[0]].aval.shape)
    if not same:
        return False
    if name in ACTIVATION_PRIMITIVES:
        return True
    if name in ("custom_jvp_call", "custom_vjp_call", "jit", "pjit"):
        return str(eqn.params.get("name", "")) in ACTIVATION_NAMES
    return name in ("max", "min")  # jnp.maximum(x, 0): a ReLU


def _flatten(eqns: list[Any], alias: dict[Any, Any]) -> list[Any]:
    """``eqns`` with calls of jitted helpers (other than named activations) inlined; the
    calls' outputs are aliased (``alias[outer] = inner``) to the inner values."""
    out: list[Any] = []
    for eqn in eqns:
        name = eqn.primitive.name
        inner = eqn.params.get("jaxpr") if name in INLINED else None
        if inner is None or str(eqn.params.get("name", "")) in ACTIVATION_NAMES:
            out.append(eqn.replace(invars=[_resolve(v, alias) for v in eqn.invars]))
            continue
        inner_jaxpr = getattr(inner, "jaxpr", inner)
        consts = getattr(inner, "consts", [])
        if consts:  # a closed call with constants of its own: keep it whole
            out.append(eqn.replace(invars=[_resolve(v, alias) for v in eqn.invars]))
            continue
        for iv, ov in zip(inner_jaxpr.invars, eqn.invars, strict=True):
            alias[iv] = _resolve(ov, alias)
        out.extend(_flatten(inner_jaxpr.eqns, alias))
        for ov, iv in zip(eqn.outvars, inner_jaxpr.outvars, strict=True):
            alias[ov] = _resolve(iv, alias)
    return out


def _resolve(v: Any, alias: dict[Any, Any]) -> Any:
    while not isinstance(v, Literal) and v in alias:
        v = alias[v]
    return v


def bind(eqn: Any, args: list[Any]) -> Any:
    """Evaluate one equation on ``args``; a list of outputs."""
    params = eqn.primitive.get_bind_params(eqn.params)
    with eqn.ctx.manager:
        ans = eqn.primitive.bind(*args, **params)
    return list(ans) if eqn.primitive.multiple_results else [ans]


def evaluate(
    graph: Graph,
    params: Any,
    x: jax.Array,
    step: Callable[[int, Any, list[Any] | None, Callable[[Any], Any]], list[Any] | None]
    | None = None,
    stop: int | None = None,
    grouped: bool = False,
) -> Any:
    """Run the graph's forward pass on ``(params, x)``.

    ``step(i, eqn, args, read)`` may replace equation ``i``'s outputs (return a list) or leave
    it to the plain evaluation (return None). With ``grouped``, the equations of a layer other
    than its last are skipped and ``step`` gets ``args=None`` at the last one (it evaluates the
    whole layer from ``read``). With ``stop``, returns ``read`` after equations ``< stop``
    instead of the output."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    for v, c in zip(graph.constvars, graph.consts, strict=True):
        env[v] = c
    for v, a in zip(graph.invars, jax.tree_util.tree_leaves((params, x)), strict=True):
        env[v] = a
    skip = set()
    if grouped:
        skip = {j for g in graph.layers.values() for j in (g.linear, *g.chain) if j != g.last}
    for i, eqn in enumerate(graph.eqns):
        if stop is not None and i >= stop:
            return read
        if i in skip:
            continue
        outs = None
        if step is not None:
            whole = grouped and i in graph.layers
            outs = step(i, eqn, None if whole else [read(v) for v in eqn.invars], read)
        if outs is None:
            outs = bind(eqn, [read(v) for v in eqn.invars])
        for v, a in zip(eqn.outvars, outs, strict=True):
            env[v] = a
    return read(graph.outvars[0]) if stop is None else read


def with_backward(fwd: Callable[..., Any], bwd: Callable[[tuple, Any], tuple], *args: Any) -> Any:
    """``fwd(*args)`` whose backward pass is ``bwd(args, cotangent) -> one cotangent per arg``
    (None for no gradient)."""
    f = jax.custom_vjp(fwd)
    f.defvjp(lambda *a: (fwd(*a), a), bwd)
    return f(*args)


def stabilise(z: jax.Array, eps: Any) -> jax.Array:
    """``z + eps * sign(z)`` with ``sign(0) = 1`` (zennit's ``stabilize``)."""
    return z + eps * ((z == 0).astype(z.dtype) + jnp.sign(z))
