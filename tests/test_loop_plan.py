"""jaxvis._plan: the loop of a gradient tool is chosen from the model's cost, and every loop
gives the results of a plain ``jax.grad`` reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import jaxvis as jv
from jaxvis import _plan
from jaxvis.attribution import (
    integrated_gradients,
    interior_gradients,
    nodes,
    saliency,
    smoothgrad,
    trace_counts,
)

# --------------------------------------------------------------------------- the choice


def test_choose_picks_each_mode_from_the_cost() -> None:
    small = _plan.Cost(flops=1e5, act_bytes=4e4)  # a 28x28 demo model: 10k floats
    big = _plan.Cost(flops=4e9, act_bytes=1e8)  # a ResNet-50 at 224: 25M floats
    assert _plan.choose(16, small) == _plan.Plan("batch", 16)  # chunk 64 holds all points
    assert _plan.choose(500, small) == _plan.Plan("scan", 64)  # many cheap chunks
    assert _plan.choose(50, big) == _plan.Plan("python", 8)  # few expensive chunks
    assert _plan.choose(1, big) == _plan.Plan("batch", 1)
    assert _plan.choose(50, big, batch_size=64) == _plan.Plan("batch", 50)
    assert _plan.choose(50, small, batch_size=7) == _plan.Plan("scan", 7)
    # the threshold is the forward cost of one chunk
    at = _plan.Cost(flops=_plan.PYTHON_MIN_FLOPS / 8, act_bytes=1e8)
    below = _plan.Cost(flops=_plan.PYTHON_MIN_FLOPS / 8 * 0.99, act_bytes=1e8)
    assert _plan.choose(50, at).mode == "python"
    assert _plan.choose(50, below).mode == "scan"
    # chunks: a power of two in 8..256 from the activation floats
    assert _plan.choose(10_000, _plan.Cost(1.0, 4.0)).chunk == 256
    assert _plan.choose(10_000, _plan.Cost(1.0, 4.0 * (1 << 20) / 32)).chunk == 32


def test_estimate_counts_convolution_and_matrix_product_flops() -> None:
    probe = _linen_probe()
    cost = _plan.estimate(probe, (8, 8, 3))
    conv1 = 2 * 8 * 8 * 6 * (3 * 3 * 3)  # SAME 3x3, 3 -> 6
    conv2 = 2 * 4 * 4 * 5 * (3 * 3 * 6)  # after the 2x2 pool, 6 -> 5
    dense = 2 * 4 * 5
    assert cost.flops == conv1 + conv2 + dense
    assert cost.act_bytes >= 4 * (8 * 8 * 6 + 4 * 4 * 6 + 4 * 4 * 5)
    assert _plan.estimate(probe, (8, 8, 3)) is cost  # cached per probe and shape


def test_plan_is_cached_per_model_and_shape_and_forced_wins() -> None:
    probe = _linen_probe()
    a = _plan.plan(probe, "ig", (8, 8, 3), 40, None)
    assert _plan.plan(probe, "ig", (8, 8, 3), 40, None) is a
    with _plan.forced("python", 3):
        assert _plan.plan(probe, "ig", (8, 8, 3), 40, None) == _plan.Plan("python", 3)
    with _plan.forced("batch"):
        assert _plan.plan(probe, "ig", (8, 8, 3), 40, None) == _plan.Plan("batch", 40)
    with pytest.raises(ValueError, match="mode"), _plan.forced("loop"):
        pass


# --------------------------------------------------------------------------- every mode


@functools.cache
def _linen_probe() -> jv.Probe:
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = jnp.tanh(nn.Conv(6, (3, 3), padding="SAME")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))  # functional: the fast pool VJP
            x = nn.relu(nn.Conv(5, (3, 3), padding="SAME")(x))
            return nn.Dense(4)(x.mean((1, 2)))

    net = Net()
    variables = net.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    return jv.Probe(net, variables, input_shape=(8, 8, 3))


def _x(n: int) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 1, (n, 8, 8, 3)).astype(np.float32)


def _grad_ref(probe: jv.Probe, points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Plain jax.grad of the model, one point at a time, no jaxvis loop."""
    module, variables = probe._adapter.run, probe.params  # the probe's pure apply

    def one(p: jax.Array, t: jax.Array) -> jax.Array:
        return module(variables, p[None])[0, t]

    grad = jax.jit(jax.grad(one))
    return np.stack([np.asarray(grad(p, t)) for p, t in zip(points, target, strict=True)])


