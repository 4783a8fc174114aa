"""A convolution whose input gradient runs on XLA:CPU's fast path.

The input gradient of a convolution is a convolution of the output gradient with the
spatially flipped kernel whose input and output features are swapped. XLA may fold that flip
and swap into the convolution itself (kernel dims ``01oi``) and then run a generic
convolution several times slower; it does so inside ``lax.fori_loop``/``scan`` on this
machine (see DESIGN.md, "XLA on the CPU"). :func:`conv_general_dilated` computes the same
values with a custom VJP whose backward pass materialises the flipped, swapped kernel in the
standard ``HWIO`` layout behind ``lax.optimization_barrier``, so XLA cannot fold it back.

:func:`fast_convolutions` makes every ``flax.nnx.Conv`` whose
convolution is the default ``lax.conv_general_dilated`` use it while the block runs (a trace
is enough: the choice is baked into the traced function).

Example::

    from jaxvis import fast_conv

    with fast_conv.fast_convolutions():
        grad = jax.jit(jax.grad(loss))(x)      # traced here: uses the fast input gradient

    y = fast_conv.conv_general_dilated(x, k, (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["conv_general_dilated", "fast_convolutions"]


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


def _conv_fwd(static: tuple, lhs: jax.Array, rhs: jax.Array) -> tuple[jax.Array, tuple]:
    return _plain(static, lhs, rhs), (lhs, rhs)


def _conv_bwd(static: tuple, res: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    lhs, rhs = res
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
        g_lhs = g_lhs.astype(lhs.dtype)
        _, pull = jax.vjp(lambda r: _plain(static, lhs, r), rhs)
        return g_lhs, pull(g)[0]
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
    # kernel gradient: XLA's own rule (dead code when only the input gradient is used)
    _, pull = jax.vjp(lambda r: _plain(static, lhs, r), rhs)
    (g_rhs,) = pull(g)
    return g_lhs, g_rhs


_conv.defvjp(_conv_fwd, _conv_bwd)


#: Input gradients with at most this many features (RGB or grey images: the first layer) are
#: computed as one matrix product and shifted sums instead of a convolution: XLA:CPU runs a
#: convolution with 3 output features at a fraction of its usual speed (6.6 ms against 2.3 ms
#: for a (64, 32, 32, 16) gradient, DESIGN.md "XLA on the CPU").
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


# ---------------------------------------------------------------- Flax modules

_LOCK = threading.RLock()
_DEPTH = 0
_SAVED: dict[type, Any] = {}


@contextlib.contextmanager
def fast_convolutions() -> Iterator[None]:
    """Within the block, ``flax.nnx.Conv`` calls use
    :func:`conv_general_dilated` when they were built with the default convolution.

    Values are unchanged; only the traced backward pass differs. Re-entrant.
    """
    global _DEPTH
    with _LOCK:
        if _DEPTH == 0:
            _patch()
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                _unpatch()


def _patch() -> None:
    from flax import nnx

    nnx_call = nnx.Conv.__dict__["__call__"]

    def nnx_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("conv_general_dilated") is not lax.conv_general_dilated:
            return nnx_call(self, *args, **kwargs)
        self.__dict__["conv_general_dilated"] = conv_general_dilated
        try:
            return nnx_call(self, *args, **kwargs)
        finally:
            self.__dict__["conv_general_dilated"] = lax.conv_general_dilated

    functools.update_wrapper(nnx_wrapper, nnx_call)
    _SAVED[nnx.Conv] = nnx_call
    nnx.Conv.__call__ = nnx_wrapper


def _unpatch() -> None:
    from flax import nnx

    nnx.Conv.__call__ = _SAVED.pop(nnx.Conv)
