"""jaxvis.fast_conv: the custom-VJP convolution equals lax.conv_general_dilated exactly enough."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxvis import fast_conv

CASES = [
    # kernel, strides, padding, rhs_dilation, lhs_dilation, dimension numbers, in features
    ((3, 3), (1, 1), "SAME", (1, 1), (1, 1), ("NHWC", "HWIO", "NHWC"), 5),
    ((3, 3), (1, 1), "SAME", (1, 1), (1, 1), ("NHWC", "HWIO", "NHWC"), 3),  # taps path
    ((5, 3), (2, 1), "VALID", (1, 1), (1, 1), ("NHWC", "HWIO", "NHWC"), 3),
    ((4, 4), (3, 2), ((1, 2), (0, 3)), (1, 1), (1, 1), ("NHWC", "HWIO", "NHWC"), 1),
    ((3, 3), (2, 1), "SAME", (2, 2), (1, 1), ("NHWC", "HWIO", "NHWC"), 2),
    ((3, 3), (2, 2), "SAME", (2, 1), (1, 1), ("NCHW", "OIHW", "NCHW"), 6),
    ((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), (2, 2), ("NHWC", "HWIO", "NHWC"), 5),
    ((1, 1), (1, 1), "SAME", (1, 1), (1, 1), ("NHWC", "HWIO", "NHWC"), 8),
    ((2, 2), (2, 2), "VALID", (1, 1), (1, 1), ("NHWC", "HWIO", "NHWC"), 16),
]


def _loss(conv, case):  # noqa: ANN001, ANN202
    ks, st, pad, rd, ld, dn, _ = case

    def loss(x: jax.Array, k: jax.Array) -> jax.Array:
        y = conv(x, k, st, pad, lhs_dilation=ld, rhs_dilation=rd, dimension_numbers=dn)
        return jnp.sum(jnp.sin(y) * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size)

    return loss


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}-{c[4]}-{c[6]}")
def test_values_and_gradients_agree_with_lax(case: tuple) -> None:
    ks, _, _, _, _, dn, ci = case
    co = 7
    xs = (2, 13, 11, ci) if dn[0] == "NHWC" else (2, ci, 13, 11)
    kshape = (*ks, ci, co) if dn[1] == "HWIO" else (co, ci, *ks)
    x = jax.random.normal(jax.random.key(0), xs)
    k = jax.random.normal(jax.random.key(1), kshape)
    plain, fast = _loss(lax.conv_general_dilated, case), _loss(fast_conv.conv_general_dilated, case)
    np.testing.assert_array_equal(jax.jit(plain)(x, k), jax.jit(fast)(x, k))
    want = jax.jit(jax.grad(plain, (0, 1)))(x, k)
    got = jax.jit(jax.grad(fast, (0, 1)))(x, k)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(w))))
    jaxpr = str(jax.make_jaxpr(fast)(x, k))
    assert "custom_vjp_call" in jaxpr


def test_grouped_convolution_falls_back_to_lax() -> None:
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 4))
    k = jax.random.normal(jax.random.key(1), (3, 3, 2, 6))
    dn = ("NHWC", "HWIO", "NHWC")

    def f(conv):  # noqa: ANN001, ANN202
        return lambda x: jnp.sum(
            conv(x, k, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=2) ** 2
        )

    np.testing.assert_array_equal(
        jax.grad(f(lax.conv_general_dilated))(x), jax.grad(f(fast_conv.conv_general_dilated))(x)
    )
    assert "custom_vjp_call" not in str(jax.make_jaxpr(f(fast_conv.conv_general_dilated))(x))


def _one_conv_net() -> nnx.Module:
    class Net(nnx.Module):
        def __init__(self) -> None:
            self.a = nnx.Conv(3, 8, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
            self.b = nnx.Conv(8, 4, (3, 3), strides=2, padding="VALID", rngs=nnx.Rngs(1))

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.b(jax.nn.elu(self.a(x)))

    return Net()


def test_context_manager_swaps_nnx_conv_while_tracing_only() -> None:
    net = _one_conv_net()
    x = jax.random.uniform(jax.random.key(2), (2, 12, 12, 3))

    def loss(x: jax.Array) -> jax.Array:
        return jnp.sum(net(x) ** 2)

    want = jax.grad(loss)(x)
    with fast_conv.fast_convolutions(), fast_conv.fast_convolutions():  # re-entrant
        jaxpr = str(jax.make_jaxpr(loss)(x))
        got = jax.jit(jax.grad(loss))(x)
    assert jaxpr.count("custom_vjp_call") == 2
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # restored afterwards: the class, the instances and plain tracing
    assert net.a.conv_general_dilated is lax.conv_general_dilated
    assert "custom_vjp_call" not in str(jax.make_jaxpr(lambda x: loss(x))(x))  # new trace


def test_inside_a_loop_the_flipped_kernel_is_not_folded_into_the_convolution() -> None:
    """The XLA:CPU trap of docs/design.md: inside lax.map/scan the plain input gradient runs a
    convolution with kernel dims ``01oi``; the custom VJP keeps it in the standard ``01io``."""
    net = _one_conv_net()
    xs = jax.random.uniform(jax.random.key(3), (4, 2, 12, 12, 3))

    def hlo() -> str:  # a new function each time: jax.jit's trace cache keys on it
        def grads(xs: jax.Array) -> jax.Array:
            return jax.lax.map(jax.grad(lambda x: jnp.sum(net(x))), xs)

        return jax.jit(grads).lower(xs).compile().as_text()

    with fast_conv.fast_convolutions():
        fast = hlo()
    plain = hlo()
    assert "01io" in fast
    assert "01oi" not in fast
    print("plain kernel layouts folded (01oi):", plain.count("01oi"))  # XLA-version dependent


# ---------------------------------------------------------------- Linen and max pooling

POOLS = [
    ((2, 13, 11, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),  # torchvision's ResNet stem
    ((2, 12, 12, 4), (2, 2), (2, 2), "VALID"),
    ((1, 9, 10, 2), (3, 2), (1, 2), "SAME"),
    ((2, 8, 8, 3), (3, 3), (1, 1), "SAME"),
]


@pytest.mark.parametrize("case", POOLS, ids=lambda c: f"{c[1]}-{c[2]}-{c[3]}")
def test_max_pool_vjp_equals_jax_grad_of_flax_max_pool_to_the_bit(case: tuple) -> None:
    from flax import linen as nn

    shape, window, strides, padding = case
    x = jnp.round(jax.random.normal(jax.random.key(0), shape) * 2) / 2  # many ties

    def f(pool):  # noqa: ANN001, ANN202
        def loss(v: jax.Array) -> jax.Array:
            y = pool(v, window, strides, padding)
            return jnp.sum(jnp.sin(y) * jnp.arange(1, y.size + 1).reshape(y.shape))

        return loss

    np.testing.assert_array_equal(jax.jit(f(fast_conv.max_pool))(x), jax.jit(f(nn.max_pool))(x))
    np.testing.assert_array_equal(
        jax.jit(jax.grad(f(fast_conv.max_pool)))(x), jax.jit(jax.grad(f(nn.max_pool)))(x)
    )
    assert "select_and_scatter" not in str(jax.make_jaxpr(jax.grad(f(fast_conv.max_pool)))(x))


def _linen_net():  # noqa: ANN202
    from flax import linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)))(x)
            x = nn.max_pool(nn.relu(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
            return nn.Conv(4, (3, 3), strides=(2, 2))(x).mean((1, 2))

    net = Net()
    x = jax.random.uniform(jax.random.key(4), (2, 12, 12, 3))
    return net, net.init(jax.random.key(5), x), x


def test_linen_conv_and_functional_max_pool_are_fast_inside_the_block_only() -> None:
    net, variables, x = _linen_net()

    def loss(v: jax.Array) -> jax.Array:
        return jnp.sum(net.apply(variables, v) ** 2)

    want = jax.jit(jax.grad(loss))(x)
    with fast_conv.fast_convolutions(), fast_conv.fast_convolutions():  # re-entrant
        forward = str(jax.make_jaxpr(lambda v: loss(v))(x))
        backward = str(jax.make_jaxpr(jax.grad(lambda v: loss(v)))(x))
        got = jax.jit(jax.grad(lambda v: loss(v)))(x)
    assert forward.count("custom_vjp_call") == 3  # two convolutions and the pool
    assert "select_and_scatter" not in backward
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the user's own jit afterwards traces as without jaxvis
    from flax import linen as nn
    from flax.linen import pooling

    assert nn.max_pool is pooling.max_pool and nnx.max_pool is pooling.max_pool
    assert pooling.max_pool.__module__ == "flax.linen.pooling"
    after = str(jax.make_jaxpr(jax.grad(lambda v: loss(v)))(x))
    assert "custom_vjp_call" not in after and "select_and_scatter" in after


def test_another_thread_tracing_during_the_block_is_unaffected() -> None:
    import threading

    net, variables, x = _linen_net()
    nnx_net = _one_conv_net()
    inside, outside = threading.Event(), threading.Event()
    seen = {}

    def user_code() -> None:
        inside.wait(30)
        seen["linen"] = str(jax.make_jaxpr(lambda v: net.apply(variables, v))(x))
        seen["nnx"] = str(jax.make_jaxpr(lambda v: nnx_net(v))(x))
        outside.set()

    thread = threading.Thread(target=user_code)
    thread.start()
    with fast_conv.fast_convolutions():
        inside.set()
        outside.wait(60)
        mine = str(jax.make_jaxpr(lambda v: net.apply(variables, v))(x))
    thread.join()
    assert "custom_vjp_call" not in seen["linen"] and "custom_vjp_call" not in seen["nnx"]
    assert mine.count("custom_vjp_call") == 3


def test_gradient_of_one_argument_only_agrees_with_lax() -> None:
    """The custom VJP computes only the gradients asked for (symbolic zeros)."""
    case = CASES[0]
    x = jax.random.normal(jax.random.key(6), (2, 13, 11, 5))
    k = jax.random.normal(jax.random.key(7), (3, 3, 5, 7))
    plain, fast = _loss(lax.conv_general_dilated, case), _loss(fast_conv.conv_general_dilated, case)
    for arg in (0, 1):
        want = jax.jit(jax.grad(plain, arg))(x, k)
        got = jax.jit(jax.grad(fast, arg))(x, k)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want))))
    # only the input gradient: no kernel-gradient convolution is traced
    only_x = str(jax.make_jaxpr(jax.grad(fast, 0))(x, k))
    both = str(jax.make_jaxpr(jax.grad(fast, (0, 1)))(x, k))
    assert only_x.count("conv_general_dilated") < both.count("conv_general_dilated")


def test_pooling_only_keeps_the_plain_convolutions() -> None:
    net, variables, x = _linen_net()
    with fast_conv.fast_convolutions(convolutions=False):
        jaxpr = str(jax.make_jaxpr(lambda v: net.apply(variables, v))(x))
    assert jaxpr.count("custom_vjp_call") == 1  # the pool
