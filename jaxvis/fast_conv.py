"""A convolution whose input gradient runs on XLA:CPU's fast path.

The input gradient of a convolution is a convolution of the output gradient with the
spatially flipped kernel whose input and output features are swapped. XLA may fold that flip
and swap into the convolution itself (kernel dims ``01oi``) and then run a generic
convolution several times slower; it does so inside ``lax.fori_loop``/``scan`` on this
machine (see docs/design.md, "XLA on the CPU"). :func:`conv_general_dilated` computes the same
values with a custom VJP whose backward pass materialises the flipped, swapped kernel in the
standard ``HWIO`` layout behind ``lax.optimization_barrier``, so XLA cannot fold it back.

:func:`fast_convolutions` makes every ``flax.linen.Conv`` and ``flax.nnx.Conv`` whose
convolution is the default ``lax.conv_general_dilated`` use it while the block runs, and
Flax's functional ``max_pool`` use :func:`max_pool` (an exact, fast gradient instead of
select-and-scatter). A trace is enough: the choice is baked into the traced function. The
block is scoped to the thread (context) that entered it; the user's own code elsewhere traces
as without jaxvis. Equinox's ``eqx.nn.Conv`` calls ``jax.lax`` directly and is not covered.

Example::

    from jaxvis import fast_conv

    with fast_conv.fast_convolutions():
        grad = jax.jit(jax.grad(loss))(x)      # traced here: uses the fast input gradient

    y = fast_conv.conv_general_dilated(x, k, (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

__all__ = ["active", "conv_general_dilated", "fast_convolutions", "max_pool"]


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    **kwargs: Any,
) -> jax.Array:
    """``lax.conv_general_dilated`` with the same values and a CPU-friendly input gradient.

    Grouped convolutions, batch groups and sharding arguments fall back to
    ``lax.conv_general_dilated`` unchanged.
    """
    nd = lhs.ndim - 2
    lhs_dilation = tuple(lhs_dilation) if lhs_dilation is not None else (1,) * nd
    rhs_dilation = tuple(rhs_dilation) if rhs_dilation is not None else (1,) * nd
    plain = functools.partial(
        lax.conv_general_dilated,
        window_strides=window_strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
        **kwargs,
    )
    extra = {k: v for k, v in kwargs.items() if v is not None}
    if feature_group_count != 1 or batch_group_count != 1 or extra or lhs.dtype != rhs.dtype:
        return plain(lhs, rhs)
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        lhs_sp = [lhs.shape[d] for d in dn.lhs_spec[2:]]
        in_dilated = [
            0 if n == 0 else 1 + d * (n - 1) for n, d in zip(lhs_sp, lhs_dilation, strict=True)
        ]
        k_sp = [rhs.shape[d] for d in dn.rhs_spec[2:]]
        k_dilated = [
            0 if n == 0 else 1 + d * (n - 1) for n, d in zip(k_sp, rhs_dilation, strict=True)
        ]
        pads = tuple(lax.padtype_to_pads(in_dilated, k_dilated, strides, padding))
    else:
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    static = (strides, pads, lhs_dilation, rhs_dilation, dn, precision, preferred_element_type)
    return _conv(static, lhs, rhs)


def _plain(static: tuple, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    strides, pads, lhs_dilation, rhs_dilation, dn, precision, pet = static
    return lax.conv_general_dilated(
        lhs,
        rhs,
        strides,
        pads,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dn,
        precision=precision,
        preferred_element_type=pet,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _conv(static: tuple, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    return _plain(static, lhs, rhs)


def _conv_fwd(static: tuple, lhs: Any, rhs: Any) -> tuple[jax.Array, tuple]:
    # symbolic zeros: ``lhs``/``rhs`` are ``CustomVJPPrimal``s that say whether a gradient is
    # wanted; the answer travels to the backward pass in the residuals' (static) structure
    wants = (() if lhs.perturbed else None, () if rhs.perturbed else None)
    return _plain(static, lhs.value, rhs.value), (lhs.value, rhs.value, wants)


def _conv_bwd(static: tuple, res: tuple, g: Any) -> tuple[Any, Any]:
    lhs, rhs, (want_lhs, want_rhs) = res
    if isinstance(g, SymbolicZero):
        return None, None
    g_rhs = None
    if want_rhs is not None:  # the kernel gradient: XLA's own rule (not needed for pixels)
        _, pull = jax.vjp(lambda r: _plain(static, lhs, r), rhs)
        (g_rhs,) = pull(g)
    if want_lhs is None:
        return None, g_rhs
    strides, pads, lhs_dilation, rhs_dilation, dn, precision, pet = static
    lhs_spec, rhs_spec, out_spec = dn
    nd = len(strides)
    # kernel as (spatial..., out, in), spatially flipped: an HWIO kernel of the transposed
    # convolution (input features = the forward's outputs), materialised behind a barrier.
    k = lax.transpose(rhs, (*rhs_spec[2:], rhs_spec[0], rhs_spec[1]))
    k = lax.rev(k, tuple(range(nd)))
    k = lax.optimization_barrier(k)
    t_rhs_spec = (nd + 1, nd, *range(nd))
    in_sp = [lhs.shape[d] for d in lhs_spec[2:]]
    k_sp = [rhs.shape[d] for d in rhs_spec[2:]]
    out_sp = [g.shape[d] for d in out_spec[2:]]

    def dilate(n: int, d: int) -> int:
        return 0 if n == 0 else 1 + d * (n - 1)

    t_pads = []
    for i in range(nd):
        before = dilate(k_sp[i], rhs_dilation[i]) - pads[i][0] - 1
        after = (
            dilate(in_sp[i], lhs_dilation[i])
            + dilate(k_sp[i], rhs_dilation[i])
            - 1
            - dilate(out_sp[i], strides[i])
            - before
        )
        t_pads.append((int(before), int(after)))
    if _use_taps(k, lhs_dilation, lhs_spec, out_spec):
        g_lhs = _input_grad_by_taps(g.astype(k.dtype), k, strides, pads, rhs_dilation, in_sp, dn)
        return g_lhs.astype(lhs.dtype), g_rhs
    g_lhs = lax.conv_general_dilated(
        g.astype(k.dtype),
        k,
        window_strides=lhs_dilation,
        padding=t_pads,
        lhs_dilation=strides,
        rhs_dilation=rhs_dilation,
        dimension_numbers=lax.ConvDimensionNumbers(out_spec, t_rhs_spec, lhs_spec),
        precision=precision,
    ).astype(lhs.dtype)
    return g_lhs, g_rhs


_conv.defvjp(_conv_fwd, _conv_bwd, symbolic_zeros=True)


#: Input gradients with at most this many features (RGB or grey images: the first layer) are
#: computed as one matrix product and shifted sums instead of a convolution: XLA:CPU runs a
#: convolution with 3 output features at a fraction of its usual speed (6.6 ms against 2.3 ms
#: for a (64, 32, 32, 16) gradient, docs/design.md "XLA on the CPU").
SMALL_FEATURES = 4


def _use_taps(k: jax.Array, lhs_dilation: tuple, lhs_spec: tuple, out_spec: tuple) -> bool:
    nd = k.ndim - 2
    channels_last = lhs_spec[1] == nd + 1 and out_spec[1] == nd + 1
    batch_first = lhs_spec[0] == 0 and out_spec[0] == 0
    spatial_in_order = tuple(lhs_spec[2:]) == tuple(range(1, nd + 1)) == tuple(out_spec[2:])
    return (
        k.shape[-1] <= SMALL_FEATURES
        and all(d == 1 for d in lhs_dilation)
        and channels_last
        and batch_first
        and spatial_in_order
    )


def _input_grad_by_taps(
    g: jax.Array,
    k: jax.Array,
    strides: tuple,
    pads: tuple,
    rhs_dilation: tuple,
    in_sp: list[int],
    dn: Any,
) -> jax.Array:
    """Input gradient of a channels-last convolution: ``g @ kernel`` per tap, then each tap's
    slice placed (strided, shifted, cropped with ``lax.pad``) and summed."""
    nd = len(strides)
    taps = k.shape[:nd]
    cout, cin = k.shape[nd], k.shape[nd + 1]
    # k is flipped: tap t of the forward kernel is k[reversed index]
    kf = lax.rev(k, tuple(range(nd)))  # back to forward orientation, (spatial..., cout, cin)
    km = jnp.moveaxis(kf, nd, 0).reshape(cout, -1)  # (cout, taps... * cin)
    prod = jnp.dot(g.reshape(-1, cout), km, precision=lax.Precision.HIGHEST)
    prod = prod.reshape(*g.shape[:-1], *taps, cin)
    out_sp = g.shape[1 : 1 + nd]
    total = None
    for tap in np.ndindex(*taps):
        part = prod[(slice(None),) * (1 + nd) + tap]
        config = [(0, 0, 0)]
        for i in range(nd):
            lo = tap[i] * rhs_dilation[i] - pads[i][0]
            span = (out_sp[i] - 1) * strides[i] + 1 if out_sp[i] else 0
            config.append((lo, in_sp[i] - lo - span, strides[i] - 1))
        config.append((0, 0, 0))
        placed = lax.pad(part, jnp.zeros((), part.dtype), config)
        total = placed if total is None else total + placed
    return total


# ---------------------------------------------------------------- max pooling


def max_pool(
    inputs: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> jax.Array:
    """``flax.linen.max_pool`` (= ``flax.nnx.max_pool``) with the same values and a fast,
    exact gradient.

    The forward pass is Flax's own ``lax.reduce_window``; the backward pass routes each
    window's gradient to the first maximum of the window (ties as XLA's select-and-scatter,
    and PyTorch) by comparisons with the pooled maximum, one strided slice per window tap,
    instead of XLA:CPU's slow select-and-scatter. The gradients of overlapping windows are
    added in the order select-and-scatter adds them, so the result is the same to the bit.
    Inputs other than one batch axis of floats fall back to Flax's function.
    """
    window = tuple(int(w) for w in window_shape)
    nd = len(window)
    stride = tuple(int(s) for s in strides) if strides else (1,) * nd
    if inputs.ndim != nd + 2 or len(stride) != nd or not jnp.issubdtype(inputs.dtype, jnp.floating):
        return _flax_max_pool(inputs, window_shape, strides, padding)
    dims = (1, *window, 1)
    full_strides = (1, *stride, 1)
    if isinstance(padding, str):
        pads = tuple(lax.padtype_to_pads(inputs.shape, dims, full_strides, padding))
    else:
        pads = ((0, 0), *(tuple(int(v) for v in p) for p in padding), (0, 0))
    return _max_pool(dims, full_strides, tuple(tuple(p) for p in pads), inputs)


def _flax_max_pool(*args: Any) -> jax.Array:
    from flax.linen import pooling

    return pooling.max_pool(*args)


def _reduce_max(dims: tuple, strides: tuple, pads: tuple, x: jax.Array) -> jax.Array:
    return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _max_pool(dims: tuple, strides: tuple, pads: tuple, x: jax.Array) -> jax.Array:
    return _reduce_max(dims, strides, pads, x)


def _max_pool_fwd(dims: tuple, strides: tuple, pads: tuple, x: jax.Array) -> tuple:
    y = _reduce_max(dims, strides, pads, x)
    return y, (x, y)


def _max_pool_bwd(dims: tuple, strides: tuple, pads: tuple, res: tuple, g: jax.Array) -> tuple:
    x, y = res
    neg = jnp.asarray(-jnp.inf, x.dtype)
    xp = lax.pad(x, neg, [(lo, hi, 0) for lo, hi in pads])
    zero = jnp.zeros((), g.dtype)
    taken = jnp.zeros(y.shape, bool)
    parts = []
    for tap in np.ndindex(*dims):
        limit = [t + (n - 1) * s + 1 for t, n, s in zip(tap, y.shape, strides, strict=True)]
        seen = lax.slice(xp, tap, limit, strides)
        chosen = (seen == y) & ~taken
        taken = taken | chosen
        part = jnp.where(chosen, g, zero)
        config = [
            (t, p - t - (n - 1) * s - 1, s - 1)
            for t, p, n, s in zip(tap, xp.shape, y.shape, strides, strict=True)
        ]
        parts.append(lax.pad(part, zero, config))
    # select-and-scatter adds the windows in row-major order: for one input element a later
    # window reaches it through an earlier tap, so the taps are summed last to first
    total = parts[-1]
    for part in reversed(parts[:-1]):
        total = total + part
    crop = [slice(lo, lo + n) for (lo, _), n in zip(pads, x.shape, strict=True)]
    return (total[tuple(crop)],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


# ---------------------------------------------------------------- Flax modules

# ``fast_convolutions`` is scoped to the context (thread, asyncio task) that entered it:
# Linen goes through ``nn.intercept_methods`` (a thread-local interceptor stack); NNX's
# ``Conv.__call__`` and Flax's ``max_pool`` are wrapped while any context is inside the
# block, and the wrappers do anything different only where ``_ACTIVE`` is set. Code on
# other threads, or outside the block, traces exactly as without jaxvis.

_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxvis_fast_conv", default=False)
#: whether convolutions (not only pooling) take the fast path in this context
_CONV: contextvars.ContextVar[bool] = contextvars.ContextVar("jaxvis_fast_conv_conv", default=True)
_LOCK = threading.RLock()
_DEPTH = 0
_SAVED: dict[tuple[Any, str], Any] = {}


def active() -> bool:
    """Whether this context is inside :func:`fast_convolutions`."""
    return _ACTIVE.get()


@contextlib.contextmanager
def fast_convolutions(convolutions: bool = True) -> Iterator[None]:
    """Within the block, convolutions of ``flax.linen.Conv`` and ``flax.nnx.Conv`` (built with
    the default convolution) use :func:`conv_general_dilated`, and Flax's functional
    ``max_pool`` (``nn.max_pool``, ``nnx.max_pool``) uses :func:`max_pool`.

    Values are unchanged; only the traced backward pass differs. Re-entrant, and scoped to
    the calling thread/context: another thread tracing at the same time is unaffected.
    ``convolutions=False`` keeps the plain convolutions (only pooling changes): outside a
    loop XLA runs them on its fast path anyway, and they compile faster.
    """
    from flax import linen as nn

    global _DEPTH
    with _LOCK:
        if _DEPTH == 0:
            _patch()
        _DEPTH += 1
    token = _ACTIVE.set(True)
    conv_token = _CONV.set(bool(convolutions))
    try:
        with nn.intercept_methods(_linen_interceptor):
            yield
    finally:
        _CONV.reset(conv_token)
        _ACTIVE.reset(token)
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                _unpatch()


def _linen_interceptor(next_fun: Any, args: tuple, kwargs: dict, context: Any) -> Any:
    """Give a default ``nn.Conv`` jaxvis's convolution for the duration of its ``__call__``."""
    from flax import linen as nn

    module = context.module
    if (
        not (_ACTIVE.get() and _CONV.get())
        or context.method_name != "__call__"
        or not isinstance(module, nn.Conv)
        or module.conv_general_dilated is not None
        or module.conv_general_dilated_cls is not None
    ):
        return next_fun(*args, **kwargs)
    # the bound module is Flax's clone for this apply: the user's own instance is not touched
    object.__setattr__(module, "conv_general_dilated", conv_general_dilated)
    try:
        return next_fun(*args, **kwargs)
    finally:
        object.__setattr__(module, "conv_general_dilated", None)


