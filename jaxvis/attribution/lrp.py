"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019) through a probe.

The target's score is the relevance at the output; a modified backward pass (the "gradient
trick" of zennit) carries relevance down to the input. Each convolution and dense layer,
found in the forward pass's jaxpr with the affine steps after it folded in (bias, BatchNorm in
eval mode: canonisation, see :mod:`jaxvis.attribution._relevance_graph`), gets a custom VJP
that redistributes the relevance ``R`` at its output ``z = W u + b`` to its input by a rule:

* ``epsilon``: ``R_u = u * W^T (R / (z + eps sign z))``;
* ``gamma``: the weights ``W + gamma W+`` (generalised to negative inputs, as zennit);
* ``alpha2_beta1`` / ``alpha1_beta0``: positive and negative contributions weighted
  ``alpha R+ - beta R-``; ``zplus`` is ``alpha1_beta0``;
* ``zbox`` (the first layer of ``epsilon_gamma_box``): bounded inputs ``low <= u <= high``,
  ``R_u = (u W - low W+ - high W-)^T s``;
* ``flat`` and ``wsquare`` (unit or squared weights, the input ignored).

Named activations (ReLU, ELU, tanh, ...) pass relevance through unchanged, sum and mean
pooling redistribute it in proportion to their inputs (zennit's ``Norm``), max pooling sends
it to the window's winner (its gradient), and a residual addition ``a + b`` splits it in
proportion to ``a`` and ``b``. The values returned are the relevance at the input pixels
(zennit's ``Gradient`` attribution with the output relevance ``one-hot * logits``).

Example::

    res = lrp(probe, x, target=3, composite="epsilon_gamma_box")
    res.values.sum(axis=(1, 2, 3))        # ~ the logit when biases and epsilon are small
    res.delta                             # sum of relevance - the score (absorbed by biases)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis._protocols import ProbeLike
from jaxvis.attribution import _checks
from jaxvis.attribution._core import cached_jit, count_trace
from jaxvis.attribution._relevance_graph import (
    Graph,
    LayerGroup,
    bind,
    evaluate,
    relevance_graph,
    stabilise,
    with_backward,
)
from jaxvis.attribution.registry import register
from jaxvis.attribution.result import Attribution

__all__ = ["COMPOSITES", "RULES", "folded_forward", "lrp", "lrp_rules"]

RULES = ("epsilon", "gamma", "alpha2_beta1", "alpha1_beta0", "zplus", "zbox", "flat", "wsquare")
#: composite -> (rule of the first weighted layer or None, rule of convolutions, of dense layers)
COMPOSITES = {
    "epsilon": (None, "epsilon", "epsilon"),
    "epsilon_gamma_box": ("zbox", "gamma", "epsilon"),
    "epsilon_alpha2_beta1": (None, "alpha2_beta1", "epsilon"),
    "epsilon_plus": (None, "zplus", "epsilon"),
    "zplus": (None, "zplus", "zplus"),
}
#: the stabiliser of every rule but epsilon (zennit's default)
STABILISER = 1e-6

Composite = str | Mapping[str, str] | Callable[[str, str, int], str]


def lrp_rules(probe: ProbeLike, x_shape: tuple[int, ...], composite: Composite) -> dict[str, str]:
    """The rule each weighted layer gets, by layer name, in call order (nothing compiles).

    Example::

        lrp_rules(probe, (1, 28, 28, 1), "epsilon_gamma_box")   # {'conv1': 'zbox', ...}
    """
    graph = relevance_graph(probe, tuple(x_shape), "lrp")
    return dict(zip((g.name for g in graph.weighted), _assign(graph, composite), strict=True))


def _assign(graph: Graph, composite: Composite) -> tuple[str, ...]:
    weighted = graph.weighted
    if isinstance(composite, str):
        if composite not in COMPOSITES:
            raise ValueError(
                f"composite must be one of {', '.join(COMPOSITES)}, a dict of layer name -> "
                f"rule or a callable (name, kind, index) -> rule; got {composite!r}"
            )
        first, conv, dense = COMPOSITES[composite]
        rules = [conv if g.kind == "conv" else dense for g in weighted]
        if first is not None and rules:
            rules[0] = first
    elif isinstance(composite, Mapping):
        names = [g.name for g in weighted]
        unknown = [k for k in composite if k not in names]
        if unknown:
            raise ValueError(
                f"composite names layer {unknown[0]!r}, which is not a convolution or dense "
                f"layer of this model; its weighted layers are {', '.join(names)}"
            )
        rules = [composite.get(g.name, "epsilon") for g in weighted]
    elif callable(composite):
        rules = [composite(g.name, g.kind, k) for k, g in enumerate(weighted)]
    else:
        raise TypeError(
            "composite must be a composite name, a dict of layer name -> rule or a callable, "
            f"got {type(composite).__name__}"
        )
    for g, rule in zip(weighted, rules, strict=True):
        if rule not in RULES:
            raise ValueError(
                f"unknown LRP rule {rule!r} for layer {g.name!r}: "
                f"expected one of {', '.join(RULES)}"
            )
    return tuple(rules)


def _number(value: Any, name: str, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not np.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a finite number >= {low}, got {value}")
    return float(value)


def _bound(probe: ProbeLike, value: Any, default: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(default if value is None else value, np.float32)
    channels = probe.input_shape[-1] if probe.input_shape else arr.size
    if arr.ndim > 1 or arr.size not in (1, channels):
        raise ValueError(
            f"{name} must be a number or one per channel ({channels}), got shape {arr.shape}"
        )
    return arr.reshape(-1)


@register("relevance", "LRP")
def lrp(
    probe: ProbeLike,
    x: Any,
    target: Any = None,
    *,
    composite: Composite = "epsilon_gamma_box",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    low: Any = None,
    high: Any = None,
    params: Any = None,
) -> Attribution:
    """Layer-wise relevance propagation: the target score redistributed to the input pixels.

    ``composite`` picks the rule per layer: ``"epsilon_gamma_box"`` (z^B first layer, gamma
    convolutions, epsilon dense layers), ``"epsilon_alpha2_beta1"``, ``"epsilon_plus"``,
    ``"epsilon"``, ``"zplus"``, a dict ``{layer name: rule}`` (other layers: epsilon) or a
    callable ``(name, kind, index) -> rule`` with a rule of :data:`RULES`. ``epsilon`` and
    ``gamma`` are the rules' parameters; ``low``/``high`` the z^B bounds of the model's input
    (default: the probe's input range), carried through any preprocessing before the first
    layer. ``delta`` is ``sum(values) - score``: the relevance absorbed by biases and
    stabilisers. Options are traced: changing them (or the target) compiles nothing new.

    Example::

        res = lrp(probe, x, target=3, composite={"conv1": "zbox", "dense3": "epsilon"})
    """
    x = _checks.check_images(probe, x)
    eps = _number(epsilon, "epsilon")
    gam = _number(gamma, "gamma")
    lo = _bound(probe, low, probe.input_low, "low")
    hi = _bound(probe, high, probe.input_high, "high")
    graph = relevance_graph(probe, tuple(x.shape), "lrp")
    rules = _assign(graph, composite)
    tgt = _checks.resolve_target(probe, x, target)
    key = ("lrp", tuple(x.shape), rules, tgt.static_key)
    run = cached_jit(probe, key, lambda: _kernel(graph, rules, tgt), convolutions=False)
    params = probe.params if params is None else params
    values, score, total = run(params, x, tgt.index, eps, gam, lo, hi)
    settings = {"composite": composite if isinstance(composite, str) else "custom"}
    settings.update(
        epsilon=eps,
        gamma=gam,
        rules=dict(zip([g.name for g in graph.weighted], rules, strict=True)),
    )
    return Attribution(
        values=values,
        delta=total - score,
        method="lrp",
        target=None if tgt.kind == "callable" else tgt.index,
        score=score,
        baseline_score=jnp.zeros_like(score),
        settings=settings,
    )


def _kernel(graph: Graph, rules: tuple[str, ...], tgt: _checks.Target) -> Callable:
    rule_of = dict(zip((g.last for g in graph.weighted), rules, strict=True))

    def run(params: Any, x: jax.Array, index: jax.Array, eps: Any, gam: Any, lo: Any, hi: Any):
        count_trace("lrp")
        bounds = {}
        for g in graph.weighted:
            if rule_of[g.last] == "zbox":
                u_var = graph.eqns[g.linear].invars[g.x_pos]
                pair = [
                    evaluate(graph, params, jnp.broadcast_to(b, x.shape), stop=g.linear)(u_var)
                    for b in (lo, hi)
                ]
                bounds[g.last] = (jnp.minimum(*pair), jnp.maximum(*pair))

        def step(i: int, eqn: Any, args: list | None, read: Callable) -> list | None:
            if i in graph.layers:
                group = graph.layers[i]
                rule = rule_of.get(i, "norm")
                return [_layer(graph, group, rule, read, eps, gam, bounds.get(i))]
            role = graph.roles.get(i)
            if role == "activation":
                return [_pass(eqn, args, graph.live_index(eqn))]
            if role == "residual":
                return [_split(eqn, args)]
            return None

        out, pull = jax.vjp(lambda xx: evaluate(graph, params, xx, step, grouped=True), x)
        grad = jax.grad(lambda o: _checks.pick(o, tgt, index).sum())(out)
        (values,) = pull(out * grad)  # the output relevance: the score, on the target only
        score = _checks.pick(out, tgt, index)
        return values, score, values.reshape(values.shape[0], -1).sum(-1)

    return run


def _pass(eqn: Any, args: list, k: int) -> jax.Array:
    """An activation whose backward pass hands the relevance through unchanged."""

    def bwd(res: tuple, g: jax.Array) -> tuple:
        return tuple(g if j == k else None for j in range(len(res)))

    return with_backward(lambda *a: bind(eqn, list(a))[0], bwd, *args)


def _split(eqn: Any, args: list) -> jax.Array:
    """``a + b`` (or ``a - b``): relevance split in proportion to the two contributions."""
    sign = -1.0 if eqn.primitive.name == "sub" else 1.0

    def bwd(res: tuple, g: jax.Array) -> tuple:
        a, b = res
        s = g / stabilise(a + sign * b, STABILISER)
        return a * s, sign * b * s

    return with_backward(lambda a, b: bind(eqn, [a, b])[0], bwd, *args)


def _affine(graph: Graph, group: LayerGroup, read: Callable) -> tuple[Any, Any, bool]:
    """``(a, c, scaled)`` of the layer's chain ``v -> a * v + c``; ``scaled`` is False when
    ``a`` is 1 (no multiplication in the chain)."""
    a: Any = 1.0
    c: Any = 0.0
    scaled = False
    v = graph.eqns[group.linear].outvars[0]
    for j in group.chain:
        eqn = graph.eqns[j]
        name = eqn.primitive.name
        other = [read(w) for w in eqn.invars if w is not v]
        k = other[0] if other else None
        if name == "add":
            c = c + k
        elif name == "sub" and eqn.invars[0] is v:
            c = c - k
        elif name == "sub":
            a, c, scaled = -a, k - c, True
        elif name == "mul":
            a, c, scaled = a * k, c * k, True
        elif name == "div":
            a, c, scaled = a / k, c / k, True
        elif name == "neg":
            a, c, scaled = -a, -c, True
        v = eqn.outvars[0]
    return a, c, scaled


def _fold(eqn: Any, group: LayerGroup, w: Any, a: Any, scaled: bool) -> tuple[Any, Any, bool]:
    """Merge a per-output-feature scale ``a`` into the weights (``W' = a W``, BatchNorm's
    scale), where the layer's output features are its last axis and ``a`` varies along it
    only; otherwise leave ``a`` to be applied to the layer's outputs."""
    if not scaled or w is None:
        return w, a, scaled
    a = jnp.asarray(a)
    out_ndim = len(eqn.outvars[0].aval.shape)
    if a.ndim > out_ndim or any(d != 1 for d in a.shape[:-1]):
        return w, a, scaled
    vec = a.reshape(-1)
    if group.kind == "conv":
        dn = eqn.params["dimension_numbers"]
        if dn.out_spec[1] != out_ndim - 1:
            return w, a, scaled
        shape = [1] * w.ndim
        shape[dn.rhs_spec[0]] = vec.shape[0]
        return w * vec.reshape(shape), 1.0, False
    (contract, _), (batch, _) = eqn.params["dimension_numbers"]
    if group.x_pos != 0 or batch[0] or w.ndim != 2 or tuple(contract[1]) != (0,):
        return w, a, scaled
    return w * vec[None, :], 1.0, False


def _layer(
    graph: Graph,
    group: LayerGroup,
    rule: str,
    read: Callable,
    eps: Any,
    gam: Any,
    bounds: tuple[jax.Array, jax.Array] | None,
) -> jax.Array:
    """The folded layer ``a * lin(u, W) + c`` with the rule's relevance as its backward pass."""
    eqn = graph.eqns[group.linear]
    u = read(eqn.invars[group.x_pos])
    w = read(eqn.invars[1 - group.x_pos]) if group.kind != "pool" else None
    a, c, scaled = _affine(graph, group, read)
    w, a, scaled = _fold(eqn, group, w, a, scaled)
    shape = eqn.outvars[0].aval.shape
    a = jnp.broadcast_to(jnp.asarray(a, u.dtype), shape)
    c = jnp.broadcast_to(jnp.asarray(c, u.dtype), shape)
    lo, hi = bounds if bounds is not None else (u, u)

    def lin(t: jax.Array, weights: jax.Array | None) -> jax.Array:
        if weights is None:
            return bind(eqn, [t])[0]
        args = [t, weights] if group.x_pos == 0 else [weights, t]
        return bind(eqn, args)[0]

    def fwd(u: Any, w: Any, a: Any, c: Any, *_: Any) -> jax.Array:
        return a * lin(u, w) + c

    def bwd(res: tuple, r: jax.Array) -> tuple:
        u, w, a, c, eps, gam, lo, hi = res
        rel = _redistribute(rule, lin, u, w, a, c, scaled, r, eps, gam, lo, hi)
        return (rel, *(None,) * 7)

    return with_backward(fwd, bwd, u, w, a, c, eps, gam, lo, hi)


def _redistribute(
    rule: str,
    lin: Callable,
    u: jax.Array,
    w: jax.Array | None,
    a: jax.Array,
    c: jax.Array,
    scaled: bool,
    r: jax.Array,
    eps: Any,
    gam: Any,
    lo: jax.Array,
    hi: jax.Array,
) -> jax.Array:
    """The relevance at the layer's input for the relevance ``r`` at its output."""

    def transpose(weights: jax.Array | None, s: jax.Array) -> jax.Array:
        _, pull = jax.vjp(lambda t: lin(t, weights), u)
        return pull(s)[0]

    if w is None:  # pooling: zennit's Norm
        z = a * lin(u, None) + c
        return u * transpose(None, a * r / stabilise(z, STABILISER))
    wp, wn = jnp.maximum(w, 0), jnp.minimum(w, 0)
    ap, an = jnp.maximum(a, 0), jnp.minimum(a, 0)

    # the folded layer's weights a*W, their positive and negative parts, as maps and transposes
    def full(t: jax.Array) -> jax.Array:
        return a * lin(t, w)

    def pos(t: jax.Array) -> jax.Array:
        return ap * lin(t, wp) + (an * lin(t, wn) if scaled else 0.0)

    def neg(t: jax.Array) -> jax.Array:
        return ap * lin(t, wn) + (an * lin(t, wp) if scaled else 0.0)

    def full_t(s: jax.Array) -> jax.Array:
        return transpose(w, a * s)

    def pos_t(s: jax.Array) -> jax.Array:
        out = transpose(wp, ap * s)
        return out + transpose(wn, an * s) if scaled else out

    def neg_t(s: jax.Array) -> jax.Array:
        out = transpose(wn, ap * s)
        return out + transpose(wp, an * s) if scaled else out

    up, un = jnp.maximum(u, 0), jnp.minimum(u, 0)
    cp, cn = jnp.maximum(c, 0), jnp.minimum(c, 0)
    if rule == "epsilon":
        z = full(u) + c
        return u * full_t(r / stabilise(z, eps))
    if rule in ("zplus", "alpha1_beta0", "alpha2_beta1"):
        sp = r / stabilise(pos(up) + cp + neg(un), STABILISER)
        rel = up * pos_t(sp) + un * neg_t(sp)
        if rule != "alpha2_beta1":
            return rel
        sn = r / stabilise(neg(up) + cn + pos(un), STABILISER)
        return 2.0 * rel - (up * neg_t(sn) + un * pos_t(sn))
    if rule == "gamma":  # weights W + gamma W+ for positive, W + gamma W- for negative z
        z = full(u) + c
        plus_o = z + gam * (pos(up) + neg(un) + cp)  # full(up) + full(un) = full(u)
        minus_o = z + gam * (neg(up) + pos(un) + cn)
        g1 = jnp.where(z > 0, r, 0.0) / stabilise(plus_o, STABILISER)
        g2 = jnp.where(z < 0, r, 0.0) / stabilise(minus_o, STABILISER)
        both = full_t(g1 + g2)
        return up * (both + gam * (pos_t(g1) + neg_t(g2))) + un * (
            both + gam * (neg_t(g1) + pos_t(g2))
        )
    if rule == "zbox":
        lo, hi = jnp.broadcast_to(lo, u.shape), jnp.broadcast_to(hi, u.shape)
        z = full(u) + c
        s = r / stabilise(z - (pos(lo) + cp) - (neg(hi) + cn), STABILISER)
        return u * full_t(s) - lo * pos_t(s) - hi * neg_t(s)
    if rule == "flat":
        ones = jnp.ones_like(w)
        s = r / stabilise(lin(jnp.ones_like(u), ones), STABILISER)
        return transpose(ones, s)
    # wsquare: squared folded weights and bias, the input ignored
    s = r / stabilise(a * a * lin(jnp.ones_like(u), w * w) + c * c, STABILISER)
    return transpose(w * w, a * a * s)


def folded_forward(probe: ProbeLike, x: Any, params: Any = None) -> jax.Array:
    """The model's output computed with every layer folded as LRP sees it, ``lin(u, a W) + c``
    (BatchNorm's scale merged into the kernel, its shift and the bias into ``c``): equal to
    ``probe(x)`` up to float rounding. For checking the canonisation.

    Example::

        np.allclose(folded_forward(probe, x), probe(x), atol=1e-5)
    """
    x = _checks.check_images(probe, x)
    graph = relevance_graph(probe, tuple(x.shape), "lrp")

    def step(i: int, eqn: Any, args: list | None, read: Callable) -> list | None:
        if i not in graph.layers:
            return None
        group = graph.layers[i]
        lin_eqn = graph.eqns[group.linear]
        u = read(lin_eqn.invars[group.x_pos])
        a, c, scaled = _affine(graph, group, read)
        if group.kind == "pool":
            return [a * bind(lin_eqn, [u])[0] + c]
        w, a, _ = _fold(lin_eqn, group, read(lin_eqn.invars[1 - group.x_pos]), a, scaled)
        return [a * bind(lin_eqn, [u, w] if group.x_pos == 0 else [w, u])[0] + c]

    params = probe.params if params is None else params
    return jax.jit(lambda p, xx: evaluate(graph, p, xx, step, grouped=True))(params, x)