MODES = [("batch", None), ("python", 3), ("scan", 3), ("python", 7), ("scan", 8)]


@pytest.mark.parametrize(("mode", "chunk"), MODES, ids=[f"{m}-{c}" for m, c in MODES])
def test_every_mode_gives_the_reference_integrated_gradients(mode: str, chunk: int) -> None:
    probe = _linen_probe()
    x = _x(2)
    steps = 5
    a, w = nodes("gausslegendre", steps)
    target = np.array([1, 3])
    points = (a[:, None, None, None, None] * x[None]).reshape(-1, 8, 8, 3).astype(np.float32)
    grads = _grad_ref(probe, points, np.tile(target, steps)).reshape(steps, 2, 8, 8, 3)
    want = x * np.einsum("s,s...->...", w, grads.astype(np.float64))
    with _plan.forced(mode, chunk):
        got = integrated_gradients(probe, x, target, baseline="black", steps=steps)
    assert got.settings["loop"] == mode
    np.testing.assert_allclose(got.values, want, rtol=1e-4, atol=1e-6)
    f = np.asarray(probe(x))[[0, 1], target] - np.asarray(probe(0 * x))[[0, 1], target]
    np.testing.assert_allclose(got.delta, got.values.reshape(2, -1).sum(-1) - f, atol=1e-5)


@pytest.mark.parametrize(("mode", "chunk"), MODES, ids=[f"{m}-{c}" for m, c in MODES])
def test_every_mode_gives_the_same_smoothgrad_interior_gradients_and_saliency(
    mode: str, chunk: int
) -> None:
    probe = _linen_probe()
    x = _x(3)
    ref_sg = smoothgrad(probe, x, 2, samples=5, variant="vargrad", batch_size=15)
    ref_in = interior_gradients(probe, x, 1, alphas=[0.1, 0.5, 1.0], batch_size=9)
    ref_sal = saliency(probe, x, 0, batch_size=3)
    np.testing.assert_allclose(
        ref_sal.values, np.abs(_grad_ref(probe, x, np.zeros(3, int))), rtol=1e-5, atol=1e-7
    )
    with _plan.forced(mode, chunk):
        sg = smoothgrad(probe, x, 2, samples=5, variant="vargrad")
        inner = interior_gradients(probe, x, 1, alphas=[0.1, 0.5, 1.0])
        sal = saliency(probe, x, 0)
    np.testing.assert_allclose(sg.values, ref_sg.values, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(inner.values, ref_in.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(inner.extra["scores"], ref_in.extra["scores"], rtol=1e-5)
    np.testing.assert_allclose(sal.values, ref_sal.values, rtol=1e-5, atol=1e-7)


def test_python_and_scan_loops_add_in_the_same_order() -> None:
    probe = _linen_probe()
    x = _x(2)
    with _plan.forced("python", 4):
        py = integrated_gradients(probe, x, 1, baseline="black", steps=9)
    with _plan.forced("scan", 4):
        sc = integrated_gradients(probe, x, 1, baseline="black", steps=9)
    np.testing.assert_allclose(py.values, sc.values, rtol=2e-6, atol=1e-8)


def test_python_loop_compiles_once_per_shape() -> None:
    probe = _linen_probe()
    x = _x(2)
    with _plan.forced("python", 4):
        integrated_gradients(probe, x, 1, baseline="black", steps=9)
        before = trace_counts()
        integrated_gradients(probe, x, [2, 0], baseline="uniform", steps=9, seed=3)  # values only
    assert trace_counts() == before