def _patch() -> None:
    import flax.linen
    import flax.linen.pooling
    from flax import nnx

    nnx_call = nnx.Conv.__dict__["__call__"]

    def nnx_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if (
            not (_ACTIVE.get() and _CONV.get())
            or self.__dict__.get("conv_general_dilated") is not lax.conv_general_dilated
        ):
            return nnx_call(self, *args, **kwargs)
        self.__dict__["conv_general_dilated"] = conv_general_dilated
        try:
            return nnx_call(self, *args, **kwargs)
        finally:
            self.__dict__["conv_general_dilated"] = lax.conv_general_dilated

    functools.update_wrapper(nnx_wrapper, nnx_call)
    _SAVED[(nnx.Conv, "__call__")] = nnx_call
    nnx.Conv.__call__ = nnx_wrapper

    flax_pool = flax.linen.pooling.max_pool

    @functools.wraps(flax_pool)
    def pool_wrapper(*args: Any, **kwargs: Any) -> Any:
        return (max_pool if _ACTIVE.get() else flax_pool)(*args, **kwargs)

    for owner in (flax.linen, flax.linen.pooling, nnx):
        if getattr(owner, "max_pool", None) is flax_pool:
            _SAVED[(owner, "max_pool")] = flax_pool
            owner.max_pool = pool_wrapper


def _unpatch() -> None:
    for (owner, name), original in _SAVED.items():
        setattr(owner, name, original)
    _SAVED.clear()
